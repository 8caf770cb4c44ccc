package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/pkg/ctsync"
	"github.com/tandem-lb/tandem/pkg/replicate"
)

// fakeFlows is a conntrack table in memory.
type fakeFlows struct {
	mu      sync.Mutex
	flows   map[ctsync.Key]ctsync.Flow
	writes  int
	events  chan ctsync.Event
	failing error
}

func newFakeFlows() *fakeFlows {
	return &fakeFlows{flows: map[ctsync.Key]ctsync.Flow{}, events: make(chan ctsync.Event, 16)}
}

func (f *fakeFlows) Events(ctx context.Context, mark, mask uint32, out chan<- ctsync.Event) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-f.events:
			out <- ev
		}
	}
}

func (f *fakeFlows) Dump(mark, mask uint32, fn func(ctsync.Flow) bool) error {
	f.mu.Lock()
	var all []ctsync.Flow
	for _, fl := range f.flows {
		if fl.Matches(mark, mask) {
			all = append(all, fl)
		}
	}
	f.mu.Unlock()
	for _, fl := range all {
		if !fn(fl) {
			break
		}
	}
	return nil
}

func (f *fakeFlows) Write(fl ctsync.Flow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing != nil {
		return f.failing
	}
	if fl.Proto == ctsync.ProtoTCP { // as the kernel table: Write always sets BE_LIBERAL
		fl.TCPFlags[0] |= ctsync.TCPFlagBeLiberal
		fl.TCPFlags[1] |= ctsync.TCPFlagBeLiberal
	}
	f.flows[fl.Key()] = fl
	f.writes++
	return nil
}

func (f *fakeFlows) Update(fl ctsync.Flow) error { return f.Write(fl) }

func (f *fakeFlows) Delete(fl ctsync.Flow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.flows, fl.Key())
	return nil
}

func (f *fakeFlows) DeleteWhere(mark, mask uint32, match func(ctsync.Flow) bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, fl := range f.flows {
		if fl.Matches(mark, mask) && match(fl) {
			delete(f.flows, k)
			n++
		}
	}
	return n, nil
}

func (f *fakeFlows) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flows)
}

func testFlow(i int, server string) ctsync.Flow {
	client := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), uint16(40000+i))
	return ctsync.Flow{
		Proto: ctsync.ProtoTCP, Mark: dataplane.NATMark(3), TCPState: ctsync.TCPEstablished, Timeout: 432000,
		Orig:  ctsync.Tuple{Src: client, Dst: netip.MustParseAddrPort("198.18.0.100:5222")},
		Reply: ctsync.Tuple{Src: netip.MustParseAddrPort(server), Dst: client},
	}
}

// flowPair wires a master's flowSync to a backup's, as replication does.
func flowPair(t *testing.T) (master, backup *flowSync, mt, bt *fakeFlows, resyncs *int) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mt, bt = newFakeFlows(), newFakeFlows()
	master, backup = newFlowSync(mt, log), newFlowSync(bt, log)
	master.master = func() bool { return true }
	resyncs = new(int)
	master.resync = func() { *resyncs++ }
	master.publish = func(e replicate.Entry) { backup.apply(e.Flow) }
	backup.publish = func(replicate.Entry) { t.Error("a backup published a flow") }
	return master, backup, mt, bt, resyncs
}

func TestFlowSyncMasterPublishesBackupWrites(t *testing.T) {
	master, backup, _, bt, _ := flowPair(t)
	news := 0
	master.onNew = func(ctsync.Flow) { news++ }
	f := testFlow(1, "198.19.1.21:5222")
	master.event(ctsync.Event{Type: ctsync.New, Flow: f})
	if got, ok := bt.flows[f.Key()]; !ok || got.Server() != f.Server() || got.Mark != f.Mark {
		t.Fatalf("backup table after a new flow: %v", bt.flows)
	}
	if news != 1 || master.sent.Load() != 1 || backup.applied.Load() != 1 {
		t.Errorf("news %d sent %d applied %d", news, master.sent.Load(), backup.applied.Load())
	}
	master.event(ctsync.Event{Type: ctsync.Destroy, Flow: f})
	if bt.len() != 0 {
		t.Error("a destroyed flow stayed on the backup")
	}
	// The backup's own events (its writes echo as kernel events) are
	// never published: backup.publish fails the test if called.
	backup.event(ctsync.Event{Type: ctsync.New, Flow: f})
}

