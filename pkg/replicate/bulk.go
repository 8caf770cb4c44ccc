package replicate

import (
	"encoding/binary"
	"github.com/tandem-lb/tandem/internal/sched"
	"sync"
	"time"
)

// chunks hands encoded BULK_BATCH frames from the Snapshot goroutine to
// the writer. The producer never waits for the network (Snapshot may hold
// the store's locks); memory is bounded by the encoded table.
type chunks struct {
	mu      sync.Mutex
	list    [][]byte
	done    bool // the producer has finished
	stop    bool // the writer gave up: the producer should stop early
	entries uint64
	ready   chan struct{} // cap 1
}

func (c *chunks) push(b []byte) bool {
	c.mu.Lock()
	stop := c.stop
	if !stop {
		c.list = append(c.list, b)
	}
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
	return !stop
}

// take waits for chunks; it returns nil, true once the producer is done
// and everything was taken.
func (c *chunks) take(out [][]byte) ([][]byte, bool) {
	for {
		c.mu.Lock()
		out = append(out[:0], c.list...)
		clear(c.list)
		c.list = c.list[:0]
		done := c.done
		c.mu.Unlock()
		if len(out) > 0 || done {
			return out, done && len(out) == 0
		}
		<-c.ready
	}
}

// sendBulk sends this node's whole Store as a new epoch: BULK_BEGIN(full),
// BULK_BATCH frames, BULK_END{count}. Updates published from the moment it
// starts are queued and follow the bulk, so nothing published during the
// snapshot is lost (an entry may arrive twice; Apply is idempotent).
func (r *Replicator) sendBulk(s *session) error {
	began := time.Now()
	r.qmu.Lock()
	r.queue, r.stamps = r.queue[:0], r.stamps[:0]
	r.resync = false
	r.qmu.Unlock()

	epoch := newEpoch()
	o := &r.out
	o.mu.Lock()
	o.epoch, o.seq, o.acked, o.syncSeq, o.synced, o.bulkN = epoch, 0, 0, 0, false, 0
	clear(o.unacked)
	o.unacked = o.unacked[:0]
	o.mu.Unlock()
	r.resyncs.Add(1)

	if err := s.send(appendBulkBegin(nil, epoch, bulkFull)); err != nil {
		return err
	}
	c := &chunks{ready: make(chan struct{}, 1)}
	go sched.Normal(func() { r.produceSnapshot(c) })
	var err error
	var batch [][]byte
	for {
		var done bool
		batch, done = c.take(batch)
		if done {
			break
		}
		for _, b := range batch {
			if err == nil {
				err = s.send(b)
			}
		}
		if err == nil {
			err = s.flush(r.timeout)
		}
		if err != nil {
			c.mu.Lock()
			c.stop = true
			c.mu.Unlock()
		}
	}
	if err != nil {
		return err
	}
	n := c.entries
	o.mu.Lock()
	o.bulkN = n
	o.mu.Unlock()
	r.sent.Add(n)
	if err := r.sendFlush(s, binary.AppendUvarint([]byte{msgBulkEnd}, n)); err != nil {
		return err
	}
	r.log.Info("sent full table to peer", "entries", n, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// produceSnapshot encodes the Store into BULK_BATCH frames of at most
// maxBatch entries.
func (r *Replicator) produceSnapshot(c *chunks) {
	var total uint64
	defer func() {
		c.mu.Lock()
		c.done, c.entries = true, total
		c.mu.Unlock()
		select {
		case c.ready <- struct{}{}:
		default:
		}
	}()
	size := 16 + r.maxBatch*12
	buf := append(make([]byte, 0, size), msgBulkBatch)
	n := 0
	var prev int64
	r.store.Snapshot(func(e Entry) bool {
		buf = appendEntry(buf, e, prev)
		prev = e.Expires
		n++
		total++
		if n < r.maxBatch {
			return true
		}
		ok := c.push(buf)
		buf = append(make([]byte, 0, size), msgBulkBatch)
		n, prev = 0, 0
		return ok
	})
	if n > 0 {
		c.push(buf)
	}
}
