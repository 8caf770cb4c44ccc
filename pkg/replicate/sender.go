package replicate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// sendState is this node's outgoing stream. The dial loop's goroutine
// owns it; the ack reader trims unacked and marks progress, under mu.
type sendState struct {
	mu      sync.Mutex
	epoch   uint64  // this stream's epoch: a fresh random value at every full bulk
	seq     uint64  // last UPDATE sequence number assigned in epoch
	acked   uint64  // highest sequence number acknowledged in epoch
	syncSeq uint64  // the peer is in sync once it acknowledges this seq in epoch
	synced  bool    // ... which it has
	bulkN   uint64  // entries of the full bulk not yet credited to Acked
	unacked []batch // sent, not yet acknowledged, in seq order
	ackCh   chan struct{}
}

// batch is one UPDATE frame kept for resending until acknowledged.
type batch struct {
	seq    uint64
	n      int
	oldest int64  // r.now() at the Publish of its first entry
	plain  []byte // the frame's plaintext, resealed on resend
}

// dialLoop keeps one outgoing connection to the peer, redialling with
// jittered exponential backoff.
func (r *Replicator) dialLoop(ctx context.Context) {
	backoff := r.backoffMin
	for {
		established, err := r.runOutbound(ctx)
		if ctx.Err() != nil {
			return
		}
		if established {
			backoff = r.backoffMin
			r.log.Info("replication stream to peer lost", "err", err)
			r.noteLost(err)
		} else if err != nil {
			r.noteProblem("out", err)
		}
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff = min(2*backoff, r.backoffMax)
	}
}

// noteLost counts a broken established stream when the cause was a bad frame.
func (r *Replicator) noteLost(err error) {
	if errors.Is(err, errOpen) || errors.Is(err, errFrameTooLarge) || errors.Is(err, errMalformed) {
		r.countDrop(dropFrame, 1)
	}
}

// runOutbound dials, authenticates and streams until the connection or ctx
// ends. established reports whether the handshake succeeded.
func (r *Replicator) runOutbound(ctx context.Context) (established bool, err error) {
	d := net.Dialer{Timeout: r.timeout}
	c, err := d.DialContext(ctx, "tcp", r.cfg.Peer)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", r.cfg.Peer, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r.mu.Lock()
	r.outConn = c
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.outConn, r.outKey, r.outUp = nil, nil, false
		r.mu.Unlock()
		r.out.mu.Lock()
		r.out.synced = false
		r.out.mu.Unlock()
	}()

	s, peer, err := clientHandshake(c, r.keys.Load(), r.cfg.Node, r.cfg.ConfigHash, r.timeout)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	r.outKey = s.key
	r.outUp, r.peerName, r.problem, r.problemReason = true, s.peer, "", ""
	r.mu.Unlock()
	r.log.Info("replication stream to peer connected", "node", s.peer)

	ackDone := make(chan struct{})
	var ackErr error
	go func() {
		defer close(ackDone)
		defer r.recoverConn("out", c)
		ackErr = r.readAcks(s)
		c.Close()
	}()
	err = r.sendLoop(ctx, s, peer, ackDone)
	c.Close()
	<-ackDone
	if err == nil || errors.Is(err, net.ErrClosed) {
		err = ackErr
	}
	return true, err
}

// readAcks reads the receiver's ACKs until the connection fails.
func (r *Replicator) readAcks(s *session) error {
	for {
		b, err := s.recv(r.timeout)
		if err != nil {
			return err
		}
		if b[0] != msgAck {
			return fmt.Errorf("%w: message %d from receiver", errMalformed, b[0])
		}
		a, err := parseAck(b[1:])
		if err != nil {
			return err
		}
		r.onAck(a)
	}
}

// onAck drops acknowledged batches, credits Acked and records the lag.
func (r *Replicator) onAck(a ack) {
	if a.epoch == 0 {
		return // liveness only
	}
	now := r.now()
	o := &r.out
	o.mu.Lock()
	if a.epoch != o.epoch {
		o.mu.Unlock()
		return // an old stream's ack, overtaken by a bulk
	}
	credit := o.bulkN
	o.bulkN = 0
	lag := int64(-1)
	i := 0
	for ; i < len(o.unacked) && o.unacked[i].seq <= a.seq; i++ {
		credit += uint64(o.unacked[i].n)
		lag = now - o.unacked[i].oldest
	}
	clear(o.unacked[:i])
	o.unacked = o.unacked[i:]
	o.acked = max(o.acked, a.seq)
	if a.seq >= o.syncSeq {
		o.synced = true
	}
	o.mu.Unlock()
	r.acked.Add(credit)
	if lag >= 0 {
		r.lagNs.Store(lag)
	}
	select {
	case o.ackCh <- struct{}{}:
	default:
	}
}

func (r *Replicator) windowFull() bool {
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	return len(r.out.unacked) >= r.maxInflight
}

