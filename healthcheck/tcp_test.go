package healthcheck

import (
	"net"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

func TestTCP(t *testing.T) {
	c := mustNew(t, config.HealthCheck{Type: "tcp"})
	ln := listenTCP(t)
	serveTCP(t, ln, func(net.Conn) {})

	wantResult(t, check(t, c, addrOf(t, ln.Addr()), time.Second), true, "TCP connect in")
	wantResult(t, check(t, c, closedPort(t), time.Second), false, "connect: connection refused")
}
