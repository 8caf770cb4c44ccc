//go:build linux

package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tandem-lb/tandem/internal/testutil"
)

// The benchmarks compare the EpollEngine with a plain two-goroutine
// io.Copy proxy (copyProxy, which splices, as Go does between TCP
// connections) on loopback. The load and the backend run in this process,
// the proxy (with the same accept path for every engine) in a child
// process, whose CPU time per request is reported. Run them with, e.g.
//
//	go test ./dataplane/ -run '^$' -bench Epoll -benchtime 3s -count 3

// copyProxy is the baseline: one goroutine per direction, io.Copy, write
// shutdown at EOF, close both at the end.
func copyProxy(client, server *net.TCPConn, done func(Traffic)) {
	var in int64
	var wg sync.WaitGroup
	wg.Go(func() {
		in, _ = io.Copy(server, client)
		server.CloseWrite()
	})
	out, _ := io.Copy(client, server)
	client.CloseWrite()
	wg.Wait()
	client.Close()
	server.Close()
	done(Traffic{In: uint64(in), Out: uint64(out)})
}

// startBenchProxy starts a front listener that proxies every connection
// to backend with the named engine and returns its address. The accept
// path is the same for all: a goroutine per connection dials the backend
// and hands both connections over.
func startBenchProxy(tb testing.TB, engine string, backend *net.TCPAddr) *net.TCPAddr {
	var proxy func(c, s *net.TCPConn)
	done := func(Traffic) {}
	var rawAccept func(e *EpollEngine) *net.TCPAddr
	switch {
	case engine == "cluster" || engine == "cluster-slow":
		// A TCPCluster over an EpollEngine: the fast accept path
		// (accept4, ConnectProxy), or Go's (Accept, Dial, Proxy).
		e, err := NewEpollEngine(0, nil)
		if err != nil {
			tb.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() { e.Run(ctx); close(ran) }()
		tb.Cleanup(func() { cancel(); <-ran })
		clusterSlowPath = engine == "cluster-slow"
		ap := backend.AddrPort()
		vc := testClusterConfig([]netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())})
		c := startClusterWith(tb, vc, testPool(tb, vc), e, Options{}, nil)
		a := c.ListenAddr()
		return net.TCPAddrFromAddrPort(a)
	case strings.HasPrefix(engine, "epoll"):
		e, err := NewEpollEngine(0, nil)
		if err != nil {
			tb.Fatal(err)
		}
		// Variants for A/B runs: epoll-raw (ProxyFD behind a bare accept
		// path), epoll-block, epoll-copy, epoll-splice,
		// epoll-after=N, epoll-pipe=N, epoll-loops=N (first).
		for _, v := range strings.Split(engine, "-")[1:] {
			switch {
			case v == "block":
				e.blockWait = true
			case v == "raw":
				rawAccept = func(e *EpollEngine) *net.TCPAddr { return benchRawAccept(tb, e, backend) }
			case v == "copy":
				e.spliceAfter = -1
			case v == "splice":
				e.spliceAfter = 0
			case strings.HasPrefix(v, "after="):
				e.spliceAfter, _ = strconv.ParseInt(v[6:], 10, 64)
			case strings.HasPrefix(v, "pipe="):
				e.pipeSize, _ = strconv.Atoi(v[5:])
			case strings.HasPrefix(v, "loops="):
				k, _ := strconv.Atoi(v[6:])
				e, _ = NewEpollEngine(k, nil)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() { e.Run(ctx); close(ran) }()
		tb.Cleanup(func() { cancel(); <-ran })
		if rawAccept != nil {
			return rawAccept(e)
		}
		proxy = func(c, s *net.TCPConn) { e.Proxy(c, s, time.Minute, done) }
	case engine == "goroutines":
		proxy = func(c, s *net.TCPConn) { copyProxy(c, s, done) }
	default:
		tb.Fatalf("unknown engine %q", engine)
	}
	// No TCP keep-alive probes (four setsockopts per socket in Go's
	// default): the engines have idle timeouts.
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ln := l.(*net.TCPListener)
	tb.Cleanup(func() { ln.Close() })
	dialer := net.Dialer{KeepAlive: -1}
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				s, err := dialer.Dial("tcp", backend.String())
				if err != nil {
					c.Close()
					return
				}
				proxy(c, s.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// benchRawAccept is an accept path without Go's net package, for
// ProxyFD: one goroutine accepts and connects with bare system calls
// (a blocking connect costs no more than a nonblocking one on loopback,
// where the handshake happens inside the call).
func benchRawAccept(tb testing.TB, e *EpollEngine, backend *net.TCPAddr) *net.TCPAddr {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		tb.Fatal(err)
	}
	sa, _ := unix.Getsockname(lfd)
	tb.Cleanup(func() { unix.Shutdown(lfd, unix.SHUT_RDWR); unix.Close(lfd) })
	to := &unix.SockaddrInet4{Port: backend.Port}
	copy(to.Addr[:], backend.IP.To4())
	done := func(Traffic) {}
	go func() {
		for {
			cfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				return
			}
			sfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				if err = unix.Connect(sfd, to); err != nil {
					unix.Close(sfd)
				}
			}
			if err != nil {
				unix.Close(cfd)
				continue
			}
			unix.SetNonblock(sfd, true)
			e.ProxyFD(cfd, sfd, time.Minute, done)
		}
	}()
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}
}

