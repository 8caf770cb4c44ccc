package peer

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func sameAdvert(a, b Advert) bool {
	return a.Node == b.Node && a.Priority == b.Priority && a.State == b.State &&
		a.ConfigHash == b.ConfigHash && a.Seq == b.Seq && a.StateAge == b.StateAge && a.Held == b.Held &&
		a.Sent.Equal(b.Sent) && a.Epoch == b.Epoch && bytes.Equal(a.MAC, b.MAC)
}

func TestAdvertRoundTrip(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name string
		a    Advert
	}{
		{"zero", Advert{}},
		{"master", Advert{Node: "lb1", Priority: 150, State: "MASTER", ConfigHash: hash, Seq: 1,
			StateAge: 3 * time.Second, Sent: time.Unix(1767225600, 123456789)}},
		{"leaving", Advert{Node: "lb2", Priority: 0, State: "BACKUP", Seq: 1 << 63}},
		{"max", Advert{Node: strings.Repeat("n", MaxNodeLen), Priority: 255,
			State: strings.Repeat("S", MaxStateLen), ConfigHash: strings.Repeat("h", MaxConfigHashLen),
			Seq: ^uint64(0), StateAge: time.Duration(1<<63 - 1), Sent: time.Unix(0, -1)}},
		{"utf8", Advert{Node: "nœud-π", State: "FAULT", Sent: time.Now()}},
		{"held", Advert{Node: "lb1", Priority: 150, State: "MASTER", Held: true, Seq: 9}},
		{"epoch", Advert{Node: "lb1", Priority: 150, State: "MASTER", Seq: 9, Epoch: 0xfedcba9876543210}},
		{"held epoch", Advert{Node: "lb1", State: "BACKUP", Seq: 1, Epoch: 1, Held: true}},
		{"mac", Advert{Node: "lb1", State: "MASTER", Seq: 2, Epoch: 3, MAC: []byte{2, 0, 0, 0, 0, 1}}},
		{"mac only", Advert{Node: "lb1", MAC: []byte{2, 0, 0, 0, 0, 1}}},
		{"long mac", Advert{Node: strings.Repeat("n", MaxNodeLen), Priority: 255, Held: true, Epoch: ^uint64(0),
			State: strings.Repeat("S", MaxStateLen), ConfigHash: strings.Repeat("h", MaxConfigHashLen),
			MAC: bytes.Repeat([]byte{0xff}, MaxMACLen), Sent: time.Unix(0, -1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.a.MarshalBinary()
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			want := []byte("TDMA\x01")
			if tt.a.Held || tt.a.Epoch != 0 || len(tt.a.MAC) > 0 {
				want = []byte("TDMA\x02")
			}
			if !bytes.HasPrefix(b, want) {
				t.Fatalf("encoding %x lacks magic and version", b[:5])
			}
			if len(b) > MaxAdvertLen {
				t.Fatalf("len %d > MaxAdvertLen %d", len(b), MaxAdvertLen)
			}
			var got Advert
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !sameAdvert(got, tt.a) {
				t.Fatalf("round trip: got %+v, want %+v", got, tt.a)
			}
			again, _ := got.MarshalBinary()
			if !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
			}
		})
	}
}

func TestAdvertMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		a    Advert
	}{
		{"long node", Advert{Node: strings.Repeat("n", MaxNodeLen+1)}},
		{"long state", Advert{State: strings.Repeat("s", MaxStateLen+1)}},
		{"long hash", Advert{ConfigHash: strings.Repeat("h", MaxConfigHashLen+1)}},
		{"bad utf8", Advert{Node: "\xff"}},
		{"negative age", Advert{StateAge: -time.Second}},
		{"long mac", Advert{MAC: make([]byte, MaxMACLen+1)}},
		{"sent out of range", Advert{Sent: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"sent at epoch", Advert{Sent: time.Unix(0, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := tt.a.MarshalBinary(); !errors.Is(err, ErrBadField) {
				t.Fatalf("got %x, %v; want ErrBadField", b, err)
			}
		})
	}
}

func TestAdvertUnmarshalRejects(t *testing.T) {
	good, err := Advert{Node: "lb1", Priority: 100, State: "BACKUP", ConfigHash: "sha256:00", Seq: 7,
		StateAge: time.Second, Sent: time.Unix(1767225600, 0)}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	const nodeLenAt = 6 // after magic, version, priority
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short magic", []byte("TDM"), ErrTruncated},
		{"bad magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), ErrBadMagic},
		{"bad version", mut(func(b []byte) []byte { b[4] = 3; return b }), ErrBadVersion},
		// Version 2 without the held flag must be sent as version 1.
		{"flags 0", mut(func(b []byte) []byte {
			return append(append([]byte{}, b[:4]...), append([]byte{2, b[5], 0}, b[6:]...)...)
		}), ErrBadField},
		{"unknown flag", mut(func(b []byte) []byte {
			return append(append([]byte{}, b[:4]...), append([]byte{2, b[5], 0x81}, b[6:]...)...)
		}), ErrBadField},
		{"epoch flag, no epoch", mut(func(b []byte) []byte {
			return append(append([]byte{}, b[:4]...), append([]byte{2, b[5], flagEpoch}, b[6:]...)...)
		}), ErrTruncated},
		{"mac length 0", mut(func(b []byte) []byte {
			b = append(append([]byte{}, b[:4]...), append([]byte{2, b[5], flagMAC}, b[6:]...)...)
			return append(b, 0)
		}), ErrBadField},
		{"mac too long", mut(func(b []byte) []byte {
			b = append(append([]byte{}, b[:4]...), append([]byte{2, b[5], flagMAC}, b[6:]...)...)
			return append(append(b, MaxMACLen+1), make([]byte, MaxMACLen+1)...)
		}), ErrBadField},
		{"mac truncated", mut(func(b []byte) []byte {
			b = append(append([]byte{}, b[:4]...), append([]byte{2, b[5], flagMAC}, b[6:]...)...)
			return append(b, 6, 1, 2)
		}), ErrTruncated},
		{"epoch 0", mut(func(b []byte) []byte {
			b = append(append([]byte{}, b[:4]...), append([]byte{2, b[5], flagEpoch}, b[6:]...)...)
			return append(b, 0, 0, 0, 0, 0, 0, 0, 0)
		}), ErrBadField},
		{"no flags", mut(func(b []byte) []byte { b[4] = 2; return b[:6] }), ErrTruncated},
		{"no priority", good[:5], ErrTruncated},
		{"trailing", append(bytes.Clone(good), 0), ErrTrailing},
		{"huge node len", mut(func(b []byte) []byte { b[nodeLenAt] = 255; return b }), ErrBadField},
		{"node len past end", mut(func(b []byte) []byte { b[nodeLenAt] = 100; return b }), ErrTruncated},
		{"bad utf8", mut(func(b []byte) []byte { b[nodeLenAt+1] = 0xff; return b }), ErrBadField},
		{"negative age", mut(func(b []byte) []byte { b[len(b)-16] = 0x80; return b }), ErrBadField},
	}
	for i := 1; i < len(good); i++ {
		tests = append(tests, struct {
			name string
			b    []byte
			want error
		}{"truncated", good[:i], nil})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Advert{Node: "untouched"}
			err := a.UnmarshalBinary(tt.b)
			if err == nil {
				t.Fatalf("accepted %x as %+v", tt.b, a)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if a.Node != "untouched" {
				t.Fatalf("advert modified on error: %+v", a)
			}
		})
	}
}

func FuzzAdvert(f *testing.F) {
	seeds := []Advert{
		{},
		{Node: "lb1", Priority: 150, State: "MASTER", ConfigHash: "sha256:abc", Seq: 42,
			StateAge: time.Minute, Sent: time.Unix(1767225600, 5)},
		{Node: "lb2", State: "BACKUP", Seq: 1},
		{Node: "lb1", Priority: 150, State: "MASTER", Seq: 3, Held: true},
		{Node: "lb1", Priority: 150, State: "MASTER", Seq: 3, Epoch: 77},
		{Node: "lb1", Priority: 150, State: "MASTER", Seq: 3, Epoch: 77, MAC: []byte{2, 0, 0, 0, 0, 1}},
	}
	for _, a := range seeds {
		b, err := a.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("TDMA\x01"))
	f.Add([]byte("TDMA\x01\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Advert
		if err := a.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := a.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", a, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}

func TestEnvelope(t *testing.T) {
	msg := encodeEnvelope(msgAdvert, "127.0.0.1:7946", []byte("body"))
	typ, from, body, ok := decodeEnvelope(msg)
	if !ok || typ != msgAdvert || from != "127.0.0.1:7946" || string(body) != "body" {
		t.Fatalf("got %q %q %q %v", typ, from, body, ok)
	}
	for _, bad := range [][]byte{nil, {'A'}, {'A', 3, '1'}, {'A', 3, 'a', 'b', 'c'}, {'A', 255}} {
		if _, _, _, ok := decodeEnvelope(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}
