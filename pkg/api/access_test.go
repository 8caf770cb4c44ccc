package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestAllowed(t *testing.T) {
	const self, grp = 0, 4242
	noGroups := func() ([]int, error) { return nil, nil }
	member := func() ([]int, error) { return []int{100, grp}, nil }
	broken := func() ([]int, error) { return nil, errors.New("boom") }
	tests := []struct {
		name   string
		cred   Cred
		self   int
		gid    int
		groups func() ([]int, error)
		ok     bool
		reason string
	}{
		{"root", Cred{UID: 0, GID: 0}, 1000, -1, noGroups, true, ""},
		{"daemon's own uid", Cred{UID: 1000, GID: 1000}, 1000, -1, noGroups, true, ""},
		{"other uid, no group", Cred{UID: 1001, GID: grp}, self, -1, member, false, "node.api_group is not set"},
		{"primary gid matches", Cred{UID: 1001, GID: grp}, self, grp, broken, true, ""},
		{"supplementary group matches", Cred{UID: 1001, GID: 1001}, self, grp, member, true, ""},
		{"not a member", Cred{UID: 1001, GID: 1001}, self, grp, noGroups, false, "is not in node.api_group (gid 4242)"},
		{"groups unreadable", Cred{UID: 1001, GID: 1001}, self, grp, broken, false, "cannot read its groups"},
	}
	for _, tt := range tests {
		ok, reason := allowed(tt.cred, tt.self, tt.gid, tt.groups)
		if ok != tt.ok || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: allowed = %v %q, want %v %q", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
}

// TestSocketGroupMode: with a group the socket is 0660 and that group's.
func TestSocketGroupMode(t *testing.T) {
	gid := os.Getegid()
	sock := filepath.Join(t.TempDir(), "t.sock")
	l, err := ListenAccess(sock, Access{GID: gid})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o660 {
		t.Errorf("mode %o, want 660", m)
	}
	if g := int(fi.Sys().(*syscall.Stat_t).Gid); g != gid {
		t.Errorf("group %d, want %d", g, gid)
	}
	if os.Geteuid() != 0 {
		// A group we are not in: chown fails with a clear error.
		if _, err := ListenAccess(filepath.Join(t.TempDir(), "u.sock"), Access{GID: 0}); err == nil ||
			!strings.Contains(err.Error(), "node.api_group") {
			t.Errorf("chgrp to a foreign group: %v", err)
		}
	}
}

// helperEnv makes the test binary, run again, dial a socket and print
// the HTTP status it got (see TestHelperDial).
const helperEnv = "TANDEM_API_TEST_DIAL"

// helperReqEnv, when set, is the helper's request line ("POST /v1/reload").
const helperReqEnv = "TANDEM_API_TEST_REQ"

// TestHelperDial is not a test: run by TestPeerCredentials as another
// user, it asks for /v1/status and prints the status line or the error.
func TestHelperDial(t *testing.T) {
	sock := os.Getenv(helperEnv)
	if sock == "" {
		t.Skip("helper process only")
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("DIAL", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /v1/status"
	if r := os.Getenv(helperReqEnv); r != "" {
		req = r
	}
	fmt.Fprint(c, req+" HTTP/1.0\r\nHost: tandem\r\nContent-Length: 0\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println("READ", err)
		return
	}
	fmt.Println("STATUS", strings.TrimSpace(line))
}

// TestPeerCredentials connects as other users (root only: it needs
// setuid): a stranger is refused, logged and counted even though the
// socket's mode would let it in; a member of node.api_group, by primary
// or supplementary group, is let in.
func TestPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	const nobody, grp = 65534, 4242
	// Not t.TempDir: its parent is 0700, closed to the other users.
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
	l, err := ListenAccess(sock, Access{GID: grp, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Open the file mode to everyone: only the credentials check is left.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, l, Handler(Deps{Status: fixed{Node: "lb1"}}), slog.New(slog.DiscardHandler))

	dial := func(cred *syscall.Credential) string {
		cmd := exec.Command(bin, "-test.run=^TestHelperDial$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
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
	cl := l.(*credListener)
	if got := dial(&syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}); !strings.HasPrefix(got, "READ") {
		t.Errorf("a stranger got %q, want the connection closed", got)
	}
	if cl.Refused() != 1 || !strings.Contains(logs.String(), "uid="+strconv.Itoa(nobody)) ||
		!strings.Contains(logs.String(), "is not in node.api_group (gid 4242)") {
		t.Errorf("refusal not counted (%d) or logged: %s", cl.Refused(), logs.String())
	}
	if got := dial(&syscall.Credential{Uid: nobody, Gid: grp, Groups: []uint32{}}); got != "STATUS HTTP/1.0 200 OK" {
		t.Errorf("primary group member got %q", got)
	}
	if got := dial(&syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{100, grp}}); got != "STATUS HTTP/1.0 200 OK" {
		t.Errorf("supplementary group member got %q", got)
	}
	if cl.Refused() != 1 {
		t.Errorf("refused %d, want 1", cl.Refused())
	}
}

type panicky struct{}

func (panicky) Status() Status { panic("status exploded") }

// TestServeLimits: an oversize request header is refused with 431, a
// handler's panic is answered 500 and logged, and the server answers the
// next request in both cases.
func TestServeLimits(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "t.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := http.NewServeMux()
	mux.Handle("/v1/", Handler(Deps{Status: fixed{Node: "lb1"}}))
	mux.Handle("/boom/", http.StripPrefix("/boom", Handler(Deps{Status: panicky{}})))
	go Serve(ctx, l, mux, slog.New(slog.NewTextHandler(&logs, nil)))

	raw := func(req string) string {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go io.WriteString(c, req)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	big := "GET /v1/status HTTP/1.1\r\nHost: tandem\r\nX-Big: " + strings.Repeat("a", 2*MaxHeaderBytes) + "\r\n\r\n"
	if got := raw(big); !strings.Contains(got, "431") {
		t.Errorf("oversize header: %q, want 431", got)
	}
	if got := raw("GET /boom/v1/status HTTP/1.0\r\n\r\n"); !strings.Contains(got, "500") {
		t.Errorf("panicking handler: %q, want 500", got)
	}
	if !strings.Contains(logs.String(), "status exploded") {
		t.Errorf("panic not logged: %s", logs.String())
	}
	if st, err := NewClient(sock).Status(ctx); err != nil || st.Node != "lb1" {
		t.Fatalf("after the bad requests: %+v, %v", st, err)
	}
}

// syncBuf is a bytes.Buffer safe to write from the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestManyClientsDoNotExhaustConns: more Clients than MaxConns, each made
// for one call and dropped (as the CLI and tests do), all get answers:
// no idle connection is left holding a slot.
func TestManyClientsDoNotExhaustConns(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "t.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, l, Handler(Deps{Status: fixed{Node: "lb1"}}), slog.New(slog.DiscardHandler))
	for i := range 2 * MaxConns {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := NewClient(sock).Status(cctx)
		ccancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}
