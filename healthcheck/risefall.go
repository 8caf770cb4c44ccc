package healthcheck

// RiseFall folds probe results into a verdict with hysteresis: a server
// becomes healthy after Rise consecutive passes and unhealthy after Fall
// consecutive failures, so one lost probe does not flap a pool. It is a
// pure value with no clock and no locking; the Monitor keeps one per
// target. Rise or Fall below 1 count as 1.
type RiseFall struct {
	Rise, Fall int
	// Healthy is the current verdict.
	Healthy bool

	okRun, failRun int
}

// Observe folds one result and reports whether the verdict changed.
func (r *RiseFall) Observe(ok bool) (changed bool) {
	if ok {
		r.okRun++
		r.failRun = 0
		if !r.Healthy && r.okRun >= max(r.Rise, 1) {
			r.Healthy = true
			return true
		}
		return false
	}
	r.failRun++
	r.okRun = 0
	if r.Healthy && r.failRun >= max(r.Fall, 1) {
		r.Healthy = false
		return true
	}
	return false
}

// start sets the verdict from a first result, without hysteresis: the
// Monitor uses it so a server that is dead at start is out at once.
func (r *RiseFall) start(ok bool) {
	r.Healthy = ok
	r.okRun, r.failRun = 0, 0
	if ok {
		r.okRun = 1
	} else {
		r.failRun = 1
	}
}

// run returns the current streak and its threshold, for logs:
// "(2 of 2 failures)".
func (r *RiseFall) run() (n, of int, what string) {
	if r.okRun > 0 {
		return r.okRun, max(r.Rise, 1), "successes"
	}
	return r.failRun, max(r.Fall, 1), "failures"
}

// markDown makes the verdict unhealthy at once, as the passive judge
// decides; Rise passes bring it back.
func (r *RiseFall) markDown() {
	r.Healthy = false
	r.okRun, r.failRun = 0, 0
}
