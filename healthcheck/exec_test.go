package healthcheck

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
	"github.com/tandem-lb/tandem/pkg/config"
)

func TestExec(t *testing.T) {
	addr := netip.MustParseAddrPort("127.0.0.1:8080")
	tests := []struct {
		name, command string
		ok            bool
		detail        string
	}{
		{"exit 0", "exit 0", true, "exit 0 in"},
		{"exit 1 with output", "echo boom >&2; exit 1", false, "exit status 1: boom"},
		{"env", `test "$TANDEM_SERVER_ADDR" = 127.0.0.1:8080 && test "$TANDEM_SERVER_HOST" = 127.0.0.1 && test "$TANDEM_SERVER_PORT" = 8080`, true, "exit 0"},
		{"output capped", "head -c 100000 /dev/zero | tr '\\0' x; exit 3", false, "exit status 3: xxx"},
		{"the cluster key stays out", `test -z "$TANDEM_CLUSTER_SECRET" && test -z "$HC_TEST_SECRET" && test -n "$PATH"`, true, "exit 0"},
	}
	t.Setenv("TANDEM_CLUSTER_SECRET", "c2VjcmV0")
	t.Setenv("HC_TEST_SECRET", "x")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, mustNew(t, config.HealthCheck{Type: "exec", Command: tt.command}), addr, 5*time.Second)
			wantResult(t, res, tt.ok, tt.detail)
			if len(res.Detail) > maxExecOutput+100 {
				t.Errorf("detail is %d bytes, want the output capped at %d", len(res.Detail), maxExecOutput)
			}
		})
	}
}

// TestExecKillsProcessGroup runs commands that outlive the probe, one
// hung and one that leaves a child behind, and checks that nothing of
// their process group is left running.
func TestExecKillsProcessGroup(t *testing.T) {
	for _, tt := range []struct {
		name, command string
		ok            bool
		detail        string
	}{
		{"hung command killed at the timeout", `echo $$ > "$F"; sleep 10; true`, false, "timeout after"},
		{"background child killed after exit 0", `echo $$ > "$F"; sleep 10 & exit 0`, true, "exit 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "pgid")
			// The daemon's environment does not reach the command.
			c := mustNew(t, config.HealthCheck{Type: "exec", Command: "F=" + f + "; " + tt.command})
			start := time.Now()
			res := check(t, c, netip.MustParseAddrPort("127.0.0.1:1"), 300*time.Millisecond)
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("probe took %v, want it killed near its 300ms timeout", took)
			}
			wantResult(t, res, tt.ok, tt.detail)
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			// SIGKILL is delivered before kill(2) returns, but the
			// processes take a moment to finish dying.
			testutil.WaitWithin(t, 2*time.Second, fmt.Sprintf("the processes of group %d to die", pgid), func() bool {
				return len(liveInGroup(t, pgid)) == 0
			})
		})
	}
}

// liveInGroup lists the processes of a process group that are not
// zombies (a zombie runs nothing; reaping orphans is init's job).
func liveInGroup(t *testing.T, pgid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var live []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			live = append(live, pid)
		}
	}
	return live
}
