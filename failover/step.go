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

func (s *stepper) advert(a Advert) {
	if a.Node == s.c.Node {
		return
	}
	prev := s.m.Peer.State
	prevHeard := s.m.Peer.LastHeard
	s.m.Peer.Node = a.Node
	s.m.Peer.Priority = a.Priority
	s.m.Peer.State = a.State
	s.m.Peer.Held = a.Held
	s.m.Peer.LastHeard = s.now
	if a.State == Master || a.Priority == 0 {
		s.m.Peer.LastMaster = s.now
	}
	// The peer is heard: its adverts decide, not announcements.
	s.m.RivalUntil, s.m.Rival = time.Time{}, ""
	switch s.m.State {
	case Backup:
		s.advertAsBackup(a)
	case Master:
		s.advertAsMaster(a, prev)
	}
	if s.m.State == Master && s.m.LeaveBy.IsZero() {
		// Heard again after a silence: the peer may have claimed the
		// VIPs meanwhile and moved the clients to itself, so announce
		// again (unless the tie-break above just did).
		if !s.m.AloneSince.IsZero() && !slices.ContainsFunc(s.acts, isAnnounce) {
			s.do(Announce{Reason: fmt.Sprintf("peer %s heard again after %s of silence", a.Node, ms(s.now.Sub(prevHeard)))})
		}
		s.m.NextAnnounceAt = s.now.Add(s.c.silenceAfter())
		s.m.AloneSince = time.Time{}
	}
}

func isAnnounce(a Action) bool { _, ok := a.(Announce); return ok }

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
	case a.State == Fault:
		// The peer lost a link and released the VIPs: nobody serves, so
		// take over now rather than wait for the master-down timer.
		if s.m.MasterDownAt.IsZero() || s.m.MasterDownAt.After(s.now) {
			s.m.MasterDownAt = s.now
		}
		s.m.PreemptAt = time.Time{}
		s.tick()
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
			// A link that came back must stay up for the hold-down
			// first, so a flapping cable does not bounce the VIPs.
			if s.m.StableAt.After(s.m.PreemptAt) {
				s.m.PreemptAt = s.m.StableAt
			}
		}
		if !s.m.PreemptAt.After(s.now) {
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
			s.m.LeaveBy = s.now.Add(s.c.overlap())
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
		// Make before break: the peer has claimed the VIPs and announced
		// them; keep ours, and keep serving, for the overlap so a packet
		// that left a client before the peer's announcement reached it
		// is still answered, then step down (tickLeaving).
		s.m.Peer.LastMaster = s.now
		s.m.Yield = fmt.Sprintf("peer %s is master with higher precedence (priority %d vs %d)",
			a.Node, a.Priority, s.c.Priority)
		s.m.HandedTo = a.Node
		s.m.LeaveBy = s.now.Add(s.c.overlap())
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
		s.m.Losses = append(s.recentLosses(), s.now)
		// A loss restarts the hold-down from the next carrier return.
		s.m.StableAt, s.m.PreemptAt = time.Time{}, time.Time{}
	case l.Up && i >= 0:
		s.m.Down = slices.Delete(slices.Clone(s.m.Down), i, i+1)
		if len(s.m.Down) == 0 {
			s.m.Losses = s.recentLosses()
			if hd := s.c.HoldDown(len(s.m.Losses)); hd > 0 {
				s.m.StableAt = s.now.Add(hd)
			}
		}
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

// recentLosses is Losses without the ones older than FlapWindow.
func (s *stepper) recentLosses() []time.Time {
	var out []time.Time
	for _, t := range s.m.Losses {
		if s.now.Sub(t) < FlapWindow {
			out = append(out, t)
		}
	}
	return out
}

// rival handles another box announcing one of the VIPs (see Rival).
func (s *stepper) rival(r Rival) {
	if r.MAC == "" || strings.EqualFold(r.MAC, r.OwnMAC) {
		return
	}
	if !strings.EqualFold(r.MAC, r.PeerMAC) {
		s.conflict(r)
		return
	}
	if !s.peerSilent() {
		return
	}
	switch s.m.State {
	case Master:
		if !s.m.LeaveBy.IsZero() {
			return
		}
		wins, why := s.rivalWins(r)
		if wins {
			s.enter(Backup, fmt.Sprintf("%s announced %s while the peer is silent and %s", r.MAC, r.VIP, why))
			s.m.RivalUntil, s.m.Rival = s.now.Add(RivalHold), r.MAC
			return
		}
		if s.m.rivalAnnouncedAt.IsZero() || s.now.Sub(s.m.rivalAnnouncedAt) >= s.c.AdvertInterval {
			s.m.rivalAnnouncedAt = s.now
			s.do(Announce{Reason: fmt.Sprintf("%s also announced %s while the peer is silent; this node keeps it: %s", r.MAC, r.VIP, why)})
		}
	case Backup:
		s.m.RivalUntil, s.m.Rival = s.now.Add(RivalHold), r.MAC
	}
}

// conflict answers a box that is not the peer announcing one of the VIPs:
// a master announces it again (at most once an advert interval); nobody
// holds back or steps down for it.
func (s *stepper) conflict(r Rival) {
	if s.m.State != Master || !s.m.LeaveBy.IsZero() {
		return
	}
	if s.m.rivalAnnouncedAt.IsZero() || s.now.Sub(s.m.rivalAnnouncedAt) >= s.c.AdvertInterval {
		s.m.rivalAnnouncedAt = s.now
		s.do(Announce{Reason: fmt.Sprintf("address conflict: %s, not the peer, announced %s; this node keeps it", r.MAC, r.VIP)})
	}
}

// rivalWins applies the election's tie-break to a rival: against the last
// advert heard from the peer when there is one, else the lower hardware
// address wins (both boxes see both addresses, so they agree).
func (s *stepper) rivalWins(r Rival) (bool, string) {
	if p := s.m.Peer; p.Node != "" && p.Priority != 0 {
		if beats(p.Priority, p.Node, s.c.Priority, s.c.Node) {
			return true, fmt.Sprintf("peer %s has precedence (priority %d vs %d)", p.Node, p.Priority, s.c.Priority)
		}
		return false, fmt.Sprintf("it has precedence over peer %s (priority %d vs %d)", p.Node, s.c.Priority, p.Priority)
	}
	if strings.ToLower(r.MAC) < strings.ToLower(r.OwnMAC) {
		return true, fmt.Sprintf("no peer advert known and its address is lower than ours (%s)", r.OwnMAC)
	}
	return false, fmt.Sprintf("no peer advert known and our address %s is lower", r.OwnMAC)
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

// ms formats a duration in whole milliseconds, as people read failover
// times.
func ms(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
}
