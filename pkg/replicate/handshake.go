package replicate

import (
	"bufio"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

const (
	helloMagic   = "TDMR"
	protoVersion = 1
	nonceLen     = 32
	macLen       = sha256.Size
	maxNodeLen   = 128
	maxHashLen   = 256

	labelAuth   = "tandem/replicate/v1 auth"
	labelS2R    = "tandem/replicate/v1 sender to receiver"
	labelR2S    = "tandem/replicate/v1 receiver to sender"
	labelServer = "tandem/replicate/v1 server hello"
	labelClient = "tandem/replicate/v1 client finished"

	bufSize = 64 << 10
)

// insecureKey is the well-known key used when Config.Insecure is set and
// no key is given: frames are still sealed, which catches a wrong peer or
// corrupted bytes, but anyone can read and forge them.
var insecureKey = make([]byte, 32)

// Reasons a connection is dropped, the keys of Status.Dropped. Entries
// discarded by Publish are counted under dropQueue.
const (
	dropHandshake = "handshake"      // garbage, timeout, wrong version or node name
	dropAuth      = "auth"           // hello MAC failed: the peer lacks the cluster key
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

// hello opens the handshake in both directions:
//
//	"TDMR" | version byte | nonce [32] | node uvarint-length string
type hello struct {
	version byte
	nonce   [nonceLen]byte
	node    string
}

func (h hello) marshal() []byte {
	b := append([]byte(helloMagic), h.version)
	b = append(b, h.nonce[:]...)
	b = binary.AppendUvarint(b, uint64(len(h.node)))
	return append(b, h.node...)
}

func parseHello(b []byte) (hello, error) {
	var h hello
	if len(b) < len(helloMagic) || string(b[:len(helloMagic)]) != helloMagic {
		return h, refuse(dropHandshake, "not a tandem replication peer (bad magic)")
	}
	d := decoder{b: b[len(helloMagic):]}
	h.version = d.byte()
	copy(h.nonce[:], d.bytes(nonceLen))
	h.node = d.str(maxNodeLen)
	if err := d.end(); err != nil {
		return h, refuse(dropHandshake, "bad hello: %w", err)
	}
	if h.version != protoVersion {
		return h, refuse(dropHandshake, "peer %q speaks protocol version %d, this node %d", h.node, h.version, protoVersion)
	}
	return h, nil
}

// keys holds what is derived from the cluster key once.
type keys struct {
	master []byte // the cluster key
	auth   []byte // HKDF(master, info=labelAuth): MACs over the handshake
}

func deriveKeys(master []byte) (keys, error) {
	auth, err := hkdf.Key(sha256.New, master, nil, labelAuth, 32)
	if err != nil {
		return keys{}, err
	}
	return keys{master: master, auth: auth}, nil
}

// mac is HMAC-SHA256 under the auth key of label and the length-prefixed parts.
func (k keys) mac(label string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, k.auth)
	m.Write([]byte(label))
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	return m.Sum(nil)
}

// sessionKey derives one direction's AES-256-GCM key from the cluster key
// and both hellos' nonces, so every connection has fresh keys and counter
// nonces never repeat under one key.
func (k keys) sessionKey(client, server [nonceLen]byte, label string) (cipher.AEAD, error) {
	salt := append(client[:], server[:]...)
	key, err := hkdf.Key(sha256.New, k.master, salt, label, 32)
	if err != nil {
		return nil, err
	}
	return newAEAD(key)
}

// session is an authenticated, sealed connection. The sender side writes
// with s2r and reads with r2s; the receiver side the other way round.
type session struct {
	conn net.Conn
	bw   *bufio.Writer
	fw   frameWriter
	fr   frameReader
	peer string // the peer's node name
	key  []byte // the cluster key the session's keys derive from
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

// newSession derives both directions' keys; sender is true on the dialing side.
func newSession(c net.Conn, br *bufio.Reader, bw *bufio.Writer, k keys, cn, sn [nonceLen]byte, sender bool, peer string) (*session, error) {
	s2r, err := k.sessionKey(cn, sn, labelS2R)
	if err != nil {
		return nil, err
	}
	r2s, err := k.sessionKey(cn, sn, labelR2S)
	if err != nil {
		return nil, err
	}
	out, in := s2r, r2s
	if !sender {
		out, in = r2s, s2r
	}
	s := &session{conn: c, bw: bw, peer: peer, key: k.master}
	s.fw = frameWriter{w: bw, aead: out}
	s.fr = frameReader{r: br, aead: in}
	return s, nil
}

// clientHandshake runs the dialing (sending) side:
//
//	C→S hello_c
//	S→C hello_s | HMAC(auth, "server hello", hello_c, hello_s)
//	C→S HMAC(auth, "client finished", hello_c, hello_s|mac)
//	C→S sealed CONFIG{hash}
//	S→C sealed STATE{hash, epoch, seq}
//
// The receiver MACs with its primary key; the sender accepts a MAC under
// any of its keys and goes on with that key, so the two may have
// different primaries during a key rotation.
//
// It returns the session and the receiver's position in this node's stream.
func clientHandshake(c net.Conn, ks *keySet, node, hash string, timeout time.Duration) (*session, streamState, error) {
	c.SetDeadline(time.Now().Add(timeout))
	br, bw := bufio.NewReaderSize(c, bufSize), bufio.NewWriterSize(c, bufSize)
	ch := hello{version: protoVersion, node: node}
	rand.Read(ch.nonce[:])
	chb := ch.marshal()
	if err := writePlain(bw, chb); err != nil {
		return nil, streamState{}, refuse(dropHandshake, "send hello: %w", err)
	}
	shf, err := readPlain(br, maxHelloLen)
	if err != nil {
		return nil, streamState{}, refuse(dropHandshake, "read hello: %w", err)
	}
	if len(shf) < macLen {
		return nil, streamState{}, refuse(dropHandshake, "short hello")
	}
	shb, mac := shf[:len(shf)-macLen], shf[len(shf)-macLen:]
	sh, err := parseHello(shb)
	if err != nil {
		return nil, streamState{}, err
	}
	i := slices.IndexFunc(ks.all, func(k keys) bool { return hmac.Equal(mac, k.mac(labelServer, chb, shb)) })
	if i < 0 {
		return nil, streamState{}, refuse(dropAuth, "peer %q failed authentication (different cluster key?)", sh.node)
	}
	k := ks.all[i]
	if err := writePlain(bw, k.mac(labelClient, chb, shf)); err != nil {
		return nil, streamState{}, refuse(dropHandshake, "send finished: %w", err)
	}
	s, err := newSession(c, br, bw, k, ch.nonce, sh.nonce, true, sh.node)
	if err != nil {
		return nil, streamState{}, err
	}
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
		return nil, streamState{}, refuse(dropFrame, "peer %q sent message %d, want STATE", sh.node, b[0])
	}
	st, err := parseState(b[1:])
	if err != nil {
		return nil, streamState{}, refuse(dropFrame, "peer %q: STATE: %w", sh.node, err)
	}
	if st.configHash != hash {
		return nil, streamState{}, refuse(dropConfig, "peer %q runs config %s, this node %s: refusing to sync", sh.node, st.configHash, hash)
	}
	c.SetDeadline(time.Time{})
	return s, st, nil
}

// serverHandshake runs the accepting (receiving) side up to reading the
// sender's CONFIG; the caller answers with STATE. It returns the session
// and the peer's config hash. It proves and expects the primary key of ks.
func serverHandshake(c net.Conn, ks *keySet, node string, timeout time.Duration) (*session, string, error) {
	k := ks.primary
	c.SetDeadline(time.Now().Add(timeout))
	br, bw := bufio.NewReaderSize(c, bufSize), bufio.NewWriterSize(c, bufSize)
	chb, err := readPlain(br, maxHelloLen)
	if err != nil {
		return nil, "", refuse(dropHandshake, "read hello: %w", err)
	}
	ch, err := parseHello(chb)
	if err != nil {
		return nil, "", err
	}
	if ch.node == node {
		return nil, "", refuse(dropHandshake, "peer uses this node's name %q", node)
	}
	sh := hello{version: protoVersion, node: node}
	rand.Read(sh.nonce[:])
	shb := sh.marshal()
	shf := append(shb, k.mac(labelServer, chb, shb)...)
	if err := writePlain(bw, shf); err != nil {
		return nil, "", refuse(dropHandshake, "send hello: %w", err)
	}
	fin, err := readPlain(br, maxHelloLen)
	if err != nil {
		return nil, "", refuse(dropHandshake, "peer %q hung up in the handshake (same cluster key?): %w", ch.node, err)
	}
	if !hmac.Equal(fin, k.mac(labelClient, chb, shf)) {
		return nil, "", refuse(dropAuth, "peer %q failed authentication (different cluster key?)", ch.node)
	}
	s, err := newSession(c, br, bw, k, ch.nonce, sh.nonce, false, ch.node)
	if err != nil {
		return nil, "", err
	}
	b, err := s.recv(timeout)
	if err != nil {
		if errors.Is(err, errOpen) || errors.Is(err, errFrameTooLarge) {
			return nil, "", refuse(dropFrame, "peer %q: %w", ch.node, err)
		}
		return nil, "", refuse(dropHandshake, "peer %q: read config: %w", ch.node, err)
	}
	if b[0] != msgConfig {
		return nil, "", refuse(dropFrame, "peer %q sent message %d, want CONFIG", ch.node, b[0])
	}
	hash, err := parseConfig(b[1:])
	if err != nil {
		return nil, "", refuse(dropFrame, "peer %q: CONFIG: %w", ch.node, err)
	}
	return s, hash, nil
}