// TestEpollBenchProxyHelper is the proxy process of the benchmarks, run
// by benchProxy with EPOLL_BENCH_PROXY set; it serves until its stdin
// closes.
func TestEpollBenchProxyHelper(t *testing.T) {
	engine := os.Getenv("EPOLL_BENCH_PROXY")
	if engine == "" {
		t.Skip("the proxy process of the Epoll benchmarks")
	}
	backend, err := net.ResolveTCPAddr("tcp", os.Getenv("EPOLL_BENCH_BACKEND"))
	if err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv("EPOLL_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("ADDR %s\n", startBenchProxy(t, engine, backend))
	io.Copy(io.Discard, os.Stdin)
}

// benchProxy runs the proxy in a process of its own (this test binary,
// as TestEpollBenchProxyHelper), as in production, so its CPU time can be
// told from the load's and the backend's: on a shared machine, proxy CPU
// per request is a steadier figure than requests per second. It returns
// the proxy's address and a function giving the CPU time it has used.
func benchProxy(b *testing.B, engine string, backend net.Addr) (*net.TCPAddr, func() time.Duration) {
	b.Helper()
	if engine == "haproxy" {
		return benchHAProxy(b, backend)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEpollBenchProxyHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EPOLL_BENCH_PROXY="+engine, "EPOLL_BENCH_BACKEND="+backend.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		t := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		cmd.Wait()
		t.Stop()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		b.Fatalf("proxy process said %q, %v", line, err)
	}
	front, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return front, procCPU(cmd.Process.Pid)
}

// benchHAProxy runs HAProxy (mode tcp, nbthread GOMAXPROCS) as the proxy,
// for reference; the benchmark skips if it is not installed.
func benchHAProxy(b *testing.B, backend net.Addr) (*net.TCPAddr, func() time.Duration) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Skip("haproxy not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	front := ln.Addr().(*net.TCPAddr)
	ln.Close()
	cfg := filepath.Join(b.TempDir(), "haproxy.cfg")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`global
	nbthread %d
	maxconn 9000
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend f
	bind %s
	default_backend b
backend b
	server s %s
`, runtime.GOMAXPROCS(0), front, backend)), 0o600)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testutil.WaitWithin(b, 2*time.Second, "haproxy to listen on "+front.String(), func() bool {
		c, err := net.Dial("tcp", front.String())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return front, procCPU(cmd.Process.Pid)
}

// procCPU returns a function giving the CPU time process pid has used.
func procCPU(pid int) func() time.Duration {
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	return func() time.Duration {
		raw, err := os.ReadFile(stat)
		if err != nil {
			return 0
		}
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ 100
	}
}

// benchServe runs handle for each connection to a loopback listener.
func benchServe(b *testing.B, handle func(*net.TCPConn)) net.Addr {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr()
}

// benchEngines are the engines compared; EPOLL_BENCH_ENGINES (comma
// separated) picks others, e.g. "haproxy,epoll,epoll-block,epoll-splice",
// or "cluster" and "cluster-slow": a TCPCluster over an EpollEngine, on
// the fast accept path and on Go's.
var benchEngines = func() []string {
	if s := os.Getenv("EPOLL_BENCH_ENGINES"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"goroutines", "epoll"}
}()

const benchMsg = 100 // request and response size, as an HTTP GET of 100 bytes

// BenchmarkEpollShortConn: a new connection per request, 50 at a time;
// the server answers and closes, like HTTP with Connection: close, and
// the client reads to the EOF.
func BenchmarkEpollShortConn(b *testing.B) {
	back := benchServe(b, func(c *net.TCPConn) {
		buf := make([]byte, benchMsg)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf)
		}
	})
	for _, eng := range benchEngines {
		b.Run(eng, func(b *testing.B) {
			front, cpu := benchProxy(b, eng, back)
			b.SetParallelism(25)
			b.ResetTimer()
			cpu0 := cpu()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, benchMsg)
				for pb.Next() {
					c, err := net.DialTCP("tcp", nil, front)
					if err != nil {
						b.Error(err)
						return
					}
					c.Write(buf)
					// Read to the EOF, so the proxy and the backend close
					// first and keep the TIME_WAITs on their listening
					// ports: closing first, the client would strand one
					// ephemeral port per request for a minute.
					if n, err := io.ReadFull(c, buf); err != nil || n != benchMsg {
						b.Error(n, err)
					}
					if n, _ := c.Read(buf); n != 0 {
						b.Error("more than the response")
					}
					c.Close()
				}
			})
			reportRate(b, cpu()-cpu0)
		})
	}
}

