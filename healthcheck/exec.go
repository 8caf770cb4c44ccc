package healthcheck

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/pkg/proc"
)

// maxExecOutput is how much of a command's output a failed Result shows.
const maxExecOutput = 1 << 10

// execChecker runs a shell command; exit status 0 passes. It runs through
// pkg/proc: a clean environment (the allow-list plus TANDEM_SERVER_ADDR,
// _HOST and _PORT), normal scheduling, no capabilities, optionally as
// runAs, in a process group of its own that is killed whole when the
// command is done or its time is up, so neither a hung command nor
// anything it left in the background outlives the probe.
type execChecker struct {
	command string
	runAs   string
}

// Check implements Checker.
func (c *execChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	r := proc.Run(ctx, proc.Command{
		Path: "/bin/sh", Args: []string{"-c", c.command},
		Env: []string{
			"TANDEM_SERVER_ADDR=" + addr.String(),
			"TANDEM_SERVER_HOST=" + addr.Addr().String(),
			"TANDEM_SERVER_PORT=" + strconv.Itoa(int(addr.Port())),
		},
		RunAs:     c.runAs,
		MaxOutput: maxExecOutput,
	})
	output := strings.TrimSpace(r.Output)
	switch {
	case r.TimedOut:
		return fail(start, "%s, killed%s", describe(ctx, start, ctx.Err()), suffix(output))
	case r.Err != nil:
		return fail(start, "%v%s", r.Err, suffix(output))
	}
	return pass(start, "exit 0 in %s", ms(time.Since(start)))
}

// suffix appends a command's output to a Detail.
func suffix(output string) string {
	if output == "" {
		return ""
	}
	return ": " + output
}
