//go:build linux

package dataplane

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// rawListener is a blocking loopback listener on a bare descriptor, so
// the test's own ends of the connections cost no Go memory.
func rawListener(t *testing.T) (fd int, addr *unix.SockaddrInet4) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, sa.(*unix.SockaddrInet4)
}

// rawDial connects a blocking bare socket.
func rawDial(t *testing.T, addr *unix.SockaddrInet4) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, addr); err != nil {
		t.Fatal(err)
	}
	return fd
}

// memNow is the heap and stack in use after a full collection.
func memNow() (heap, stack uint64) {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

// rssNow is the resident set size in bytes.
func rssNow() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// TestEpollIdleMemory proxies 2,000 idle connections and checks the
// engine holds under 1 KiB of heap and stack for each. The clients and
// backends are bare descriptors, so the growth is the engine's alone (and
// the Go connections handed to Proxy are gone once it closes them).
func TestEpollIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 connections")
	}
	const n = 2000
	h := newEpollHarness(t, 2, nil)
	bfd, baddr := rawListener(t)
	faddr := h.front.Addr().(*net.TCPAddr)
	front := &unix.SockaddrInet4{Port: faddr.Port, Addr: [4]byte{127, 0, 0, 1}}
	fds := make([]int, 0, 2*n)
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	done := func(Traffic) {}
	heap0, stack0 := memNow()
	rss0 := rssNow()
	for range n {
		cfd := rawDial(t, front)
		fds = append(fds, cfd)
		pc, err := h.front.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		ps, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: baddr.Port})
		if err != nil {
			t.Fatal(err)
		}
		sfd, _, err := unix.Accept4(bfd, unix.SOCK_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, sfd)
		h.e.Proxy(pc, ps, 0, done)
	}
	// One byte through each, so every connection is registered and works.
	b := make([]byte, 1)
	for i := 0; i < len(fds); i += 2 {
		if _, err := unix.Write(fds[i], []byte{'x'}); err != nil {
			t.Fatal(err)
		}
		if k, err := unix.Read(fds[i+1], b); k != 1 || err != nil {
			t.Fatalf("conn %d: %d, %v", i/2, k, err)
		}
	}
	if s := h.e.Stats(); s.Conns != n {
		t.Fatalf("conns %d", s.Conns)
	}
	heap1, stack1 := memNow()
	rss1 := rssNow()
	per := (float64(heap1+stack1) - float64(heap0+stack0)) / n
	t.Logf("%d idle connections: %.0f B heap+stack each (heap %+d, stack %+d); RSS %+.1f KiB each (whole test process)",
		n, per, int64(heap1-heap0), int64(stack1-stack0), (float64(rss1)-float64(rss0))/n/1024)
	if per > 1024 {
		t.Fatalf("%.0f B per idle connection, want ≤ 1 KiB", per)
	}
}
