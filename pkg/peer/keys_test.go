package peer

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// TestKeyRotation rotates the pair's key in the three steps of the README
// without restarting either transport, and shows adverts flowing both
// ways after every step and a transport holding only an unknown key
// getting nothing through (counted as dropped) at every step.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := keyA, bytes.Repeat([]byte{0xc3}, 24)
	unknown := bytes.Repeat([]byte{0xd4}, 32)
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := start(t, Config{NodeName: "lb1", Bind: addrA, Peers: []string{addrB}, Keys: [][]byte{oldKey}, Label: "rot"})
	b := start(t, Config{NodeName: "lb2", Bind: addrB, Peers: []string{addrA}, Keys: [][]byte{oldKey}, Label: "rot"})
	x := start(t, Config{NodeName: "intruder", Bind: freeAddr(t), Peers: []string{addrA}, Keys: [][]byte{unknown}, Label: "rot"})

	steps := []struct {
		name   string
		setA   [][]byte // nil: unchanged
		setB   [][]byte
		nKeysA int
	}{
		{"before", nil, nil, 1},
		{"1a: new accepted on a", [][]byte{oldKey, newKey}, nil, 2},
		{"1b: new accepted on b", nil, [][]byte{oldKey, newKey}, 2},
		{"2a: new primary on a", [][]byte{newKey, oldKey}, nil, 2},
		{"2b: new primary on b", nil, [][]byte{newKey, oldKey}, 2},
		{"3a: old dropped on a", [][]byte{newKey}, nil, 1},
		{"3b: old dropped on b", nil, [][]byte{newKey}, 1},
	}
	for _, st := range steps {
		if st.setA != nil {
			if err := a.SetKeys(st.setA); err != nil {
				t.Fatalf("%s: a.SetKeys: %v", st.name, err)
			}
		}
		if st.setB != nil {
			if err := b.SetKeys(st.setB); err != nil {
				t.Fatalf("%s: b.SetKeys: %v", st.name, err)
			}
		}
		if n := a.KeyCount(); n != st.nKeysA {
			t.Fatalf("%s: a holds %d keys, want %d", st.name, n, st.nKeysA)
		}
		drain(a)
		drain(b)
		if got := sendUntil(t, a, b, Advert{Node: "lb1", State: "MASTER", Priority: 150}); got.Advert.Node != "lb1" {
			t.Fatalf("%s: b received %+v", st.name, got.Advert)
		}
		if got := sendUntil(t, b, a, Advert{Node: "lb2", State: "BACKUP", Priority: 100}); got.Advert.Node != "lb2" {
			t.Fatalf("%s: a received %+v", st.name, got.Advert)
		}

		before := a.Stats()
		for range 5 {
			if err := x.SendAdvert(Advert{State: "MASTER", Priority: 254}); err != nil {
				t.Fatal(err)
			}
		}
		testutil.WaitWithin(t, patience, st.name+": intruder's adverts dropped as decrypt", func() bool {
			return a.Stats().Dropped[DropDecrypt] >= before.Dropped[DropDecrypt]+5
		})
		// Whatever reached a's queue since is from lb2 only.
		for len(a.Adverts()) > 0 {
			if r := <-a.Adverts(); r.Advert.Node != "lb2" {
				t.Fatalf("%s: a delivered %+v", st.name, r.Advert)
			}
		}
		if aliveMember(a, "intruder") {
			t.Fatalf("%s: the intruder became a member", st.name)
		}
	}

	// After the rotation the old key is refused too.
	old := start(t, Config{NodeName: "old", Bind: freeAddr(t), Peers: []string{addrA}, Keys: [][]byte{oldKey}, Label: "rot"})
	before := a.Stats().Dropped[DropDecrypt]
	for range 5 {
		if err := old.SendAdvert(Advert{State: "MASTER", Priority: 254}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitWithin(t, patience, "old-key adverts dropped", func() bool { return a.Stats().Dropped[DropDecrypt] >= before+5 })
}

func TestSetKeysRefuses(t *testing.T) {
	a, _, _, _ := pair(t, "")
	if err := a.SetKeys(nil); !errors.Is(err, ErrKeysNeedRestart) {
		t.Errorf("SetKeys(nil) = %v, want ErrKeysNeedRestart", err)
	}
	if err := a.SetKeys([][]byte{[]byte("short")}); err == nil {
		t.Error("SetKeys accepted a 5-byte key")
	}
	if err := a.SetKeys([][]byte{keyA, keyA}); err == nil {
		t.Error("SetKeys accepted a repeated key")
	}
	if n := a.KeyCount(); n != 1 {
		t.Errorf("a refused change left %d keys", n)
	}
	ins := start(t, Config{NodeName: "ins", Bind: freeAddr(t), Peers: []string{freeAddr(t)}, Insecure: true})
	if err := ins.SetKeys([][]byte{keyA}); !errors.Is(err, ErrKeysNeedRestart) {
		t.Errorf("insecure SetKeys = %v, want ErrKeysNeedRestart", err)
	}
}

// TestOversizeUserMessageDropped: a message longer than any advert is
// dropped as decode before it is parsed.
func TestOversizeUserMessageDropped(t *testing.T) {
	d := testDelegate("lb1", 1)
	d.fresh.nodes["lb2"] = &nodeEpoch{epoch: 5}
	ok, err := (Advert{Node: "lb2", State: "BACKUP", Epoch: 5, Seq: 1}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	big := encodeEnvelope(msgAdvert, "127.0.0.1:7946", append(ok, make([]byte, MaxUserMsgLen)...))
	d.NotifyMsg(big)
	if got := d.c.snapshot().Dropped[DropDecode]; got != 1 || len(d.adverts) != 0 {
		t.Fatalf("oversize: decode drops %d, delivered %d", got, len(d.adverts))
	}
	d.NotifyMsg(encodeEnvelope(msgAdvert, "127.0.0.1:7946", ok))
	if len(d.adverts) != 1 {
		t.Fatal("a normal advert was not delivered")
	}
}
