package dataplane

import (
	"net/netip"
	"testing"
	"time"
)

func TestAllowList(t *testing.T) {
	l, err := parseAllow([]string{"100.64.0.0/10", " 192.0.2.7 ", "2001:db8::/32", "::ffff:198.18.0.0/111"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"100.64.1.2":        true,
		"100.128.0.1":       false,
		"192.0.2.7":         true,
		"192.0.2.8":         false,
		"2001:db8::5":       true,
		"2001:db9::5":       false,
		"::ffff:100.64.9.9": true, // a v4 client on a dual-stack socket
		"198.19.255.1":      true, // from the mapped /111 = 198.18.0.0/15
		"fe80::1%eth0":      false,
		"2001:db8::1%eth0":  true,
	} {
		if got := l.permits(netip.MustParseAddr(addr)); got != want {
			t.Errorf("permits(%s) = %v, want %v", addr, got, want)
		}
	}
	var empty allowList
	if !empty.permits(netip.MustParseAddr("203.0.113.1")) {
		t.Error("an empty list must let everyone in")
	}
	for _, bad := range []string{"100.64.0.0/33", "example.com", ""} {
		if _, err := parseAllow([]string{bad}); err == nil {
			t.Errorf("parseAllow(%q) accepted", bad)
		}
	}
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	t0 := time.Unix(1000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for i := range 5 {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("line %d within the second let through", i)
		}
	}
	if ok, n := l.allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Fatalf("after a second: ok=%v suppressed=%d, want true and 5", ok, n)
	}
	if ok, n := l.allow(t0.Add(3 * time.Second)); !ok || n != 0 {
		t.Fatalf("quiet then one: ok=%v suppressed=%d", ok, n)
	}
}
