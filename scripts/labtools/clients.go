package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// cmdClients makes one HTTP GET from each of -count client addresses
// starting at -from (each request's socket bound to its address, a new
// connection each) and prints {"address": "answer"}; a failed request
// maps to "". It is how the persistence tests play 500 users.
func cmdClients(args []string) error {
	fs := flag.NewFlagSet("clients", flag.ContinueOnError)
	target := fs.String("target", "", "URL to GET, e.g. http://198.18.0.100/ (required)")
	from := fs.String("from", "198.18.2.1", "first client address")
	count := fs.Int("count", 500, "number of client addresses (at most 65536)")
	conc := fs.Int("concurrency", 50, "requests in flight")
	timeout := fs.Duration("timeout", 2*time.Second, "per request")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	first, err := netip.ParseAddr(*from)
	if *target == "" || err != nil || *count < 1 || *count > 65536 || *conc < 1 {
		return usageError("clients: -target URL, -from ADDR, -count 1..65536, -concurrency ≥ 1")
	}
	addrs := make([]netip.Addr, 0, *count)
	for a := first; len(addrs) < *count; a = a.Next() {
		addrs = append(addrs, a)
	}
	out := make(map[string]string, len(addrs))
	var mu sync.Mutex
	jobs := make(chan netip.Addr)
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				ans := get(*target, a, *timeout)
				mu.Lock()
				out[a.String()] = ans
				mu.Unlock()
			}
		}()
	}
	for _, a := range addrs {
		jobs <- a
	}
	close(jobs)
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(out)
}

// get fetches url over a new connection from local address a; "" on
// failure.
func get(url string, a netip.Addr, timeout time.Duration) string {
	d := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: a.AsSlice()}}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: timeout}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := c.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return strings.TrimSpace(string(b))
}
