//go:build linux

package dataplane

import (
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// udpNetnsEnv marks the copy of the test binary that runs inside a
// network namespace of its own.
const udpNetnsEnv = "TANDEM_UDP_TEST_NETNS"

// TestUDPWildcardAnswersFromAddressAsked binds the cluster to 0.0.0.0 and
// asks it on 127.0.0.1, 127.0.0.2 and 127.0.0.3: each answer must come
// from the address asked, which only IP_PKTINFO makes true (a plain
// socket would answer from the route's preferred source). A wildcard
// bind is only done inside a fresh network namespace: the test re-runs
// itself there (needs root), so nothing is exposed on the host.
func TestUDPWildcardAnswersFromAddressAsked(t *testing.T) {
	if os.Getenv(udpNetnsEnv) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace of its own")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestUDPWildcardAnswersFromAddressAsked$", "-test.count=1")
		if testing.Verbose() {
			cmd.Args = append(cmd.Args, "-test.v")
		}
		cmd.Env = append(os.Environ(), udpNetnsEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		t.Logf("in a new network namespace:\n%s", out)
		if err != nil {
			t.Fatalf("namespaced run: %v", err)
		}
		return
	}
	if err := setLoopbackUp(); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	a := startUDPBackend(t, "a", false)
	vc := udpClusterConfig(a)
	vc.VIP = "0.0.0.0"
	c := startUDPCluster(t, vc, testPool(t, vc), UDPOptions{}, nil)
	port := c.ListenAddr().Port()
	conn := udpClient(t, netip.MustParseAddr("127.0.0.1"))
	for _, vip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.2"} {
		// mustAsk checks that the answer's source is the address asked.
		mustAsk(t, conn, netip.AddrPortFrom(netip.MustParseAddr(vip), port), "to "+vip)
	}
}
