package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestLevelOf(t *testing.T) {
	const readers, admins = 4242, 4343
	groups := func(g ...int) func() ([]int, error) { return func() ([]int, error) { return g, nil } }
	broken := func() ([]int, error) { return nil, errors.New("boom") }
	tests := []struct {
		name           string
		cred           Cred
		gid, admin     int
		groups         func() ([]int, error)
		want           Level
		reasonContains string
	}{
		{"root", Cred{UID: 0}, -1, -1, groups(), LevelAdmin, ""},
		{"daemon's uid", Cred{UID: 1000, GID: 1000}, -1, -1, groups(), LevelAdmin, ""},
		{"stranger, no groups set", Cred{UID: 1001, GID: readers}, -1, -1, groups(readers), LevelNone, "not set"},
		{"reader by primary group", Cred{UID: 1001, GID: readers}, readers, admins, groups(), LevelRead, "api_admin_group"},
		{"reader by supplementary group", Cred{UID: 1001, GID: 1001}, readers, admins, groups(readers), LevelRead, ""},
		{"admin by primary group", Cred{UID: 1001, GID: admins}, readers, admins, broken, LevelAdmin, ""},
		{"admin by supplementary group", Cred{UID: 1001, GID: 1001}, readers, admins, groups(readers, admins), LevelAdmin, ""},
		{"reader by primary, admin by supplementary", Cred{UID: 1001, GID: readers}, readers, admins, groups(admins), LevelAdmin, ""},
		{"admin group only, member", Cred{UID: 1001, GID: 1001}, -1, admins, groups(admins), LevelAdmin, ""},
		{"admin group only, reader group not set", Cred{UID: 1001, GID: readers}, -1, admins, groups(readers), LevelNone, "not in"},
		{"neither", Cred{UID: 1001, GID: 1001}, readers, admins, groups(7), LevelNone, "not in node.api_group"},
		{"groups unreadable", Cred{UID: 1001, GID: 1001}, readers, admins, broken, LevelNone, "cannot read its groups"},
	}
	for _, tt := range tests {
		got, reason := levelOf(tt.cred, 1000, tt.gid, tt.admin, tt.groups)
		if got != tt.want || !strings.Contains(reason, tt.reasonContains) {
			t.Errorf("%s: %v %q, want %v (reason with %q)", tt.name, got, reason, tt.want, tt.reasonContains)
		}
	}
}

type switcher struct{}

func (switcher) Switchover() error { return nil }

// TestReadersCannotAct runs clients as other users (root only): a member
// of node.api_group reads the status but is refused 403 on an action; a
// member of node.api_admin_group may act.
func TestReadersCannotAct(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	const nobody, readers, admins = 65534, 4242, 4343
	dir, err := os.MkdirTemp("", "tandem-api-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "api.test")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "t.sock")
	var logs syncBuf
	l, err := ListenAccess(sock, Access{GID: readers, AdminGID: admins, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Sys().(*syscall.Stat_t).Gid != readers {
		t.Fatalf("socket group: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, l, Handler(Deps{Status: fixed{Node: "lb1"}, Switchover: switcher{}}), slog.New(slog.NewTextHandler(&logs, nil)))
	do := func(gid uint32, groups []uint32, req string) string {
		cmd := exec.Command(bin, "-test.run=^TestHelperDial$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+sock, helperReqEnv+"="+req)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: gid, Groups: groups}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Sprintf("helper: %v: %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "STATUS") || strings.HasPrefix(line, "DIAL") || strings.HasPrefix(line, "READ") {
				return line
			}
		}
		return string(out)
	}
	for _, tt := range []struct {
		name   string
		gid    uint32
		groups []uint32
		req    string
		want   string
	}{
		{"reader reads", readers, nil, "GET /v1/status", "STATUS HTTP/1.0 200 OK"},
		{"reader may not act", readers, nil, "POST /v1/switchover", "STATUS HTTP/1.0 403 Forbidden"},
		{"admin reads (in both groups)", nobody, []uint32{readers, admins}, "GET /v1/status", "STATUS HTTP/1.0 200 OK"},
		{"admin acts", nobody, []uint32{readers, admins}, "POST /v1/switchover", "STATUS HTTP/1.0 202 Accepted"},
	} {
		if got := do(tt.gid, tt.groups, tt.req); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if !strings.Contains(logs.String(), "action refused") {
		t.Errorf("refused action not logged: %s", logs.String())
	}
}

type listPers struct{ asked int }

func (p *listPers) StickyEntries(cluster string, top int) ([]StickyEntry, error) {
	p.asked = top
	return nil, nil
}
func (p *listPers) FlushSticky(string) (int, error) { return 0, nil }

func TestTopBounded(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "t.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pers := &listPers{}
	go Serve(ctx, l, Handler(Deps{Status: fixed{}, Persistence: pers}), slog.New(slog.DiscardHandler))
	if _, err := NewClient(sock).StickyEntries(ctx, "", 1<<30); err != nil {
		t.Fatal(err)
	}
	if pers.asked != MaxTop {
		t.Fatalf("asked for %d entries, want at most %d", pers.asked, MaxTop)
	}
}

// TestManyGroups: a client in more than 1024 groups (the first buffer)
// is judged on all of them: the api_group beyond the 1024th lets it in,
// and a client in 1100 groups none of which is api_group is refused
// (the old code read the kernel's untouched buffer: 1024 times gid 0).
func TestManyGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client with many groups")
	}
	const nobody, grp = 65534, 4242
	dir, err := os.MkdirTemp("", "tandem-api-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "api.test")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		admin int // api_admin_group: 0 (root's group) shows the zero-filled buffer bug
		last  uint32
		want  string
	}{
		{"api_group past the 1024th group", -1, grp, "STATUS HTTP/1.0 200 OK"},
		{"no api_group among 1100, gid 0 made admin", 0, 9999, "READ EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A socket of its own: the previous subtest's server may
			// still be closing its own.
			sock := filepath.Join(dir, "m"+strconv.Itoa(int(tt.last))+".sock")
			l, err := ListenAccess(sock, Access{GID: grp, AdminGID: tt.admin})
			if err != nil {
				t.Fatal(err)
			}
			os.Chmod(sock, 0o666)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go Serve(ctx, l, Handler(Deps{Status: fixed{Node: "lb1"}}), slog.New(slog.DiscardHandler))
			var groups []uint32
			for g := uint32(10000); len(groups) < 1099; g++ {
				groups = append(groups, g)
			}
			groups = append(groups, tt.last)
			cmd := exec.Command(bin, "-test.run=^TestHelperDial$", "-test.v")
			cmd.Env = append(os.Environ(), helperEnv+"="+sock)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: groups}}
			out, _ := cmd.CombinedOutput()
			got := ""
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "STATUS") || strings.HasPrefix(line, "DIAL") || strings.HasPrefix(line, "READ") {
					got = line
				}
			}
			// A refused client sees the server close: EOF, or a reset
			// when its request was still unread, depending on timing.
			refused := tt.want == "READ EOF" && strings.HasPrefix(got, "READ ") &&
				(strings.HasSuffix(got, "EOF") || strings.Contains(got, "connection reset by peer"))
			if got != tt.want && !refused {
				t.Fatalf("got %q, want %q\n%s", got, tt.want, out)
			}
		})
	}
}
