package vip

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// ipCmd runs iproute2 and fails the test on error.
func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// twoNamespaces builds A and B joined by veth va (198.18.200.1/24, in A)
// and vb (198.18.200.2/24, in B). Nothing is created in the caller's
// namespace; both namespaces are deleted in t.Cleanup.
func twoNamespaces(t *testing.T) (nsA, nsB string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	prefix := fmt.Sprintf("tvip-%d-%s", os.Getpid(), strings.ToLower(t.Name()))
	if len(prefix) > 40 {
		prefix = prefix[:40]
	}
	nsA, nsB = prefix+"-a", prefix+"-b"
	for _, ns := range []string{nsA, nsB} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipCmd(t, "-n", nsA, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", nsB)
	ipCmd(t, "-n", nsA, "addr", "add", "198.18.200.1/24", "dev", "va")
	ipCmd(t, "-n", nsB, "addr", "add", "198.18.200.2/24", "dev", "vb")
	for _, ns := range []string{nsA, nsB} {
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", nsA, "link", "set", "va", "up")
	ipCmd(t, "-n", nsB, "link", "set", "vb", "up")
	return nsA, nsB
}

// inNamed runs fn with the calling thread in the named namespace.
func inNamed(t *testing.T, name string, fn func() error) {
	t.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := inNetns(ns, fn); err != nil {
		t.Fatal(err)
	}
}

func linkMAC(t *testing.T, ns, dev string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(ipCmd(t, "-j", "-n", ns, "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse link %s: %v", dev, err)
	}
	return links[0].Address
}

func hasAddr(t *testing.T, ns, dev, cidr string) bool {
	t.Helper()
	return strings.Contains(ipCmd(t, "-n", ns, "-o", "addr", "show", "dev", dev), " "+cidr+" ")
}

func neighMAC(t *testing.T, ns, dev, ip string) string {
	t.Helper()
	var n []struct {
		LLAddr string `json:"lladdr"`
	}
	if err := json.Unmarshal([]byte(ipCmd(t, "-j", "-n", ns, "neigh", "show", "to", ip, "dev", dev)), &n); err != nil || len(n) == 0 {
		return ""
	}
	return n[0].LLAddr
}

func TestNetnsClaimReleaseReconcile(t *testing.T) {
	nsA, nsB := twoNamespaces(t)
	const vipCIDR, vipIP = "198.18.200.100/24", "198.18.200.100"
	vip := netip.MustParsePrefix(vipCIDR)
	macA := linkMAC(t, nsA, "va")
	// B believes the VIP lives elsewhere (the old master).
	ipCmd(t, "-n", nsB, "neigh", "add", vipIP, "lladdr", "02:00:00:00:00:99", "dev", "vb", "nud", "stale")

	var m *Manager
	inNamed(t, nsA, func() (err error) {
		m, err = New("va", []netip.Prefix{vip}, GARP{Count: 3, Interval: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
		return err
	})
	t.Cleanup(func() { m.Close() })

	// From here on, the test goroutine is back in the root namespace; the
	// Manager must keep working in A.
	ctx := context.Background()
	if err := m.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if err := m.Claim(ctx); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if !hasAddr(t, nsA, "va", vipCIDR) {
		t.Fatalf("%s not on va in A:\n%s", vipCIDR, ipCmd(t, "-n", nsA, "addr"))
	}
	if h := m.Held(); len(h) != 1 || !h[0].Present {
		t.Errorf("Held = %v, want present", h)
	}
	testutil.WaitWithin(t, 2*time.Second, "B's neighbour entry for the VIP points at A", func() bool {
		return neighMAC(t, nsB, "vb", vipIP) == macA
	})
	if st := m.Stats(); st.GARPsSent == 0 || st.Errors != 0 {
		t.Errorf("Stats = %+v", st)
	}

	if err := m.Claim(ctx); err != nil {
		t.Errorf("second Claim (address present): %v", err)
	}

	ipCmd(t, "-n", nsA, "addr", "del", vipCIDR, "dev", "va")
	got, err := m.Reconcile(ctx)
	if err != nil || !slices.Equal(got, []netip.Prefix{vip}) {
		t.Fatalf("Reconcile = %v, %v; want [%v]", got, err, vip)
	}
	if !hasAddr(t, nsA, "va", vipCIDR) {
		t.Fatal("Reconcile did not re-add the VIP")
	}

	if err := m.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if hasAddr(t, nsA, "va", vipCIDR) {
		t.Fatal("VIP still on va after Release")
	}
	if !hasAddr(t, nsA, "va", "198.18.200.1/24") {
		t.Fatal("Release removed the interface's own address")
	}
	if err := m.Release(); err != nil {
		t.Errorf("second Release (address absent): %v", err)
	}
}

func TestNetnsWatchCarrier(t *testing.T) {
	nsA, nsB := twoNamespaces(t)
	ns, err := netns.GetFromName(nsA)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan LinkEvent, 16)
	done := make(chan error, 1)
	go func() {
		// The thread stays locked and dies with the goroutine, so it never
		// goes back to the pool while in A.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		done <- WatchCarrier(ctx, []string{"va", "late0"}, events, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchCarrier: %v", err)
		}
	})

	expect := func(iface string, up bool) {
		t.Helper()
		timeout := time.After(time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Iface == iface && ev.Up == up {
					return
				}
				t.Logf("skipping %+v", ev)
			case <-timeout:
				t.Fatalf("no %s up=%v within 1s", iface, up)
			}
		}
	}
	expect("va", true)
	expect("late0", false)

	for range 2 { // pull and restore the cable twice: the watch keeps going
		ipCmd(t, "-n", nsB, "link", "set", "vb", "down")
		expect("va", false)
		ipCmd(t, "-n", nsB, "link", "set", "vb", "up")
		expect("va", true)
	}
	ipCmd(t, "-n", nsA, "link", "set", "va", "down") // admin down counts too
	expect("va", false)

	ipCmd(t, "-n", nsA, "link", "add", "late0", "type", "veth", "peer", "name", "late1")
	ipCmd(t, "-n", nsA, "link", "set", "late1", "up")
	ipCmd(t, "-n", nsA, "link", "set", "late0", "up")
	expect("late0", true)
	ipCmd(t, "-n", nsA, "link", "del", "late0")
	expect("late0", false)
}
