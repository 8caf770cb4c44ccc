package peer

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Every user message starts with an envelope:
//
//	type (1) | sender addr len (1) | sender addr "ip:port"
//
// followed by the body of that type. memberlist does not hand the UDP
// source address to delegates, so the sender states its own cluster
// address; when the pair is keyed the envelope is authenticated by
// memberlist's AES-GCM like the body. Besides adverts there are the
// challenges and answers that verify a node's epoch (freshness.go);
// other types are dropped as "decode".
const (
	msgAdvert    byte = 'A'
	msgChallenge byte = 'C'
	msgAnswer    byte = 'R'

	maxAddrLen = len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")

	// MaxUserMsgLen bounds a user message: an envelope and the largest
	// advert. A longer one is dropped as "decode" before it is parsed.
	// (memberlist bounds the rest itself: 64 KiB packets, 20 MiB of
	// push/pull state, which our LocalState and MergeRemoteState never use.)
	MaxUserMsgLen = 2 + maxAddrLen + MaxAdvertLen
)

func encodeEnvelope(typ byte, from string, body []byte) []byte {
	b := make([]byte, 0, 2+len(from)+len(body))
	b = append(b, typ, byte(len(from)))
	b = append(b, from...)
	return append(b, body...)
}

// decodeEnvelope returns the type, sender address and body of msg; body
// aliases msg.
func decodeEnvelope(msg []byte) (typ byte, from string, body []byte, ok bool) {
	r := reader{b: msg}
	if typ, ok = r.byte(); !ok {
		return 0, "", nil, false
	}
	n, ok := r.byte()
	if !ok || int(n) > maxAddrLen {
		return 0, "", nil, false
	}
	addr, ok := r.bytes(int(n))
	if !ok {
		return 0, "", nil, false
	}
	ap, err := netip.ParseAddrPort(string(addr))
	if err != nil {
		return 0, "", nil, false
	}
	return typ, ap.String(), r.b, true
}

// delegate receives memberlist's user messages and membership events. All
// of its methods run on memberlist goroutines, some under memberlist's
// locks: they never block and never call back into memberlist.
type delegate struct {
	self    string
	c       *counters
	adverts chan Received
	now     func() time.Time

	// epoch is this run's; fresh checks the peers'. outbox carries the
	// challenges and answers to send (NotifyMsg must not call memberlist).
	epoch      uint64
	fresh      *freshness
	outbox     chan outMsg
	bind       string // our envelope address
	log        *slog.Logger
	lastAnswer time.Time // guarded by mu
	clash      NameClash // guarded by mu

	mu    sync.Mutex
	nodes map[string]nodeInfo // by node name
}

