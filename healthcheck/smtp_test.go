package healthcheck

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// smtpScript is what a scripted SMTP server says. It stands in for an
// MTA in the unit tests; TestSMTPExim talks to a real one.
type smtpScript struct {
	implicit  *tls.Config // TLS from the first byte (SMTPS)
	banner    []string    // lines, CRLF added
	ehlo      []string    // the EHLO reply before TLS
	starttls  *tls.Config // nil: STARTTLS is refused with 502
	ehloAfter []string    // the EHLO reply after STARTTLS
	mu        sync.Mutex
	seen      []string // the commands received
}

func (s *smtpScript) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// serveSMTP runs the script on a loopback port.
func serveSMTP(t *testing.T, s *smtpScript) netip.AddrPort {
	t.Helper()
	ln := listenTCP(t)
	serveTCP(t, ln, func(c net.Conn) {
		if s.implicit != nil {
			tc := tls.Server(c, s.implicit)
			if tc.Handshake() != nil {
				return
			}
			c = tc
		}
		say := func(lines []string) {
			for _, l := range lines {
				c.Write([]byte(l + "\r\n"))
			}
		}
		say(s.banner)
		r := bufio.NewReader(c)
		ehlo := s.ehlo
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.TrimSpace(line)
			s.mu.Lock()
			s.seen = append(s.seen, cmd)
			s.mu.Unlock()
			switch verb, _, _ := strings.Cut(strings.ToUpper(cmd), " "); verb {
			case "EHLO":
				say(ehlo)
			case "STARTTLS":
				if s.starttls == nil {
					say([]string{"502 5.5.1 not here"})
					continue
				}
				say([]string{"220 2.0.0 ready to start TLS"})
				tc := tls.Server(c, s.starttls)
				if tc.Handshake() != nil {
					return
				}
				c, r, ehlo = tc, bufio.NewReader(tc), s.ehloAfter
			case "QUIT":
				say([]string{"221 2.0.0 bye"})
				return
			default:
				say([]string{"500 5.5.2 what?"})
			}
		}
	})
	return addrOf(t, ln.Addr())
}

var (
	banner220 = []string{"220-mx.tandem.test ESMTP", "220 no UCE"}
	ehlo250   = []string{"250-mx.tandem.test hello", "250-PIPELINING", "250-SIZE 10240000", "250-STARTTLS", "250 8BITMIME"}
	ehloTLS   = []string{"250-mx.tandem.test hello again", "250-PIPELINING", "250-AUTH PLAIN LOGIN", "250 8BITMIME"}
)

