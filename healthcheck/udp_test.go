package healthcheck

import (
	"net"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// serveUDP answers each datagram on a loopback port with reply(datagram);
// a nil reply drops it.
func serveUDP(t *testing.T, reply func([]byte) []byte) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(buf[:n]); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc
}

func TestUDP(t *testing.T) {
	echo := serveUDP(t, func(b []byte) []byte { return append([]byte("echo "), b...) })
	mute := serveUDP(t, func([]byte) []byte { return nil })
	tests := []struct {
		name   string
		pc     net.PacketConn
		hc     config.HealthCheck
		ok     bool
		detail string
	}{
		{"echo matches", echo, config.HealthCheck{Send: "PING", ExpectBody: "^echo PING$"}, true, "reply matched"},
		{"echo hex", echo, config.HealthCheck{SendHex: "0050494e47", ExpectBody: "^echo \x00PING$"}, true, "reply matched"},
		{"echo mismatch", echo, config.HealthCheck{Send: "PING", ExpectBody: "^PONG"}, false, `reply did not match ^PONG: "echo PING"`},
		{"no reply", mute, config.HealthCheck{Send: "PING", ExpectBody: "."}, false, "no reply: timeout after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.hc.Type = "udp"
			res := check(t, mustNew(t, tt.hc), addrOf(t, tt.pc.LocalAddr()), 300*time.Millisecond)
			wantResult(t, res, tt.ok, tt.detail)
		})
	}
}
