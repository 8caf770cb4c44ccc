package node

import (
	"context"
	"errors"
	"github.com/tandem-lb/tandem/internal/sched"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-lb/tandem/dataplane"
	"github.com/tandem-lb/tandem/pkg/ctsync"
	"github.com/tandem-lb/tandem/pkg/replicate"
)

// flowTable is what the node needs of the kernel's connection tracking
// (ctsync.Table over ctnetlink; a fake in tests).
type flowTable interface {
	Events(ctx context.Context, mark, mask uint32, out chan<- ctsync.Event) error
	Dump(mark, mask uint32, fn func(ctsync.Flow) bool) error
	Write(f ctsync.Flow) error
	// Update writes over an entry whose NAT binding is known to be the
	// same (one round trip instead of Write's three).
	Update(f ctsync.Flow) error
	Delete(f ctsync.Flow) error
	DeleteWhere(mark, mask uint32, match func(ctsync.Flow) bool) (int, error)
}

// Flow record operations: the first byte of a replicated flow record.
const (
	flowOpUpsert  byte = 'N' // new, or from a bulk: write it, checking its binding
	flowOpUpdate  byte = 'U' // changed (its new record came first): update it
	flowOpDestroy byte = 'D' // ended: delete it
)

// minBackupUDPTimeout is the least timeout a replicated UDP flow is written
// with on the backup. The master's kernel refreshes a UDP flow's timeout
// with every packet without telling anyone (no event), so the backup's copy
// would expire while the flow lives on; it is kept longer and removed by
// the master's destroy event instead.
const minBackupUDPTimeout = 600

// flowSync streams the master's conntrack entries of nat clusters (marked
// dataplane.NATMarkBase|index) to the peer and writes the peer's into this
// box's table, so after a take-over the packets of established flows find
// their NAT binding here and go on.
//
// Only the MASTER publishes: the backup's table changes only by what it
// writes (its own events would echo the peer's flows back). Only a box
// that is not MASTER applies: the master's kernel is the truth.
type flowSync struct {
	t       flowTable
	log     *slog.Logger
	master  func() bool
	publish func(replicate.Entry)
	resync  func()
	// onNew is told of every new flow this box forwards as master (the
	// status counters and the nat clusters' sticky tables).
	onNew func(f ctsync.Flow)

	sent, applied, overflows atomic.Uint64

	// deferred are the peer's records that arrived while this box was
	// master, kept for replayDeferred; dropped counts those past the cap.
	dmu        sync.Mutex
	deferred   []string
	dropped    uint64
	emu        sync.Mutex
	errs       map[string]uint64
	lastErrLog time.Time

	// counts caches the per-mark and per-server live flows for status.
	cmu       sync.Mutex
	countedAt time.Time
	counts    flowCounts
}

// flowCounts are the live flows of this box's table.
type flowCounts struct {
	total    uint64
	byMark   map[uint32]int64
	byServer map[serverKey]int64
}

type serverKey struct {
	mark   uint32
	server netip.AddrPort
}

func newFlowSync(t flowTable, log *slog.Logger) *flowSync {
	return &flowSync{t: t, log: log, errs: map[string]uint64{},
		master: func() bool { return false }, publish: func(replicate.Entry) {}, resync: func() {},
		onNew: func(ctsync.Flow) {}}
}

// run reads the kernel's events of Tandem's flows until ctx ends and
// publishes them while this box is MASTER. Thousands of events a second
// are bulk work: its caller runs it under sched.Normal, and it runs the
// reader so too.
func (s *flowSync) run(ctx context.Context) error {
	events := make(chan ctsync.Event, 8192)
	done := make(chan error, 1)
	go sched.Normal(func() { done <- s.t.Events(ctx, dataplane.NATMarkBase, dataplane.NATMarkMask, events) })
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case ev := <-events:
			s.event(ev)
		}
	}
}

