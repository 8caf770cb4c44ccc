package healthcheck

import (
	"fmt"
	"strings"
	"time"
)

// Passive judges a server on the clients' own traffic: Fail consecutive
// failures, all within Window of the latest, mean the server is down now,
// without waiting for the active check to fail Fall times. A success
// (an answer, a first byte) breaks the run. It is a pure value: the
// caller passes the time, and the Monitor keeps one per server.
type Passive struct {
	Fail   int
	Window time.Duration

	run []passiveFailure // the current run of failures, oldest first
}

type passiveFailure struct {
	at   time.Time
	what string
}

// Observe folds one outcome at now; what names a failure in the plural
// ("connects refused"). It reports whether the run reached Fail, and the
// reason to show: "passive: 3 connects refused". A verdict starts a new
// run. Fail below 1 counts as 1.
func (p *Passive) Observe(ok bool, what string, now time.Time) (down bool, reason string) {
	if ok {
		p.run = p.run[:0]
		return false, ""
	}
	// Failures older than Window before this one leave the run: they
	// are no longer "at once".
	drop := 0
	for drop < len(p.run) && now.Sub(p.run[drop].at) > p.Window {
		drop++
	}
	p.run = append(p.run[:0], p.run[drop:]...)
	p.run = append(p.run, passiveFailure{now, what})
	if len(p.run) < max(p.Fail, 1) {
		return false, ""
	}
	reason = p.reason()
	p.run = p.run[:0]
	return true, reason
}

// reason describes the run: one kind, or each kind with its count in the
// order first seen.
func (p *Passive) reason() string {
	var kinds []string
	count := map[string]int{}
	for _, f := range p.run {
		if count[f.what] == 0 {
			kinds = append(kinds, f.what)
		}
		count[f.what]++
	}
	if len(kinds) == 1 {
		return fmt.Sprintf("passive: %d %s", len(p.run), kinds[0])
	}
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s", count[k], k)
	}
	return fmt.Sprintf("passive: %d failures (%s)", len(p.run), strings.Join(parts, ", "))
}
