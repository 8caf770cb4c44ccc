package peer

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// AdvertQueueLen is the capacity of the Adverts channel.
const AdvertQueueLen = 64

// DefaultAdvertInterval is used when Config.AdvertInterval is zero.
const DefaultAdvertInterval = 50 * time.Millisecond

// joinRetry is how often a peer that is not an alive member is re-joined.
const joinRetry = time.Second

// Received is an advert as it arrived.
type Received struct {
	Advert Advert
	// From is the sender's cluster address (ip:port) as stated in the
	// envelope; memberlist does not expose the UDP source to delegates.
	From string
	// At is the local receive time.
	At time.Time
}

// Config configures a Transport.
type Config struct {
	NodeName string   // this node's name, unique in the pair
	Bind     string   // ip:port to listen on (UDP and TCP) and advertise
	Peers    []string // ip:port of the other node(s)
	// Keys are AES keys of 16, 24 or 32 bytes; the first is primary (used
	// to send), all are tried on receive, so keys can be rotated. Empty
	// means no encryption, which needs Insecure.
	Keys [][]byte
	// Insecure must be true to run with no key.
	Insecure bool
	// Label is put on every packet and stream; traffic with another label
	// is dropped. It keeps two pairs on one network apart.
	Label string
	// Paths are more ways to reach the peer (a dedicated cable): adverts
	// are sent on each as well, and received on each.
	Paths []Path
	// AdvertInterval is the caller's heartbeat period [50ms]; the transport
	// does not send on its own and keeps it for the caller to read back.
	AdvertInterval time.Duration
	// Logger receives structured logs, including memberlist's. nil
	// discards them.
	Logger *slog.Logger
}

// Transport is the pair's encrypted channel: memberlist membership plus
// adverts sent as memberlist best-effort packets.
type Transport struct {
	cfg   Config
	peers []string // normalised ip:port
	// advertTo is peers plus the path peers: where adverts go.
	advertTo []string
	log      *slog.Logger
	c        counters
	del      *delegate
	logw     *logWriter

	mu       sync.Mutex
	ml       *memberlist.Memberlist
	keyring  *memberlist.Keyring // nil without encryption
	stopJoin context.CancelFunc
	wg       sync.WaitGroup
	shut     bool
	// stopOut ends the sender of challenges and answers (outLoop), which
	// lives until Shutdown: a leaving node must still prove its epoch.
	stopOut context.CancelFunc
	outWG   sync.WaitGroup
}

// New validates cfg and returns a Transport that has not opened sockets.
// Every problem is reported, joined into one error.
func New(cfg Config) (*Transport, error) {
	var errs []error
	if cfg.NodeName == "" {
		errs = append(errs, errors.New("node name is empty"))
	} else if err := checkString("node name", cfg.NodeName, MaxNodeLen); err != nil {
		errs = append(errs, err)
	}
	bind, err := parseAddrPort(cfg.Bind)
	if err != nil {
		errs = append(errs, fmt.Errorf("bind: %w", err))
	}
	var peers []string
	for i, p := range cfg.Peers {
		ap, err := parseAddrPort(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("peers[%d]: %w", i, err))
		case ap == bind:
			errs = append(errs, fmt.Errorf("peers[%d]: %s is our own bind address", i, p))
		case slices.Contains(peers, ap.String()):
			errs = append(errs, fmt.Errorf("peers[%d]: duplicate %s", i, p))
		default:
			peers = append(peers, ap.String())
		}
	}
	advertTo := slices.Clone(peers)
	var paths []Path
	for i, p := range cfg.Paths {
		b, err := parseAddrPort(p.Bind)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("paths[%d].bind: %w", i, err))
			continue
		case b.Port() != bind.Port():
			errs = append(errs, fmt.Errorf("paths[%d].bind: port %d is not bind's %d", i, b.Port(), bind.Port()))
			continue
		case b.Addr().IsUnspecified() || bind.Addr().IsUnspecified():
			errs = append(errs, fmt.Errorf("paths[%d].bind: needs specific addresses (bind %s, path %s)", i, bind, b))
			continue
		}
		ap, err := parseAddrPort(p.Peer)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("paths[%d].peer: %w", i, err))
		case slices.Contains(advertTo, ap.String()):
			errs = append(errs, fmt.Errorf("paths[%d].peer: duplicate %s", i, ap))
		default:
			advertTo = append(advertTo, ap.String())
			paths = append(paths, Path{Bind: b.String(), Peer: ap.String()})
		}
	}
	if len(cfg.Keys) == 0 && !cfg.Insecure {
		errs = append(errs, errors.New("no cluster key: set a 16, 24 or 32 byte key, or insecure to run unencrypted"))
	}
	keys := make([][]byte, 0, len(cfg.Keys))
	for i, k := range cfg.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %d bytes: %w", i, len(k), err))
		}
		keys = append(keys, slices.Clone(k))
	}
	if len(cfg.Label) > 255 {
		errs = append(errs, fmt.Errorf("label is %d bytes, max 255", len(cfg.Label)))
	}
	if cfg.AdvertInterval < 0 {
		errs = append(errs, fmt.Errorf("advert interval %v is negative", cfg.AdvertInterval))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("peer: invalid config: %w", errors.Join(errs...))
	}

	cfg.Bind = bind.String()
	cfg.Peers = peers
	cfg.Paths = paths
	cfg.Keys = keys
	if cfg.AdvertInterval == 0 {
		cfg.AdvertInterval = DefaultAdvertInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport{cfg: cfg, peers: peers, advertTo: advertTo, log: cfg.Logger}
	t.del = &delegate{
		self:    cfg.NodeName,
		c:       &t.c,
		adverts: make(chan Received, AdvertQueueLen),
		now:     time.Now,
		nodes:   map[string]nodeInfo{},
		epoch:   newEpoch(),
		fresh:   newFreshness(),
		outbox:  make(chan outMsg, 16),
		bind:    cfg.Bind,
		log:     cfg.Logger,
	}
	t.logw = newLogWriter(cfg.Logger, &t.c)
	return t, nil
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want ip:port: %w", err)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%s: port must not be 0", s)
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%s: zoned addresses are not supported", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// AdvertInterval is the configured heartbeat period (after defaulting).
func (t *Transport) AdvertInterval() time.Duration { return t.cfg.AdvertInterval }

