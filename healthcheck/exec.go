package healthcheck

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxExecOutput is how much of a command's output a failed Result shows.
const maxExecOutput = 1 << 10

// execChecker runs a shell command; exit status 0 passes. The command
// runs in a process group of its own, and when it is done or its time is
// up the whole group is killed while the shell is still unreaped, so
// neither a hung command nor anything it left in the background outlives
// the probe, and the group's id cannot have been reused by then.
type execChecker struct {
	command string
}

// Check implements Checker.
func (c *execChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	cmd := exec.Command("/bin/sh", "-c", c.command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(),
		"TANDEM_SERVER_ADDR="+addr.String(),
		"TANDEM_SERVER_HOST="+addr.Addr().String(),
		"TANDEM_SERVER_PORT="+strconv.Itoa(int(addr.Port())),
	)
	out := &cappedBuffer{max: maxExecOutput}
	cmd.Stdout, cmd.Stderr = out, out
	// A process that left the group (setsid) but kept our pipes open must
	// not hold Wait forever.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fail(start, "start: %v", err)
	}
	pgid := cmd.Process.Pid

	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var info unix.Siginfo
		for {
			// WNOWAIT: learn that the shell exited without reaping it.
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
	// whatever the command left behind, then reap.
	_ = unix.Kill(-pgid, unix.SIGKILL)
	err := cmd.Wait()

	output := strings.TrimSpace(out.String())
	switch {
	case timedOut:
		return fail(start, "%s, killed%s", describe(ctx, start, ctx.Err()), suffix(output))
	case err != nil:
		return fail(start, "%v%s", err, suffix(output))
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

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// so a chatty command cannot grow memory.
type cappedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

// Write implements io.Writer; it never fails, so the command never sees
// a broken pipe because of the cap.
func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}
