package dataplane

import (
	"testing"

	"github.com/tandem-lb/tandem/pkg/config"
)

// TestUDPMatch: requests are keyed by the DNS ID or the RADIUS
// Identifier, answers match only their own request's key, a RADIUS
// retransmission (same Identifier and Authenticator) is a duplicate, and
// what is not a request is left untimed.
func TestUDPMatch(t *testing.T) {
	dnsQ := append([]byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, "\x01a\x00\x00\x01\x00\x01"...)
	dnsA := append([]byte{0x12, 0x34, 0x81, 0x80}, dnsQ[4:]...)
	otherA := append([]byte{0x12, 0x35}, dnsA[2:]...)
	radQ := make([]byte, 20)
	radQ[0], radQ[1], radQ[3] = 1, 7, 20
	copy(radQ[4:], "authenticator!!!")
	radQ2 := append([]byte(nil), radQ...)
	radQ2[4] = 'A'
	radA := make([]byte, 20)
	radA[0], radA[1], radA[3] = 2, 7, 20

	key, _, ok := matchDNS.request(dnsQ)
	if !ok || key != 0x1234 {
		t.Fatalf("dns query: key %#x ok %v", key, ok)
	}
	if !matchDNS.answers(dnsA, key) || matchDNS.answers(otherA, key) || matchDNS.answers(dnsA[:5], key) {
		t.Error("dns: answer matching wrong")
	}
	if _, _, ok := matchDNS.request(dnsA); ok {
		t.Error("a DNS response was taken for a query")
	}
	if _, _, ok := matchDNS.request(dnsQ[:11]); ok {
		t.Error("a runt was taken for a query")
	}
	k1, d1, ok1 := matchRADIUS.request(radQ)
	k2, d2, ok2 := matchRADIUS.request(radQ2)
	if !ok1 || !ok2 || k1 != 7 || k2 != 7 || d1 == d2 {
		t.Errorf("radius: keys %d %d dups %#x %#x", k1, k2, d1, d2)
	}
	if kr, dr, _ := matchRADIUS.request(append([]byte(nil), radQ...)); kr != k1 || dr != d1 {
		t.Error("radius: a retransmission is not a duplicate")
	}
	if !matchRADIUS.answers(radA, 7) || matchRADIUS.answers(radA, 8) {
		t.Error("radius: answer matching wrong")
	}
	_, a, _ := matchAny.request([]byte("one"))
	_, b, _ := matchAny.request([]byte("two"))
	_, c, _ := matchAny.request([]byte("one"))
	if a == b || a != c || !matchAny.answers(nil, 0) {
		t.Error("any: duplicates by content, any answer answers")
	}
	if udpMatchFor(config.VirtualCluster{HealthCheck: &config.HealthCheck{Type: "radius"}}) != matchRADIUS ||
		udpMatchFor(config.VirtualCluster{}) != matchAny {
		t.Error("udpMatchFor")
	}
}
