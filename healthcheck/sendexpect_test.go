package healthcheck

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

func TestSendExpect(t *testing.T) {
	banner := func(b string) func(net.Conn) {
		return func(c net.Conn) { c.Write([]byte(b)) }
	}
	// A split banner: the checker must keep reading until it matches.
	split := func(c net.Conn) {
		c.Write([]byte("22"))
		time.Sleep(20 * time.Millisecond)
		c.Write([]byte("0 slow ok\r\n"))
	}
	// An echo of the first line: proves the payload was sent.
	echo := func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("you said " + line))
	}
	silent := func(c net.Conn) {
		var b [1]byte
		c.Read(b[:]) // until the checker hangs up
	}
	tests := []struct {
		name   string
		handle func(net.Conn)
		hc     config.HealthCheck
		ok     bool
		detail string
	}{
		{"220 banner", banner("220 ok ESMTP\r\n"), config.HealthCheck{ExpectBody: "^220"}, true, "reply matched ^220"},
		{"500 banner", banner("500 go away\r\n"), config.HealthCheck{ExpectBody: "^220"}, false, `reply did not match ^220: "500 go away\r\n"`},
		{"banner in two reads", split, config.HealthCheck{ExpectBody: `^220 .*ok`}, true, "reply matched"},
		{"send then expect", echo, config.HealthCheck{Send: "PING\r\n", ExpectBody: `said PING`}, true, "reply matched"},
		{"send_hex", echo, config.HealthCheck{SendHex: "50494e470d0a", ExpectBody: `said PING\r\n$`}, true, "reply matched"},
		{"silent server", silent, config.HealthCheck{ExpectBody: "^220"}, false, "no reply: timeout after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listenTCP(t)
			serveTCP(t, ln, tt.handle)
			tt.hc.Type = "send_expect"
			res := check(t, mustNew(t, tt.hc), addrOf(t, ln.Addr()), 300*time.Millisecond)
			wantResult(t, res, tt.ok, tt.detail)
		})
	}
	t.Run("refused", func(t *testing.T) {
		c := mustNew(t, config.HealthCheck{Type: "send_expect", ExpectBody: "^220"})
		wantResult(t, check(t, c, closedPort(t), time.Second), false, "connection refused")
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, hc := range []config.HealthCheck{
		{Type: "ping"},
		{Type: "send_expect", ExpectBody: "("},
		{Type: "udp", SendHex: "zz"},
		{Type: "udp", Send: "a", SendHex: "61"},
		{Type: "http", Path: "health"},
		{Type: "dns"},
		{Type: "radius"},
		{Type: "exec"},
	} {
		if _, err := New(hc); err == nil {
			t.Errorf("New(%+v) = nil error, want one", hc)
		}
	}
}
