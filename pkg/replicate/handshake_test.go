package replicate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// testHello is the first handshake frame a node named node would send
// holding psk, with the Noise prologue prologue and the clear header hdr
// (both header for a genuine hello). rng nil is crypto/rand.
func testHello(t testing.TB, psk []byte, node string, prologue, hdr []byte, rng io.Reader) (*noise.HandshakeState, []byte) {
	t.Helper()
	hs, err := noise.NewHandshakeState(noise.Config{CipherSuite: suite, Pattern: noise.HandshakeNN,
		Initiator: true, Prologue: prologue, PresharedKey: psk, Random: rng})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _, err := hs.WriteMessage(append([]byte(nil), hdr...), []byte(node))
	if err != nil {
		t.Fatal(err)
	}
	return hs, b
}

// frame is b with its u32 length prefix, as writePlain sends it.
func frame(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }

// exchange dials addr (from local, if set), writes b and returns all the
// server sent until it closed the connection.
func exchange(t testing.TB, addr string, local net.Addr, b []byte) []byte {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(8 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the server's reply: %v", err)
	}
	return got
}

// recConn records the bytes written to and read from a connection.
type recConn struct {
	net.Conn
	wrote, read bytes.Buffer
}

func (c *recConn) Write(b []byte) (int, error) { c.wrote.Write(b); return c.Conn.Write(b) }

func (c *recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Write(b[:n])
	return n, err
}