// event handles one kernel event.
func (s *flowSync) event(ev ctsync.Event) {
	if ev.Type == ctsync.Overflow {
		// Events were lost: the peer may miss flows. A full bulk (a
		// dump of the table) repairs it.
		s.overflows.Add(1)
		s.log.Warn("conntrack events lost (socket overflow); resending the whole table to the peer")
		if s.master() {
			s.resync()
		}
		return
	}
	if !s.master() {
		return
	}
	op := flowOpUpsert
	switch ev.Type {
	case ctsync.Destroy:
		op = flowOpDestroy
	case ctsync.Update:
		op = flowOpUpdate
	}
	s.publish(replicate.Entry{Flow: encodeFlow(op, ev.Flow)})
	s.sent.Add(1)
	if ev.Type == ctsync.New {
		s.onNew(ev.Flow)
	}
}

// encodeFlow is a flow record: the operation, then ctsync's encoding.
func encodeFlow(op byte, f ctsync.Flow) string {
	b := make([]byte, 1, 64)
	b[0] = op
	return string(ctsync.AppendFlow(b, f))
}

// apply writes a flow record of the peer into this box's table.
func (s *flowSync) apply(rec string) {
	if len(rec) < 2 {
		s.countErr("malformed", nil)
		return
	}
	f, err := ctsync.DecodeFlow([]byte(rec[1:]))
	if err != nil {
		s.countErr("malformed", err)
		return
	}
	if f.Mark&dataplane.NATMarkMask != dataplane.NATMarkBase {
		s.countErr("foreign_mark", nil) // never write an entry Tandem does not own
		return
	}
	if s.master() {
		// This box's own table is the truth while it is master. But a
		// backup that was master only for a moment (late adverts) must
		// not lose what the real master sent meanwhile (acknowledged, so
		// never sent again): keep the records, in order, and write them
		// if it steps down (replayDeferred).
		s.countErr("master", nil)
		s.defer_(rec)
		return
	}
	s.write(rec[0], f)
}

// write applies one decoded record to the table.
func (s *flowSync) write(op byte, f ctsync.Flow) {
	var err error
	switch op {
	case flowOpDestroy:
		err = s.t.Delete(f)
	case flowOpUpsert, flowOpUpdate:
		if f.Proto == ctsync.ProtoUDP && f.Timeout < minBackupUDPTimeout {
			f.Timeout = minBackupUDPTimeout
		}
		if op == flowOpUpdate {
			err = s.t.Update(f)
		} else {
			err = s.t.Write(f)
		}
	default:
		s.countErr("malformed", nil)
		return
	}
	if err != nil {
		s.countErr("write", err)
		return
	}
	s.applied.Add(1)
}

// maxDeferred bounds the records a master keeps from its peer; past it
// they are dropped and counted ("deferred_overflow").
const maxDeferred = 1 << 18

// defer_ keeps a peer's record that arrived while this box was master.
func (s *flowSync) defer_(rec string) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if len(s.deferred) >= maxDeferred {
		s.dropped++
		return
	}
	s.deferred = append(s.deferred, rec)
}

// replayDeferred writes, in order, the peer's records that arrived while
// this box was master, now that it is not; it returns how many.
func (s *flowSync) replayDeferred() int {
	s.dmu.Lock()
	recs, dropped := s.deferred, s.dropped
	s.deferred, s.dropped = nil, 0
	s.dmu.Unlock()
	if dropped > 0 {
		s.countErrN("deferred_overflow", dropped)
	}
	n := 0
	for _, rec := range recs {
		if s.master() {
			return n // master again: the rest is stale
		}
		f, err := ctsync.DecodeFlow([]byte(rec[1:]))
		if err != nil {
			continue
		}
		s.write(rec[0], f)
		n++
	}
	return n
}

// snapshot feeds the flows of this box's table to a full bulk: only the
// master's table is the truth the peer should copy.
func (s *flowSync) snapshot(fn func(replicate.Entry) bool) bool {
	if !s.master() {
		return true
	}
	cont := true
	err := s.t.Dump(dataplane.NATMarkBase, dataplane.NATMarkMask, func(f ctsync.Flow) bool {
		cont = fn(replicate.Entry{Flow: encodeFlow(flowOpUpsert, f)})
		return cont
	})
	if err != nil {
		s.countErr("dump", err)
	}
	return cont
}

