package healthcheck

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// daemon is a real server a test runs: slapd, exim.
type daemon struct {
	cmd *exec.Cmd
	log string
}

// startDaemon runs path with args in the foreground, its output in
// logFile, and stops it by its PID (SIGTERM, then SIGKILL after 5 s)
// when the test ends.
func startDaemon(t *testing.T, logFile, path string, args ...string) *daemon {
	t.Helper()
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		out.Close()
	})
	return &daemon{cmd: cmd, log: logFile}
}

// waitListening waits up to 10 s for addr to accept a connection.
func (d *daemon) waitListening(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(d.log)
			t.Fatalf("%s does not listen on %s: %v; its output:\n%s", filepath.Base(d.cmd.Path), addr, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback address:port nothing listens on.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	return closedPort(t)
}

// needBinary skips the test when a server it runs is not installed.
func needBinary(t *testing.T, path, pkg string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping the test against a real %s", filepath.Base(path))
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s is not installed (Debian package %s; scripts/deps.sh installs it)", path, pkg)
	}
}

func itoa(n uint16) string { return strconv.Itoa(int(n)) }
