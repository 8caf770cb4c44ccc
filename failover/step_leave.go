package failover

// Leaving MASTER on purpose (a stop, a switchover, a hand-over while
// held) and the holds that keep a node from becoming master.

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// demote starts a planned hand-over: like a stop, but the node ends in
// BACKUP and will not preempt back.
func (s *stepper) demote() {
	if s.m.State != Master || !s.m.LeaveBy.IsZero() {
		return
	}
	s.m.Demoting = true
	s.m.LeaveBy = s.now.Add(s.c.MasterDown() + s.c.AdvertInterval)
	s.do(SendAdvert{Priority: 0, State: Master})
	s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
}

func (s *stepper) stop() {
	switch s.m.State {
	case Master:
		s.m.Demoting = false
		s.m.Yield = "" // preempted and now stopping: end in INIT
		if s.m.LeaveBy.IsZero() {
			s.m.LeaveBy = s.now.Add(s.c.MasterDown() + s.c.AdvertInterval)
			s.do(SendAdvert{Priority: 0, State: Master})
			s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
		}
		return
	case Backup:
		s.do(SendAdvert{Priority: 0, State: Backup})
	}
	if s.m.State != Init {
		s.enter(Init, "stopped")
	}
}

// tickLeaving repeats a stopping master's priority-0 advert until the
// peer takes over or the deadline passes.
func (s *stepper) tickLeaving() {
	if !s.m.LeaveBy.After(s.now) && s.m.Yield != "" {
		s.enter(Backup, s.m.Yield)
		return
	}
	if !s.m.LeaveBy.After(s.now) {
		to, verb := Init, "stopped"
		if s.m.Demoting {
			to, verb = Backup, "switched over"
			if s.m.HandOver != "" {
				verb = s.m.HandOver
			}
		}
		switch {
		case s.m.HandedTo != "":
			s.enter(to, fmt.Sprintf("%s: handed over to %s", verb, s.m.HandedTo))
		case s.m.Demoting:
			// Nobody took over: keep serving rather than drop the VIPs.
			if s.m.HandOver != "" {
				s.m.handOverRetryAt = s.now.Add(10 * s.c.MasterDown())
			}
			s.m.LeaveBy, s.m.Demoting, s.m.HandOver = time.Time{}, false, ""
			s.m.NextAdvertAt = s.now
			s.do(s.advertNow())
			s.do(Transition{At: s.now, From: Master, To: Master,
				Reason: fmt.Sprintf("switchover abandoned: no peer took over within %s", ms(s.now.Sub(s.m.Since)))})
		default:
			s.enter(to, fmt.Sprintf("%s: no peer took over within %s", verb, ms(s.now.Sub(s.m.Since))))
		}
		return
	}
	if s.m.HandedTo != "" {
		return
	}
	if !s.m.NextAdvertAt.After(s.now) {
		s.do(SendAdvert{Priority: 0, State: Master})
		s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
	}
}

// handOverIfHeld starts a hand-over, as a switchover does, when this
// master is held (say its witness stopped answering while its link stayed
// up) and its peer is alive, BACKUP and not held: the peer serves
// better. Without such a peer the master keeps the VIPs.
func (s *stepper) handOverIfHeld() {
	p := s.m.Peer
	if s.m.State != Master || !s.m.LeaveBy.IsZero() || len(s.m.HandOverHolds) == 0 ||
		p.Node == "" || p.Held || p.Priority == 0 || p.State != Backup || s.peerSilent() ||
		s.m.handOverRetryAt.After(s.now) {
		return
	}
	s.m.Demoting = true
	s.m.HandOver = "held (" + strings.Join(s.m.HandOverHolds, "; ") + ")"
	s.m.LeaveBy = s.now.Add(s.c.MasterDown() + s.c.AdvertInterval)
	s.do(SendAdvert{Priority: 0, State: Master})
	s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
}

func (s *stepper) hold(h Hold) {
	j := slices.Index(s.m.HandOverHolds, h.Reason)
	switch {
	case h.On && h.HandOver && j < 0:
		s.m.HandOverHolds = append(slices.Clone(s.m.HandOverHolds), h.Reason)
	case !h.On && j >= 0:
		s.m.HandOverHolds = slices.Delete(slices.Clone(s.m.HandOverHolds), j, j+1)
	}
	i := slices.Index(s.m.Holds, h.Reason)
	switch {
	case h.On && i < 0:
		s.m.Holds = append(slices.Clone(s.m.Holds), h.Reason)
	case !h.On && i >= 0:
		s.m.Holds = slices.Delete(slices.Clone(s.m.Holds), i, i+1)
		// A master-down timer that ran out during the hold restarts at
		// the skew, so that of two backups released together the higher
		// priority takes over first and the other hears it.
		if len(s.m.Holds) == 0 && s.m.State == Backup && !s.m.MasterDownAt.After(s.now) {
			s.m.MasterDownAt = s.now.Add(s.c.Skew())
		}
		s.tick()
	}
}
