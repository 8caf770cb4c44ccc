package notify

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/internal/testutil"
)

func TestHookRunsInOrderWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	hook := filepath.Join(dir, "hook.sh")
	// A slow hook: Notify must still return at once.
	script := "#!/bin/sh\nsleep 0.05\necho \"$1 $2 $3\" >> " + out + "\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := New(hook, "lb1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)

	start := time.Now()
	for _, s := range []string{"BACKUP", "MASTER", "FAULT", "BACKUP"} {
		r.Notify(s)
	}
	if d := time.Since(start); d > 40*time.Millisecond {
		t.Errorf("Notify blocked for %v", d)
	}
	var b []byte
	testutil.WaitFor(t, "four hook calls", func() bool {
		b, _ = os.ReadFile(out)
		return strings.Count(string(b), "\n") == 4
	})
	want := "NOTIFY BACKUP lb1\nNOTIFY MASTER lb1\nNOTIFY FAULT lb1\nNOTIFY BACKUP lb1\n"
	if string(b) != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", b, want)
	}
	cancel()
	<-r.Done()
	if runs, fails, drops := r.Stats(); runs != 4 || fails != 0 || drops != 0 {
		t.Errorf("stats = %d runs, %d failures, %d dropped", runs, fails, drops)
	}
}

func TestFailingHookIsCounted(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := New(hook, "lb1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	r.Notify("MASTER")
	testutil.WaitFor(t, "the failure to be counted", func() bool {
		_, fails, _ := r.Stats()
		return fails == 1
	})
	cancel()
	<-r.Done()
}

// TestSetPath enables a hook that was off at start (a config reload).
func TestSetPath(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$1 $2\" >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := New("", "lb1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-r.Done() }()
	go r.Run(ctx)
	r.Notify("BACKUP") // no hook yet: nothing runs
	r.SetPath(hook)
	r.Notify("MASTER")
	var b []byte
	testutil.WaitFor(t, "the hook set by SetPath to run", func() bool {
		b, _ = os.ReadFile(out)
		return len(b) > 0
	})
	if string(b) != "NOTIFY MASTER\n" {
		t.Fatalf("calls = %q, want only the one after SetPath", b)
	}
}

// TestHookGetsACleanEnvironmentAndDiesWhole: the hook never sees the
// cluster key, and at its timeout its whole process group is killed,
// what it started in the background included.
func TestHookGetsACleanEnvironmentAndDiesWhole(t *testing.T) {
	t.Setenv("TANDEM_CLUSTER_SECRET", "c2VjcmV0")
	dir := t.TempDir()
	envOut, bg := filepath.Join(dir, "env"), filepath.Join(dir, "bg")
	hook := filepath.Join(dir, "hook.sh")
	script := "#!/bin/sh\nenv > " + envOut + "\nsleep 30 &\necho $! > " + bg + "\nsleep 30\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := New(hook, "lb1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.timeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	r.Notify("MASTER")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, fails, _ := r.Stats(); fails == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hung hook was not killed at its timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-r.Done()
	env, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), "TANDEM_CLUSTER_SECRET") || !strings.Contains(string(env), "PATH=") {
		t.Fatalf("hook environment:\n%s", env)
	}
	b, err := os.ReadFile(bg)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	for range 100 {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the hook's background process %s outlived it", pid)
}
