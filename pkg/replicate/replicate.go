package replicate

import (
	"context"
	"errors"
	"fmt"
	"github.com/tandem-lb/tandem/internal/sched"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one record of the stream: a sticky-table entry, or (Flow not
// nil) a connection-tracking record of a nat cluster's flow.
type Entry struct {
	Cluster uint16       // index of the cluster in the config
	Client  netip.Prefix // client prefix; travels masked
	Server  uint16       // index of the server in its cluster
	Expires int64        // absolute expiry, Unix nanoseconds, so both nodes expire alike
	// Flow, when not empty, makes the entry a flow record: opaque bytes
	// (at most MaxFlowLen) that the Store encodes and applies; the other
	// fields are not sent. (A string keeps Entry comparable.)
	Flow string
}

// MaxFlowLen bounds a flow record, so a frame of maxBatch entries stays
// under the frame limit.
const MaxFlowLen = 200

// Store is the node's side of replication, implemented over the clusters'
// sticky tables.
type Store interface {
	// Apply stores an update from the peer. It must not call Publish
	// (that would echo the entry back). Updates of one entry arrive in
	// the order the peer published them.
	Apply(e Entry)
	// Snapshot calls fn for every live entry until fn returns false; it
	// feeds the full bulk sent to a (re)joined peer. fn never blocks on
	// the network (the encoded snapshot is buffered, ~12 bytes an entry).
	// Entries inserted before Snapshot starts must be visited.
	Snapshot(fn func(Entry) bool)
}

// Config configures a Replicator.
type Config struct {
	Node   string // this node's name, unique in the pair; sent in the hello
	Listen string // ip:port this node accepts the peer's stream on
	Peer   string // the peer's Listen ip:port
	// Key is the cluster key (16, 24 or 32 bytes). nil needs Insecure,
	// which seals frames with a well-known key: integrity against
	// accidents, no secrecy.
	Key []byte
	// AcceptKeys are further keys a peer may prove during a key rotation
	// (see SetKeys); Key is the primary.
	AcceptKeys [][]byte
	Insecure   bool
	// ConfigHash must match the peer's; a peer with another config is
	// refused (logged, Status NOT SYNCED) so a half-rolled-out change
	// cannot route sticky clients by mismatched server indexes.
	ConfigHash string
	// BatchDelay is the longest an update waits to be batched [10ms].
	BatchDelay time.Duration
	// QueueLen bounds the updates waiting to be sent [262144]; when it
	// overflows, they are discarded and a full resync repairs the peer.
	QueueLen int
	Logger   *slog.Logger // nil discards logs
}

// Sync states reported by Status.
const (
	StateInSync    = "IN SYNC"
	StateSyncing   = "SYNCING"
	StateNotSynced = "NOT SYNCED"
)

// Status is a snapshot of replication health, for `tandem status`,
// metrics and the election ("warm before master").
type Status struct {
	// State is IN SYNC when both connections are up, the peer has
	// acknowledged this node's full table and this node has received the
	// peer's; SYNCING while either bulk is in flight or a resync is
	// pending; NOT SYNCED otherwise.
	State         string
	Reason        string // why State is not IN SYNC; empty when it is
	Peer          string // the peer's node name, once it has connected
	PeerConnected bool   // both directions are connected and authenticated
	// Sent, Received and Acked count entries: sent to the peer (bulk,
	// updates and resends), applied from the peer, acknowledged by it.
	Sent, Received, Acked uint64
	// LagMs is, for the last acknowledged update batch, the time from the
	// Publish of its oldest entry to the peer's acknowledgement.
	LagMs float64
	// BulkDone: this node has received a complete bulk (or resume) from
	// the peer over the current connection; an empty table counts.
	BulkDone bool
	// LastBulkEntries and LastBulkDuration describe the last full bulk
	// received: entries, and time from the connection being authenticated
	// to the last entry applied.
	LastBulkEntries  uint64
	LastBulkDuration time.Duration
	Resyncs          uint64            // full bulks sent to the peer (the first one included)
	Resumes          uint64            // reconnections that resent unacknowledged updates instead
	Queued           int               // updates waiting to be sent
	Dropped          map[string]uint64 // connections dropped and entries discarded, by reason
}

// Replicator streams this node's sticky-table updates to the peer and
// applies the peer's. See the package documentation for the protocol.
type Replicator struct {
	cfg   Config
	store Store
	log   *slog.Logger
	keys  atomic.Pointer[keySet]
	start time.Time // monotonic base of publish stamps

	// Publish queue. queue is a gap-free suffix of the published updates
	// unless resync is set, in which case Publish discards (the next full
	// bulk covers those entries).
	qmu    sync.Mutex
	queue  []Entry
	stamps []int64 // r.now() at the Publish of queue[k*maxBatch], the first entry of each frame
	spareQ []Entry // the sender's buffers, swapped with queue and stamps
	spareS []int64
	resync bool
	notify chan struct{} // cap 1: the queue became non-empty or full, or resync was set

	out sendState // this node's stream to the peer
	in  recvState // the peer's stream to this node
	// blobs are the named documents sent beside the entries (blob.go).
	blobs blobSet

	mu            sync.Mutex // guards the fields below
	outConn       net.Conn
	inConn        net.Conn
	outKey, inKey []byte // the cluster key each connection authenticated with
	outUp         bool
	inUp          bool
	peerName      string
	problem       string // last connection problem, for Reason and log de-duplication
	problemReason string // its Dropped reason
	dropped       map[string]uint64
	bulkDone      bool
	bulking       bool // receiving a bulk
	lastBulkN     uint64
	lastBulkD     time.Duration

	sent, received, acked, resyncs, resumes atomic.Uint64
	lagNs                                   atomic.Int64

	bulkCh   chan struct{}
	bulkOnce sync.Once
	recvSem  chan struct{} // one inbound stream applies at a time
	pre      *preauth      // bounds handshakes in progress, per source
	running  atomic.Bool

	// Tunables, fixed by New; tests shorten them.
	listener    net.Listener // preset by tests to avoid port races
	backoffMin  time.Duration
	backoffMax  time.Duration
	heartbeat   time.Duration // sender pings an idle connection this often
	timeout     time.Duration // handshake, read idle and write limit
	maxBatch    int           // entries per frame
	maxInflight int           // unacknowledged update frames before the sender waits
}

// Defaults.
const (
	DefaultBatchDelay = 10 * time.Millisecond
	DefaultQueueLen   = 1 << 18
)

// New validates cfg and returns a Replicator that has not opened sockets.
func New(cfg Config, store Store) (*Replicator, error) {
	var errs []error
	if cfg.Node == "" || len(cfg.Node) > maxNodeLen {
		errs = append(errs, fmt.Errorf("replicate: node name must be 1..%d bytes", maxNodeLen))
	}
	if _, err := netip.ParseAddrPort(cfg.Listen); err != nil {
		errs = append(errs, fmt.Errorf("replicate: listen: %w", err))
	}
	if _, _, err := net.SplitHostPort(cfg.Peer); err != nil {
		errs = append(errs, fmt.Errorf("replicate: peer: %w", err))
	}
	switch len(cfg.Key) {
	case 16, 24, 32:
		if err := checkKeys(append([][]byte{cfg.Key}, cfg.AcceptKeys...)); err != nil {
			errs = append(errs, err)
		}
	case 0:
		if !cfg.Insecure {
			errs = append(errs, errors.New("replicate: no cluster key: set one, or Insecure"))
		}
		if len(cfg.AcceptKeys) > 0 {
			errs = append(errs, errors.New("replicate: accepted keys without a primary key"))
		}
	default:
		errs = append(errs, fmt.Errorf("replicate: cluster key is %d bytes, want 16, 24 or 32", len(cfg.Key)))
	}
	if len(cfg.ConfigHash) > maxHashLen {
		errs = append(errs, fmt.Errorf("replicate: config hash longer than %d bytes", maxHashLen))
	}
	if store == nil {
		errs = append(errs, errors.New("replicate: nil store"))
	}
	if cfg.BatchDelay < 0 || cfg.QueueLen < 0 {
		errs = append(errs, errors.New("replicate: negative batch delay or queue length"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.BatchDelay == 0 {
		cfg.BatchDelay = DefaultBatchDelay
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	masters := append([][]byte{cfg.Key}, cfg.AcceptKeys...)
	if len(cfg.Key) == 0 {
		masters = [][]byte{insecureKey}
	}
	ks, err := newKeySet(masters)
	if err != nil {
		return nil, fmt.Errorf("replicate: derive keys: %w", err)
	}
	r := &Replicator{
		cfg: cfg, store: store, start: time.Now(),
		log:         cfg.Logger.With("peer", cfg.Peer),
		resync:      true, // nothing sent yet: the first connection sends a bulk
		notify:      make(chan struct{}, 1),
		dropped:     map[string]uint64{},
		bulkCh:      make(chan struct{}),
		recvSem:     make(chan struct{}, 1),
		pre:         newPreauth(cfg.Peer),
		backoffMin:  50 * time.Millisecond,
		backoffMax:  2 * time.Second,
		heartbeat:   time.Second,
		timeout:     5 * time.Second,
		maxBatch:    4096,
		maxInflight: 256,
	}
	r.keys.Store(ks)
	r.out.ackCh = make(chan struct{}, 1)
	return r, nil
}

// Run listens on Config.Listen and dials Config.Peer (retrying with
// backoff) until ctx ends. It returns nil when ctx ends, or an error if it
// cannot listen.
func (r *Replicator) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("replicate: Run called twice")
	}
	ln := r.listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", r.cfg.Listen)
		if err != nil {
			return fmt.Errorf("replicate: listen on %s: %w", r.cfg.Listen, err)
		}
	}
	r.log.Info("replication started", "node", r.cfg.Node, "listen", ln.Addr().String())
	var wg sync.WaitGroup
	wg.Go(func() { r.acceptLoop(ctx, ln, &wg) })
	wg.Go(func() { sched.Normal(func() { r.dialLoop(ctx) }) }) // the stream to the peer: bulk work
	<-ctx.Done()
	ln.Close()
	wg.Wait()
	return nil
}

// now is the monotonic time since New, in nanoseconds.
func (r *Replicator) now() int64 { return int64(time.Since(r.start)) }

// Publish queues a new or changed entry for the peer. Call it after the
// entry is in the Store. It never blocks: when the queue is full, the
// queued updates are discarded and a full resync is scheduled, and until
// that resync starts updates are discarded (the resync's snapshot covers
// them). While the peer is down updates keep queuing, so a short outage
// resumes without a bulk.
//
// Its cost is a mutex and an append: the clock is read only for the first
// entry of each frame's worth, which is all the batch delay and the lag
// need.
func (r *Replicator) Publish(e Entry) {
	if len(e.Flow) > MaxFlowLen {
		r.countDrop(dropFlowLen, 1)
		return
	}
	r.qmu.Lock()
	if r.resync {
		r.qmu.Unlock()
		return
	}
	n := len(r.queue)
	if n >= r.cfg.QueueLen {
		r.queue, r.stamps = r.queue[:0], r.stamps[:0]
		r.resync = true
		r.qmu.Unlock()
		r.countDrop(dropQueue, uint64(n)+1)
		r.wake()
		return
	}
	if n%r.maxBatch == 0 {
		r.stamps = append(r.stamps, r.now())
	}
	r.queue = append(r.queue, e)
	r.qmu.Unlock()
	if n == 0 || n+1 == r.maxBatch {
		r.wake()
	}
}

// Resync discards the queued updates and sends the peer a full bulk
// instead (as when the queue overflows): for a Store whose own source of
// updates lost some (the kernel's event socket overflowed).
func (r *Replicator) Resync() {
	r.qmu.Lock()
	r.queue, r.stamps = r.queue[:0], r.stamps[:0]
	r.resync = true
	r.qmu.Unlock()
	r.wake()
}

func (r *Replicator) wake() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// BulkReceived is closed the first time this node has received the peer's
// full table.
func (r *Replicator) BulkReceived() <-chan struct{} { return r.bulkCh }

// Status reports replication health; it is cheap and safe to call often.
func (r *Replicator) Status() Status {
	r.qmu.Lock()
	resync, queued := r.resync, len(r.queue)
	r.qmu.Unlock()
	r.out.mu.Lock()
	peerSynced := r.out.synced
	r.out.mu.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{
		Peer:             r.peerName,
		PeerConnected:    r.outUp && r.inUp,
		Sent:             r.sent.Load(),
		Received:         r.received.Load(),
		Acked:            r.acked.Load(),
		LagMs:            float64(r.lagNs.Load()) / 1e6,
		BulkDone:         r.inUp && r.bulkDone,
		LastBulkEntries:  r.lastBulkN,
		LastBulkDuration: r.lastBulkD,
		Resyncs:          r.resyncs.Load(),
		Resumes:          r.resumes.Load(),
		Queued:           queued,
		Dropped:          make(map[string]uint64, len(r.dropped)),
	}
	for k, v := range r.dropped {
		s.Dropped[k] = v
	}
	switch {
	case !s.PeerConnected:
		s.State = StateNotSynced
		s.Reason = "peer not connected"
		if r.problem != "" {
			s.Reason = r.problem
		}
	case r.bulking || !r.bulkDone:
		s.State, s.Reason = StateSyncing, "receiving the peer's table"
	case resync || !peerSynced:
		s.State, s.Reason = StateSyncing, "sending this node's table"
	default:
		s.State = StateInSync
	}
	return s
}

func (r *Replicator) countDrop(reason string, n uint64) {
	r.mu.Lock()
	r.dropped[reason] += n
	r.mu.Unlock()
}

// noteProblem counts and logs a failed connection; a problem that repeats
// is logged at debug level only.
func (r *Replicator) noteProblem(dir string, err error) {
	reason := dropHandshake
	var rf *refusal
	if errors.As(err, &rf) {
		reason = rf.reason
	} else if errors.Is(err, errOpen) || errors.Is(err, errFrameTooLarge) || errors.Is(err, errMalformed) {
		reason = dropFrame
	}
	msg := err.Error()
	r.mu.Lock()
	if rf != nil || reason == dropFrame {
		r.dropped[reason]++
	}
	repeat := r.problem == msg
	// A specific refusal (wrong key, other config) stays the Reason over
	// the vaguer symptoms it causes in the other direction.
	if reason != dropHandshake || (r.problemReason != dropAuth && r.problemReason != dropConfig) {
		r.problem, r.problemReason = msg, reason
	}
	r.mu.Unlock()
	level := slog.LevelWarn
	if reason == dropConfig {
		level = slog.LevelError
	}
	if repeat {
		level = slog.LevelDebug
	}
	r.log.Log(context.Background(), level, "replication connection failed", "dir", dir, "reason", reason, "err", err)
}

// recoverConn, deferred by the goroutines that read a peer connection,
// turns a panic there into a dropped connection, logged with its stack
// and counted. Without it a bug reachable from the network would kill
// the node with its VIPs still on the interface, where they would clash
// with the peer's; the peer reconnects and resyncs instead.
func (r *Replicator) recoverConn(dir string, c net.Conn) {
	v := recover()
	if v == nil {
		return
	}
	c.Close()
	r.countDrop(dropPanic, 1)
	r.log.Error("replication connection panicked; connection dropped", "dir", dir,
		"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

// killConns closes the current connections (tests use it to cut the
// stream mid-flight).
func (r *Replicator) killConns() {
	r.mu.Lock()
	in, out := r.inConn, r.outConn
	r.mu.Unlock()
	if in != nil {
		in.Close()
	}
	if out != nil {
		out.Close()
	}
}
