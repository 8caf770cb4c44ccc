package peer

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Replayed adverts. memberlist's AES-GCM authenticates a packet but does
// not make it fresh: a captured MASTER advert replayed later decrypts
// fine. So every run of a node picks a random 64-bit epoch, and its
// adverts carry it with a sequence that grows within the epoch. A
// receiver keeps, per node, the epoch it has verified and the last
// sequence accepted in it:
//
//   - the verified epoch and a higher sequence: accepted;
//   - the verified epoch and the same sequence: "duplicate" (the copy
//     that came by another heartbeat path, or a replay of the last one);
//   - the verified epoch and a lower sequence, or an epoch that was
//     verified before and replaced since: "replay";
//   - any other epoch: "unverified". The receiver sends the node a
//     challenge, a fresh random nonce, over the same encrypted channel;
//     the node answers with the nonce, its current epoch and the last
//     sequence it sent. Only that answer makes an epoch verified, and the
//     sequence in it is where the epoch starts: every advert a replayer
//     can have captured has a sequence at most that high.
//
// A challenge-response rather than a time window: it needs no agreement
// between the boxes' clocks (a pair whose clocks differ would otherwise
// refuse a restarted peer and end with two masters), and a dead node
// never answers, so nothing it sent can hold its peer back after it dies.
// The cost is one round trip before a restarted node's adverts count.
const (
	// nonceLen is the size of a challenge.
	nonceLen = 16
	// challengeEvery bounds how often one node is challenged: at most one
	// challenge per interval while its adverts stay unverified.
	challengeEvery = 50 * time.Millisecond
	// challengeTTL is how long an answer to a challenge is accepted.
	challengeTTL = 2 * time.Second
	// keepNonces is how many challenges of one node may be outstanding
	// (an answer may arrive after the next challenge went out).
	keepNonces = 4
	// keepRetired bounds the replaced epochs remembered per node.
	keepRetired = 8
	// maxFreshNodes bounds the nodes tracked; names only ever come from
	// authenticated adverts, and a pair has one peer.
	maxFreshNodes = 16
	// answerEvery is the least time between two answers this node sends,
	// so replayed challenges cannot make it send more.
	answerEvery = 10 * time.Millisecond
)

// freshness is the receiver's record of the nodes' epochs. It is safe
// for concurrent use.
type freshness struct {
	mu    sync.Mutex
	nodes map[string]*nodeEpoch
	rand  func([]byte) // crypto/rand.Read; tests inject their own
}

type nodeEpoch struct {
	epoch   uint64 // verified epoch; 0 before the first answer
	seq     uint64 // last sequence accepted in epoch
	retired []uint64
	nonces  []pendingNonce
	asked   time.Time // last challenge sent
	used    time.Time // last touched, for eviction
}

type pendingNonce struct {
	n  [nonceLen]byte
	at time.Time
}

func newFreshness() *freshness {
	return &freshness{nodes: map[string]*nodeEpoch{}, rand: func(b []byte) { _, _ = rand.Read(b) }}
}