func TestSMTP(t *testing.T) {
	ca := newTestCA(t)
	certFor := func(left time.Duration, names ...string) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{ca.valid(t, left, names...).tls}}
	}
	good := &smtpScript{banner: banner220, ehlo: ehlo250, starttls: certFor(5*day, "127.0.0.1"), ehloAfter: ehloTLS}
	goodAddr := serveSMTP(t, good)
	silent := listenTCP(t)
	serveTCP(t, silent, func(c net.Conn) { time.Sleep(time.Second) })
	hangUp := listenTCP(t)
	serveTCP(t, hangUp, func(net.Conn) {})

	starttls := config.HealthCheck{Type: "smtp", StartTLS: true, CAFile: ca.file, CertWarnDays: 14}
	tests := []struct {
		name    string
		hc      config.HealthCheck
		addr    netip.AddrPort
		ok      bool
		detail  string
		warning string
	}{
		{"banner and EHLO", config.HealthCheck{Type: "smtp"}, goodAddr, true, "SMTP 220, EHLO 250 in", ""},
		{"expect matches", config.HealthCheck{Type: "smtp", Expect: "(?m)^SIZE [0-9]+$"}, goodAddr, true, "SMTP 220", ""},
		{"expect fails", config.HealthCheck{Type: "smtp", Expect: "(?m)^SMTPUTF8$"}, goodAddr, false,
			`EHLO reply did not match (?m)^SMTPUTF8$: "mx.tandem.test hello\nPIPELINING\nSIZE 10240000\nSTARTTLS\n8BITMIME"`, ""},
		{"STARTTLS, certificate about to expire", starttls, goodAddr, true, "SMTP 220, EHLO 250", "certificate expires in 5 days"},
		{"expect sees the EHLO after STARTTLS", func() config.HealthCheck { h := starttls; h.Expect = "(?m)^AUTH PLAIN"; return h }(),
			goodAddr, true, "SMTP 220", "certificate expires in 5 days"},
		{"STARTTLS not offered", starttls,
			serveSMTP(t, &smtpScript{banner: banner220, ehlo: []string{"250-mx", "250 PIPELINING"}}), false, "STARTTLS not offered in the EHLO reply", ""},
		{"STARTTLS offered, then refused", starttls,
			serveSMTP(t, &smtpScript{banner: banner220, ehlo: ehlo250}), false, "STARTTLS: 502 5.5.1 not here", ""},
		{"STARTTLS with a certificate for another name", starttls,
			serveSMTP(t, &smtpScript{banner: banner220, ehlo: ehlo250, starttls: certFor(90*day, "mx.example.org"), ehloAfter: ehloTLS}),
			false, "STARTTLS: TLS: cannot validate certificate for 127.0.0.1", ""},
		{"SMTPS", config.HealthCheck{Type: "smtp", TLS: true, CAFile: ca.file, ServerName: "mx.example.org"},
			serveSMTP(t, &smtpScript{implicit: certFor(90*day, "mx.example.org"), banner: banner220, ehlo: ehloTLS}),
			true, "SMTP 220, EHLO 250 in", ""},
		{"refusing banner", config.HealthCheck{Type: "smtp"},
			serveSMTP(t, &smtpScript{banner: []string{"554 5.3.2 no service here"}}), false, "banner: 554 5.3.2 no service here", ""},
		{"overloaded", config.HealthCheck{Type: "smtp"},
			serveSMTP(t, &smtpScript{banner: []string{"421-mx.tandem.test busy", "421 try later"}}), false, "banner: 421 mx.tandem.test busy try later", ""},
		{"EHLO refused", config.HealthCheck{Type: "smtp"},
			serveSMTP(t, &smtpScript{banner: banner220, ehlo: []string{"550 5.7.1 go away"}}), false, "EHLO: 550 5.7.1 go away", ""},
		{"no banner", config.HealthCheck{Type: "smtp"}, addrOf(t, silent.Addr()), false, "banner: timeout after", ""},
		{"hang-up", config.HealthCheck{Type: "smtp"}, addrOf(t, hangUp.Addr()), false, "banner: connection closed by the server", ""},
		{"refused", config.HealthCheck{Type: "smtp"}, closedPort(t), false, "connection refused", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, mustNew(t, tt.hc), tt.addr, 300*time.Millisecond)
			wantResult(t, res, tt.ok, tt.detail)
			if tt.warning == "" && res.Warning != "" || !strings.Contains(res.Warning, tt.warning) {
				t.Errorf("Warning %q, want %q", res.Warning, tt.warning)
			}
		})
	}
	// The session ends politely, and STARTTLS is followed by a new EHLO.
	var ehlos, quits, starts int
	for _, c := range good.commands() {
		switch {
		case strings.HasPrefix(c, "EHLO "):
			ehlos++
		case c == "QUIT":
			quits++
		case c == "STARTTLS":
			starts++
		}
	}
	if starts != 2 || ehlos != 7 || quits != 5 {
		t.Errorf("server saw %d EHLO, %d STARTTLS, %d QUIT; want 7, 2, 5", ehlos, starts, quits)
	}
}

// TestSMTPBoundedReply: a server that never stops talking costs at
// most maxSMTPReply bytes and fails.
func TestSMTPBoundedReply(t *testing.T) {
	ln := listenTCP(t)
	serveTCP(t, ln, func(c net.Conn) {
		line := []byte("220-" + strings.Repeat("x", 1000) + "\r\n")
		for range 100 {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	res := check(t, mustNew(t, config.HealthCheck{Type: "smtp"}), addrOf(t, ln.Addr()), time.Second)
	wantResult(t, res, false, "banner: reply longer than 16 KiB")
}
