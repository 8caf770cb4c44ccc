package failover

// What the peer and other boxes say: adverts, rivals announcing the VIPs
// while the peer is silent, and address conflicts (anyone else announcing
// them).

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

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
