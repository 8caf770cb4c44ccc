//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// TestUDPSourceAddresses: upstream sockets bind to the cluster's source
// addresses in turn, leaving out those the box does not have; a list with
// none of its addresses does not start.
func TestUDPSourceAddresses(t *testing.T) {
	be := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(be)
	vc.SourceAddresses = []string{"127.0.0.2", "198.18.0.250", "127.0.0.3"} // 198.18.0.250: not here
	c := startUDPCluster(t, vc, be.pool(t), UDPOptions{}, nil)
	for i := range 6 {
		conn := udpClient(t, netip.Addr{})
		if got := mustAsk(t, conn, c.ListenAddr(), fmt.Sprint(i)); got != "a" {
			t.Fatalf("flow %d answered by %q", i, got)
		}
	}
	bySource := map[netip.Addr]int{}
	be.mu.Lock()
	for from, n := range be.from {
		bySource[from.Addr()] += n
	}
	be.mu.Unlock()
	want := map[netip.Addr]int{netip.MustParseAddr("127.0.0.2"): 3, netip.MustParseAddr("127.0.0.3"): 3}
	if fmt.Sprint(bySource) != fmt.Sprint(want) {
		t.Errorf("the server saw the flows from %v, want %v", bySource, want)
	}

	vc.SourceAddresses = []string{"198.18.0.250"}
	c2, err := NewUDPCluster(vc, be.pool(t), UDPOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Listen(); err == nil || !strings.Contains(err.Error(), "none of [198.18.0.250] is an address of this box") {
		t.Errorf("Listen with no local source address: %v", err)
	}
}

// pool builds a pool of b alone.
func (b *udpBackend) pool(t testing.TB) *Pool {
	t.Helper()
	p, err := PoolFor(udpClusterConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUDPFlowsBeyondDescriptorLimit holds three times as many live flows
// as the process may have descriptors: a child process lowers its own
// RLIMIT_NOFILE to 300 and runs the check (lowFDFlows).
func TestUDPFlowsBeyondDescriptorLimit(t *testing.T) {
	if os.Getenv("TANDEM_TEST_LOWFD") == "1" {
		lowFDFlows(t)
		return
	}
	if err := UDPParking(); err != nil {
		t.Skipf("io_uring unusable here: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUDPFlowsBeyondDescriptorLimit$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "TANDEM_TEST_LOWFD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("the child with 300 descriptors failed: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "flows live") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

func lowFDFlows(t *testing.T) {
	const limit, flows = 300, 900
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = limit
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	be := startUDPBackend(t, "a", false)
	c := startUDPCluster(t, udpClusterConfig(be), be.pool(t), UDPOptions{}, nil)

	// One client socket on every address plays all the clients: each
	// flow sends from its own 127.0.x.y (IP_PKTINFO) and the same port.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	vip := c.ListenAddr()
	to := &unix.SockaddrInet4{Port: int(vip.Port()), Addr: vip.Addr().As4()}
	client := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, byte(10 + i/250), byte(1 + i%250)}) }
	round := func(tag string) {
		t.Helper()
		const batch = 100
		for base := 0; base < flows; base += batch {
			want := map[string]bool{}
			for i := base; i < base+batch; i++ {
				msg := fmt.Sprintf("%s-%d", tag, i)
				if err := sendFrom(fd, client(i), to, []byte(msg)); err != nil {
					t.Fatalf("send from %s: %v", client(i), err)
				}
				want["a|"+msg] = true
			}
			buf := make([]byte, 256)
			for range batch {
				n, from, err := unix.Recvfrom(fd, buf, 0)
				for err == unix.EINTR { // the Go runtime's preemption signal
					n, from, err = unix.Recvfrom(fd, buf, 0)
				}
				if err != nil {
					t.Fatalf("%s: answers %d..%d: %d missing: %v", tag, base, base+batch-1, len(want), err)
				}
				if sa, ok := from.(*unix.SockaddrInet4); !ok || sa.Port != int(vip.Port()) {
					t.Fatalf("answer from %v, want the VIP's port", from)
				}
				delete(want, string(buf[:n]))
			}
			if len(want) > 0 {
				t.Fatalf("%s: %d answers of %d..%d wrong or missing", tag, len(want), base, base+batch-1)
			}
		}
	}
	round("first")
	round("again") // the parked flows carry on
	// The last answer reaches its client while sendmmsg runs, before
	// the loop counts it.
	testutil.WaitFor(t, "every answer counted", func() bool { return c.Stats().DatagramsOut == 2*flows })
	st := c.Stats()
	ents, _ := os.ReadDir("/proc/self/fd")
	t.Logf("%d flows live, %d parked, %d descriptors open (limit %d)", st.Flows, st.Parked, len(ents), limit)
	if st.Flows != flows || st.FlowsTotal != flows || st.Parked < flows-limit {
		t.Errorf("flows %d (total %d), parked %d; want %d live, most parked", st.Flows, st.FlowsTotal, st.Parked, flows)
	}
	for r, n := range st.Drops {
		if n != 0 {
			t.Errorf("%d datagrams dropped (%s)", n, r)
		}
	}
	if st.DatagramsIn != 2*flows || st.DatagramsOut != 2*flows {
		t.Errorf("datagrams in %d out %d, want %d each", st.DatagramsIn, st.DatagramsOut, 2*flows)
	}
	if len(ents) >= limit {
		t.Errorf("%d descriptors open, at the limit %d", len(ents), limit)
	}
}

// sendFrom sends p to to from src (a local address) through fd, an
// unconnected socket bound to every address.
func sendFrom(fd int, src netip.Addr, to unix.Sockaddr, p []byte) error {
	oob := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
	pi.Spec_dst = src.As4()
	for {
		if err := unix.Sendmsg(fd, p, oob, to, 0); err != unix.EINTR {
			return err
		}
	}
}

// TestUDPSweepBounded: one sweep ends at most udpSweepMax idle flows and
// says there are more; the next ones end the rest.
func TestUDPSweepBounded(t *testing.T) {
	c := &UDPCluster{opts: UDPOptions{FlowIdle: time.Second}}
	l := &uloop{c: c, flows: map[netip.AddrPort]*uflow{}}
	const n = 2*udpSweepMax + 10
	for i := range n {
		f := &uflow{client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), 53),
			fd: -1, slot: -1, idx: int32(i)}
		if i%2 == 0 {
			f.last = int64(10 * time.Second) // recent: stays
		}
		l.list = append(l.list, f)
		l.flows[f.client] = f
	}
	c.flows.n.Store(n)
	l.now = int64(10*time.Second + time.Millisecond)
	var rounds []int
	for done := false; !done; {
		before := len(l.list)
		done = l.sweep()
		rounds = append(rounds, before-len(l.list))
		if len(rounds) > 10 {
			t.Fatal("the sweep never finished")
		}
	}
	if fmt.Sprint(rounds) != fmt.Sprint([]int{udpSweepMax, 5}) || len(l.list) != n-n/2 || len(l.flows) != len(l.list) {
		t.Errorf("ended per sweep %v, %d flows left (map %d); want [%d 5] and %d left", rounds, len(l.list), len(l.flows), udpSweepMax, n-n/2)
	}
}
