// Package testutil holds what the tests of several packages share. Keep
// it small: a helper belongs here once a second package needs it.
package testutil

import (
	"testing"
	"time"
)

// Patience is how long WaitFor waits.
const Patience = 5 * time.Second

// WaitFor polls cond until it holds; the test fails when it does not
// within Patience. It is for waits on the kernel's clock (sockets,
// processes, files): where only Go's clock is involved, run the test in
// a testing/synctest bubble, which needs no polling.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, Patience, what, cond)
}

// WaitWithin is WaitFor with a patience of d.
func WaitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
