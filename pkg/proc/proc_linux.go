package proc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func run(ctx context.Context, c Command) Result {
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir = "/"
	cmd.Env = Env(c.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.RunAs != "" {
		cred, env, err := LookupUser(c.RunAs)
		if err != nil {
			return Result{Err: err}
		}
		cmd.SysProcAttr.Credential = cred
		cmd.Env = append(cmd.Env, env...)
	}
	max := c.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	out := &cappedBuffer{max: max}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = waitDelay
	if err := start(cmd); err != nil {
		return Result{Err: fmt.Errorf("start %s: %w", c.Path, err)}
	}
	pgid := cmd.Process.Pid

	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var info unix.Siginfo
		for {
			// WNOWAIT: learn that the leader exited without reaping it.
			err := unix.Waitid(unix.P_PID, pgid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}()
	timedOut := false
	select {
	case <-exited:
	case <-ctx.Done():
		timedOut = true
		_ = unix.Kill(-pgid, unix.SIGKILL)
		<-exited
	}
	// The leader is a zombie still, so pgid names our group alone: kill
	// whatever it left behind, then reap.
	_ = unix.Kill(-pgid, unix.SIGKILL)
	err := cmd.Wait()
	return Result{Output: out.String(), TimedOut: timedOut, Err: err}
}

// start starts cmd from a thread of its own that first drops what the
// daemon's threads have and a child must not inherit: real-time
// scheduling (or a negative nice) and ambient capabilities. A child
// inherits both from the thread that forks it. The thread is locked and
// never unlocked, so the Go runtime ends it with the goroutine instead
// of reusing it; threads the runtime creates meanwhile come from its
// template thread, not from this one.
func start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := plainThread(); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// plainThread gives the calling thread normal scheduling at nice 0 and
// clears its ambient capabilities.
func plainThread() error {
	attr := unix.SchedAttr{Size: uint32(unsafe.Sizeof(unix.SchedAttr{})), Policy: unix.SCHED_NORMAL}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return fmt.Errorf("normal scheduling for the child: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("drop ambient capabilities for the child: %w", err)
	}
	return nil
}
