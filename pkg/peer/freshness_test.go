package peer

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// fixedNonces makes the guard's challenges predictable: 1, 2, 3, ...
func fixedNonces(f *freshness) {
	var k byte
	f.rand = func(b []byte) {
		k++
		for i := range b {
			b[i] = k
		}
	}
}

func nonce(k byte) (n [nonceLen]byte) {
	for i := range n {
		n[i] = k
	}
	return n
}

// TestFreshness walks the guard through a peer's life: unverified until it
// answers, then only new sequences of its epoch; a restart's new epoch
// verified the same way, after which the old epoch is a replay.
func TestFreshness(t *testing.T) {
	t0 := time.Unix(1767225600, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	adv := func(epoch, seq uint64) Advert { return Advert{Node: "lb2", Epoch: epoch, Seq: seq} }
	f := newFreshness()
	fixedNonces(f)

	type step struct {
		name      string
		advert    *Advert
		answer    *answer
		at        time.Time
		want      string // drop reason, "" accepted
		challenge bool
		ok        bool // answer accepted
	}
	a := func(ad Advert) *Advert { return &ad }
	steps := []step{
		{name: "no epoch", advert: a(adv(0, 1)), at: at(0), want: DropNoEpoch},
		{name: "first advert challenged", advert: a(adv(10, 5)), at: at(0), want: DropUnverified, challenge: true},
		{name: "no second challenge at once", advert: a(adv(10, 6)), at: at(10), want: DropUnverified},
		{name: "answer with an unknown nonce", answer: &answer{Node: "lb2", Nonce: nonce(9), Epoch: 10, Seq: 6}, at: at(20)},
		{name: "answer for another node", answer: &answer{Node: "lb3", Nonce: nonce(1), Epoch: 10, Seq: 6}, at: at(20)},
		{name: "answer with epoch 0", answer: &answer{Node: "lb2", Nonce: nonce(1), Seq: 6}, at: at(20)},
		{name: "answer verifies epoch 10 from seq 6", answer: &answer{Node: "lb2", Nonce: nonce(1), Epoch: 10, Seq: 6}, at: at(20), ok: true},
		{name: "the same answer again", answer: &answer{Node: "lb2", Nonce: nonce(1), Epoch: 10, Seq: 6}, at: at(21)},
		{name: "a captured advert up to the answer's seq", advert: a(adv(10, 6)), at: at(30), want: DropDuplicate},
		{name: "an older one", advert: a(adv(10, 2)), at: at(30), want: DropReplay},
		{name: "the next one", advert: a(adv(10, 7)), at: at(50), want: ""},
		{name: "its copy by the second path", advert: a(adv(10, 7)), at: at(51), want: DropDuplicate},
		{name: "a gap is fine", advert: a(adv(10, 12)), at: at(100), want: ""},
		{name: "late one", advert: a(adv(10, 11)), at: at(101), want: DropReplay},
		{name: "restart: new epoch challenged", advert: a(adv(20, 1)), at: at(200), want: DropUnverified, challenge: true},
		{name: "old epoch still counts until the answer", advert: a(adv(10, 13)), at: at(210), want: ""},
		{name: "expired answer", answer: &answer{Node: "lb2", Nonce: nonce(2), Epoch: 20, Seq: 1}, at: at(200).Add(challengeTTL + time.Millisecond)},
		{name: "challenged again", advert: a(adv(20, 3)), at: at(2300), want: DropUnverified, challenge: true},
		{name: "new epoch verified", answer: &answer{Node: "lb2", Nonce: nonce(3), Epoch: 20, Seq: 3}, at: at(2301), ok: true},
		{name: "new epoch's next advert", advert: a(adv(20, 4)), at: at(2350), want: ""},
		{name: "old epoch now a replay", advert: a(adv(10, 99)), at: at(2400), want: DropReplay},
		{name: "an unknown epoch is challenged", advert: a(adv(30, 9)), at: at(2500), want: DropUnverified, challenge: true},
		{name: "the node still answers with its real epoch", answer: &answer{Node: "lb2", Nonce: nonce(4), Epoch: 20, Seq: 5}, at: at(2501), ok: true},
		{name: "so the unknown epoch stays unverified", advert: a(adv(30, 10)), at: at(2600), want: DropUnverified, challenge: true},
		{name: "and the real one goes on after the answer's seq", advert: a(adv(20, 6)), at: at(2650), want: ""},
	}
	for _, s := range steps {
		if s.advert != nil {
			got, ch := f.advert(*s.advert, s.at)
			if got != s.want || (ch != nil) != s.challenge {
				t.Fatalf("%s: got %q, challenge %v; want %q, challenge %v", s.name, got, ch != nil, s.want, s.challenge)
			}
			if ch != nil && ch.Node != "lb2" {
				t.Fatalf("%s: challenge for %q", s.name, ch.Node)
			}
			continue
		}
		if ok, _ := f.answer(*s.answer, s.at); ok != s.ok {
			t.Fatalf("%s: answer accepted %v, want %v", s.name, ok, s.ok)
		}
	}
}

func TestFreshnessBounded(t *testing.T) {
	f := newFreshness()
	now := time.Unix(1767225600, 0)
	for i := range 3 * maxFreshNodes {
		now = now.Add(time.Millisecond)
		f.advert(Advert{Node: string(rune('a' + i)), Epoch: 1, Seq: 1}, now)
	}
	if len(f.nodes) != maxFreshNodes {
		t.Fatalf("%d nodes tracked, want %d", len(f.nodes), maxFreshNodes)
	}
	// Outstanding challenges and retired epochs are bounded too.
	for range 20 {
		now = now.Add(challengeEvery)
		f.advert(Advert{Node: "y", Epoch: 7, Seq: 1}, now)
	}
	if y := f.nodes["y"]; len(y.nonces) != keepNonces {
		t.Fatalf("%d challenges outstanding, want %d", len(y.nonces), keepNonces)
	}
	for i := range 20 {
		now = now.Add(challengeEvery)
		f.advert(Advert{Node: "x", Epoch: uint64(100 + i), Seq: 1}, now)
		x := f.nodes["x"]
		f.answer(answer{Node: "x", Nonce: x.nonces[len(x.nonces)-1].n, Epoch: uint64(100 + i), Seq: 1}, now)
	}
	if x := f.nodes["x"]; len(x.retired) != keepRetired || x.epoch != 119 {
		t.Fatalf("retired %d (want %d), epoch %d", len(x.retired), keepRetired, x.epoch)
	}
}

// TestDelegateChallengeAndAnswer: the delegate challenges an unverified
// advert (to its stated address too), answers a challenge naming it with
// its epoch and last sequence, and ignores one naming another node.
func TestDelegateChallengeAndAnswer(t *testing.T) {
	d := testDelegate("lb1", 0xe1)
	d.c.seq.Store(41)
	adv, _ := Advert{Node: "lb2", State: "MASTER", Epoch: 0xe2, Seq: 7}.MarshalBinary()
	d.NotifyMsg(encodeEnvelope(msgAdvert, "127.0.0.2:7946", adv))
	if len(d.adverts) != 0 || d.c.snapshot().Dropped[DropUnverified] != 1 {
		t.Fatalf("unverified advert delivered (%d) or not counted", len(d.adverts))
	}
	m := <-d.outbox
	typ, _, body, ok := decodeEnvelope(m.msg)
	var ch challenge
	if !ok || typ != msgChallenge || ch.unmarshal(body) != nil || ch.Node != "lb2" || m.alsoTo != "127.0.0.2:7946" {
		t.Fatalf("challenge %q to %q", m.msg, m.alsoTo)
	}

	// lb2 answers; its next advert is delivered.
	d.NotifyMsg(encodeEnvelope(msgAnswer, "127.0.0.2:7946", answer{Node: "lb2", Nonce: ch.Nonce, Epoch: 0xe2, Seq: 7}.marshal()))
	next, _ := Advert{Node: "lb2", State: "MASTER", Epoch: 0xe2, Seq: 8}.MarshalBinary()
	d.NotifyMsg(encodeEnvelope(msgAdvert, "127.0.0.2:7946", next))
	if len(d.adverts) != 1 {
		t.Fatal("advert after the answer not delivered")
	}

	// A challenge naming lb1 is answered with lb1's epoch and last seq.
	d.NotifyMsg(encodeEnvelope(msgChallenge, "127.0.0.2:7946", challenge{Node: "lb1", Nonce: nonce(7)}.marshal()))
	m = <-d.outbox
	typ, _, body, _ = decodeEnvelope(m.msg)
	var an answer
	if typ != msgAnswer || an.unmarshal(body) != nil || an != (answer{Node: "lb1", Nonce: nonce(7), Epoch: 0xe1, Seq: 41}) {
		t.Fatalf("answer %+v", an)
	}
	d.NotifyMsg(encodeEnvelope(msgChallenge, "127.0.0.2:7946", challenge{Node: "lb9", Nonce: nonce(8)}.marshal()))
	if len(d.outbox) != 0 {
		t.Fatal("answered a challenge for another node")
	}
}

func TestChallengeAnswerRejects(t *testing.T) {
	good := answer{Node: "lb1", Nonce: nonce(1), Epoch: 2, Seq: 3}.marshal()
	for _, b := range [][]byte{nil, {5}, good[:len(good)-1], append(bytes.Clone(good), 0), {200}} {
		var a answer
		if err := a.unmarshal(b); err == nil {
			t.Errorf("answer %x accepted", b)
		}
	}
	gc := challenge{Node: "lb1", Nonce: nonce(1)}.marshal()
	for _, b := range [][]byte{nil, gc[:len(gc)-1], append(bytes.Clone(gc), 0)} {
		var c challenge
		if err := c.unmarshal(b); !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTrailing) {
			t.Errorf("challenge %x: %v", b, err)
		}
	}
}

// FuzzFreshnessMessages: the challenge and answer decoders never panic,
// and what they accept re-encodes to the same bytes.
func FuzzFreshnessMessages(f *testing.F) {
	f.Add(challenge{Node: "lb1", Nonce: nonce(1)}.marshal())
	f.Add(answer{Node: "lb2", Nonce: nonce(2), Epoch: 3, Seq: 4}.marshal())
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c challenge
		if c.unmarshal(b) == nil && !bytes.Equal(c.marshal(), b) {
			t.Fatalf("challenge re-encodes differently: %x", b)
		}
		var a answer
		if a.unmarshal(b) == nil && !bytes.Equal(a.marshal(), b) {
			t.Fatalf("answer re-encodes differently: %x", b)
		}
		d := testDelegate("lb1", 1)
		for _, typ := range []byte{msgAdvert, msgChallenge, msgAnswer} {
			d.NotifyMsg(encodeEnvelope(typ, "127.0.0.1:1", b))
		}
	})
}
