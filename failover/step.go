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
	}
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
	s.m.HandedTo = ""
	if s.m.Demoting && to == Backup {
		s.m.NoPreempt = true
	}
	s.m.Demoting = false
	s.do(Transition{At: s.now, From: from, To: to, Reason: reason})
	switch to {
	case Master:
		s.m.NoPreempt = false
		s.do(ClaimVIPs{}, s.advertNow())
		s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
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
		// Released in every case: a node never leaves a VIP behind.
		s.do(ReleaseVIPs{})
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
	case Backup:
		if len(s.m.Holds) == 0 {
			switch {
			case !s.m.PreemptAt.IsZero() && !s.m.PreemptAt.After(s.now):
				s.enter(Master, fmt.Sprintf("preempting %s (priority %d < %d)",
					s.m.Peer.Node, s.m.Peer.Priority, s.c.Priority))
				return
			case !s.m.MasterDownAt.IsZero() && !s.m.MasterDownAt.After(s.now):
				s.enter(Master, s.silenceReason())
				return
			}
		}
		if !s.m.NextAdvertAt.IsZero() && !s.m.NextAdvertAt.After(s.now) {
			s.do(s.advertNow())
			s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
		}
	}
}

// silenceReason says why a backup declared the master down.
func (s *stepper) silenceReason() string {
	p := s.m.Peer
	if p.LastMaster.IsZero() {
		return fmt.Sprintf("no master heard for %s", ms(s.now.Sub(s.m.Since)))
	}
	if p.Priority == 0 {
		return fmt.Sprintf("peer %s left", p.Node)
	}
	return fmt.Sprintf("peer %s silent for %s", p.Node, ms(s.now.Sub(p.LastMaster)))
}

func (s *stepper) advert(a Advert) {
	if a.Node == s.c.Node {
		return
	}
	prev := s.m.Peer.State
	s.m.Peer.Node = a.Node
	s.m.Peer.Priority = a.Priority
	s.m.Peer.State = a.State
	s.m.Peer.LastHeard = s.now
	if a.State == Master || a.Priority == 0 {
		s.m.Peer.LastMaster = s.now
	}
	switch s.m.State {
	case Backup:
		s.advertAsBackup(a)
	case Master:
		s.advertAsMaster(a, prev)
	}
}

func (s *stepper) advertAsBackup(a Advert) {
	switch {
	case a.Priority == 0:
		// The peer is leaving: take over after the skew only, so the
		// higher-priority of several backups goes first.
		// Repeated priority-0 adverts must not push the take-over back.
		if at := s.now.Add(s.c.Skew()); a.State == Master && at.Before(s.m.MasterDownAt) {
			s.m.MasterDownAt = at
			s.m.PreemptAt = time.Time{}
		}
	case a.State != Master:
		// Backups' adverts keep status fresh; they do not hold us off.
	case !s.c.Preempt || s.m.NoPreempt || beats(a.Priority, a.Node, s.c.Priority, s.c.Node):
		s.m.MasterDownAt = s.now.Add(s.c.MasterDown())
		s.m.PreemptAt = time.Time{}
	default:
		// A lower-priority master while we may preempt.
		s.m.MasterDownAt = s.now.Add(s.c.MasterDown())
		if s.m.PreemptAt.IsZero() {
			s.m.PreemptAt = s.now.Add(s.c.PreemptDelay)
		}
		if s.c.PreemptDelay == 0 {
			s.tick()
		}
	}
}

func (s *stepper) advertAsMaster(a Advert, prev State) {
	if !s.m.LeaveBy.IsZero() {
		if a.State == Master && a.Priority != 0 && s.m.HandedTo == "" {
			// The peer has the VIPs: release them one advert interval
			// later, once its gratuitous ARPs have moved the clients.
			s.m.HandedTo = a.Node
			s.m.LeaveBy = s.now.Add(s.c.AdvertInterval)
		}
		return
	}
	switch {
	case a.Priority == 0:
		// A leaving backup: answer at once so it sees a live master.
		s.do(s.advertNow())
		s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
	case a.State != Master:
		if prev == Master {
			// The old master has just stepped down, but a gratuitous
			// ARP it sent an instant before may have reached the
			// clients after ours: announce again so ours is the last.
			s.do(Announce{Reason: fmt.Sprintf("%s stepped down", a.Node)})
		}
	case beats(a.Priority, a.Node, s.c.Priority, s.c.Node):
		s.enter(Backup, fmt.Sprintf("peer %s is master with higher precedence (priority %d vs %d)",
			a.Node, a.Priority, s.c.Priority))
		s.m.Peer.LastMaster = s.now
	default:
		// Two masters: we win, so announce again at once.
		s.do(s.advertNow(), Announce{Reason: fmt.Sprintf("%s was also master and lost the tie-break", a.Node)})
		s.m.NextAdvertAt = s.now.Add(s.c.AdvertInterval)
	}
}

func (s *stepper) link(l Link) {
	if !slices.Contains(s.c.Track, l.Iface) {
		return
	}
	i := slices.Index(s.m.Down, l.Iface)
	switch {
	case !l.Up && i < 0:
		s.m.Down = append(slices.Clone(s.m.Down), l.Iface)
		slices.Sort(s.m.Down)
	case l.Up && i >= 0:
		s.m.Down = slices.Delete(slices.Clone(s.m.Down), i, i+1)
	default:
		return
	}
	switch {
	case !l.Up && s.m.State != Fault && s.m.State != Init:
		s.enter(Fault, fmt.Sprintf("interface %s lost carrier", l.Iface))
	case l.Up && s.m.State == Fault && len(s.m.Down) == 0:
		s.enter(Backup, fmt.Sprintf("interface %s carrier restored", l.Iface))
	}
}

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
	if !s.m.LeaveBy.After(s.now) {
		to, verb := Init, "stopped"
		if s.m.Demoting {
			to, verb = Backup, "switched over"
		}
		switch {
		case s.m.HandedTo != "":
			s.enter(to, fmt.Sprintf("%s: handed over to %s", verb, s.m.HandedTo))
		case s.m.Demoting:
			// Nobody took over: keep serving rather than drop the VIPs.
			s.m.LeaveBy, s.m.Demoting = time.Time{}, false
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

func (s *stepper) hold(h Hold) {
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

// ms formats a duration in whole milliseconds, as people read failover
// times.
func ms(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
}
