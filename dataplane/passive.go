package dataplane

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// PassiveFunc hears the outcomes of real traffic that passive health
// judges a server by: a failure (ok false, what naming it in the plural,
// one of the Fail* constants) or, after a failure, the next success (an
// answer, a first byte). It is called from the data path, so it must
// return at once and never block (healthcheck.Monitor.Traffic queues).
type PassiveFunc func(server string, ok bool, what string)

// The failures passive health counts.
const (
	FailConnectRefused = "connects refused"
	FailConnectTimeout = "connects timed out"
	FailConnect        = "connects failed"
	FailReset          = "resets before the first byte"
	FailUnanswered     = "requests unanswered"
)

// SetPassive makes every server of the pool report its traffic's
// outcomes to fn; nil stops it.
func (p *Pool) SetPassive(fn PassiveFunc) {
	for _, s := range p.servers {
		if fn == nil {
			s.passive.Store(nil)
		} else {
			s.passive.Store(&fn)
		}
	}
}

// trafficFailed reports a failure met by traffic on s.
func (s *Server) trafficFailed(what string) {
	fn := s.passive.Load()
	if fn == nil {
		return
	}
	s.failRun.Store(true)
	(*fn)(s.Name, false, what)
}

// trafficOK reports a success on s, but only after a failure: the judge
// needs to hear of the success that breaks a run, not of every one, so
// the data path pays one atomic load.
func (s *Server) trafficOK() {
	if !s.failRun.Load() || !s.failRun.Swap(false) {
		return
	}
	if fn := s.passive.Load(); fn != nil {
		(*fn)(s.Name, true, "")
	}
}

// connectFailure names a failed connect for passive health.
func connectFailure(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailConnectRefused
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded):
		return FailConnectTimeout
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return FailConnectTimeout
	}
	return FailConnect
}
