package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func sh(script string) Command { return Command{Path: "/bin/sh", Args: []string{"-c", script}} }

// TestCleanEnvironment: only the allow-list and the command's own
// variables reach the child; the cluster key never does.
func TestCleanEnvironment(t *testing.T) {
	t.Setenv("TANDEM_CLUSTER_SECRET", "c2VjcmV0")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "x")
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("LC_TIME", "C")
	c := sh("env")
	c.Env = []string{"TANDEM_SERVER_ADDR=127.0.0.1:80"}
	r := Run(context.Background(), c)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(r.Output), "\n") {
		k, _, _ := strings.Cut(l, "=")
		got[k] = true
	}
	for _, k := range []string{"LANG", "LC_TIME", "PATH", "TANDEM_SERVER_ADDR"} {
		if !got[k] {
			t.Errorf("%s missing from %q", k, r.Output)
		}
	}
	for k := range got {
		switch k {
		case "LANG", "LC_TIME", "PATH", "TANDEM_SERVER_ADDR", "PWD", "SHLVL", "_":
		default:
			t.Errorf("%s passed to the child", k)
		}
	}
}

// TestOutputBoundedAndExitStatus: output is cut at MaxOutput and the
// exit status comes back.
func TestOutputBoundedAndExitStatus(t *testing.T) {
	c := sh("head -c 100000 /dev/zero | tr '\\0' x; exit 3")
	c.MaxOutput = 100
	r := Run(context.Background(), c)
	var ee *exec.ExitError
	if !errors.As(r.Err, &ee) || ee.ExitCode() != 3 || len(r.Output) != 100 || r.TimedOut {
		t.Fatalf("err %v, output %d bytes, timed out %v", r.Err, len(r.Output), r.TimedOut)
	}
}

// TestTimeoutKillsTheGroup: at the timeout the program and what it
// started in the background are killed.
func TestTimeoutKillsTheGroup(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bg")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := Run(ctx, sh("sleep 30 & echo $! > "+f+"; sleep 30"))
	if !r.TimedOut || time.Since(start) > 3*time.Second {
		t.Fatalf("timed out %v after %v", r.TimedOut, time.Since(start))
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for range 100 {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			return // gone, or a zombie waiting for init
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("background process %d survived the timeout", pid)
}

// setAllThreads gives every thread of this process attr.
func setAllThreads(t *testing.T, attr unix.SchedAttr) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			t.Fatalf("sched_setattr %d: %v", tid, err)
		}
	}
}

// TestNormalScheduling: a node running SCHED_RR (or at nice -15) starts
// its children with SCHED_OTHER at nice 0.
func TestNormalScheduling(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the test process real-time scheduling")
	}
	for _, tt := range []struct {
		name string
		attr unix.SchedAttr
	}{
		{"SCHED_RR", unix.SchedAttr{Policy: unix.SCHED_RR, Priority: 1}},
		{"nice -15", unix.SchedAttr{Policy: unix.SCHED_NORMAL, Nice: -15}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setAllThreads(t, tt.attr)
			defer setAllThreads(t, unix.SchedAttr{Policy: unix.SCHED_NORMAL})
			r := Run(context.Background(), sh("cat /proc/self/stat"))
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			// Fields after "(comm)": state is 3, nice 19, policy 41.
			f := strings.Fields(r.Output[strings.LastIndexByte(r.Output, ')')+1:])
			if len(f) < 39 || f[16] != "0" || f[38] != "0" {
				t.Fatalf("child nice %s, policy %s; want 0 and 0 (SCHED_OTHER)", f[16], f[38])
			}
		})
	}
}

// TestRunAs: run_as runs the program as that user, with its HOME.
func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change user")
	}
	cred, _, err := LookupUser("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	c := sh(`echo "$(id -u) $(id -g) $USER"`)
	c.RunAs = "nobody"
	r := Run(context.Background(), c)
	want := strconv.Itoa(int(cred.Uid)) + " " + strconv.Itoa(int(cred.Gid)) + " nobody"
	if r.Err != nil || strings.TrimSpace(r.Output) != want {
		t.Fatalf("got %q (%v), want %q", r.Output, r.Err, want)
	}
	c.RunAs = "no-such-user-here"
	if r := Run(context.Background(), c); r.Err == nil {
		t.Fatal("an unknown run_as user ran")
	}
}