// memberlistConfig tunes memberlist for a two-node pair on one LAN: fast
// failure detection (a dead peer is noticed in about ProbeInterval plus
// SuspicionMult*ProbeInterval), quick convergence, and immediate reuse of
// a dead node's name so a restarted peer rejoins at once.
// It must be called with t.mu held.
func (t *Transport) memberlistConfig() (*memberlist.Config, error) {
	bind := netip.MustParseAddrPort(t.cfg.Bind)
	mc := memberlist.DefaultLANConfig()
	mc.Name = t.cfg.NodeName
	mc.BindAddr = bind.Addr().String()
	mc.BindPort = int(bind.Port())
	if !bind.Addr().IsUnspecified() {
		mc.AdvertiseAddr = bind.Addr().String()
	}
	mc.AdvertisePort = int(bind.Port())

	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.SuspicionMult = 2
	mc.GossipInterval = 100 * time.Millisecond
	mc.GossipToTheDeadTime = 5 * time.Second
	mc.PushPullInterval = 5 * time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.DeadNodeReclaimTime = time.Second
	mc.EnableCompression = false // adverts are ~100 bytes

	mc.Label = t.cfg.Label
	if len(t.cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(t.cfg.Keys, t.cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		mc.Keyring = kr
		t.keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Delegate = t.del
	mc.Events = t.del
	mc.Logger = log.New(t.logw, "", 0)
	if len(t.cfg.Paths) > 0 {
		pt, err := newPathTransport(bind, t.cfg.Paths, mc.Logger)
		if err != nil {
			return nil, err
		}
		mc.Transport = pt
	}
	return mc, nil
}

// Start creates the memberlist listening on Bind and returns once it is
// listening. It then joins the peers from a goroutine that lives until ctx
// ends, Leave or Shutdown, re-joining every second any peer that is not an
// alive member (a restarted peer, or one back from a partition).
func (t *Transport) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ml != nil || t.shut {
		return errors.New("peer: transport already started")
	}
	mc, err := t.memberlistConfig()
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		if mc.Transport != nil {
			_ = mc.Transport.Shutdown()
		}
		return fmt.Errorf("peer: listen on %s: %w", t.cfg.Bind, err)
	}
	t.ml = ml
	jctx, cancel := context.WithCancel(ctx)
	t.stopJoin = cancel
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.joinLoop(jctx, ml)
	}()
	octx, ocancel := context.WithCancel(ctx)
	t.stopOut = ocancel
	t.outWG.Go(func() { t.outLoop(octx, ml) })
	t.log.Info("cluster transport listening", "cluster", t.cfg.Bind, "node", t.cfg.NodeName,
		"encrypted", len(t.cfg.Keys) > 0, "label", t.cfg.Label)
	return nil
}

