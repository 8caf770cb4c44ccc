package dataplane

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// fakeKernel records what the engine writes.
type fakeKernel struct {
	mu     sync.Mutex
	writes [][]NATService
	fail   error
}

func (k *fakeKernel) ApplyNAT(s []NATService) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return k.fail
	}
	k.writes = append(k.writes, slices.Clone(s))
	return nil
}

func (k *fakeKernel) last(t *testing.T) []NATService {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.writes) == 0 {
		t.Fatal("nothing written to the kernel")
	}
	return k.writes[len(k.writes)-1]
}

func natVC(algo string) config.VirtualCluster {
	return config.VirtualCluster{
		Name: "im", VIP: "198.18.0.100", Port: 5222, Protocol: "tcp", Mode: config.ModeNAT, Algorithm: algo,
		NAT: &config.NAT{Return: config.ReturnGateway},
		Servers: []config.Server{
			{Name: "im1", Address: "198.19.1.21:5222", Weight: 1},
			{Name: "im2", Address: "198.19.1.22:5222", Weight: 3},
		},
	}
}

func newNAT(t *testing.T, vc config.VirtualCluster, k NATKernel) (*NATCluster, *Pool) {
	t.Helper()
	pool, err := PoolFor(vc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewNATCluster(vc, 3, pool, NewNATEngine(k, nil))
	if err != nil {
		t.Fatal(err)
	}
	return c, pool
}

var (
	im1 = netip.MustParseAddrPort("198.19.1.21:5222")
	im2 = netip.MustParseAddrPort("198.19.1.22:5222")
)

func count(slots []netip.AddrPort, a netip.AddrPort) int {
	n := 0
	for _, s := range slots {
		if s == a {
			n++
		}
	}
	return n
}

func TestNATClusterFollowsHealthAndAdmin(t *testing.T) {
	k := &fakeKernel{}
	c, pool := newNAT(t, natVC("round_robin"), k)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	s := k.last(t)[0]
	if s.Mark != NATMarkBase|3 || s.VIP != netip.MustParseAddr("198.18.0.100") || s.Port != 5222 || s.Proto != "tcp" {
		t.Errorf("service = %+v", s)
	}
	if !slices.Equal(s.Slots, []netip.AddrPort{im1, im2}) || s.Pick != PickRoundRobin {
		t.Errorf("round robin slots = %v pick %v", s.Slots, s.Pick)
	}
	// A health verdict reaches the kernel through the pool's Refresh.
	pool.Server("im1").SetHealthy(false)
	pool.Refresh()
	if s := k.last(t)[0]; !slices.Equal(s.Slots, []netip.AddrPort{im2}) || !slices.Equal(s.Eligible, []netip.AddrPort{im2}) {
		t.Errorf("im1 down: slots %v eligible %v, want only im2", s.Slots, s.Eligible)
	}
	pool.Server("im2").SetAdmin(Draining)
	pool.Refresh()
	if s := k.last(t)[0]; len(s.Slots) != 0 || len(s.Eligible) != 0 {
		t.Errorf("no server available: slots %v, want none (new flows dropped)", s.Slots)
	}
	writes := len(k.writes)
	pool.Refresh() // nothing changed: nothing written
	if len(k.writes) != writes {
		t.Error("an unchanged table was written again")
	}
}

func TestNATWeightedSlots(t *testing.T) {
	k := &fakeKernel{}
	c, _ := newNAT(t, natVC("weighted_round_robin"), k)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	s := k.last(t)[0]
	if len(s.Slots) != 4 || count(s.Slots, im1) != 1 || count(s.Slots, im2) != 3 {
		t.Errorf("weights 1:3: slots %v", s.Slots)
	}
}

func TestNATMaglevSlots(t *testing.T) {
	for algo, pick := range map[string]NATPick{"maglev": PickFiveTuple, "source_hash": PickSourceHash} {
		k := &fakeKernel{}
		c, pool := newNAT(t, natVC(algo), k)
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		s := k.last(t)[0]
		if s.Pick != pick || len(s.Slots) != MaglevSize {
			t.Fatalf("%s: pick %v, %d slots", algo, s.Pick, len(s.Slots))
		}
		if n := count(s.Slots, im2); n < MaglevSize*70/100 || n > MaglevSize*80/100 {
			t.Errorf("%s: im2 (weight 3 of 4) has %d of %d slots", algo, n, MaglevSize)
		}
		// The same cluster on the other box builds the same table.
		k2 := &fakeKernel{}
		c2, _ := newNAT(t, natVC(algo), k2)
		if err := c2.Listen(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(k2.last(t)[0].Slots, s.Slots) || k2.last(t)[0].Seed != s.Seed {
			t.Errorf("%s: the two boxes' tables differ", algo)
		}
		pool.Server("im2").SetHealthy(false)
		pool.Refresh()
		if got := k.last(t)[0].Slots; count(got, im1) != MaglevSize {
			t.Errorf("%s: im2 down: %d of %d slots go to im1", algo, count(got, im1), MaglevSize)
		}
	}
}

func TestNATKernelErrorKeepsTrying(t *testing.T) {
	k := &fakeKernel{fail: errors.New("nf_tables: no such file")}
	vc := natVC("round_robin")
	vc.Persistence = &config.Persistence{Mode: "source_ip", Mask: 24, Timeout: time.Minute}
	c, pool := newNAT(t, vc, k)
	if err := c.Listen(); err == nil {
		t.Fatal("Listen succeeded while the kernel refused the rules")
	}
	if st := c.engine.Stats(); st.Failures != 1 || st.LastError == "" {
		t.Errorf("stats after a failure: %+v", st)
	}
	k.fail = nil
	pool.Refresh() // the next change retries, even if the table is the same
	s := k.last(t)[0]
	if s.Sticky == nil || s.Sticky.Mask != 24 || s.Sticky.Timeout != time.Minute {
		t.Errorf("sticky = %+v", s.Sticky)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := k.last(t); len(got) != 0 {
		t.Errorf("after Close the kernel still has %d services", len(got))
	}
}

func TestNATSNATAndAllow(t *testing.T) {
	vc := natVC("round_robin")
	vc.NAT = &config.NAT{Return: config.ReturnSNAT, SNATAddress: "198.19.1.1"}
	vc.Allow = []string{"198.18.2.7/16"}
	vc.Protocol = "udp"
	k := &fakeKernel{}
	c, _ := newNAT(t, vc, k)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	s := k.last(t)[0]
	if s.SNAT != netip.MustParseAddr("198.19.1.1") || s.Proto != "udp" ||
		!slices.Equal(s.Allow, []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")}) {
		t.Errorf("service = %+v", s)
	}
}

// A reload's new runtime of a cluster takes the old one's place in a
// single write; closing the old one afterwards changes nothing.
func TestNATReloadReplacesInOneWrite(t *testing.T) {
	k := &fakeKernel{}
	e := NewNATEngine(k, nil)
	vc := natVC("round_robin")
	mk := func(vc config.VirtualCluster) *NATCluster {
		pool, err := PoolFor(vc)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewNATCluster(vc, 0, pool, e)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := mk(vc)
	if err := old.Listen(); err != nil {
		t.Fatal(err)
	}
	vc.Servers = vc.Servers[:1]
	fresh := mk(vc)
	if err := fresh.Listen(); err != nil {
		t.Fatal(err)
	}
	if got := k.last(t); len(got) != 1 || !slices.Equal(got[0].Slots, []netip.AddrPort{im1}) {
		t.Fatalf("after the new runtime's Listen the kernel has %+v", got)
	}
	writes := len(k.writes)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if len(k.writes) != writes || len(k.last(t)) != 1 {
		t.Errorf("closing the replaced runtime rewrote the rules: %+v", k.last(t))
	}
}
