//go:build linux

package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// countEvents counts the events of pl that are ev.
func countEvents(pl *passiveLog, ev string) int {
	n := 0
	for _, e := range pl.events() {
		if e == ev {
			n++
		}
	}
	return n
}

// TestPassiveTCPConnectRefused: each connect the dead server refuses is
// reported (the client is served by the other server meanwhile), and
// the live server, which never failed, is never reported.
func TestPassiveTCPConnectRefused(t *testing.T) {
	for _, eng := range []string{"go", "epoll"} {
		t.Run(eng, func(t *testing.T) {
			live := startBackend(t, "live", echoNamed("live"))
			vc := testClusterConfig([]netip.AddrPort{deadAddr(t), live.addr})
			pool := testPool(t, vc)
			var pl passiveLog
			pool.SetPassive(pl.fn)
			var e Engine
			if eng == "epoll" {
				e = newTestEpoll(t)
			}
			c := startClusterWith(t, vc, pool, e, Options{}, nil)
			for range 4 {
				conn := dial(t, c, netip.Addr{})
				if got := readLine(t, bufio.NewReader(conn)); got != "live" {
					t.Fatalf("served by %q", got)
				}
				conn.Close()
			}
			if n := countEvents(&pl, "s0: connects refused"); n < 2 {
				t.Errorf("%d refused connects reported, want at least 2: %q", n, pl.events())
			}
			if slices.ContainsFunc(pl.events(), func(e string) bool { return strings.HasPrefix(e, "s1") }) {
				t.Errorf("the live server was reported: %q", pl.events())
			}
		})
	}
}

// TestPassiveTCPResetBeforeFirstByte: over the epoll engine, a server
// that accepts and resets before saying anything is reported; one that
// answers first and then resets is not, and its answer breaks the run.
func TestPassiveTCPResetBeforeFirstByte(t *testing.T) {
	reset := func(c *net.TCPConn) {
		time.Sleep(20 * time.Millisecond) // the proxy is connected by now
		c.SetLinger(0)
		c.Close()
	}
	talkThenReset := func(c *net.TCPConn) {
		io.WriteString(c, "hello\n")
		time.Sleep(20 * time.Millisecond)
		c.SetLinger(0)
		c.Close()
	}
	for _, tc := range []struct {
		name   string
		handle func(*net.TCPConn)
		want   []string
	}{
		{"silent", reset, []string{"s0: resets before the first byte", "s0: resets before the first byte"}},
		{"talks first", talkThenReset, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, "b", tc.handle)
			vc := testClusterConfig([]netip.AddrPort{b.addr})
			pool := testPool(t, vc)
			var pl passiveLog
			pool.SetPassive(pl.fn)
			c := startClusterWith(t, vc, pool, newTestEpoll(t), Options{}, nil)
			for range 2 {
				conn := dial(t, c, netip.Addr{})
				io.ReadAll(conn) // until the reset or EOF
				conn.Close()
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(pl.events()) < len(tc.want) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			if got := pl.events(); !slices.Equal(got, tc.want) {
				t.Errorf("passive events %q, want %q", got, tc.want)
			}
		})
	}
}
