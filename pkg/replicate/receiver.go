package replicate

import (
	"context"
	"errors"
	"fmt"
	"github.com/tandem-lb/tandem/internal/sched"
	"net"
	"sync"
	"time"
)

// recvState is this node's position in the peer's stream. Only the
// inbound handler holding recvSem touches it; it outlives connections so
// the peer can resume.
type recvState struct {
	epoch uint64 // 0: no complete bulk of the current epoch applied
	seq   uint64 // last UPDATE applied in epoch
}

// acceptLoop accepts the peer's stream connections until the listener closes.
func (r *Replicator) acceptLoop(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("replication accept failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		release, timeout, ok := r.pre.admit(c.RemoteAddr(), r.timeout)
		if !ok {
			c.Close()
			r.countDrop(dropBusy, 1)
			continue
		}
		// the peer's entries are applied here: bulk work, off real time
		wg.Go(func() { sched.Normal(func() { r.serveInbound(ctx, c, release, timeout) }) })
	}
}

// serveInbound authenticates a connection and, if it is the peer with the
// same config, makes it the inbound stream (closing an older one). The
// handshake holds a pre-authentication slot (release) and must end within
// hsTimeout.
func (r *Replicator) serveInbound(ctx context.Context, c net.Conn, release func(), hsTimeout time.Duration) {
	defer c.Close()
	defer r.recoverConn("in", c)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer release() // once the handshake is over, or if it panicked
	s, hash, err := serverHandshake(c, r.keys.Load(), r.cfg.Node, hsTimeout)
	release()
	if err != nil {
		r.noteProblem("in", err)
		return
	}
	if hash != r.cfg.ConfigHash {
		// Tell the peer our hash so it can log the mismatch too.
		r.sendFlush(s, appendState(nil, streamState{configHash: r.cfg.ConfigHash}))
		r.noteProblem("in", refuse(dropConfig, "peer %q runs config %s, this node %s: refusing to sync", s.peer, hash, r.cfg.ConfigHash))
		return
	}
	connected := time.Now()

	r.mu.Lock()
	old := r.inConn
	r.inConn, r.inKey = c, s.key
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	select {
	case r.recvSem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-r.recvSem }()
	r.mu.Lock()
	if r.inConn != c {
		r.mu.Unlock()
		return // a newer connection from the peer took over
	}
	r.inUp, r.bulkDone, r.bulking, r.peerName, r.problem, r.problemReason = true, false, false, s.peer, "", ""
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.inConn == c {
			r.inConn, r.inUp, r.bulkDone, r.bulking = nil, false, false, false
		}
		r.mu.Unlock()
	}()
	r.log.Info("replication stream from peer connected", "node", s.peer)
	err = r.receive(s, connected)
	if ctx.Err() == nil {
		r.log.Info("replication stream from peer lost", "node", s.peer, "err", err)
		r.noteLost(err)
	}
}

// receive tells the peer where it stands in its stream (STATE), then
// applies BULK and UPDATE frames in order, acknowledging each UPDATE and
// BULK_END, until the connection fails. An out-of-order or malformed frame
// ends the connection; the peer then reconnects and resumes or resyncs.
func (r *Replicator) receive(s *session, connected time.Time) error {
	in := &r.in
	if err := r.sendFlush(s, appendState(nil, streamState{r.cfg.ConfigHash, in.epoch, in.seq})); err != nil {
		return err
	}
	var (
		entries   []Entry
		ackBuf    []byte
		lastAck   time.Time
		inBulk    bool
		bulkKind  byte
		bulkEpoch uint64
		bulkN     uint64
		bulkStart = connected
		fulls     int // full bulks begun on this connection
	)
	sendAck := func() error {
		ackBuf = appendAck(ackBuf[:0], ack{in.epoch, in.seq})
		lastAck = time.Now()
		return r.sendFlush(s, ackBuf)
	}
	apply := func(b []byte) (int, error) {
		var err error
		entries, err = decodeEntries(entries[:0], b)
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			r.store.Apply(e)
		}
		r.received.Add(uint64(len(entries)))
		return len(entries), nil
	}
	for {
		b, err := s.recv(r.timeout)
		if err != nil {
			return err
		}
		d := decoder{b: b[1:]}
		switch b[0] {
		case msgBulkBegin:
			epoch, kind := d.u64(), d.byte()
			if err := d.end(); err != nil || epoch == 0 || inBulk ||
				kind > bulkResume || kind == bulkResume && epoch != in.epoch {
				return fmt.Errorf("%w: BULK_BEGIN", errMalformed)
			}
			if kind == bulkFull {
				in.epoch, in.seq = 0, 0
				if fulls > 0 {
					bulkStart = time.Now() // a resync on this connection
				}
				fulls++
			}
			inBulk, bulkKind, bulkEpoch, bulkN = true, kind, epoch, 0
			r.setBulking(true)
		case msgBulkBatch:
			if !inBulk || bulkKind != bulkFull {
				return fmt.Errorf("%w: BULK_BATCH outside a full bulk", errMalformed)
			}
			n, err := apply(b[1:])
			if err != nil {
				return err
			}
			bulkN += uint64(n)
			if time.Since(lastAck) >= r.heartbeat {
				ackBuf = appendAck(ackBuf[:0], ack{}) // liveness while a long bulk is applied
				lastAck = time.Now()
				if err := r.sendFlush(s, ackBuf); err != nil {
					return err
				}
			}
		case msgUpdate:
			seq := d.uvarint()
			if d.err != nil || in.epoch == 0 {
				return fmt.Errorf("%w: UPDATE before a bulk", errMalformed)
			}
			switch {
			case seq <= in.seq: // already applied (a resend); just acknowledge
			case seq == in.seq+1:
				n, err := apply(d.b)
				if err != nil {
					return err
				}
				in.seq = seq
				if inBulk {
					bulkN += uint64(n)
				}
			default:
				return fmt.Errorf("%w: UPDATE %d after %d", errMalformed, seq, in.seq)
			}
			if err := sendAck(); err != nil {
				return err
			}
		case msgBulkEnd:
			count := d.uvarint()
			if err := d.end(); err != nil || !inBulk || count != bulkN {
				return fmt.Errorf("%w: BULK_END of %d entries after %d", errMalformed, count, bulkN)
			}
			inBulk = false
			if bulkKind == bulkFull {
				in.epoch, in.seq = bulkEpoch, 0
			}
			r.bulkReceived(bulkKind == bulkFull, bulkN, time.Since(bulkStart))
			if err := sendAck(); err != nil {
				return err
			}
		case msgPing:
			if err := sendAck(); err != nil {
				return err
			}
		case msgBlob:
			if err := r.recvBlob(b[1:]); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: message type %d", errMalformed, b[0])
		}
	}
}

func (r *Replicator) setBulking(v bool) {
	r.mu.Lock()
	r.bulking = v
	r.mu.Unlock()
}

// bulkReceived records a completed bulk (full) or resume.
func (r *Replicator) bulkReceived(full bool, n uint64, took time.Duration) {
	r.mu.Lock()
	r.bulking, r.bulkDone = false, true
	if full {
		r.lastBulkN, r.lastBulkD = n, took
	}
	r.mu.Unlock()
	r.bulkOnce.Do(func() { close(r.bulkCh) })
	if full {
		r.log.Info("received full table from peer", "entries", n, "took", took.Round(time.Millisecond))
	}
}