type nodeInfo struct {
	addr  string // ip:port
	alive bool
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

// NotifyMsg decodes one user message. It does not retain msg: the advert
// decoder copies every string out of it.
func (d *delegate) NotifyMsg(msg []byte) {
	if len(msg) > MaxUserMsgLen {
		d.c.drop(DropDecode)
		return
	}
	typ, from, body, ok := decodeEnvelope(msg)
	switch {
	case !ok:
		d.c.drop(DropDecode)
		return
	case typ == msgChallenge:
		d.challenged(body)
		return
	case typ == msgAnswer:
		d.answered(body)
		return
	case typ != msgAdvert:
		d.c.drop(DropDecode)
		return
	}
	var a Advert
	if err := a.UnmarshalBinary(body); err != nil {
		d.c.drop(DropDecode)
		return
	}
	if a.Node == d.self {
		d.c.drop(DropSelf)
		if from != d.bind {
			d.otherSelf(a, from)
		}
		return
	}
	if reason, ch := d.fresh.advert(a, d.now()); reason != "" {
		d.c.drop(reason)
		if ch != nil {
			// To the address the advert names too: the node may reach
			// us by a path whose far end is not among our peers.
			d.send(outMsg{msg: encodeEnvelope(msgChallenge, d.bind, ch.marshal()), alsoTo: from})
		}
		return
	}
	// Counted before the hand-off, so a reader of the channel never sees
	// the counter lag behind what it received; undone if the queue is full.
	d.c.received.Add(1)
	select {
	case d.adverts <- Received{Advert: a, From: from, At: d.now()}:
	default:
		d.c.received.Add(^uint64(0))
		d.c.drop(DropQueueFull)
	}
}

// otherSelf handles an advert with our name from another address: a
// second box configured with our node name. It is verified like any
// advert (a replay must not raise the alarm), then recorded for
// NameClash.
func (d *delegate) otherSelf(a Advert, from string) {
	now := d.now()
	reason, ch := d.fresh.advert(a, now)
	if ch != nil {
		d.send(outMsg{msg: encodeEnvelope(msgChallenge, d.bind, ch.marshal()), alsoTo: from})
	}
	if reason != "" && reason != DropDuplicate {
		return
	}
	d.mu.Lock()
	first := d.clash.At.IsZero() || d.clash.From != from
	d.clash = NameClash{From: from, At: now}
	d.mu.Unlock()
	if first {
		d.log.Error("another box uses this node's name: give each box its own node.name", "node", d.self, "peer", from)
	}
}

// challenged answers a challenge naming this node with our epoch and the
// last sequence sent, at most once per answerEvery.
func (d *delegate) challenged(body []byte) {
	var c challenge
	if err := c.unmarshal(body); err != nil {
		d.c.drop(DropDecode)
		return
	}
	if c.Node != d.self {
		return // meant for another node: nothing to prove
	}
	now := d.now()
	d.mu.Lock()
	if now.Sub(d.lastAnswer) < answerEvery {
		d.mu.Unlock()
		return
	}
	d.lastAnswer = now
	d.mu.Unlock()
	a := answer{Node: d.self, Nonce: c.Nonce, Epoch: d.epoch, Seq: d.c.seq.Load()}
	d.send(outMsg{msg: encodeEnvelope(msgAnswer, d.bind, a.marshal())})
}

// answered applies a node's answer to one of our challenges.
func (d *delegate) answered(body []byte) {
	var a answer
	if err := a.unmarshal(body); err != nil {
		d.c.drop(DropDecode)
		return
	}
	// An answer to no challenge of ours is ignored, not counted: every
	// answer arrives once per heartbeat path and only the first counts.
	if _, changed := d.fresh.answer(a, d.now()); changed {
		d.log.Info("peer epoch verified: its adverts count from now on", "peer", a.Node,
			"epoch", fmt.Sprintf("%016x", a.Epoch), "seq", a.Seq)
	}
}

// outMsg is a challenge or an answer for the transport's sender, which
// sends it to every peer address and path, and to alsoTo.
type outMsg struct {
	msg    []byte
	alsoTo string
}

// send queues a message for the transport's sender; never blocks.
func (d *delegate) send(msg outMsg) {
	select {
	case d.outbox <- msg:
	default:
	}
}

// NodeMeta is unused: the pair exchanges state in adverts, not metadata.
func (d *delegate) NodeMeta(limit int) []byte { return nil }

// GetBroadcasts is unused: adverts are sent directly, never gossiped.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState is unused: there is no push/pull state of ours.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState is unused, see LocalState.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin records a node memberlist now considers alive.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.set(n, true) }

// NotifyUpdate records a node's possibly new address.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.set(n, true) }

// NotifyLeave records a node memberlist declared dead or that left.
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.set(n, false) }

func (d *delegate) set(n *memberlist.Node, alive bool) {
	if n.Name == d.self {
		return
	}
	addr := nodeAddr(n)
	d.mu.Lock()
	defer d.mu.Unlock()
	if alive {
		// A node that came back under another name replaces the old one.
		for name, old := range d.nodes {
			if old.addr == addr && name != n.Name {
				delete(d.nodes, name)
			}
		}
	}
	d.nodes[n.Name] = nodeInfo{addr: addr, alive: alive}
}

// nameFor returns the name of the node last seen at addr, or addr itself.
func (d *delegate) nameFor(addr string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, n := range d.nodes {
		if n.addr == addr {
			return name
		}
	}
	return addr
}

// aliveAt reports whether a node at addr is an alive member.
func (d *delegate) aliveAt(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.nodes {
		if n.addr == addr && n.alive {
			return true
		}
	}
	return false
}

// members lists the known nodes, then configured peers never seen.
func (d *delegate) members(peers []string) []Member {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Member, 0, len(d.nodes)+len(peers))
	seen := map[string]bool{}
	for name, n := range d.nodes {
		state := "dead"
		if n.alive {
			state = "alive"
		}
		out = append(out, Member{Name: name, Addr: n.addr, Alive: n.alive, State: state})
		seen[n.addr] = true
	}
	for _, p := range peers {
		if !seen[p] {
			out = append(out, Member{Name: p, Addr: p, State: "unknown"})
		}
	}
	return out
}

func nodeAddr(n *memberlist.Node) string {
	ip, ok := netip.AddrFromSlice(n.Addr)
	if !ok {
		return net.JoinHostPort(n.Addr.String(), "0")
	}
	return netip.AddrPortFrom(ip.Unmap(), n.Port).String()
}
