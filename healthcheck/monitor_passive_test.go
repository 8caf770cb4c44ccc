package healthcheck

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// TestMonitorPassive: with a 10s check interval, three refused connects
// take a server down at once, with the passive reason in the Change and
// in Reasons; the active check brings it back after Rise passes, and
// outcomes broken by a success take nothing down.
func TestMonitorPassive(t *testing.T) { synctest.Test(t, testMonitorPassive) }

func testMonitorPassive(t *testing.T) {
	web1 := netip.MustParseAddrPort("127.0.0.1:1001")
	web2 := netip.MustParseAddrPort("127.0.0.1:1002")
	checker := &scriptChecker{script: map[netip.AddrPort][]bool{web1: {true}, web2: {true}}}
	hc := config.HealthCheck{Interval: 10 * time.Second, Timeout: time.Second, Rise: 2, Fall: 2}
	got := collect{make(chan Change, 16)}
	m := NewMonitor(checker, hc, []Target{{"web", "web1", web1}, {"web", "web2", web2}}, got.on, nil)
	m.SetPassive(config.Passive{Fail: 3, Window: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	<-m.RoundDone()
	for len(got.ch) > 0 {
		<-got.ch // the Initial changes
	}
	start := time.Now()

	// web2: a success in the run: nothing happens.
	m.Traffic("web2", false, "connects refused")
	m.Traffic("web2", false, "connects refused")
	m.Traffic("web2", true, "")
	m.Traffic("web2", false, "connects refused")
	for range 3 {
		m.Traffic("web1", false, "connects refused")
	}
	ch := got.next(t)
	if ch.Target.Server != "web1" || ch.Healthy || ch.Result.Detail != "passive: 3 connects refused" {
		t.Fatalf("change %+v, want web1 down: passive: 3 connects refused", ch)
	}
	if d := time.Since(start); d >= hc.Interval {
		t.Errorf("passive verdict after %s: the active check could have seen it", d)
	}
	if r := m.Reasons(); r["web1"] != "passive: 3 connects refused" || r["web2"] != "" {
		t.Errorf("Reasons = %v", r)
	}
	// More failures while down: no second Change.
	for range 3 {
		m.Traffic("web1", false, "connects refused")
	}
	ch = <-got.ch // fake time: the probes come 10s apart
	if ch.Target.Server != "web1" || !ch.Healthy {
		t.Fatalf("change %+v, want web1 back up", ch)
	}
	if d := time.Since(start); d < hc.Interval {
		t.Errorf("back up after %s: before Rise (2) probes at interval %s", d, hc.Interval)
	}
	if r := m.Reasons(); len(r) != 0 {
		t.Errorf("Reasons after rise = %v", r)
	}
	time.Sleep(time.Minute)
	synctest.Wait()
	if len(got.ch) != 0 {
		t.Errorf("unexpected change %+v", <-got.ch)
	}
}
