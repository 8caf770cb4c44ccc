package healthcheck

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// maxSMTPReply bounds what the smtp check reads in one phase (before
// and after STARTTLS), so a server that talks without end cannot grow
// the probe's memory; real banners and EHLO replies are a few hundred
// bytes.
const maxSMTPReply = 16 << 10

// smtpChecker speaks the start of an SMTP session: the 220 banner,
// EHLO and its 250 reply, optionally STARTTLS and EHLO again, then QUIT.
// A server that greets with 421 or 554 (overloaded, refusing), whose
// EHLO fails, or that no longer offers STARTTLS, fails. expect, when
// set, must match the last EHLO reply's lines (codes stripped, one a
// line: "(?m)^PIPELINING$"). It is net/smtp's dialogue on textproto,
// written out so that every step is bounded by the probe's deadline and
// the EHLO reply is seen as sent.
type smtpChecker struct {
	tls      *tlsOptions // nil: plain SMTP
	implicit bool        // SMTPS: TLS from the first byte
	expect   *regexp.Regexp
	helo     string
}

func newSMTPChecker(hc config.HealthCheck) (*smtpChecker, error) {
	c := &smtpChecker{implicit: hc.TLS, helo: "localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		c.helo = h
	}
	if hc.Expect != "" {
		re, err := regexp.Compile(hc.Expect)
		if err != nil {
			return nil, fmt.Errorf("health_check: expect: %w", err)
		}
		c.expect = re
	}
	if hc.TLS || hc.StartTLS {
		o, err := newTLSOptions(hc, "")
		if err != nil {
			return nil, err
		}
		c.tls = o
	}
	return c, nil
}

// Check implements Checker.
func (c *smtpChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	// The socket's deadline bounds every step (and ends go-ldap's or
	// textproto's reads when the probe times out).
	conn, done, failed := dialProbe(ctx, addr, start, c.implicit, c.tls)
	if failed != nil {
		return *failed
	}
	defer done()
	tp := newSMTPConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return fail(start, "banner: %s", smtpError(ctx, start, err))
	}
	reply, err := c.ehlo(tp)
	if err != nil {
		return fail(start, "EHLO: %s", smtpError(ctx, start, err))
	}
	if c.tls != nil && !c.implicit {
		if !offers(reply, "STARTTLS") {
			return fail(start, "STARTTLS not offered in the EHLO reply")
		}
		if err := command(tp, 220, "STARTTLS"); err != nil {
			return fail(start, "STARTTLS: %s", smtpError(ctx, start, err))
		}
		tc, err := c.tls.handshake(ctx, conn, addr) // conn is the plain socket here
		if err != nil {
			return fail(start, "STARTTLS: %s", describeTLS(ctx, start, err))
		}
		conn = tc
		tp = newSMTPConn(conn)
		if reply, err = c.ehlo(tp); err != nil {
			return fail(start, "EHLO after STARTTLS: %s", smtpError(ctx, start, err))
		}
	}
	var res Result
	if c.expect != nil && !c.expect.MatchString(reply) {
		res = fail(start, "EHLO reply did not match %s: %s", c.expect, quote([]byte(reply)))
	} else {
		res = pass(start, "SMTP 220, EHLO 250 in %s", ms(time.Since(start)))
	}
	if tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		res = c.tls.certResult(res, tc.ConnectionState())
	}
	_ = command(tp, 221, "QUIT") // polite; its outcome says nothing more
	return res
}

// ehlo greets and returns the reply's lines, codes stripped.
func (c *smtpChecker) ehlo(tp *textproto.Conn) (string, error) {
	id, err := tp.Cmd("EHLO %s", c.helo)
	if err != nil {
		return "", err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	_, msg, err := tp.ReadResponse(250)
	return msg, err
}

// command sends a command and reads its reply.
func command(tp *textproto.Conn, code int, cmd string) error {
	id, err := tp.Cmd("%s", cmd)
	if err != nil {
		return err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	_, _, err = tp.ReadResponse(code)
	return err
}

// offers reports whether an EHLO reply lists the extension.
func offers(reply, ext string) bool {
	for line := range strings.Lines(reply) {
		f := strings.Fields(line)
		if len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

// newSMTPConn reads at most maxSMTPReply bytes from conn.
func newSMTPConn(conn net.Conn) *textproto.Conn {
	return textproto.NewConn(struct {
		io.Reader
		io.Writer
		io.Closer
	}{bufio.NewReader(&cappedReader{r: conn, left: maxSMTPReply}), conn, conn})
}

var errReplyTooLong = fmt.Errorf("reply longer than %d KiB", maxSMTPReply>>10)

// cappedReader fails with errReplyTooLong once left bytes are read.
type cappedReader struct {
	r    io.Reader
	left int
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errReplyTooLong
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

// smtpError shows a server's refusal as "554 no service here", an I/O
// error as describe does.
func smtpError(ctx context.Context, start time.Time, err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return fmt.Sprintf("%d %s", te.Code, strings.ReplaceAll(te.Msg, "\n", " "))
	}
	if errors.Is(err, errReplyTooLong) {
		return err.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed by the server"
	}
	return describe(ctx, start, err)
}
