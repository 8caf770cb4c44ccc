package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// fakeListener serves until its context ends, or fails at once.
type fakeListener struct {
	fail    error
	serving atomic.Int32
	drained atomic.Int32
}

func (l *fakeListener) Listen() error { return nil }
func (l *fakeListener) Serve(ctx context.Context) error {
	if l.fail != nil {
		return l.fail
	}
	l.serving.Add(1)
	defer l.serving.Add(-1)
	<-ctx.Done()
	return nil
}
func (l *fakeListener) SetActive(bool)            {}
func (l *fakeListener) Drain(ctx context.Context) { l.drained.Add(1) }

type fakeEngine struct {
	engine
	runs atomic.Int32
}

func (e *fakeEngine) Run(ctx context.Context) { e.runs.Add(1); <-ctx.Done() }

// TestClusterRunner: clusters started at Run or by a reload run under one
// owner that Run waits for; a failed accept loop is reported to Run (the
// node steps down); the engine runs once; nothing starts once closed.
func TestClusterRunner(t *testing.T) {
	r := newClusterRunner(slog.New(slog.DiscardHandler))
	ok := &vcluster{cfg: config.VirtualCluster{Name: "web"}, ln: &fakeListener{}}
	bad := &vcluster{cfg: config.VirtualCluster{Name: "dns"}, ln: &fakeListener{fail: errors.New("no socket")}}
	late := &vcluster{cfg: config.VirtualCluster{Name: "late"}, ln: &fakeListener{}}
	e := &fakeEngine{}

	r.serve(ok) // not open yet: nothing starts
	if ok.stop != nil {
		t.Fatal("a cluster started before the runner was opened")
	}
	ctx, cancel := context.WithCancel(t.Context())
	r.open(ctx)
	r.startEngine(e)
	r.startEngine(e)
	r.serve(ok)
	r.serve(bad)
	select {
	case err := <-r.failed:
		if !strings.Contains(err.Error(), "cluster dns: no socket") {
			t.Errorf("failure reported as %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a failed accept loop was not reported")
	}
	r.drain(bad)
	r.close()
	r.serve(late)
	if late.stop != nil {
		t.Error("a cluster started after the runner was closed")
	}
	cancel()
	done := make(chan struct{})
	go func() { r.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return once the context ended")
	}
	if e.runs.Load() != 1 {
		t.Errorf("engine ran %d times, want once", e.runs.Load())
	}
	if ok.ln.(*fakeListener).serving.Load() != 0 {
		t.Error("an accept loop outlived wait")
	}
	if bad.ln.(*fakeListener).drained.Load() != 1 {
		t.Error("the drain did not run before wait returned")
	}
	select {
	case <-ok.served:
	default:
		t.Error("served not closed after the accept loop returned")
	}
}