// sendLoop starts the stream (resume or bulk), then sends queued updates
// in batches of at most BatchDelay, pings an idle connection, and runs a
// full bulk whenever Publish asks for a resync.
func (r *Replicator) sendLoop(ctx context.Context, s *session, peer streamState, dead <-chan struct{}) error {
	if err := r.startStream(s, peer); err != nil {
		return err
	}
	blobsSent, err := r.sendBlobs(s)
	if err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ping := time.NewTicker(r.heartbeat / 2)
	defer ping.Stop()
	lastWrite := time.Now()
	delay := int64(r.cfg.BatchDelay)
	for {
		r.qmu.Lock()
		n, resync := len(r.queue), r.resync
		var first int64
		if n > 0 {
			first = r.stamps[0]
		}
		r.qmu.Unlock()

		var wait <-chan time.Time
		var acked <-chan struct{}
		switch {
		case r.blobGen() != blobsSent: // a document changed (blob.go)
			if blobsSent, err = r.sendBlobs(s); err != nil {
				return err
			}
			lastWrite = time.Now()
			continue
		case resync:
			if err := r.sendBulk(s); err != nil {
				return err
			}
			lastWrite = time.Now()
			continue
		case n > 0 && r.windowFull():
			acked = r.out.ackCh
		case n >= r.maxBatch || n > 0 && r.now()-first >= delay:
			if err := r.sendQueued(s); err != nil {
				return err
			}
			lastWrite = time.Now()
			continue
		case n > 0:
			timer.Reset(time.Duration(first + delay - r.now()))
			wait = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-dead:
			return nil
		case <-r.notify:
		case <-wait:
		case <-acked:
		case <-ping.C:
			if time.Since(lastWrite) >= r.heartbeat {
				if err := r.sendFlush(s, []byte{msgPing}); err != nil {
					return err
				}
				lastWrite = time.Now()
			}
		}
	}
}

func (r *Replicator) sendFlush(s *session, plain []byte) error {
	if err := s.send(plain); err != nil {
		return err
	}
	return s.flush(r.timeout)
}

// startStream resumes the peer's position in this stream when it can (same
// epoch, every update it lacks still kept, no resync pending): it resends
// the unacknowledged updates between BULK_BEGIN(resume) and BULK_END.
// Otherwise it sends a full bulk.
func (r *Replicator) startStream(s *session, peer streamState) error {
	r.qmu.Lock()
	resync := r.resync
	r.qmu.Unlock()
	o := &r.out
	o.mu.Lock()
	ok := !resync && peer.epoch != 0 && peer.epoch == o.epoch && peer.seq >= o.acked && peer.seq <= o.seq
	var resend []batch
	if ok {
		for _, b := range o.unacked {
			if b.seq > peer.seq {
				resend = append(resend, b)
			}
		}
		o.syncSeq, o.synced = o.seq, false
	}
	epoch := o.epoch
	o.mu.Unlock()
	if !ok {
		return r.sendBulk(s)
	}
	r.resumes.Add(1)
	if err := s.send(appendBulkBegin(nil, epoch, bulkResume)); err != nil {
		return err
	}
	var n uint64
	for _, b := range resend {
		if err := s.send(b.plain); err != nil {
			return err
		}
		n += uint64(b.n)
	}
	r.sent.Add(n)
	r.log.Info("resumed replication stream", "resent_entries", n, "resent_batches", len(resend))
	return r.sendFlush(s, binary.AppendUvarint([]byte{msgBulkEnd}, n))
}

func appendBulkBegin(b []byte, epoch uint64, kind byte) []byte {
	b = append(b, msgBulkBegin)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return append(b, kind)
}

// sendQueued sends everything queued as UPDATE frames of at most maxBatch
// entries, each with the next sequence number, and keeps them until acked.
func (r *Replicator) sendQueued(s *session) error {
	r.qmu.Lock()
	q, stamps := r.queue, r.stamps
	r.queue, r.stamps = r.spareQ[:0], r.spareS[:0]
	r.qmu.Unlock()
	defer func() { r.spareQ, r.spareS = q[:0], stamps[:0] }()
	for k, at := range stamps {
		chunk := q[k*r.maxBatch : min(len(q), (k+1)*r.maxBatch)]
		if err := r.sendUpdate(s, chunk, at); err != nil {
			return err
		}
	}
	return s.flush(r.timeout)
}

// sendUpdate sends q as the next UPDATE; oldest is its first entry's
// Publish time.
func (r *Replicator) sendUpdate(s *session, q []Entry, oldest int64) error {
	o := &r.out
	o.mu.Lock()
	o.seq++
	seq := o.seq
	o.mu.Unlock()
	b := make([]byte, 0, 12+len(q)*14)
	b = append(b, msgUpdate)
	b = binary.AppendUvarint(b, seq)
	var prev int64
	for _, e := range q {
		b = appendEntry(b, e, prev)
		prev = e.Expires
	}
	o.mu.Lock()
	o.unacked = append(o.unacked, batch{seq: seq, n: len(q), oldest: oldest, plain: b})
	o.mu.Unlock()
	r.sent.Add(uint64(len(q)))
	return s.send(b)
}

func newEpoch() uint64 {
	for {
		if e := rand.Uint64(); e != 0 {
			return e
		}
	}
}