// advert decides whether a is fresh. It returns "" to accept it, or the
// drop reason; when the epoch is unverified and no challenge went out
// recently it also returns the challenge to send.
func (f *freshness) advert(a Advert, now time.Time) (reason string, ch *challenge) {
	if a.Epoch == 0 {
		return DropNoEpoch, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.node(a.Node, now)
	switch {
	case st.epoch == a.Epoch && a.Seq > st.seq:
		st.seq = a.Seq
		return "", nil
	case st.epoch == a.Epoch && a.Seq == st.seq:
		return DropDuplicate, nil
	case st.epoch == a.Epoch || slices.Contains(st.retired, a.Epoch):
		return DropReplay, nil
	}
	if !st.asked.IsZero() && now.Sub(st.asked) < challengeEvery {
		return DropUnverified, nil
	}
	c := &challenge{Node: a.Node}
	f.rand(c.Nonce[:])
	st.asked = now
	st.nonces = append(st.nonces, pendingNonce{n: c.Nonce, at: now})
	if len(st.nonces) > keepNonces {
		st.nonces = st.nonces[len(st.nonces)-keepNonces:]
	}
	return DropUnverified, c
}

// answer applies a node's answer to a challenge: when it carries an
// outstanding nonce, its epoch becomes the node's verified one, starting
// after its sequence. It reports whether the answer was accepted and
// whether it changed the verified epoch.
func (f *freshness) answer(r answer, now time.Time) (ok, changed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, known := f.nodes[r.Node]
	if !known || r.Epoch == 0 {
		return false, false
	}
	i := slices.IndexFunc(st.nonces, func(p pendingNonce) bool { return p.n == r.Nonce })
	if i < 0 || now.Sub(st.nonces[i].at) > challengeTTL {
		return false, false
	}
	st.nonces = slices.Delete(st.nonces, i, i+1)
	st.used = now
	if r.Epoch == st.epoch {
		st.seq = max(st.seq, r.Seq)
		return true, false
	}
	if st.epoch != 0 {
		st.retired = append(st.retired, st.epoch)
		if len(st.retired) > keepRetired {
			st.retired = st.retired[len(st.retired)-keepRetired:]
		}
	}
	st.retired = slices.DeleteFunc(st.retired, func(e uint64) bool { return e == r.Epoch })
	st.epoch, st.seq = r.Epoch, r.Seq
	return true, true
}

// node returns the record of name, creating it (and evicting the least
// recently used record beyond maxFreshNodes). f.mu must be held.
func (f *freshness) node(name string, now time.Time) *nodeEpoch {
	st, ok := f.nodes[name]
	if !ok {
		if len(f.nodes) >= maxFreshNodes {
			var oldest string
			for n, s := range f.nodes {
				if oldest == "" || s.used.Before(f.nodes[oldest].used) {
					oldest = n
				}
			}
			delete(f.nodes, oldest)
		}
		st = &nodeEpoch{}
		f.nodes[name] = st
	}
	st.used = now
	return st
}

// challenge asks Node to prove its current epoch:
//
//	node len (1) | node | nonce (16)
type challenge struct {
	Node  string
	Nonce [nonceLen]byte
}

// answer is a node's reply to a challenge:
//
//	node len (1) | node | nonce (16) | epoch (8) | seq (8)
//
// Seq is the last sequence the node has sent in Epoch.
type answer struct {
	Node  string
	Nonce [nonceLen]byte
	Epoch uint64
	Seq   uint64
}

func (c challenge) marshal() []byte {
	b := appendString(make([]byte, 0, 1+len(c.Node)+nonceLen), c.Node)
	return append(b, c.Nonce[:]...)
}

func (c *challenge) unmarshal(b []byte) error {
	r := reader{b: b}
	node, err := r.string("node", MaxNodeLen)
	if err != nil {
		return err
	}
	n, ok := r.bytes(nonceLen)
	if !ok {
		return ErrTruncated
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d", ErrTrailing, len(r.b))
	}
	c.Node = node
	copy(c.Nonce[:], n)
	return nil
}

func (a answer) marshal() []byte {
	b := appendString(make([]byte, 0, 1+len(a.Node)+nonceLen+16), a.Node)
	b = append(b, a.Nonce[:]...)
	b = binary.BigEndian.AppendUint64(b, a.Epoch)
	return binary.BigEndian.AppendUint64(b, a.Seq)
}

func (a *answer) unmarshal(b []byte) error {
	r := reader{b: b}
	node, err := r.string("node", MaxNodeLen)
	if err != nil {
		return err
	}
	n, ok := r.bytes(nonceLen)
	if !ok {
		return ErrTruncated
	}
	var out answer
	if out.Epoch, ok = r.uint64(); !ok {
		return ErrTruncated
	}
	if out.Seq, ok = r.uint64(); !ok {
		return ErrTruncated
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d", ErrTrailing, len(r.b))
	}
	out.Node = node
	copy(out.Nonce[:], n)
	*a = out
	return nil
}

// newEpoch picks a run's epoch: random, never 0.
func newEpoch() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}
