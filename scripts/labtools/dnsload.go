package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"
)

// The DNS clients of scripts/bench-udp.sh: `dnslat` asks bench.test A at
// a fixed rate and prints round-trip percentiles; `dnsflows` opens many
// flows (client address and port pairs), each with one answered query,
// and holds them while the script reads the relay's memory.

// dnsQuery is "bench.test. IN A" with id.
func dnsQuery(id uint16) []byte {
	b := []byte{0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b, id)
	return append(b, 5, 'b', 'e', 'n', 'c', 'h', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1)
}

// dnsAnswers: b is a reply to id with QR set and rcode NOERROR.
func dnsAnswers(b []byte, id uint16) bool {
	return len(b) >= 12 && binary.BigEndian.Uint16(b) == id && b[2]&0x80 != 0 && b[3]&0x0f == 0
}

// latReport is what dnslat prints: queries sent, answered and lost, and
// round-trip percentiles in µs (-1 with no answer). The field order is
// the alphabetical one the script's first version printed.
type latReport struct {
	Lost   int     `json:"lost"`
	MaxUS  float64 `json:"max_us"`
	OK     int     `json:"ok"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P999US float64 `json:"p999_us"`
	P99US  float64 `json:"p99_us"`
	Sent   int     `json:"sent"`
}

// floorPercentile is the value at index floor(q·(n-1)) of sorted values.
func floorPercentile[T any](sorted []T, q float64) T {
	return sorted[int(q*float64(len(sorted)-1))]
}

// newLatReport summarizes round trips (in any order).
func newLatReport(rtts []time.Duration, sent, lost int) latReport {
	slices.Sort(rtts)
	pct := func(q float64) float64 {
		if len(rtts) == 0 {
			return -1
		}
		return float64(floorPercentile(rtts, q).Nanoseconds()) / 1000
	}
	return latReport{Sent: sent, OK: len(rtts), Lost: lost,
		P50US: pct(0.50), P90US: pct(0.90), P99US: pct(0.99), P999US: pct(0.999), MaxUS: pct(1)}
}

func cmdDNSLat(args []string) error {
	fs := flag.NewFlagSet("dnslat", flag.ContinueOnError)
	target := fs.String("target", "127.0.0.1:5300", "address:port of the DNS server")
	rate := fs.Int("rate", 5000, "queries per second, all sockets")
	conns := fs.Int("conns", 20, "sockets")
	dur := fs.Duration("duration", 5*time.Second, "run time (at most 1h)")
	timeout := fs.Duration("timeout", time.Second, "answer timeout")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() != 0 || *conns < 1 || *rate < *conns || *dur <= 0 || *dur > maxDuration || *timeout <= 0 {
		return usageError("-conns >= 1, -rate >= -conns, -duration in (0, 1h], -timeout > 0")
	}
	r, err := dnsLatency(*target, *rate, *conns, *dur, *timeout)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// dnsLatency asks target from conns sockets, rate queries per second in
// all, for dur, one query in flight per socket.
func dnsLatency(target string, rate, conns int, dur, timeout time.Duration) (latReport, error) {
	period := time.Duration(int64(time.Second) * int64(conns) / int64(rate))
	var (
		mu         sync.Mutex
		rtts       []time.Duration
		sent, lost int
		firstErr   error
		wg         sync.WaitGroup
	)
	end := time.Now().Add(dur)
	for range conns {
		wg.Go(func() {
			c, err := net.Dial("udp", target)
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			defer c.Close()
			buf := make([]byte, 1500)
			var mine []time.Duration
			s, l := 0, 0
			time.Sleep(time.Duration(rand.Int64N(int64(period))))
			next := time.Now()
			for time.Now().Before(end) {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(period)
				id := uint16(rand.Uint32())
				t0 := time.Now()
				s++
				if _, err := c.Write(dnsQuery(id)); err != nil {
					l++
					continue
				}
				c.SetReadDeadline(t0.Add(timeout))
				for {
					n, err := c.Read(buf)
					if err != nil {
						l++
						break
					}
					if dnsAnswers(buf[:n], id) {
						mine = append(mine, time.Since(t0))
						break
					}
				}
			}
			mu.Lock()
			rtts = append(rtts, mine...)
			sent += s
			lost += l
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return latReport{}, firstErr
	}
	return newLatReport(rtts, sent, lost), nil
}

func cmdDNSFlows(args []string) error {
	fs := flag.NewFlagSet("dnsflows", flag.ContinueOnError)
	target := fs.String("target", "127.0.0.3:53", "IPv4 address:port of the DNS service")
	n := fs.Int("n", 100000, "flows (client address and port pairs, 1..250000)")
	socks := fs.Int("sockets", 100, "client sockets; each plays n/sockets clients")
	batch := fs.Int("batch", 200, "queries sent before their answers are read")
	timeout := fs.Duration("timeout", 2*time.Second, "answer timeout per batch (a query unanswered by then is sent once more)")
	maxHold := fs.Duration("max", 120*time.Second, "hold at most this long (at most 1h)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	ap, err := netip.ParseAddrPort(*target)
	if err != nil || !ap.Addr().Is4() {
		return usageError("-target: an IPv4 address and port")
	}
	if fs.NArg() != 0 || *n < 1 || *n > 250000 || *socks < 1 || *socks > 1000 || *batch < 1 || *timeout <= 0 ||
		*maxHold <= 0 || *maxHold > maxDuration {
		return usageError("-n 1..250000, -sockets 1..1000, -batch >= 1, -timeout > 0, -max in (0, 1h]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	f, err := openFlows(ap, *socks)
	if err != nil {
		return err
	}
	defer f.close()
	ok, failed, retried, err := f.ask(*n, *batch, *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "queries sent twice: %d\n", retried)
	fmt.Printf("ready %d %d\n", ok, failed)
	os.Stdout.Sync()
	select {
	case <-ctx.Done():
	case <-time.After(*maxHold):
	}
	return nil
}

// flowSource places flow i: on socket i%sockets, sending from 127.1.x.y,
// a = i/sockets, x = a/250, y = 1+a%250. Each flow is a client address
// and port pair of its own, without a descriptor per flow.
func flowSource(i, sockets int) (sock int, src [4]byte) {
	a := i / sockets
	return i % sockets, [4]byte{127, 1, byte(a / 250), byte(1 + a%250)}
}

// udpFlows is dnsflows' sockets: each bound to every address with a port
// of its own, choosing each datagram's source address with IP_PKTINFO
// (the answer comes back to the same socket).
type udpFlows struct {
	to  *syscall.SockaddrInet4
	fds []int
	oob []byte
	buf []byte
}

func openFlows(target netip.AddrPort, sockets int) (*udpFlows, error) {
	f := &udpFlows{to: &syscall.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()},
		oob: make([]byte, syscall.CmsgSpace(syscall.SizeofInet4Pktinfo)), buf: make([]byte, 1500)}
	for range sockets {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
		if err == nil {
			f.fds = append(f.fds, fd)
			err = syscall.Bind(fd, &syscall.SockaddrInet4{})
		}
		if err == nil {
			syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1<<20)
		}
		if err != nil {
			f.close()
			return nil, fmt.Errorf("socket: %w", err)
		}
	}
	h := (*syscall.Cmsghdr)(unsafePointer(&f.oob[0]))
	h.Level, h.Type = syscall.IPPROTO_IP, syscall.IP_PKTINFO
	h.SetLen(syscall.CmsgLen(syscall.SizeofInet4Pktinfo))
	return f, nil
}

func (f *udpFlows) close() {
	for _, fd := range f.fds {
		syscall.Close(fd)
	}
}

// send asks flow i's query (id uint16(i)) from its socket and address.
func (f *udpFlows) send(i int) error {
	s, src := flowSource(i, len(f.fds))
	spec := f.oob[syscall.CmsgLen(0)+4 : syscall.CmsgLen(0)+8] // in_pktinfo.ipi_spec_dst
	copy(spec, src[:])
	if err := syscall.Sendmsg(f.fds[s], dnsQuery(uint16(i)), f.oob, f.to, 0); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// collect reads answers until every flow of want has one or timeout
// passes; it deletes the flows answered from want.
func (f *udpFlows) collect(want map[int]bool, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for len(want) > 0 && time.Now().Before(deadline) {
		got := false
		for s, fd := range f.fds {
			for {
				m, _, err := syscall.Recvfrom(fd, f.buf, syscall.MSG_DONTWAIT)
				if err != nil {
					break
				}
				if m < 12 {
					continue
				}
				id := binary.BigEndian.Uint16(f.buf)
				// flow i is on socket i%len(fds) and asked with id uint16(i)
				for i := range want {
					if i%len(f.fds) == s && uint16(i) == id && dnsAnswers(f.buf[:m], id) {
						delete(want, i)
						got = true
						break
					}
				}
			}
		}
		if !got {
			time.Sleep(time.Millisecond)
		}
	}
}

// ask opens flows 0..n-1, batch at a time, each with one answered query
// (an unanswered one is asked once more); it returns how many were and
// were not answered, and how many were asked twice.
func (f *udpFlows) ask(n, batch int, timeout time.Duration) (ok, failed, retried int, err error) {
	for base := 0; base < n; base += batch {
		end := min(base+batch, n)
		want := map[int]bool{}
		for i := base; i < end; i++ {
			want[i] = true
			if err := f.send(i); err != nil {
				return ok, failed, retried, err
			}
		}
		f.collect(want, timeout)
		if len(want) > 0 { // lost in a queue on the way: ask once more
			retried += len(want)
			for i := range want {
				if err := f.send(i); err != nil {
					return ok, failed, retried, err
				}
			}
			f.collect(want, timeout)
		}
		ok += end - base - len(want)
		failed += len(want)
	}
	return ok, failed, retried, nil
}
