package healthcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tandem-lb/tandem/pkg/config"
)

// dnsChecker asks the server for the A record of a name over UDP and
// passes on rcode NOERROR (an empty answer is fine: the server works);
// NXDOMAIN, SERVFAIL, REFUSED and the rest fail. A truncated reply is
// asked again over TCP, as a resolver would.
type dnsChecker struct {
	name dnsmessage.Name
}

func newDNSChecker(hc config.HealthCheck) (*dnsChecker, error) {
	q := hc.Query
	if q == "" {
		return nil, errors.New("health_check: dns check needs a query")
	}
	if !strings.HasSuffix(q, ".") {
		q += "."
	}
	name, err := dnsmessage.NewName(q)
	if err != nil {
		return nil, fmt.Errorf("health_check: query %q: %w", hc.Query, err)
	}
	return &dnsChecker{name: name}, nil
}

// Check implements Checker.
func (c *dnsChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	id := uint16(rand.Uint32())
	query, err := c.query(id)
	if err != nil {
		return fail(start, "build query: %v", err)
	}
	h, n, err := exchangeUDP(ctx, addr, query, id)
	transport := "UDP"
	if err == nil && h.Truncated {
		transport = "TCP"
		h, n, err = exchangeTCP(ctx, addr, query, id)
	}
	if err != nil {
		return fail(start, "DNS over %s: %s", transport, describe(ctx, start, err))
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return fail(start, "DNS %s for %s", rcodeName(h.RCode), c.name)
	}
	answers := "answers"
	if n == 1 {
		answers = "answer"
	}
	return pass(start, "DNS NOERROR, %d %s over %s in %s", n, answers, transport, ms(time.Since(start)))
}

// query encodes one recursive question for the name's A record.
func (c *dnsChecker) query(id uint16) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: c.name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// exchangeUDP sends the query and waits for the reply with its id,
// ignoring stray datagrams until the deadline.
func exchangeUDP(ctx context.Context, addr netip.AddrPort, query []byte, id uint16) (dnsmessage.Header, int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return dnsmessage.Header{}, 0, err
	}
	defer conn.Close()
	defer withDeadline(ctx, conn)()
	if _, err := conn.Write(query); err != nil {
		return dnsmessage.Header{}, 0, err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return dnsmessage.Header{}, 0, err
		}
		h, answers, err := parseReply(buf[:n], id)
		if err == errNotOurs {
			continue
		}
		return h, answers, err
	}
}

// exchangeTCP asks again over TCP, each message prefixed by its length.
func exchangeTCP(ctx context.Context, addr netip.AddrPort, query []byte, id uint16) (dnsmessage.Header, int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return dnsmessage.Header{}, 0, err
	}
	defer conn.Close()
	defer withDeadline(ctx, conn)()
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(query)), uint16(len(query)))
	if _, err := conn.Write(append(msg, query...)); err != nil {
		return dnsmessage.Header{}, 0, err
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return dnsmessage.Header{}, 0, err
	}
	reply := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, reply); err != nil {
		return dnsmessage.Header{}, 0, err
	}
	h, answers, err := parseReply(reply, id)
	if err == errNotOurs {
		return h, answers, errors.New("reply to another query")
	}
	return h, answers, err
}

var errNotOurs = errors.New("not our reply")

// parseReply reads a reply's header and counts its answers.
func parseReply(b []byte, id uint16) (dnsmessage.Header, int, error) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return h, 0, fmt.Errorf("bad reply: %w", err)
	}
	if h.ID != id || !h.Response {
		return h, 0, errNotOurs
	}
	if err := p.SkipAllQuestions(); err != nil {
		return h, 0, fmt.Errorf("bad reply: %w", err)
	}
	answers, err := p.AllAnswers()
	if err != nil && !h.Truncated {
		return h, 0, fmt.Errorf("bad reply: %w", err)
	}
	return h, len(answers), nil
}

// rcodeName turns "RCodeNameError" into the usual "NXDOMAIN".
func rcodeName(rc dnsmessage.RCode) string {
	switch rc {
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("rcode %d", rc)
}
