package main

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// udpretry is the client of the UDP-retry figure (scripts/bench-udpretry.sh
// and the e2e test): a DNS client and a RADIUS client through the VIP,
// each with a few long-lived sockets (flows) used in turn, sending one
// request every interval and waiting timeout for its answer, like a
// resolver or a NAS that does not roll over. It prints, per protocol,
// how many requests failed, which server answered (the A record, the
// Reply-Message), duplicates, and the latency of the requests that
// needed the balancer's retry (slower than -slow) less the median.

// probeReport is one protocol's outcome.
type probeReport struct {
	Sent       int            `json:"sent"`
	Answered   int            `json:"answered"`
	Failed     int            `json:"failed"` // no answer within timeout
	Duplicates int            `json:"duplicates"`
	Bad        int            `json:"bad"` // an answer unmatched (late) or that did not verify
	ByServer   map[string]int `json:"by_server"`
	P50MS      float64        `json:"p50_ms"`
	P99MS      float64        `json:"p99_ms"`
	MaxMS      float64        `json:"max_ms"`
	// Slow counts the answers slower than -slow: the retried ones; their
	// latency less the median is the retry's added latency.
	Slow       int       `json:"slow"`
	AddedP99MS float64   `json:"added_p99_ms"`
	AddedMaxMS float64   `json:"added_max_ms"`
	FailedAtMS []float64 `json:"failed_at_ms,omitempty"` // since the start

	added []float64 // each slow answer's latency less the median, ms
}

// probeProto is what differs between DNS and RADIUS.
type probeProto struct {
	name    string
	request func(seq int) (key uint16, p []byte)
	answer  func(req, resp []byte) (key uint16, server string, ok bool)
}

