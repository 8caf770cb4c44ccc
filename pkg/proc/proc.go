// Package proc runs the operator's programs for the node (the exec
// health checks and the notify hook) with as little of the daemon as
// possible: a clean environment, normal scheduling, no capabilities,
// bounded output, optionally another user, and nothing left running
// after the time is up. The node runs with real-time priority, the
// cluster key in its environment perhaps, and capabilities; a check
// script needs none of that, and a runaway one must not starve the
// heartbeats or outlive its probe.
package proc

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultPath is PATH when the daemon has none (systemd gives one).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultMaxOutput is how much output Run keeps when Command.MaxOutput
// is 0.
const DefaultMaxOutput = 4 << 10

// PassedEnv is the allow-list of the daemon's environment variables a
// child sees (LC_* stands for every locale variable). Nothing else
// passes: not TANDEM_CLUSTER_SECRET, not the service manager's
// variables.
var PassedEnv = []string{"PATH", "LANG", "LANGUAGE", "LC_*", "TZ"}

// Command is one run of an operator's program.
type Command struct {
	Path string
	Args []string
	// Env is added to the allow-listed variables (KEY=VALUE).
	Env []string
	// RunAs, a user name or uid, runs the program as that user (with its
	// primary and supplementary groups, HOME, USER and LOGNAME); it needs
	// the daemon to be root or to hold CAP_SETUID and CAP_SETGID. ""
	// keeps the daemon's user.
	RunAs string
	// MaxOutput bounds the output kept (stdout and stderr together)
	// [DefaultMaxOutput]; the rest is read and discarded, so the program
	// never blocks on a full pipe.
	MaxOutput int
}

// Result is how a run ended.
type Result struct {
	Output   string // the first MaxOutput bytes of stdout and stderr
	TimedOut bool   // ctx ended first; the process group was killed
	// Err is the start failure or the exit status (*exec.ExitError); nil
	// for exit 0.
	Err error
}

// Env returns the child's environment: the allow-listed variables of
// the daemon's, PATH defaulted, then extra.
func Env(extra ...string) []string {
	var env []string
	path := false
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if passed(k) {
			env = append(env, kv)
			path = path || k == "PATH"
		}
	}
	if !path {
		env = append(env, "PATH="+DefaultPath)
	}
	return append(env, extra...)
}

func passed(k string) bool {
	for _, p := range PassedEnv {
		if pre, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(k, pre) || k == p {
			return true
		}
	}
	return false
}

// LookupUser resolves a run_as value (a user name or a numeric uid) to
// its credential and the HOME, USER and LOGNAME a login would have.
func LookupUser(runAs string) (*syscall.Credential, []string, error) {
	u, err := user.Lookup(runAs)
	if err != nil {
		if _, nerr := strconv.Atoi(runAs); nerr != nil {
			return nil, nil, fmt.Errorf("run_as: %w", err)
		}
		if u, err = user.LookupId(runAs); err != nil {
			return nil, nil, fmt.Errorf("run_as: %w", err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("run_as %q: uid %q or gid %q is not numeric", runAs, u.Uid, u.Gid)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username}, nil
}

// cappedBuffer keeps the first max bytes written to it and drops the
// rest; it never fails, so the program never sees a broken pipe.
type cappedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

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

// waitDelay bounds the wait for output pipes held open by a process that
// left the group (setsid) after the group was killed.
const waitDelay = time.Second

// Run runs c until it exits or ctx ends; then every process of its
// process group is killed, so neither a hung program nor what it left in
// the background outlives the run.
func Run(ctx context.Context, c Command) Result {
	return run(ctx, c)
}
