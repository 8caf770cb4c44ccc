//go:build linux

package dataplane

import (
	"golang.org/x/sys/unix"
)

// upend is one request being timed: a slot of the loop's ring.
type upend struct {
	f        *uflow  // nil once answered, forgotten or due
	srv      *Server // the server it went to
	at       int64   // when it falls due, loop clock
	key, dup uint32  // udpMatch.request
	retried  bool    // already a retry: never re-sent again
	req      []byte  // the request (retry on, small enough), else empty
}

// uretry is what a flow of a timed cluster keeps: its requests in the
// ring, oldest first, and the socket of the server it left on a retry.
type uretry struct {
	pend    [udpPendPerFlow]uint32 // ring positions (mod 2^32: unique among the live ones)
	n       int
	oldFd   int32 // -1: none
	oldSrv  *Server
	movedAt int64
}

// urTagResend tags the ring send of a re-sent request (not a client
// datagram of the batch).
const urTagResend = urTagSend | udpBatch

func (l *uloop) pendAt(pos uint32) *upend { return &l.rq[pos&uint32(len(l.rq)-1)] }

// timeRequest starts timing p, just sent on f to its server. A request
// the flow has in flight already (a client's retransmission) keeps its
// first deadline: it is the same request, retried at most once.
func (l *uloop) timeRequest(f *uflow, p []byte) {
	key, dup, ok := l.c.match.request(p)
	if !ok {
		return
	}
	rt := f.rt
	if rt == nil {
		rt = &uretry{oldFd: -1}
		f.rt = rt
	}
	for i := range rt.n {
		if e := l.pendAt(rt.pend[i]); e.key == key && e.dup == dup {
			return
		}
	}
	if rt.n == udpPendPerFlow {
		l.forget(f, 0)
	}
	l.push(f, key, dup, false, p)
}

// push times p as sent on f to its server now.
func (l *uloop) push(f *uflow, key, dup uint32, retried bool, p []byte) {
	if l.rqTail-l.rqHead == uint64(len(l.rq)) {
		l.counters.untimed.Add(1)
		return
	}
	pos := uint32(l.rqTail)
	l.rqTail++
	e := l.pendAt(pos)
	e.f, e.srv, e.at, e.key, e.dup, e.retried = f, f.srv, l.now+l.c.wait, key, dup, retried
	e.req = e.req[:0]
	if l.c.retry > 0 && len(p) <= udpRetryMaxCopy {
		e.req = append(e.req, p...)
	}
	rt := f.rt
	rt.pend[rt.n] = pos
	rt.n++
}

// forget stops timing f's i-th request.
func (l *uloop) forget(f *uflow, i int) {
	rt := f.rt
	l.pendAt(rt.pend[i]).f = nil
	copy(rt.pend[i:rt.n], rt.pend[i+1:rt.n])
	rt.n--
}

// answered handles answer a from f's server: the requests it answers
// are done, and the server has shown it lives.
func (l *uloop) answered(f *uflow, a []byte) {
	rt := f.rt
	for i := 0; i < rt.n; {
		if l.c.match.answers(a, l.pendAt(rt.pend[i]).key) {
			l.forget(f, i)
			continue
		}
		i++
	}
	f.srv.trafficOK()
}

// endTiming forgets f's requests and closes the socket it left, as f ends.
func (l *uloop) endTiming(f *uflow) {
	for f.rt.n > 0 {
		l.forget(f, f.rt.n-1)
	}
	l.dropOld(f)
}

// wakeAt is when the loop must wake: the next sweep, or the first
// request that falls due if sooner.
func (l *uloop) wakeAt() int64 {
	if l.rqHead < l.rqTail {
		if at := l.pendAt(uint32(l.rqHead)).at; at < l.sweepAt {
			return at
		}
	}
	return l.sweepAt
}

// expire pops the requests due by now (and the answered ones before
// them): each unanswered one counts against its server and, once, is
// re-sent to another.
func (l *uloop) expire() {
	resent := false
	for l.rqHead < l.rqTail {
		pos := uint32(l.rqHead)
		e := l.pendAt(pos)
		if e.f != nil && e.at > l.now {
			break
		}
		l.rqHead++
		f := e.f
		if f == nil {
			continue
		}
		for i := range f.rt.n {
			if f.rt.pend[i] == pos {
				l.forget(f, i)
				break
			}
		}
		resent = l.unanswered(f, e) || resent
	}
	if resent && len(l.rings) > 0 {
		l.submitRings()
	}
}