// liberate rewrites every Tandem flow of this box's table with window
// tracking off (BE_LIBERAL, as Write and Update always set it). A box that stops
// being master keeps its own entries, and their TCP windows stop moving
// while the peer forwards the flows; should the flows come back here (a
// preempt, a switchover back) the kernel would find the packets out of
// those stale windows, call them invalid, leave them un-NATed and reset
// the connections. Entries written from the peer's records are liberal
// already, and connections that have ended (TIME_WAIT, CLOSE) carry no
// more data: both are skipped (a busy box holds tens of thousands of the
// latter, and rewriting them delayed its stop by seconds). It returns how
// many entries it rewrote.
func (s *flowSync) liberate() int {
	var flows []ctsync.Flow
	err := s.t.Dump(dataplane.NATMarkBase, dataplane.NATMarkMask, func(f ctsync.Flow) bool {
		if needsLiberal(f) {
			flows = append(flows, f)
		}
		return true
	})
	if err != nil {
		s.countErr("dump", err)
	}
	n := 0
	for _, f := range flows {
		if err := s.t.Update(f); err != nil {
			s.countErr("liberate", err)
			continue
		}
		n++
	}
	return n
}

// needsLiberal reports whether liberate rewrites f: a TCP flow still
// open, with window tracking on in a direction.
func needsLiberal(f ctsync.Flow) bool {
	if f.Proto != ctsync.ProtoTCP || f.TCPState == ctsync.TCPTimeWait || f.TCPState == ctsync.TCPClose {
		return false
	}
	return f.TCPFlags[0]&f.TCPFlags[1]&ctsync.TCPFlagBeLiberal == 0
}

// cut deletes the flows of cluster mark that go to server (a server taken
// out with nat.drain: false): the clients' next packets start new flows
// on another server.
func (s *flowSync) cut(mark uint32, server netip.AddrPort) int {
	n, err := s.t.DeleteWhere(mark, 0xffffffff, func(f ctsync.Flow) bool { return f.Server() == server })
	if err != nil {
		s.countErr("delete", err)
	}
	return n
}

// countErr counts a failure by reason and logs it at most once a second.
func (s *flowSync) countErr(reason string, err error) {
	s.emu.Lock()
	s.errs[reason]++
	logIt := err != nil && time.Since(s.lastErrLog) > time.Second
	if logIt {
		s.lastErrLog = time.Now()
	}
	s.emu.Unlock()
	if logIt {
		s.log.Warn("conntrack replication", "reason", reason, "err", err)
	}
}

// countErrN adds n failures of reason.
func (s *flowSync) countErrN(reason string, n uint64) {
	s.emu.Lock()
	s.errs[reason] += n
	s.emu.Unlock()
}

// errors returns the failure counters.
func (s *flowSync) errors() map[string]uint64 {
	s.emu.Lock()
	defer s.emu.Unlock()
	if len(s.errs) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(s.errs))
	for k, v := range s.errs {
		out[k] = v
	}
	return out
}

// liveCounts returns the live flows of the table, counted at most once a
// second (status and metrics ask often; a dump of a big table is not free).
func (s *flowSync) liveCounts() flowCounts {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if time.Since(s.countedAt) < time.Second && s.counts.byMark != nil {
		return s.counts
	}
	c := flowCounts{byMark: map[uint32]int64{}, byServer: map[serverKey]int64{}}
	err := s.t.Dump(dataplane.NATMarkBase, dataplane.NATMarkMask, func(f ctsync.Flow) bool {
		c.total++
		c.byMark[f.Mark]++
		c.byServer[serverKey{f.Mark, f.Server()}]++
		return true
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.countErr("dump", err)
	}
	s.counts, s.countedAt = c, time.Now()
	return c
}
