package failover

// Tracked links: a carrier loss means FAULT; a flapping link is damped.

import (
	"fmt"
	"slices"
	"time"
)

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
