package failover

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Step is the election: given the current state, one event and the time,
// it returns the next state and the actions to perform, in order. It reads
// no clock and performs no I/O.
func (c Config) Step(m Machine, ev Event, now time.Time) (Machine, []Action) {
	s := stepper{c: c, m: m, now: now}
	switch ev := ev.(type) {
	case Start:
		s.start()
	case Tick:
		s.tick()
	case Advert:
		s.advert(ev)
	case Link:
		s.link(ev)
	case Stop:
		s.stop()
	case Hold:
		s.hold(ev)
	case Demote:
		s.demote()
	case Rival:
		s.rival(ev)
	}
	s.handOverIfHeld()
	return s.m, s.acts
}

type stepper struct {
	c    Config
	m    Machine
	now  time.Time
	acts []Action
}

func (s *stepper) do(a ...Action) { s.acts = append(s.acts, a...) }

// advertNow is an advert of the current state and priority.
func (s *stepper) advertNow() SendAdvert {
	return SendAdvert{Priority: s.c.Priority, State: s.m.State}
}

// enter moves to state to, recording why, and performs the entry actions.
func (s *stepper) enter(to State, reason string) {
	from := s.m.State
	s.m.State = to
	s.m.Since = s.now
	s.m.PreemptAt = time.Time{}
	s.m.MasterDownAt = time.Time{}
	s.m.NextAdvertAt = time.Time{}
	s.m.LeaveBy = time.Time{}
	s.m.HandedTo, s.m.Yield = "", ""
	s.m.NextAnnounceAt, s.m.AloneSince = time.Time{}, time.Time{}
	s.m.RivalUntil, s.m.Rival, s.m.rivalAnnouncedAt = time.Time{}, "", time.Time{}
	if s.m.Demoting && to == Backup && s.m.HandOver == "" {
		s.m.NoPreempt = true
	}
	s.m.Demoting, s.m.HandOver = false, ""
	s.do(Transition{At: s.now, From: from, To: to, Reason: reason})
	switch to {
	case Master:
		s.m.NoPreempt = false
		s.do(ClaimVIPs{}, s.advertNow())
		s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
		s.m.NextAnnounceAt = s.now.Add(s.c.silenceAfter())
		if s.peerSilent() {
			s.m.NextAnnounceAt = s.now.Add(AloneAnnounceEvery)
		}
	case Backup:
		if from == Master {
			s.do(ReleaseVIPs{})
		}
		if from == Fault && s.c.HoldAfterFault && !slices.Contains(s.m.Holds, HoldAfterFault) {
			s.m.Holds = append(slices.Clone(s.m.Holds), HoldAfterFault)
		}
		s.m.MasterDownAt = s.now.Add(s.c.MasterDown())
		s.do(s.advertNow())
		s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
	case Fault:
		// Tell the peer first (over any heartbeat path still up) so it
		// takes over at once, then release in every case: a node never
		// leaves a VIP behind.
		s.do(s.advertNow(), ReleaseVIPs{})
		s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
	case Init:
		if from == Master {
			s.do(ReleaseVIPs{})
		}
	}
}

func (s *stepper) start() {
	if s.m.State != Init {
		return
	}
	if len(s.m.Down) > 0 {
		s.enter(Fault, fmt.Sprintf("interface %s has no carrier", strings.Join(s.m.Down, ", ")))
		return
	}
	s.enter(Backup, "started")
}

func (s *stepper) tick() {
	switch s.m.State {
	case Master:
		if !s.m.LeaveBy.IsZero() {
			s.tickLeaving()
			return
		}
		if !s.m.NextAdvertAt.After(s.now) {
			s.do(s.advertNow())
			s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
		}
		s.announceAlone()
	case Backup:
		if len(s.m.Holds) == 0 {
			switch {
			case !s.m.PreemptAt.IsZero() && !s.m.PreemptAt.After(s.now):
				s.enter(Master, s.preemptReason())
				return
			case !s.m.MasterDownAt.IsZero() && !s.m.MasterDownAt.After(s.now) && !s.m.RivalUntil.After(s.now):
				s.enter(Master, s.silenceReason())
				return
			}
		}
		if !s.m.RivalUntil.IsZero() && !s.m.RivalUntil.After(s.now) {
			s.m.RivalUntil = time.Time{}
		}
		fallthrough
	case Fault:
		// FAULT keeps advertising too, so a peer that still hears us
		// (over a second path) knows not to wait for us.
		if !s.m.NextAdvertAt.IsZero() && !s.m.NextAdvertAt.After(s.now) {
			s.do(s.advertNow())
			s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
		}
	}
}

// announceAlone re-announces a master's VIPs while its peer is silent, so
// that a peer cut off from the heartbeats but on the same LAN sees them
// held (and holds back) instead of claiming them too.
func (s *stepper) announceAlone() {
	if s.m.NextAnnounceAt.IsZero() || s.m.NextAnnounceAt.After(s.now) {
		return
	}
	s.m.NextAnnounceAt = s.now.Add(AloneAnnounceEvery)
	if !s.m.AloneSince.IsZero() {
		s.do(Announce{Reason: "peer still silent", Refresh: true})
		return
	}
	s.m.AloneSince = s.now
	reason := "no peer heard"
	if p := s.m.Peer; !p.LastHeard.IsZero() {
		reason = fmt.Sprintf("peer %s silent for %s", p.Node, ms(s.now.Sub(p.LastHeard)))
	}
	s.do(Announce{Reason: reason + ": announcing every " + ms(AloneAnnounceEvery) + " while alone"})
}

// peerSilent reports whether no advert has been heard for a while (see
// Config.silenceAfter).
func (s *stepper) peerSilent() bool {
	return s.m.Peer.LastHeard.IsZero() || s.now.Sub(s.m.Peer.LastHeard) > s.c.silenceAfter()
}

// preemptReason says why a backup takes the VIPs from a lower-priority
// master.
func (s *stepper) preemptReason() string {
	r := fmt.Sprintf("preempting %s (priority %d < %d)", s.m.Peer.Node, s.m.Peer.Priority, s.c.Priority)
	if !s.m.StableAt.IsZero() && s.now.Sub(s.m.StableAt) < s.c.AdvertInterval {
		// The hold-down is what held the preempt back until now.
		r += fmt.Sprintf(" after the link was stable for %s", ms(s.c.HoldDown(len(s.m.Losses))))
	}
	return r
}

// silenceReason says why a backup declared the master down.
func (s *stepper) silenceReason() string {
	r := s.silence()
	if s.m.Rival != "" {
		r += "; " + s.m.Rival + " stopped announcing the VIPs"
	}
	return r
}

func (s *stepper) silence() string {
	p := s.m.Peer
	if p.State == Fault && !p.LastHeard.IsZero() {
		return fmt.Sprintf("peer %s is in FAULT", p.Node)
	}
	if p.LastMaster.IsZero() {
		return fmt.Sprintf("no master heard for %s", ms(s.now.Sub(s.m.Since)))
	}
	if p.Priority == 0 {
		return fmt.Sprintf("peer %s left", p.Node)
	}
	return fmt.Sprintf("peer %s silent for %s", p.Node, ms(s.now.Sub(p.LastMaster)))
}

// ms formats a duration in whole milliseconds, as people read failover
// times.
func ms(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
}