func (t *Transport) joinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	joined := map[string]bool{}
	tick := time.NewTicker(joinRetry)
	defer tick.Stop()
	for {
		for _, p := range t.peers {
			// The delegate's copy, not ml.Members(): memberlist mutates
			// the nodes that returns without holding a lock we can take.
			if t.del.aliveAt(p) || ctx.Err() != nil {
				continue
			}
			if _, err := ml.Join([]string{p}); err != nil {
				if joined[p] {
					t.log.Warn("peer unreachable, retrying", "peer", p, "err", err)
				}
				joined[p] = false
				continue
			}
			if !joined[p] {
				t.log.Info("joined peer", "peer", p)
			}
			joined[p] = true
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// outLoop sends the delegate's challenges and answers to every peer
// address and path (and the address a challenged advert named), until
// ctx ends.
func (t *Transport) outLoop(ctx context.Context, ml *memberlist.Memberlist) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-t.del.outbox:
			to := t.advertTo
			if m.alsoTo != "" && m.alsoTo != t.cfg.Bind && !slices.Contains(to, m.alsoTo) {
				to = append(slices.Clip(to), m.alsoTo)
			}
			for _, p := range to {
				ap := netip.MustParseAddrPort(p)
				node := &memberlist.Node{Name: t.del.nameFor(p), Addr: ap.Addr().AsSlice(), Port: ap.Port()}
				if err := ml.SendBestEffort(node, m.msg); err != nil {
					t.log.Debug("send epoch challenge or answer", "peer", p, "err", err)
				}
			}
		}
	}
}

// NameClash is a box other than this one sending verified adverts under
// this node's name: both boxes were given the same node.name.
type NameClash struct {
	From string    // its cluster address
	At   time.Time // when its last advert arrived; zero: never
}

// NameClash reports the last box heard using this node's name. Its
// adverts are never delivered (they count as "self").
func (t *Transport) NameClash() NameClash {
	t.del.mu.Lock()
	defer t.del.mu.Unlock()
	return t.del.clash
}

// Epoch is this run's random epoch, carried by every advert it sends.
func (t *Transport) Epoch() uint64 { return t.del.epoch }

// Adverts delivers adverts from the peer. It is buffered (AdvertQueueLen);
// when full, new adverts are dropped and counted as "queue_full". It is
// never closed.
func (t *Transport) Adverts() <-chan Received { return t.del.adverts }

// SendAdvert sends a to every configured peer address, and on every path,
// as a memberlist best-effort packet (UDP; encrypted and labelled by
// memberlist), whether
// or not memberlist considers the peer alive, so adverts keep flowing
// across a membership split. Empty Node and zero Sent are filled in with
// NodeName and now; Epoch is always this run's. Seq is kept when it is
// higher than every sequence this Transport sent, else replaced by the
// next one: the peer drops an advert whose sequence is not new. It
// returns the errors of the peers it could not send to.
func (t *Transport) SendAdvert(a Advert) error {
	t.mu.Lock()
	ml, shut := t.ml, t.shut
	t.mu.Unlock()
	if ml == nil || shut {
		return errors.New("peer: transport not running")
	}
	if a.Node == "" {
		a.Node = t.cfg.NodeName
	}
	a.Epoch = t.del.epoch
	a.Seq = t.c.nextSeq(a.Seq)
	if a.Sent.IsZero() {
		a.Sent = time.Now()
	}
	body, err := a.MarshalBinary()
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	msg := encodeEnvelope(msgAdvert, t.cfg.Bind, body)
	var errs []error
	for _, p := range t.advertTo {
		ap := netip.MustParseAddrPort(p)
		// SendBestEffort works for any node: given a non-nil node,
		// rawSendMsgPacket skips the node map and writes to its address.
		node := &memberlist.Node{Name: t.del.nameFor(p), Addr: ap.Addr().AsSlice(), Port: ap.Port()}
		if err := ml.SendBestEffort(node, msg); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p, err))
			continue
		}
		t.c.sent.Add(1)
	}
	return errors.Join(errs...)
}

// Leave announces that this node leaves the member list, waiting up to
// timeout for the announcement to go out, and stops re-joining peers.
// Adverts can still be sent and received until Shutdown.
func (t *Transport) Leave(timeout time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ml == nil || t.shut {
		return errors.New("peer: transport not running")
	}
	t.stopJoinLoop()
	if err := t.ml.Leave(timeout); err != nil {
		return fmt.Errorf("peer: leave: %w", err)
	}
	return nil
}

// Shutdown stops the join loop and closes memberlist's sockets without
// announcing a leave (peers notice by probing); call Leave first for a
// graceful exit. It is safe to call more than once.
func (t *Transport) Shutdown() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.shut {
		return nil
	}
	t.shut = true
	if t.ml == nil {
		return nil
	}
	t.stopJoinLoop()
	t.stopOut()
	t.outWG.Wait()
	if err := t.ml.Shutdown(); err != nil {
		return fmt.Errorf("peer: shutdown: %w", err)
	}
	return nil
}

// stopJoinLoop must be called with t.mu held.
func (t *Transport) stopJoinLoop() {
	if t.stopJoin != nil {
		t.stopJoin()
	}
	t.wg.Wait()
}

// Members lists the other nodes memberlist knows, sorted by name, plus
// configured peers it has never seen (State "unknown").
func (t *Transport) Members() []Member {
	m := t.del.members(t.peers)
	slices.SortFunc(m, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return m
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats { return t.c.snapshot() }
