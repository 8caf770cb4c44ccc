//go:build !linux

package proc

import (
	"context"
	"os/exec"
)

// run is the portable fallback: a clean environment and bounded output,
// the process killed at the timeout (its group and scheduling are
// Linux-only).
func run(ctx context.Context, c Command) Result {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Dir = "/"
	cmd.Env = Env(c.Env...)
	max := c.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	out := &cappedBuffer{max: max}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	return Result{Output: out.String(), TimedOut: ctx.Err() != nil, Err: err}
}