func TestFlowSyncApplyRefusesWhatItMustNotWrite(t *testing.T) {
	_, backup, _, bt, _ := flowPair(t)
	foreign := testFlow(2, "198.19.1.21:5222")
	foreign.Mark = 0x1234
	backup.apply(encodeFlow(flowOpUpsert, foreign))
	backup.apply("N")                   // too short
	backup.apply("Ngarbage-not-a-flow") // does not decode
	backup.apply(encodeFlow('X', testFlow(3, "198.19.1.21:5222")))
	if bt.len() != 0 {
		t.Fatalf("wrote %d flows from bad records", bt.len())
	}
	errs := backup.errors()
	if errs["foreign_mark"] != 1 || errs["malformed"] != 3 {
		t.Errorf("errors = %v", errs)
	}
	// A master does not write its peer's flows (its own table is the
	// truth), but keeps them: a box that was master only for a moment
	// writes them, in order, once it steps down.
	backup.master = func() bool { return true }
	backup.apply(encodeFlow(flowOpUpsert, testFlow(4, "198.19.1.21:5222")))
	backup.apply(encodeFlow(flowOpUpsert, testFlow(8, "198.19.1.21:5222")))
	backup.apply(encodeFlow(flowOpDestroy, testFlow(8, "198.19.1.21:5222")))
	if bt.len() != 0 || backup.errors()["master"] != 3 {
		t.Errorf("a master wrote its peer's flow: %d flows, errors %v", bt.len(), backup.errors())
	}
	backup.master = func() bool { return false }
	if n := backup.replayDeferred(); n != 3 || bt.len() != 1 {
		t.Errorf("replayed %d records, %d flows; want 3 records and flow 4 alone", n, bt.len())
	}
	if _, ok := bt.flows[testFlow(4, "198.19.1.21:5222").Key()]; !ok {
		t.Error("the deferred flow was not written")
	}
	delete(bt.flows, testFlow(4, "198.19.1.21:5222").Key())
	if n := backup.replayDeferred(); n != 0 {
		t.Errorf("a second replay wrote %d records", n)
	}
	bt.failing = errors.New("ENOMEM")
	backup.master = func() bool { return false }
	backup.apply(encodeFlow(flowOpUpsert, testFlow(5, "198.19.1.21:5222")))
	if backup.errors()["write"] != 1 {
		t.Errorf("a failed write is not counted: %v", backup.errors())
	}
}

// The master's kernel refreshes a UDP flow without an event: the backup
// keeps its copy long enough, and the destroy event removes it.
func TestFlowSyncUDPTimeoutOnBackup(t *testing.T) {
	master, _, _, bt, _ := flowPair(t)
	f := testFlow(6, "198.19.1.22:53")
	f.Proto, f.TCPState, f.Timeout = ctsync.ProtoUDP, 0, 30
	master.event(ctsync.Event{Type: ctsync.New, Flow: f})
	if got := bt.flows[f.Key()]; got.Timeout != minBackupUDPTimeout {
		t.Errorf("backup UDP timeout %d, want %d", got.Timeout, minBackupUDPTimeout)
	}
}

func TestFlowSyncOverflowResyncs(t *testing.T) {
	master, _, _, _, resyncs := flowPair(t)
	master.event(ctsync.Event{Type: ctsync.Overflow})
	if *resyncs != 1 || master.overflows.Load() != 1 {
		t.Errorf("resyncs %d overflows %d, want a resync after an overflow", *resyncs, master.overflows.Load())
	}
}

