package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestStickyModel runs random operations against StickyMap and a plain
// map and compares them after each step: this exercises the open
// addressing (probe chains, backward-shift deletes, in-place and
// rebuilding removals, growth and shrinking) with dense keys that collide.
func TestStickyModel(t *testing.T) {
	type ref struct {
		server uint16
		exp    int64
	}
	r := rand.New(rand.NewPCG(7, 11))
	tab := NewStickyMap(32, 128, 100*time.Second)
	model := make(map[netip.Prefix]ref)
	now := stickyT0
	addr := func() netip.Addr {
		i := r.IntN(3000)
		if r.IntN(3) == 0 {
			return stickyAddr6(i)
		}
		return stickyAddr4(i)
	}
	steps := 200000
	if testing.Short() {
		steps = 30000
	}
	for step := 0; step < steps; step++ {
		now += r.Int64N(int64(time.Second / 8))
		a := addr()
		p := tab.Key(a)
		switch op := r.IntN(100); {
		case op < 50:
			srv := uint16(r.IntN(4))
			tab.Touch(a, srv, now)
			model[p] = ref{srv, now + int64(100*time.Second)}
		case op < 65:
			e := StickyEntry{Client: p, Server: uint16(r.IntN(4)), Expires: now + r.Int64N(int64(200*time.Second)) - int64(100*time.Second)}
			tab.Apply(e)
			if m, ok := model[p]; !ok || stickyNewer(e.Server, e.Expires, m.server, m.exp) {
				model[p] = ref{e.Server, e.Expires}
			}
		case op < 90:
			tab.Delete(p)
			delete(model, p)
		case op < 99:
			// Check a random client.
		default:
			if r.IntN(2) == 0 {
				tab.Expire(now)
				for k, m := range model {
					if now >= m.exp {
						delete(model, k)
					}
				}
			} else {
				srv := uint16(r.IntN(4))
				tab.ForgetServer(srv)
				for k, m := range model {
					if m.server == srv {
						delete(model, k)
					}
				}
			}
		}
		srv, ok := tab.Lookup(a, now)
		m, mok := model[p]
		if mok && now >= m.exp {
			mok = false
		}
		if ok != mok || (ok && srv != m.server) {
			t.Fatalf("step %d: Lookup(%s) = %d, %v; model %+v, %v", step, a, srv, ok, m, mok)
		}
		if tab.Len() != len(model) {
			t.Fatalf("step %d: Len = %d, model %d", step, tab.Len(), len(model))
		}
	}
	seen := 0
	tab.Range(func(e StickyEntry) bool {
		seen++
		if m, ok := model[e.Client]; !ok || m.server != e.Server || m.exp != e.Expires {
			t.Errorf("Range: %+v; model %+v, %v", e, m, ok)
		}
		return true
	})
	if seen != len(model) {
		t.Errorf("Range saw %d, model has %d", seen, len(model))
	}
}
