package dataplane

import (
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// UDP requests are timed when a cluster retries them (retry_timeout) or
// judges its servers by them (passive). Each loop keeps its requests in
// flight in a ring, in the order sent, which is the order their
// deadlines fall due (one timeout per cluster): the loop pops the due
// ones at each wake-up, and a request answered in time is only marked,
// so the data path pays a copy and an append per request and a short
// scan of the flow's requests per answer.
const (
	// udpPendRing is how many requests each loop times at once: with the
	// default 100 ms timeout, 81,920 requests a second per loop. Beyond,
	// requests go untimed (UDPStats.Untimed): no retry, no passive count.
	udpPendRing = 8192
	// udpRetryMaxCopy is the largest request kept for a retry (a RADIUS
	// packet's maximum; DNS queries are far smaller). A larger one is
	// timed but never re-sent. With the ring's size it bounds the copies
	// at 32 MiB per loop; DNS-sized queries take under 1 MiB, the ring
	// itself 512 KiB.
	udpRetryMaxCopy = 4096
	// udpPendPerFlow is how many requests one flow has timed at once
	// (a stub resolver asks A and AAAA together; a NAS or a forwarder
	// keeps one socket busy: 16 is 160 requests a second from one
	// socket at the default timeout); a further one makes the flow
	// forget its oldest. A timed flow keeps about 100 bytes for it.
	udpPendPerFlow = 16
	// udpAnswerWait is how long a server has to answer before the
	// request counts as unanswered for passive health, when the cluster
	// does not retry.
	udpAnswerWait = time.Second
	// udpLateKeep is how long the socket of the server a flow left on a
	// retry stays open, so its late answers are read, dropped and
	// counted rather than refused with an ICMP error.
	udpLateKeep = 2 * time.Second
)

// udpMatch says how an answer is matched to the request it answers.
type udpMatch uint8

const (
	// matchAny: any answer answers every request of its flow.
	matchAny udpMatch = iota
	// matchDNS: the answer carries the query's ID (RFC 1035 4.1.1).
	matchDNS
	// matchRADIUS: the response carries the request's Identifier; a
	// request with the Identifier and Request Authenticator of one in
	// flight is the client's retransmission of it (RFC 5080 2.2.2).
	matchRADIUS
)

// udpMatchFor is the matching a cluster's health check implies.
func udpMatchFor(vc config.VirtualCluster) udpMatch {
	if vc.HealthCheck != nil {
		switch vc.HealthCheck.Type {
		case "dns":
			return matchDNS
		case "radius":
			return matchRADIUS
		}
	}
	return matchAny
}

// request returns what identifies request p: key, which its answer
// carries too, and dup, which with key tells a retransmission of a
// request in flight from a new request. ok is false for a datagram that
// is not a request of the protocol (a DNS response, a runt): not timed.
func (m udpMatch) request(p []byte) (key, dup uint32, ok bool) {
	switch m {
	case matchDNS:
		if len(p) < 12 || p[2]&0x80 != 0 { // header; QR set: not a query
			return 0, 0, false
		}
		return uint32(p[0])<<8 | uint32(p[1]), 0, true
	case matchRADIUS:
		if len(p) < 20 { // code, identifier, length, authenticator
			return 0, 0, false
		}
		return uint32(p[1]), uint32(p[4])<<24 | uint32(p[5])<<16 | uint32(p[6])<<8 | uint32(p[7]), true
	}
	// Any datagram: the same bytes again are the same request.
	h := uint32(2166136261) // FNV-1a over the length and the first 64 bytes
	h = (h ^ uint32(len(p))) * 16777619
	for _, b := range p[:min(len(p), 64)] {
		h = (h ^ uint32(b)) * 16777619
	}
	return 0, h, true
}

// answers reports whether answer a answers a request of key.
func (m udpMatch) answers(a []byte, key uint32) bool {
	switch m {
	case matchDNS:
		return len(a) >= 12 && uint32(a[0])<<8|uint32(a[1]) == key
	case matchRADIUS:
		return len(a) >= 20 && uint32(a[1]) == key
	}
	return true
}