func TestFlowSyncSnapshotOnlyFromMaster(t *testing.T) {
	master, backup, mt, bt, _ := flowPair(t)
	for i := range 5 {
		_ = mt.Write(testFlow(i, "198.19.1.21:5222"))
		_ = bt.Write(testFlow(100+i, "198.19.1.21:5222"))
	}
	n := 0
	master.snapshot(func(e replicate.Entry) bool { n++; backup.apply(e.Flow); return true })
	if n != 5 || bt.len() != 10 {
		t.Errorf("master snapshot gave %d records; backup has %d flows", n, bt.len())
	}
	backup.snapshot(func(replicate.Entry) bool { t.Error("a backup's snapshot carries flows"); return true })
}

// A box that stops being master makes its own TCP flows liberal, so
// they are not found out of window when they come back.
func TestFlowSyncLiberate(t *testing.T) {
	master, _, mt, _, _ := flowPair(t)
	for i := range 3 {
		mt.flows[testFlow(i, "198.19.1.21:5222").Key()] = testFlow(i, "198.19.1.21:5222") // as the kernel made them
	}
	if n := master.liberate(); n != 3 {
		t.Fatalf("liberate rewrote %d flows, want 3", n)
	}
	for _, f := range mt.flows {
		if f.TCPFlags[0]&f.TCPFlags[1]&ctsync.TCPFlagBeLiberal == 0 {
			t.Errorf("flow %v not liberal", f)
		}
	}
	if n := master.liberate(); n != 0 {
		t.Errorf("a second liberate rewrote %d flows", n)
	}
}

func TestFlowSyncCutAndCount(t *testing.T) {
	master, _, mt, _, _ := flowPair(t)
	for i := range 4 {
		srv := "198.19.1.21:5222"
		if i%2 == 1 {
			srv = "198.19.1.22:5222"
		}
		_ = mt.Write(testFlow(i, srv))
	}
	c := master.liveCounts()
	if c.total != 4 || c.byMark[dataplane.NATMark(3)] != 4 ||
		c.byServer[serverKey{dataplane.NATMark(3), netip.MustParseAddrPort("198.19.1.22:5222")}] != 2 {
		t.Errorf("counts = %+v", c)
	}
	if n := master.cut(dataplane.NATMark(3), netip.MustParseAddrPort("198.19.1.22:5222")); n != 2 || mt.len() != 2 {
		t.Errorf("cut %d flows, %d left; want 2 and 2", n, mt.len())
	}
}

func TestFlowSyncRunStopsWithContext(t *testing.T) {
	master, _, mt, _, _ := flowPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- master.run(ctx) }()
	mt.events <- ctsync.Event{Type: ctsync.New, Flow: testFlow(9, "198.19.1.21:5222")}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

// An update event travels as an update (one round trip on the backup).
func TestFlowSyncUpdateEvent(t *testing.T) {
	master, _, _, bt, _ := flowPair(t)
	f := testFlow(7, "198.19.1.21:5222")
	master.event(ctsync.Event{Type: ctsync.New, Flow: f})
	f.TCPState = ctsync.TCPFinWait
	master.event(ctsync.Event{Type: ctsync.Update, Flow: f})
	if got := bt.flows[f.Key()]; got.TCPState != ctsync.TCPFinWait {
		t.Errorf("backup state %d after an update, want %d", got.TCPState, ctsync.TCPFinWait)
	}
	if rec := encodeFlow(flowOpUpdate, f); rec[0] != 'U' {
		t.Errorf("update record starts with %q", rec[0])
	}
}

// Ended connections carry no more data: liberate leaves them alone.
func TestNeedsLiberal(t *testing.T) {
	open := testFlow(1, "198.19.1.21:5222")
	ended := open
	ended.TCPState = ctsync.TCPTimeWait
	liberal := open
	liberal.TCPFlags = [2]uint8{ctsync.TCPFlagBeLiberal, ctsync.TCPFlagBeLiberal}
	udp := open
	udp.Proto = ctsync.ProtoUDP
	for _, c := range []struct {
		f    ctsync.Flow
		want bool
	}{{open, true}, {ended, false}, {liberal, false}, {udp, false}} {
		if got := needsLiberal(c.f); got != c.want {
			t.Errorf("needsLiberal(state %d flags %v proto %d) = %v, want %v", c.f.TCPState, c.f.TCPFlags, c.f.Proto, got, c.want)
		}
	}
}