// sendTable sends a full bulk of es on an established sender session.
func sendTable(t testing.TB, s *session, es ...Entry) {
	t.Helper()
	s.send(appendBulkBegin(nil, 7, bulkFull))
	for _, e := range es {
		s.send(append([]byte{msgBulkBatch}, appendEntry(nil, e, 0)...))
	}
	s.send(binary.AppendUvarint([]byte{msgBulkEnd}, uint64(len(es))))
	if err := s.flush(time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestReplayedHandshakeRefused records a genuine sender's connection (its
// hello, CONFIG and a bulk, which the receiver applied) and replays it
// byte for byte to a fresh receiver holding the same key: the hello opens
// (it is genuine) but the receiver's answer carries a fresh ephemeral
// key, so the recorded CONFIG no longer opens: refused as auth, nothing
// applied. The recorded answer replayed to a fresh sender fails the same
// way.
func TestReplayedHandshakeRefused(t *testing.T) {
	_, b1 := pair(t, newStore(false), newStore(false), nil)
	b1.start(t)
	c, err := net.Dial("tcp", b1.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rc := &recConn{Conn: c}
	ks, _ := newKeySet([][]byte{testKey})
	s, st, err := clientHandshake(rc, ks, "lb1", "sha256:abc", 2*time.Second)
	if err != nil || st.configHash != "sha256:abc" {
		t.Fatalf("genuine handshake: %v %+v", err, st)
	}
	sendTable(t, s, testEntry(1, 10), testEntry(2, 10))
	testutil.WaitFor(t, "the recorded stream applied by its receiver", func() bool { return b1.store.len() == 2 })
	c.Close()
	recorded := bytes.Clone(rc.wrote.Bytes())
	answerLen := 4 + int(binary.BigEndian.Uint32(rc.read.Bytes()))
	answer := bytes.Clone(rc.read.Bytes()[:answerLen])

	t.Run("to a receiver", func(t *testing.T) {
		_, b2 := pair(t, newStore(false), newStore(false), nil)
		b2.start(t)
		exchange(t, b2.ln.Addr().String(), nil, recorded)
		testutil.WaitFor(t, "replay refused as auth", func() bool { return b2.r.Status().Dropped[dropAuth] == 1 })
		if n, st := b2.store.len(), b2.r.Status(); n != 0 || st.Received != 0 || st.BulkDone || st.PeerConnected {
			t.Fatalf("the replay changed something: %d entries, %+v", n, st)
		}
		if !strings.Contains(b2.logs.String(), "replayed hello") {
			t.Errorf("refusal does not say why:\n%s", b2.logs.String())
		}
	})

	t.Run("to a sender", func(t *testing.T) {
		fake := listen(t)
		var wg sync.WaitGroup
		t.Cleanup(func() { fake.Close(); wg.Wait() })
		wg.Go(func() {
			for {
				c, err := fake.Accept()
				if err != nil {
					return
				}
				br := bufio.NewReader(c)
				if _, err := readPlain(br, maxHelloLen); err == nil {
					c.Write(answer)
				}
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				c.Read(make([]byte, 1))
				c.Close()
			}
		})
		a := newNode(t, "lb1", listen(t), fake.Addr().String(), newStore(false), nil)
		a.start(t)
		testutil.WaitFor(t, "replayed answer refused as auth", func() bool { return a.r.Status().Dropped[dropAuth] >= 1 })
		if st := a.r.Status(); st.PeerConnected || st.Sent != 0 || !strings.Contains(st.Reason, "answer failed authentication") {
			t.Fatalf("sender accepted a replayed answer: %+v", st)
		}
	})
}

// TestReflectedHandshakeRefused: a node whose connection to the peer is
// sent back to its own listener (the attacker reflects it) talks to
// itself: the hello opens under its own key, but names this node, and is
// refused; nothing is applied.
func TestReflectedHandshakeRefused(t *testing.T) {
	ln := listen(t)
	st := newStore(false)
	st.put(testEntry(1, 10))
	a := newNode(t, "lb1", ln, ln.Addr().String(), st, nil)
	a.start(t)
	testutil.WaitFor(t, "reflections refused", func() bool { return a.r.Status().Dropped[dropHandshake] >= 3 })
	if s := a.r.Status(); s.PeerConnected || s.Received != 0 || s.Sent != 0 {
		t.Fatalf("a node accepted its own reflected handshake: %+v", s)
	}
	if !strings.Contains(a.logs.String(), "reflected back") {
		t.Errorf("refusal does not say why:\n%s", a.logs.String())
	}
}

// TestReflectedFrameDoesNotOpen: after a handshake each direction has its
// own key, so a sealed frame sent back to the side that sealed it does not
// open, while the side it was meant for opens it.
func TestReflectedFrameDoesNotOpen(t *testing.T) {
	cc, sc := net.Pipe()
	t.Cleanup(func() { cc.Close(); sc.Close() })
	ks, _ := newKeySet([][]byte{testKey})
	type result struct {
		s   *session
		err error
	}
	srv := make(chan result, 1)
	go func() {
		s, _, err := serverHandshake(sc, ks, "lb2", 2*time.Second)
		if err == nil {
			s.send(appendState(nil, streamState{configHash: "sha256:abc"}))
			err = s.flush(time.Second)
		}
		srv <- result{s, err}
	}()
	client, _, err := clientHandshake(cc, ks, "lb1", "sha256:abc", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := <-srv
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, d := range []struct {
		name     string
		from, to *session
	}{{"sender to receiver", client, r.s}, {"receiver to sender", r.s, client}} {
		var wire bytes.Buffer
		bw := bufio.NewWriter(&wire)
		fw := frameWriter{w: bw, cs: d.from.fw.cs}
		if err := fw.write([]byte{msgPing}); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		back := frameReader{r: bufio.NewReader(bytes.NewReader(wire.Bytes())), cs: d.from.fr.cs}
		if _, err := back.read(); !errors.Is(err, errOpen) {
			t.Errorf("%s: frame reflected to its sealer: %v, want errOpen", d.name, err)
		}
		fwd := frameReader{r: bufio.NewReader(bytes.NewReader(wire.Bytes())), cs: d.to.fr.cs}
		if got, err := fwd.read(); err != nil || !bytes.Equal(got, []byte{msgPing}) {
			t.Errorf("%s: frame to its receiver: %x %v", d.name, got, err)
		}
	}
}

// v1Hello is the first frame of the handshake before Noise (protocol 1):
// "TDMR" | 1 | nonce [32] | node.
func v1Hello(node string) []byte {
	b := append([]byte(helloMagic), 1)
	b = append(b, make([]byte, 32)...)
	b = binary.AppendUvarint(b, uint64(len(node)))
	return append(b, node...)
}

// TestDowngradeRefused: an old-version peer, a hello with its header
// stripped or rewritten, one sealed without binding the header (the
// prologue), one with its payload stripped and one under the Insecure
// well-known key are all refused before an answer is sent, each with its
// reason; the suite itself is fixed (no negotiation to downgrade).
func TestDowngradeRefused(t *testing.T) {
	_, b := pair(t, newStore(false), newStore(false), nil)
	b.start(t)
	ks, _ := newKeySet([][]byte{testKey})
	insecure, _ := deriveKeys(insecureKey)
	_, genuine := testHello(t, ks.primary.psk, "lb1", header, header, nil)
	rewritten := bytes.Clone(genuine)
	rewritten[len(helloMagic)] = 3
	v3 := []byte{'T', 'D', 'M', 'R', 3}
	_, unbound := testHello(t, ks.primary.psk, "lb1", v3, header, nil)
	_, weak := testHello(t, insecure.psk, "lb1", header, header, nil)
	cases := []struct {
		name, reason, says string
		hello              []byte
	}{
		{"protocol 1 peer", dropHandshake, "protocol version 1", v1Hello("lb1")},
		{"header stripped", dropHandshake, "bad magic", genuine[len(header):]},
		{"version rewritten", dropHandshake, "protocol version 3", rewritten},
		{"header not bound", dropAuth, "different cluster key", unbound},
		{"payload stripped", dropAuth, "different cluster key", genuine[:len(header)+32]},
		{"insecure key", dropAuth, "different cluster key", weak},
	}
	want := map[string]uint64{}
	for _, c := range cases {
		_, _, _, err := openHello(ks, c.hello)
		var rf *refusal
		if !errors.As(err, &rf) || rf.reason != c.reason || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want a %q refusal saying %q", c.name, err, c.reason, c.says)
		}
		if got := exchange(t, b.ln.Addr().String(), nil, frame(c.hello)); len(got) != 0 {
			t.Errorf("%s: the node answered %d bytes", c.name, len(got))
		}
		want[c.reason]++
		testutil.WaitFor(t, c.name+" counted", func() bool {
			d := b.r.Status().Dropped
			return d[dropHandshake] == want[dropHandshake] && d[dropAuth] == want[dropAuth]
		})
	}
	if _, _, name, err := openHello(ks, genuine); err != nil || name != "lb1" {
		t.Fatalf("the genuine hello: %q %v", name, err)
	}
}

// TestStrangerHandshakeBounded: the pre-authentication limits hold with
// the Noise handshake. A stranger replaying a genuine hello gets an
// answer but is cut at strangerTimeout, long before the peer's limit; a
// second handshake from the same address meanwhile is refused as busy;
// and the real peer syncs all along.
func TestStrangerHandshakeBounded(t *testing.T) {
	a, b := pair(t, newStore(false), newStore(false), nil)
	b.r.timeout = 10 * time.Second
	b.start(t)
	ks, _ := newKeySet([][]byte{testKey})
	_, hello := testHello(t, ks.primary.psk, "lb1", header, header, nil)
	stranger := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

	start := time.Now()
	d := net.Dialer{LocalAddr: stranger}
	c1, err := d.Dial("tcp", b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c1.SetDeadline(time.Now().Add(8 * time.Second))
	c1.Write(frame(hello))
	if _, err := readPlain(bufio.NewReader(c1), maxHelloLen); err != nil {
		t.Fatalf("no answer to a genuine (replayed) hello: %v", err)
	}
	if got := exchange(t, b.ln.Addr().String(), stranger, frame(hello)); len(got) != 0 {
		t.Fatalf("a second handshake from the stranger was answered (%d bytes)", len(got))
	}
	testutil.WaitFor(t, "second handshake counted busy", func() bool { return b.r.Status().Dropped[dropBusy] == 1 })

	a.start(t)
	testutil.WaitFor(t, "the pair syncs while the stranger holds its slot", inSync(a, b))

	n, err := c1.Read(make([]byte, 1))
	cut := time.Since(start)
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled stranger not cut: read %d, %v", n, err)
	}
	if cut < strangerTimeout-50*time.Millisecond || cut > b.r.timeout/2 {
		t.Fatalf("stalled stranger cut after %v, want about %v (the peer's limit is %v)", cut, strangerTimeout, b.r.timeout)
	}
	testutil.WaitFor(t, "the stalled stranger counted", func() bool { return b.r.Status().Dropped[dropHandshake] == 1 })
}

// FuzzOpenHello: no input panics the responder's decoder, every refusal
// has a reason, and nothing but the genuine hello is accepted (anything
// else accepted would be a forgery).
func FuzzOpenHello(f *testing.F) {
	ks, err := newKeySet([][]byte{testKey, bytes.Repeat([]byte{0x5e}, 24)})
	if err != nil {
		f.Fatal(err)
	}
	_, genuine := testHello(f, ks.all[1].psk, "lb1", header, header, bytes.NewReader(bytes.Repeat([]byte{9}, 32)))
	f.Add(genuine)
	f.Add(v1Hello("lb1"))
	f.Add(bytes.Clone(header))
	f.Add(genuine[:len(header)+32])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, k, name, err := openHello(ks, b)
		if err != nil {
			var rf *refusal
			if !errors.As(err, &rf) {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if !bytes.Equal(b, genuine) || name != "lb1" || !bytes.Equal(k.master, ks.all[1].master) {
			t.Fatalf("accepted %x as %q", b, name)
		}
	})
}
