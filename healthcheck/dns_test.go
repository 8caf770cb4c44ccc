package healthcheck

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tandem-lb/tandem/pkg/config"
)

// dnsAnswer is the test server's zone: ok.test. exists, big.test. is too
// big for UDP (the UDP reply sets TC), anything else is NXDOMAIN.
func dnsAnswer(t *testing.T, query []byte, overTCP bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		t.Errorf("test server: bad query: %v", err)
		return nil
	}
	q, err := p.Question()
	if err != nil {
		t.Errorf("test server: no question: %v", err)
		return nil
	}
	if q.Type != dnsmessage.TypeA || !h.RecursionDesired {
		t.Errorf("test server: got %v rd=%v, want an A query with RD", q.Type, h.RecursionDesired)
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired}
	answers := 0
	switch q.Name.String() {
	case "ok.test.":
		answers = 1
	case "big.test.":
		if overTCP {
			answers = 2
		} else {
			rh.Truncated = true
		}
	default:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	for i := range answers {
		b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
			dnsmessage.AResource{A: [4]byte{192, 0, 2, byte(i + 1)}})
	}
	out, err := b.Finish()
	if err != nil {
		t.Errorf("test server: %v", err)
	}
	return out
}

// serveDNS starts a DNS server on UDP and TCP of one loopback port and
// counts the TCP queries.
func serveDNS(t *testing.T) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	var tcpQueries atomic.Int32
	var ln net.Listener
	var pc net.PacketConn
	for range 20 { // find a port free on both UDP and TCP
		pc = serveUDP(t, func(q []byte) []byte { return dnsAnswer(t, q, false) })
		var err error
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
	}
	if ln == nil {
		t.Fatal("no loopback port free on both UDP and TCP")
	}
	t.Cleanup(func() { ln.Close() })
	serveTCP(t, ln, func(c net.Conn) {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		tcpQueries.Add(1)
		a := dnsAnswer(t, q, true)
		c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...))
	})
	return addrOf(t, pc.LocalAddr()), &tcpQueries
}

func TestDNS(t *testing.T) {
	addr, tcpQueries := serveDNS(t)
	tests := []struct {
		name, query string
		ok          bool
		detail      string
		tcp         int32
	}{
		{"NOERROR", "ok.test", true, "DNS NOERROR, 1 answer over UDP", 0},
		{"NXDOMAIN", "missing.test.", false, "DNS NXDOMAIN for missing.test.", 0},
		{"truncated falls back to TCP", "big.test", true, "DNS NOERROR, 2 answers over TCP", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tcpQueries.Load()
			c := mustNew(t, config.HealthCheck{Type: "dns", Query: tt.query})
			wantResult(t, check(t, c, addr, time.Second), tt.ok, tt.detail)
			if got := tcpQueries.Load() - before; got != tt.tcp {
				t.Errorf("%d queries over TCP, want %d", got, tt.tcp)
			}
		})
	}
	t.Run("no server", func(t *testing.T) {
		mute := serveUDP(t, func([]byte) []byte { return nil })
		c := mustNew(t, config.HealthCheck{Type: "dns", Query: "ok.test"})
		wantResult(t, check(t, c, addrOf(t, mute.LocalAddr()), 300*time.Millisecond), false, "DNS over UDP: timeout after")
	})
}
