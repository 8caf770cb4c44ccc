//go:build linux

package dataplane

import (
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// TestUDPFlowMemory opens 10,000 live flows and reports what each costs
// the process: resident memory and Go heap. The flows come from 10,000
// source addresses in 127.0.0.0/8, sent from one client socket that
// picks each datagram's source with IP_PKTINFO (one socket per client
// would need 10,000 more descriptors than the limit leaves). The backend
// answers nothing, so nothing is sent to those addresses.
func TestUDPFlowMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 sockets")
	}
	const flows = 10000
	srv := startUDPBackend(t, "quiet", true)
	vc := udpClusterConfig(srv)
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{FlowIdle: time.Minute}, nil)
	vip := c.ListenAddr()

	conn := udpClient(t, netip.Addr{})
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	dst := &unix.SockaddrInet4{Port: int(vip.Port()), Addr: vip.Addr().As4()}
	var ctrl [udpCtrlSize]byte
	send := func(i int) {
		src := netip.AddrFrom4([4]byte{127, 1 + byte(i>>16), byte(i >> 8), byte(i)})
		n := udpSetPktinfo(&ctrl, src, 0, false)
		var serr error
		rc.Write(func(fd uintptr) bool {
			serr = unix.Sendmsg(int(fd), udpQuery, ctrl[:n], dst, 0)
			return serr != unix.EAGAIN
		})
		if serr != nil {
			t.Fatalf("sendmsg from %s: %v", src, serr)
		}
	}
	// A few flows first, so the loop's batches and tables exist before
	// the baseline.
	for i := range 10 {
		send(i)
	}
	testutil.WaitFor(t, "the first flows", func() bool { return c.Stats().Flows == 10 })
	rss0, heap0 := udpMemNow()
	for i := 10; i < flows; i++ {
		send(i)
		if i%500 == 0 { // pace: the VIP socket's buffer is big, not endless
			testutil.WaitFor(t, "flows to open", func() bool { return c.Stats().Flows > int64(i)-100 })
		}
	}
	testutil.WaitFor(t, "10,000 flows", func() bool { return c.Stats().Flows == flows })
	rss1, heap1 := udpMemNow()
	if st := c.Stats(); st.Drops[DropMaxConns] != 0 || st.Flows != flows {
		t.Fatalf("flows %d, max_conns drops %d", st.Flows, st.Drops[DropMaxConns])
	}
	n := float64(flows - 10)
	t.Logf("per flow at %d flows: %.0f bytes RSS, %.0f bytes Go heap (fds open: %d)",
		flows, float64(rss1-rss0)/n, float64(heap1-heap0)/n, udpOpenFDs())
	if per := float64(rss1-rss0) / n; per > 1024 && !udpRaceEnabled { // the race detector shadows memory
		t.Errorf("%.0f bytes of RSS per flow; want at most 1 KiB", per)
	}
}

// udpMemNow returns resident bytes and Go heap in use after a collection.
func udpMemNow() (rss, heap int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, _ := os.ReadFile("/proc/self/statm")
	f := strings.Fields(string(b))
	if len(f) > 1 {
		pages, _ := strconv.ParseInt(f[1], 10, 64)
		rss = pages * int64(os.Getpagesize())
	}
	return rss, int64(ms.HeapInuse)
}

// udpOpenFDs counts the process's descriptors.
func udpOpenFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}