// unanswered handles request e of f, due without an answer. It reports
// whether it re-sent anything.
func (l *uloop) unanswered(f *uflow, e *upend) bool {
	c := l.c
	l.counters.unanswered.Add(1)
	e.srv.trafficFailed(FailUnanswered)
	if c.retry == 0 || e.retried || len(e.req) == 0 || !c.serving.Load() {
		return false
	}
	key, dup, req, from := e.key, e.dup, e.req, e.srv
	if f.srv == from {
		s := c.pick(f.client.Addr(), from)
		if s == nil {
			return false // nowhere else to go: the server may yet answer
		}
		if !l.retryMove(f, s) {
			return false
		}
	}
	l.resend(f, key, dup, req)
	l.resendPending(f, from)
	return true
}

// refused handles an ICMP error on f's socket (port unreachable: the
// service is gone): its oldest request for the server is unanswered now,
// not at its deadline, so the retry costs a round trip rather than
// retry_timeout. Only for flows held by descriptor: a parked flow learns
// it inside a ring completion, where moving the flow cannot be done.
func (l *uloop) refused(f *uflow) {
	rt := f.rt
	for i := range rt.n {
		if e := l.pendAt(rt.pend[i]); e.srv == f.srv && !e.retried {
			l.forget(f, i) // e stays intact until the ring's head passes it
			l.unanswered(f, e)
			return
		}
	}
}

// retryMove puts f on s after its server left a request unanswered. A
// socket held by descriptor stays open a while (udpLateKeep) so late
// answers are read and dropped; a parked one is closed at once. It
// reports whether f lives on.
func (l *uloop) retryMove(f *uflow, s *Server) bool {
	l.dropOld(f)
	if f.fd >= 0 {
		rt := f.rt
		rt.oldFd, rt.oldSrv, rt.movedAt = f.fd, f.srv, l.now
		f.fd = -1 // l.table still names f: readLate
		f.srv.Release()
		f.srv = nil
	} else {
		l.unregister(f)
	}
	if err := l.connect(f, s); err != nil {
		l.closeFlow(f)
		l.c.drop(&l.counters, udpUpstreamError, f.client, err)
		return false
	}
	return true
}

// resendPending re-sends f's requests still waiting on server from
// (the flow has left it), each once.
func (l *uloop) resendPending(f *uflow, from *Server) {
	rt := f.rt
	for i := 0; i < rt.n; {
		e := l.pendAt(rt.pend[i])
		if e.srv != from || e.retried || len(e.req) == 0 {
			i++
			continue
		}
		key, dup, req := e.key, e.dup, e.req
		l.forget(f, i) // the slot is not reused before the head passes it
		l.resend(f, key, dup, req)
	}
}

// resend sends req, unchanged, on f's socket and times it as a retry.
func (l *uloop) resend(f *uflow, key, dup uint32, req []byte) {
	k := &l.counters
	if f.slot >= 0 {
		r := l.ring(f.slot)
		if r.full() {
			l.submitRings()
		}
		r.send(int(f.slot)%l.ringFiles, req, urTagResend)
		l.submitRings() // req's slot may be reused by the push below
	} else if errno := udpSend(int(f.fd), req); errno != 0 {
		l.c.drop(k, udpUpstreamError, f.client, errno)
		return
	}
	k.retries.Add(1)
	if f.rt.n == udpPendPerFlow {
		l.forget(f, 0)
	}
	l.push(f, key, dup, true, req)
}

// readLate reads an answer from the server f left: the request went to
// another server, whose answer is the one the client gets, so this one
// is dropped and counted.
func (l *uloop) readLate(f *uflow, fd int) {
	if l.nout == udpBatch {
		l.flush()
	}
	if _, errno := udpRecvTrunc(fd, l.out.slot(l.nout, udpSlot)); errno != 0 {
		return // EAGAIN, or an ICMP error on a socket nobody needs
	}
	l.c.drop(&l.counters, udpLateAnswer, f.client, nil)
	if s := f.rt.oldSrv; s != nil {
		s.trafficOK() // slow, not dead
	}
}

// dropOld closes the socket f left on a retry, if it still has one.
func (l *uloop) dropOld(f *uflow) {
	rt := f.rt
	if rt == nil || rt.oldFd < 0 {
		return
	}
	l.table[rt.oldFd] = nil
	unix.Close(int(rt.oldFd))
	l.c.fdFlows.Add(-1)
	rt.oldFd, rt.oldSrv = -1, nil
}