func cmdUDPRetry(args []string) error {
	fs := flag.NewFlagSet("udpretry", flag.ExitOnError)
	dnsAddr := fs.String("dns", "", "DNS target ADDR:PORT (empty: none)")
	qname := fs.String("qname", "who.lab", "the name asked (A)")
	radAddr := fs.String("radius", "", "RADIUS target ADDR:PORT (empty: none)")
	secret := fs.String("secret", "testing123", "RADIUS shared secret")
	user := fs.String("user", "alice:secret", "RADIUS user:password (PAP)")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between requests")
	timeout := fs.Duration("timeout", 200*time.Millisecond, "how long each request waits for its answer")
	count := fs.Int("count", 300, "requests per protocol")
	flows := fs.Int("flows", 2, "sockets per protocol, used in turn")
	slow := fs.Duration("slow", 20*time.Millisecond, "an answer slower than this needed a retry")
	ready := fs.String("ready", "", "file written once -warm requests of each protocol were answered")
	warm := fs.Int("warm", 20, "requests before -ready is written")
	addedOut := fs.String("added", "", "append \"PROTO MS\" for each slow answer (its latency less the median) to this file")
	fs.Parse(args)
	if *dnsAddr == "" && *radAddr == "" {
		return usageError("udpretry: give -dns, -radius or both")
	}
	var protos []probeProto
	var targets []string
	if *dnsAddr != "" {
		protos = append(protos, dnsProbe(*qname))
		targets = append(targets, *dnsAddr)
	}
	if *radAddr != "" {
		name, pw, _ := strings.Cut(*user, ":")
		protos = append(protos, radiusProbe([]byte(*secret), name, pw))
		targets = append(targets, *radAddr)
	}
	start := time.Now()
	var warmed sync.WaitGroup
	warmed.Add(len(protos))
	if *ready != "" {
		go func() {
			warmed.Wait()
			os.WriteFile(*ready, []byte("ready\n"), 0o644)
		}()
	}
	reports := make([]probeReport, len(protos))
	var wg sync.WaitGroup
	for i, p := range protos {
		to, err := netip.ParseAddrPort(targets[i])
		if err != nil {
			return fmt.Errorf("%s target: %w", p.name, err)
		}
		wg.Go(func() {
			reports[i] = runProbe(p, to, start, *interval, *timeout, *slow, *count, *flows, *warm, warmed.Done)
		})
	}
	wg.Wait()
	out := map[string]probeReport{}
	var added strings.Builder
	for i, p := range protos {
		out[p.name] = reports[i]
		for _, a := range reports[i].added {
			fmt.Fprintf(&added, "%s %.3f\n", p.name, a)
		}
	}
	if *addedOut != "" {
		f, err := os.OpenFile(*addedOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString(added.String())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("-added: %w", err)
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// probeRec is one request in flight or done.
type probeRec struct {
	req     []byte
	flow    int
	sent    time.Time
	lat     time.Duration // 0: no answer yet
	server  string
	answers int
}

// runProbe sends count requests of p to to, one every interval, over
// flows sockets in turn, and reports; warmDone is called once warm
// requests were answered.
func runProbe(p probeProto, to netip.AddrPort, start time.Time, interval, timeout, slow time.Duration,
	count, flows, warm int, warmDone func()) probeReport {
	rep := probeReport{ByServer: map[string]int{}}
	var mu sync.Mutex
	inflight := map[[2]int]*probeRec{} // (flow, key) → request
	var done []*probeRec
	conns := make([]*net.UDPConn, flows)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		if err != nil {
			fmt.Fprintf(os.Stderr, "udpretry %s: %v\n", p.name, err)
			os.Exit(1)
		}
		defer c.Close()
		conns[i] = c
	}
	var rwg sync.WaitGroup
	for fi, c := range conns {
		rwg.Go(func() {
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						return
					}
					continue // an ICMP error: the balancer's doing, not ours
				}
				now := time.Now()
				mu.Lock()
				var key uint16
				var server string
				var ok bool
				for _, r := range inflight {
					if r.flow == fi {
						if key, server, ok = p.answer(r.req, buf[:n]); ok {
							break
						}
					}
				}
				r := inflight[[2]int{fi, int(key)}]
				switch {
				case !ok || r == nil:
					rep.Bad++
				default:
					r.answers++
					if r.answers > 1 {
						rep.Duplicates++
					} else if d := now.Sub(r.sent); d <= timeout {
						r.lat, r.server = d, server
					}
				}
				mu.Unlock()
			}
		})
	}
	warmed := false
	tick := time.NewTicker(interval)
	for seq := range count {
		key, req := p.request(seq)
		r := &probeRec{req: req, flow: seq % flows, sent: time.Now()}
		mu.Lock()
		k := [2]int{r.flow, int(key)}
		if old := inflight[k]; old != nil {
			done = append(done, old) // the key came round again
		}
		inflight[k] = r
		// Requests past their timeout are done.
		for k, o := range inflight {
			if time.Since(o.sent) > timeout+interval {
				done = append(done, o)
				delete(inflight, k)
			}
		}
		if !warmed && seq >= warm {
			answered := 0
			for _, d := range done {
				if d.lat > 0 {
					answered++
				}
			}
			if answered >= warm {
				warmed = true
				warmDone()
			}
		}
		mu.Unlock()
		conns[r.flow].Write(req)
		<-tick.C
	}
	tick.Stop()
	time.Sleep(timeout + 50*time.Millisecond) // the last answers, and duplicates
	for _, c := range conns {
		c.SetReadDeadline(time.Now())
	}
	rwg.Wait()
	if !warmed {
		warmDone()
	}
	mu.Lock()
	defer mu.Unlock()
	for _, o := range inflight {
		done = append(done, o)
	}
	var lats []float64
	for _, d := range done {
		rep.Sent++
		if d.lat == 0 {
			rep.Failed++
			rep.FailedAtMS = append(rep.FailedAtMS, msOf(d.sent.Sub(start)))
			continue
		}
		rep.Answered++
		rep.ByServer[d.server]++
		lats = append(lats, msOf(d.lat))
	}
	sort.Float64s(rep.FailedAtMS)
	if len(lats) == 0 {
		return rep
	}
	slices.Sort(lats)
	rep.P50MS, rep.P99MS, rep.MaxMS = lats[len(lats)/2], lats[min(len(lats)-1, len(lats)*99/100)], lats[len(lats)-1]
	var added []float64
	for _, l := range lats {
		if l > msOf(slow) {
			added = append(added, l-rep.P50MS)
		}
	}
	rep.Slow, rep.added = len(added), added
	if len(added) > 0 {
		rep.AddedP99MS = added[min(len(added)-1, len(added)*99/100)]
		rep.AddedMaxMS = added[len(added)-1]
	}
	return rep
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// dnsProbe asks qname A; the server is the answer's address.
func dnsProbe(qname string) probeProto {
	var q []byte
	for label := range strings.SplitSeq(strings.Trim(qname, "."), ".") {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	q = append(q, 0, 0, 1, 0, 1)
	return probeProto{
		name: "dns",
		request: func(seq int) (uint16, []byte) {
			id := uint16(seq)
			b := []byte{byte(id >> 8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
			return id, append(b, q...)
		},
		answer: func(req, resp []byte) (uint16, string, bool) {
			if len(resp) < 16 || resp[0] != req[0] || resp[1] != req[1] || resp[2]&0x80 == 0 ||
				binary.BigEndian.Uint16(resp[6:8]) == 0 {
				return 0, "", false
			}
			a := resp[len(resp)-4:] // the one A record's address
			return binary.BigEndian.Uint16(resp), netip.AddrFrom4([4]byte(a)).String(), true
		},
	}
}

// radiusProbe sends Access-Requests (PAP, with a Message-Authenticator);
// the server is the Access-Accept's Reply-Message, once the Response
// Authenticator verifies.
func radiusProbe(secret []byte, user, password string) probeProto {
	return probeProto{
		name: "radius",
		request: func(seq int) (uint16, []byte) {
			p := make([]byte, 20, 128)
			p[0], p[1] = 1, byte(seq)
			rand.Read(p[4:20])
			p = append(p, 1, byte(2+len(user)))
			p = append(p, user...)
			pw := make([]byte, 16) // one block: passwords up to 16 bytes
			copy(pw, password)
			h := md5.Sum(append(append([]byte(nil), secret...), p[4:20]...))
			for i := range pw {
				pw[i] ^= h[i]
			}
			p = append(p, 2, 18)
			p = append(p, pw...)
			p = append(p, 80, 18)
			ma := len(p)
			p = append(p, make([]byte, 16)...)
			binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
			mac := hmac.New(md5.New, secret)
			mac.Write(p)
			copy(p[ma:], mac.Sum(nil))
			return uint16(p[1]), p
		},
		answer: func(req, resp []byte) (uint16, string, bool) {
			if len(resp) < 20 || resp[1] != req[1] || resp[0] != 2 {
				return 0, "", false
			}
			l := int(binary.BigEndian.Uint16(resp[2:4]))
			if l < 20 || l > len(resp) {
				return 0, "", false
			}
			resp = resp[:l]
			h := md5.New()
			h.Write(resp[:4])
			h.Write(req[4:20])
			h.Write(resp[20:])
			h.Write(secret)
			if !hmac.Equal(h.Sum(nil), resp[4:20]) {
				return 0, "", false
			}
			server := ""
			for a := resp[20:]; len(a) >= 2 && int(a[1]) >= 2 && int(a[1]) <= len(a); a = a[a[1]:] {
				if a[0] == 18 { // Reply-Message
					server = string(a[2:a[1]])
				}
			}
			return uint16(resp[1]), server, true
		},
	}
}
