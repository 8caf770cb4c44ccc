package peer

import "sync/atomic"

// Drop reasons, the keys of Stats.Dropped.
const (
	// DropDecode is a payload that is not a valid envelope or advert, or
	// carries an unknown message type.
	DropDecode = "decode"
	// DropSelf is an advert carrying our own node name.
	DropSelf = "self"
	// DropQueueFull is an advert dropped because Adverts() was not drained.
	DropQueueFull = "queue_full"
	// DropDecrypt is a packet or stream memberlist could not decrypt with
	// any of our keys (wrong key, or plaintext where a key is required).
	DropDecrypt = "decrypt"
	// DropLabel is a packet or stream with a missing or different label.
	DropLabel = "label"
	// DropReplay is an advert older than one already accepted from its
	// node: a lower sequence in the node's epoch, or an epoch the node
	// has replaced since (see freshness.go).
	DropReplay = "replay"
	// DropDuplicate is an advert whose sequence was already accepted: the
	// copy that came by another heartbeat path, or a replay of the last.
	DropDuplicate = "duplicate"
	// DropUnverified is an advert of an epoch its node has not yet proved
	// to be its current one (a restarted peer, for one round trip).
	DropUnverified = "unverified"
	// DropNoEpoch is an advert without an epoch (an older Tandem).
	DropNoEpoch = "no_epoch"
	// DropOther is any other packet memberlist discarded (bad message type,
	// checksum, undecodable memberlist message, full handler queue).
	DropOther = "other"
)

// dropReasons lists every reason; DropOther stays last (unknown reasons
// count under it).
var dropReasons = [...]string{DropDecode, DropSelf, DropQueueFull, DropDecrypt, DropLabel,
	DropReplay, DropDuplicate, DropUnverified, DropNoEpoch, DropOther}

// Stats are counters since New, for status output and tests.
type Stats struct {
	// AdvertsSent counts advert packets handed to the network, one per
	// peer address per SendAdvert.
	AdvertsSent uint64
	// AdvertsReceived counts adverts delivered to the Adverts channel.
	AdvertsReceived uint64
	// Dropped counts discarded input by reason; every reason is present.
	Dropped map[string]uint64
}

// Member is one node of the pair as memberlist sees it, other than self.
type Member struct {
	Name  string // node name; the configured address for a peer never seen
	Addr  string // ip:port
	Alive bool   // memberlist considers it alive (or merely suspect)
	State string // "alive", "dead" (failed or left) or "unknown" (never seen)
}

type counters struct {
	sent, received atomic.Uint64
	seq            atomic.Uint64 // last advert sequence number assigned
	dropped        [len(dropReasons)]atomic.Uint64
}

// nextSeq returns want when it is above every sequence assigned so far,
// else the next one, and records it as the last.
func (c *counters) nextSeq(want uint64) uint64 {
	for {
		last := c.seq.Load()
		next := max(want, last+1)
		if c.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

func (c *counters) drop(reason string) {
	for i, r := range dropReasons {
		if r == reason {
			c.dropped[i].Add(1)
			return
		}
	}
	c.dropped[len(dropReasons)-1].Add(1) // unknown reason: count as other
}

func (c *counters) snapshot() Stats {
	s := Stats{
		AdvertsSent:     c.sent.Load(),
		AdvertsReceived: c.received.Load(),
		Dropped:         make(map[string]uint64, len(dropReasons)),
	}
	for i, r := range dropReasons {
		s.Dropped[r] = c.dropped[i].Load()
	}
	return s
}
