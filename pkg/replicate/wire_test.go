package replicate

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"net/netip"
	"testing"

	"github.com/flynn/noise"
)

func TestEntryRoundTrip(t *testing.T) {
	p := netip.MustParsePrefix
	entries := []Entry{
		{},
		{Cluster: 1, Client: p("198.18.2.7/32"), Server: 3, Expires: 1767225600123456789},
		{Cluster: flowTag - 1, Client: p("198.18.2.0/24"), Server: math.MaxUint16, Expires: math.MinInt64},
		{Client: p("0.0.0.0/0"), Expires: math.MaxInt64},
		{Client: p("2001:db8::1/128"), Expires: -1},
		{Client: p("2001:db8:1:8::/61"), Server: 9},
		{Client: p("::/0")},
		{Client: p("::ffff:198.18.0.1/128")}, // 4-in-6 stays IPv6
	}
	var b []byte
	var prev int64
	for _, e := range entries {
		b = appendEntry(b, e, prev)
		prev = e.Expires
	}
	got, err := decodeEntries(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("decoded %d entries, want %d", len(got), len(entries))
	}
	for i := range entries {
		if got[i] != entries[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], entries[i])
		}
	}
	if n := len(appendEntry(nil, entries[1], entries[1].Expires-1000)); n > 10 {
		t.Errorf("an IPv4 /32 entry close to the previous one takes %d bytes, want <= 10", n)
	}
}

func TestEntryMasksPrefix(t *testing.T) {
	e := Entry{Client: netip.MustParsePrefix("198.18.2.77/24")}
	got, err := decodeEntries(nil, appendEntry(nil, e, 0))
	if err != nil || len(got) != 1 || got[0].Client != netip.MustParsePrefix("198.18.2.0/24") {
		t.Fatalf("got %v %v, want the masked prefix", got, err)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := appendEntry(nil, testEntry(5, 10), 0)
	tests := map[string][]byte{
		"truncated":     good[:len(good)-1],
		"bad tag":       {0, 33, 0, 0},
		"bad v6 tag":    {0, 200, 0, 0},
		"cluster > u16": {0xff, 0xff, 0x04, 0xff, 0, 0},
		"varint runs":   {0x80, 0x80, 0x80},
	}
	for name, b := range tests {
		if _, err := decodeEntries(nil, b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
	for _, b := range [][]byte{{}, {1}, {0, 0, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0, 1, 1}} {
		if _, err := parseAck(b); err == nil {
			t.Errorf("parseAck(%x) accepted", b)
		}
	}
}

// FuzzDecode checks that nothing a peer can send panics the decoders.
func FuzzDecode(f *testing.F) {
	f.Add(appendEntry(nil, testEntry(1, 10), 0))
	f.Add(appendState(nil, streamState{"sha256:x", 3, 4})[1:])
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeEntries(nil, b)
		parseAck(b)
		parseState(b)
		parseConfig(b)
	})
}

func TestFrameSealOpen(t *testing.T) {
	key := [32]byte(bytes.Repeat([]byte{1}, 32))
	cs := func() *noise.CipherState { return noise.UnsafeNewCipherState(suite, key, 0) }
	var wire bytes.Buffer
	bw := bufio.NewWriter(&wire)
	fw := frameWriter{w: bw, cs: cs()}
	for _, m := range []string{"one", "two", "three"} {
		if err := fw.write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.write(make([]byte, maxFrameLen)); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversize frame: %v", err)
	}
	bw.Flush()
	raw := wire.Bytes()
	if bytes.Contains(raw, []byte("three")) {
		t.Fatal("plaintext visible on the wire")
	}
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(raw)), cs: cs()}
	for _, want := range []string{"one", "two", "three"} {
		got, err := fr.read()
		if err != nil || string(got) != want {
			t.Fatalf("read %q %v, want %q", got, err, want)
		}
	}

	// A flipped bit, a dropped frame (counter mismatch) or a replayed frame
	// fails to open.
	flip := append([]byte(nil), raw...)
	flip[6] ^= 1
	first := len("one") + tagLen + 4
	for name, b := range map[string][]byte{"flipped": flip, "dropped": raw[first:], "replayed": append(append([]byte(nil), raw[:first]...), raw[:first]...)} {
		fr := frameReader{r: bufio.NewReader(bytes.NewReader(b)), cs: cs()}
		var err error
		for i := 0; i < 2 && err == nil; i++ {
			_, err = fr.read()
		}
		if !errors.Is(err, errOpen) {
			t.Errorf("%s: err %v, want errOpen", name, err)
		}
	}
	huge := []byte{0x7f, 0xff, 0xff, 0xff}
	fr = frameReader{r: bufio.NewReader(bytes.NewReader(huge)), cs: cs()}
	if _, err := fr.read(); !errors.Is(err, errFrameTooLarge) {
		t.Errorf("huge length: %v", err)
	}
}

func BenchmarkEncodeEntries(b *testing.B) {
	es := make([]Entry, 4096)
	for i := range es {
		es[i] = testEntry(i, 1<<20)
		es[i].Expires = 1767225600e9 + int64(i)*1000
	}
	buf := make([]byte, 0, 64<<10)
	for b.Loop() {
		buf = buf[:0]
		var prev int64
		for _, e := range es {
			buf = appendEntry(buf, e, prev)
			prev = e.Expires
		}
	}
	b.ReportMetric(float64(len(buf))/float64(len(es)), "bytes/entry")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/entry")
}

func BenchmarkDecodeEntries(b *testing.B) {
	var buf []byte
	var prev int64
	for i := range 4096 {
		e := testEntry(i, 1<<20)
		e.Expires = 1767225600e9 + int64(i)*1000
		buf = appendEntry(buf, e, prev)
		prev = e.Expires
	}
	dst := make([]Entry, 0, 4096)
	for b.Loop() {
		dst, _ = decodeEntries(dst[:0], buf)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*4096), "ns/entry")
}

// Flow records travel among sticky entries, opaque, and do not disturb
// the expiry differences of the entries around them.
func TestFlowEntryRoundTrip(t *testing.T) {
	p := netip.MustParsePrefix
	entries := []Entry{
		{Cluster: 1, Client: p("198.18.2.7/32"), Server: 3, Expires: 1767225600123456789},
		{Flow: "\x01flow-record\x00bytes"},
		{Cluster: 2, Client: p("198.18.2.8/32"), Server: 1, Expires: 1767225600123456999},
		{Flow: string(bytes.Repeat([]byte{0xab}, MaxFlowLen))},
	}
	var b []byte
	var prev int64
	for _, e := range entries {
		b = appendEntry(b, e, prev)
		prev = e.Expires
	}
	got, err := decodeEntries(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("decoded %d entries, want %d", len(got), len(entries))
	}
	for i := range entries {
		if got[i] != entries[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], entries[i])
		}
	}
	for name, bad := range map[string][]byte{
		"empty flow":     {0xff, 0xff, 0x03, 0},
		"flow too long":  {0xff, 0xff, 0x03, 0xc9, 0x01},
		"flow truncated": {0xff, 0xff, 0x03, 5, 1, 2},
	} {
		if _, err := decodeEntries(nil, bad); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
}
