package dataplane

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
)

// TestClusterOverEpollEngine runs the accept path over the event-loop
// engine: spread, half-close, byte counts and the counters settled by a
// done that comes from another goroutine.
func TestClusterOverEpollEngine(t *testing.T) {
	eng, err := NewEpollEngine(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { eng.Run(ctx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran })

	a, b := startBackend(t, "a", echoNamed("a")), startBackend(t, "b", echoNamed("b"))
	vc := testClusterConfig([]netip.AddrPort{a.addr, b.addr})
	vc.Servers[1].SendProxy = true // b reads the header as data and echoes it
	c := startClusterWith(t, vc, testPool(t, vc), eng, Options{}, nil)

	seen := map[string]int{}
	for range 4 {
		conn := dial(t, c, netip.Addr{})
		r := bufio.NewReader(conn)
		name := readLine(t, r)
		seen[name]++
		io.WriteString(conn, "ping\n")
		conn.CloseWrite()
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		want := "ping\nbye\n"
		if name == "b" {
			hdr := appendProxyHeader(nil, conn.LocalAddr().(*net.TCPAddr).AddrPort(), c.ListenAddr())
			want = string(hdr) + want
		}
		if string(rest) != want {
			t.Fatalf("%s: read %q, want %q", name, rest, want)
		}
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("spread %v", seen)
	}
	eventually(t, "connections to finish", func() bool { return c.Stats().Active == 0 })
	st := c.Stats()
	hdrLen := uint64(ppv2FixedLen + ppv2TCP4Len)
	if st.Total != 4 || st.BytesIn != 4*5 || st.BytesOut != 4*(2+5+4)+2*hdrLen {
		t.Errorf("total=%d in=%d out=%d", st.Total, st.BytesIn, st.BytesOut)
	}
}
