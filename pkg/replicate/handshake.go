package replicate

import (
	"bufio"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/flynn/noise"
)

const (
	helloMagic = "TDMR"
	// protoVersion 2 is the Noise handshake; 1 was a home-made
	// HMAC handshake, refused by name so a half-upgraded pair says why.
	protoVersion = 2
	maxNodeLen   = 128
	maxHashLen   = 256

	// labelPSK derives the Noise pre-shared key from a cluster key.
	labelPSK = "tandem/replicate/v2 noise psk"

	bufSize = 64 << 10
)

// suite is the handshake's fixed cipher suite: no negotiation, nothing to
// downgrade. AES-GCM because the frames were AES-GCM before and the
// machines this runs on have AES instructions.
var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// header opens the first handshake frame in the clear and is the Noise
// prologue, so a peer that strips or rewrites it fails authentication.
var header = []byte{'T', 'D', 'M', 'R', protoVersion}

// insecureKey is the well-known key used when Config.Insecure is set and
// no key is given: frames are still sealed, which catches a wrong peer or
// corrupted bytes, but anyone can read and forge them.
var insecureKey = make([]byte, 32)

// Reasons a connection is dropped, the keys of Status.Dropped. Entries
// discarded by Publish are counted under dropQueue.
const (
	dropHandshake = "handshake"      // garbage, timeout, wrong version or node name
	dropAuth      = "auth"           // the peer's handshake failed authentication: it lacks the cluster key, or replays
	dropConfig    = "config_hash"    // authenticated peer runs a different config
	dropFrame     = "bad_frame"      // a sealed frame failed to open, was too large or malformed
	dropBusy      = "busy"           // too many handshakes in progress
	dropQueue     = "queue_overflow" // entries discarded by Publish; a resync repairs them
	dropPanic     = "panic"          // serving the connection panicked (a bug): connection dropped, node kept
)

// refusal is a handshake failure with the Status.Dropped reason to count.
type refusal struct {
	reason string
	err    error
}

func (e *refusal) Error() string { return e.err.Error() }
func (e *refusal) Unwrap() error { return e.err }

func refuse(reason string, format string, args ...any) error {
	return &refusal{reason: reason, err: fmt.Errorf(format, args...)}
}

// keys holds what is derived from one cluster key.
type keys struct {
	master []byte // the cluster key
	psk    []byte // HKDF-SHA256(master, info=labelPSK): the Noise PSK
}

func deriveKeys(master []byte) (keys, error) {
	psk, err := hkdf.Key(sha256.New, master, nil, labelPSK, 32)
	if err != nil {
		return keys{}, err
	}
	return keys{master: master, psk: psk}, nil
}

// newHandshake starts Noise_NNpsk0_25519_AESGCM_SHA256 with header as the
// prologue.
func newHandshake(psk []byte, initiator bool) (*noise.HandshakeState, error) {
	return noise.NewHandshakeState(noise.Config{
		CipherSuite:           suite,
		Pattern:               noise.HandshakeNN,
		Initiator:             initiator,
		Prologue:              header,
		PresharedKey:          psk,
		PresharedKeyPlacement: 0,
	})
}

// session is an authenticated, sealed connection. The sender side writes
// with the initiator's cipher state and reads with the responder's; the
// receiver side the other way round.
type session struct {
	conn net.Conn
	bw   *bufio.Writer
	fw   frameWriter
	fr   frameReader
	peer string // the peer's node name
	key  []byte // the cluster key the session's keys derive from
}

func newSession(c net.Conn, br *bufio.Reader, bw *bufio.Writer, key []byte, out, in *noise.CipherState, peer string) *session {
	return &session{conn: c, bw: bw, peer: peer, key: key,
		fw: frameWriter{w: bw, cs: out}, fr: frameReader{r: br, cs: in}}
}

// send seals plain into the write buffer; flush sends it.
func (s *session) send(plain []byte) error { return s.fw.write(plain) }

func (s *session) flush(timeout time.Duration) error {
	s.conn.SetWriteDeadline(time.Now().Add(timeout))
	return s.bw.Flush()
}

// recv reads and opens the next frame, waiting at most timeout.
func (s *session) recv(timeout time.Duration) ([]byte, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := s.fr.read()
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty frame", errMalformed)
	}
	return b, nil
}

// checkName refuses a peer name that is empty, too long or this node's
// own: our own hello reflected back to us names us.
func checkName(peer, self string) error {
	switch {
	case peer == "" || len(peer) > maxNodeLen:
		return refuse(dropHandshake, "peer sent a node name of %d bytes, want 1..%d", len(peer), maxNodeLen)
	case peer == self:
		return refuse(dropHandshake, "peer uses this node's name %q (our own handshake reflected back?)", self)
	}
	return nil
}

// openHello is the responder's decoder of the first handshake frame,
//
//	"TDMR" | version | e [32] | AES-GCM(node name)
//
// sealed under a key mixed from the PSK and e. It tries each key of ks
// (primary first) and returns the handshake ready to answer, the key that
// opened the hello and the initiator's node name. A hello proves only
// that someone once held the key: it may be replayed, so nothing is
// trusted until the initiator's first sealed frame opens.
func openHello(ks *keySet, b []byte) (*noise.HandshakeState, keys, string, error) {
	if len(b) < len(header) || string(b[:len(helloMagic)]) != helloMagic {
		return nil, keys{}, "", refuse(dropHandshake, "not a tandem replication peer (bad magic)")
	}
	if v := b[len(helloMagic)]; v != protoVersion {
		return nil, keys{}, "", refuse(dropHandshake, "peer speaks replication protocol version %d, this node %d: run the same tandem release on both boxes", v, protoVersion)
	}
	msg := b[len(header):]
	for _, k := range ks.all {
		hs, err := newHandshake(k.psk, false)
		if err != nil {
			return nil, keys{}, "", err
		}
		name, _, _, err := hs.ReadMessage(nil, msg)
		if err == nil {
			return hs, k, string(name), nil
		}
		if errors.Is(err, noise.ErrShortMessage) {
			return nil, keys{}, "", refuse(dropHandshake, "short hello")
		}
	}
	return nil, keys{}, "", refuse(dropAuth, "its hello opens under none of this node's keys (different cluster key?)")
}

