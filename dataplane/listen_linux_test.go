package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func sockoptInt(t *testing.T, ln *net.TCPListener, level, opt int) int {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func TestListenSetsFreebind(t *testing.T) {
	for _, tt := range []struct {
		addr       string
		level, opt int
	}{
		{"127.0.0.1:0", unix.SOL_IP, unix.IP_FREEBIND},
		{"[::1]:0", unix.SOL_IPV6, unix.IPV6_FREEBIND},
	} {
		ln, err := listenTCP(context.Background(), netip.MustParseAddrPort(tt.addr))
		if err != nil {
			if tt.addr[0] == '[' {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatal(err)
		}
		if v := sockoptInt(t, ln, tt.level, tt.opt); v != 1 {
			t.Errorf("%s: freebind = %d, want 1", tt.addr, v)
		}
		if v := sockoptInt(t, ln, unix.SOL_SOCKET, unix.SO_REUSEADDR); v != 1 {
			t.Errorf("%s: SO_REUSEADDR = %d, want 1", tt.addr, v)
		}
		ln.Close()
	}
}

// TestListenNonLocalVIP binds a VIP that no interface has, the way the
// backup does before a failover, inside a fresh network namespace so the
// host sees nothing. It sends no traffic.
func TestListenNonLocalVIP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace of its own")
	}
	vip := netip.MustParseAddrPort("198.18.0.100:8080")
	errs := make(chan error, 2)
	go func() {
		// The thread moves to the new namespace and is never unlocked, so
		// it exits with the goroutine instead of serving other goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errs <- err
			errs <- nil
			return
		}
		// With lo down a new namespace has no local table and binds
		// anything; with it up it behaves like a box without the VIP.
		if err := setLoopbackUp(); err != nil {
			errs <- err
			errs <- nil
			return
		}
		plain, err := net.Listen("tcp4", vip.String())
		if err == nil {
			plain.Close()
			errs <- errors.New("binding a non-local address without IP_FREEBIND worked; the test proves nothing")
		} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			errs <- err
		} else {
			errs <- nil
		}
		ln, err := listenTCP(context.Background(), vip)
		if err == nil {
			if got := ln.Addr().(*net.TCPAddr).AddrPort(); got != vip {
				err = errors.New("bound " + got.String())
			}
			ln.Close()
		}
		errs <- err
	}()
	if err := <-errs; err != nil {
		t.Fatalf("without freebind: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("with freebind: %v", err)
	}
}

// setLoopbackUp sets IFF_UP on lo in the calling thread's namespace.
func setLoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
