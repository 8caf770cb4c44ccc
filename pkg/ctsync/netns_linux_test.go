package ctsync

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Helpers for the root-only tests: every namespace is named
// ctsh-<pid>-<test tag>-<box> and deleted in t.Cleanup; nothing is
// created or changed in the caller's namespace.

func needRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that builds network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, nftables rules and conntrack entries in them")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// lab names a test's namespaces.
type lab struct {
	t      testing.TB
	prefix string
}

func newLab(t testing.TB, tag string) *lab {
	needRoot(t)
	return &lab{t: t, prefix: fmt.Sprintf("ctsh-%d-%s", os.Getpid(), tag)}
}

// ns creates the namespace of one box, with lo up.
func (l *lab) ns(box string) string {
	l.t.Helper()
	name := l.prefix + "-" + box
	run(l.t, "ip", "netns", "add", name)
	l.t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(l.t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// in runs a command inside namespace ns.
func in(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// sysctl writes a sysctl of namespace ns (key in slash form).
func sysctl(t testing.TB, ns, key, val string) {
	t.Helper()
	in(t, ns, "sh", "-c", fmt.Sprintf("echo %s > /proc/sys/%s", val, key))
}

// nft loads a ruleset into namespace ns.
func nft(t testing.TB, ns, ruleset string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s\n%s", ns, err, out, ruleset)
	}
}

// openTable opens the conntrack table of namespace ns.
func openTable(t testing.TB, ns string) *Table {
	t.Helper()
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tb, err := OpenNetns(fd, nil)
	if err != nil {
		t.Fatalf("OpenNetns(%s): %v", ns, err)
	}
	t.Cleanup(func() { tb.Close() })
	return tb
}

// inNS runs fn on a thread inside namespace ns; sockets fn opens stay
// there.
func inNS(t testing.TB, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(orig)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			panic("cannot restore network namespace: " + err.Error())
		}
	}()
	fn()
}

// dumpAll returns the entries of tb with that mark, keyed.
func dumpAll(t testing.TB, tb *Table, mark, mask uint32) map[Key]Flow {
	t.Helper()
	out := map[Key]Flow{}
	if err := tb.Dump(mark, mask, func(f Flow) bool { out[f.Key()] = f; return true }); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return out
}