// clientHandshake runs the dialing (sending) side:
//
//	C→S "TDMR" | 2 | e | AES-GCM(node)         (psk, e)
//	S→C e | AES-GCM(node)                      (e, ee)
//	C→S sealed CONFIG{hash}
//	S→C sealed STATE{hash, epoch, seq}
//
// The dialer proves its primary key; the receiver accepts any key it
// holds, so the two may have different primaries during a key rotation.
//
// It returns the session and the receiver's position in this node's stream.
func clientHandshake(c net.Conn, ks *keySet, node, hash string, timeout time.Duration) (*session, streamState, error) {
	c.SetDeadline(time.Now().Add(timeout))
	br, bw := bufio.NewReaderSize(c, bufSize), bufio.NewWriterSize(c, bufSize)
	k := ks.primary
	hs, err := newHandshake(k.psk, true)
	if err != nil {
		return nil, streamState{}, err
	}
	hello, _, _, err := hs.WriteMessage(append([]byte(nil), header...), []byte(node))
	if err != nil {
		return nil, streamState{}, err
	}
	if err := writePlain(bw, hello); err != nil {
		return nil, streamState{}, refuse(dropHandshake, "send hello: %w", err)
	}
	answer, err := readPlain(br, maxHelloLen)
	if err != nil {
		return nil, streamState{}, refuse(dropHandshake, "peer hung up after our hello (a different cluster key or tandem release? its log says which): %w", err)
	}
	name, out, in, err := hs.ReadMessage(nil, answer)
	if err != nil {
		return nil, streamState{}, refuse(dropAuth, "peer's answer failed authentication (replayed or forged): %w", err)
	}
	peer := string(name)
	if err := checkName(peer, node); err != nil {
		return nil, streamState{}, err
	}
	s := newSession(c, br, bw, k.master, out, in, peer)
	if err := s.send(appendConfig(nil, hash)); err != nil {
		return nil, streamState{}, err
	}
	if err := s.flush(timeout); err != nil {
		return nil, streamState{}, refuse(dropHandshake, "send config: %w", err)
	}
	b, err := s.recv(timeout)
	if err != nil {
		return nil, streamState{}, refuse(dropHandshake, "read state: %w", err)
	}
	if b[0] != msgState {
		return nil, streamState{}, refuse(dropFrame, "peer %q sent message %d, want STATE", peer, b[0])
	}
	st, err := parseState(b[1:])
	if err != nil {
		return nil, streamState{}, refuse(dropFrame, "peer %q: STATE: %w", peer, err)
	}
	if st.configHash != hash {
		return nil, streamState{}, refuse(dropConfig, "peer %q runs config %s, this node %s: refusing to sync", peer, st.configHash, hash)
	}
	c.SetDeadline(time.Time{})
	return s, st, nil
}

// serverHandshake runs the accepting (receiving) side up to reading the
// sender's CONFIG, whose opening is the proof that the sender holds the
// key now (the hello alone could be a replay); the caller answers with
// STATE. It returns the session and the peer's config hash.
func serverHandshake(c net.Conn, ks *keySet, node string, timeout time.Duration) (*session, string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	br, bw := bufio.NewReaderSize(c, bufSize), bufio.NewWriterSize(c, bufSize)
	hello, err := readPlain(br, maxHelloLen)
	if err != nil {
		return nil, "", refuse(dropHandshake, "read hello: %w", err)
	}
	hs, k, peer, err := openHello(ks, hello)
	if err != nil {
		var rf *refusal
		if errors.As(err, &rf) && rf.reason == dropAuth {
			return nil, "", refuse(dropAuth, "peer at %s failed authentication: %w", addrOf(c.RemoteAddr()), err)
		}
		return nil, "", err
	}
	if err := checkName(peer, node); err != nil {
		return nil, "", err
	}
	answer, in, out, err := hs.WriteMessage(nil, []byte(node))
	if err != nil {
		return nil, "", refuse(dropHandshake, "peer %q: answer: %w", peer, err)
	}
	if err := writePlain(bw, answer); err != nil {
		return nil, "", refuse(dropHandshake, "send answer: %w", err)
	}
	s := newSession(c, br, bw, k.master, out, in, peer)
	b, err := s.recv(timeout)
	if err != nil {
		if errors.Is(err, errOpen) {
			return nil, "", refuse(dropAuth, "peer %q failed authentication: its first frame does not open (a replayed hello?)", peer)
		}
		if errors.Is(err, errFrameTooLarge) {
			return nil, "", refuse(dropFrame, "peer %q: %w", peer, err)
		}
		return nil, "", refuse(dropHandshake, "peer %q: read config: %w", peer, err)
	}
	if b[0] != msgConfig {
		return nil, "", refuse(dropFrame, "peer %q sent message %d, want CONFIG", peer, b[0])
	}
	hash, err := parseConfig(b[1:])
	if err != nil {
		return nil, "", refuse(dropFrame, "peer %q: CONFIG: %w", peer, err)
	}
	return s, hash, nil
}