// reportRate reports requests per second and the proxy's CPU per request.
func reportRate(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "proxy-µs/req")
}

// BenchmarkEpollKeepAlive: request and response of 100 bytes over 100
// persistent connections.
func BenchmarkEpollKeepAlive(b *testing.B) {
	back := benchServe(b, func(c *net.TCPConn) {
		buf := make([]byte, benchMsg)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	for _, eng := range benchEngines {
		b.Run(eng, func(b *testing.B) {
			front, cpu := benchProxy(b, eng, back)
			b.SetParallelism(50)
			b.ResetTimer()
			cpu0 := cpu()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.DialTCP("tcp", nil, front)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				buf := make([]byte, benchMsg)
				for pb.Next() {
					c.Write(buf)
					if _, err := io.ReadFull(c, buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, cpu()-cpu0)
		})
	}
}

// BenchmarkEpollBulk: 1 and 4 streams of 128 KiB writes to a server that
// discards, like iperf3.
func BenchmarkEpollBulk(b *testing.B) {
	back := benchServe(b, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		c.Write([]byte{1}) // all read
	})
	const chunk = 128 << 10
	for _, streams := range []int{1, 4} {
		for _, eng := range benchEngines {
			b.Run(eng+"/streams="+string(rune('0'+streams)), func(b *testing.B) {
				front, cpu := benchProxy(b, eng, back)
				b.SetBytes(chunk)
				buf := make([]byte, chunk)
				var wg sync.WaitGroup
				var next sync.Mutex
				left := b.N
				b.ResetTimer()
				cpu0 := cpu()
				for range streams {
					wg.Go(func() {
						c, err := net.DialTCP("tcp", nil, front)
						if err != nil {
							b.Error(err)
							return
						}
						defer c.Close()
						for {
							next.Lock()
							if left == 0 {
								next.Unlock()
								break
							}
							left--
							next.Unlock()
							if _, err := c.Write(buf); err != nil {
								b.Error(err)
								return
							}
						}
						c.CloseWrite()
						c.Read(buf[:1])
					})
				}
				wg.Wait()
				bits := float64(b.N) * chunk * 8 / 1e9
				b.ReportMetric(bits/b.Elapsed().Seconds(), "Gbit/s")
				b.ReportMetric(bits/(cpu()-cpu0).Seconds(), "Gbit/proxy-cpu-s")
			})
		}
	}
}
