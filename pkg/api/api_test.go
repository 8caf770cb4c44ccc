package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

type fixed Status

func (f fixed) Status() Status { return Status(f) }

func TestStatusOverSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "t.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("socket mode = %o, want 600", mode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	want := fixed{Node: "lb1", State: "MASTER", Priority: 150,
		Peers: []Peer{{Name: "lb2", Alive: true, State: "BACKUP"}}}
	go func() {
		done <- Serve(ctx, l, Handler(Deps{Status: want}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()

	// A second daemon must not steal a live socket.
	if _, err := Listen(sock); err == nil {
		t.Error("Listen replaced a live socket")
	}

	st, err := NewClient(sock).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "lb1" || st.State != "MASTER" || len(st.Peers) != 1 || st.Peers[0].State != "BACKUP" {
		t.Errorf("status = %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(sock).Status(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Errorf("after stop: err = %v, want UnreachableError", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "t.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l.Close()
}

type admins map[string]string

func (a admins) SetServerAdmin(cluster, server, state string) error {
	if cluster != "web" || server != "web1" {
		return fmt.Errorf("server %s/%s: %w", cluster, server, ErrNotFound)
	}
	a[cluster+"/"+server] = state
	return nil
}

func TestServerActions(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "t.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := admins{}
	go Serve(ctx, l, Handler(Deps{Status: fixed{}, Servers: a}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := NewClient(sock)
	for action, want := range map[string]string{"drain": "draining", "disable": "disabled", "enable": "enabled"} {
		if err := c.ServerAction(ctx, "web", "web1", action); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		if a["web/web1"] != want {
			t.Errorf("%s: admin = %q, want %q", action, a["web/web1"], want)
		}
	}
	if err := c.ServerAction(ctx, "web", "nope", "drain"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown server: err = %v, want ErrNotFound", err)
	}
	if err := c.ServerAction(ctx, "web", "web1", "explode"); err == nil {
		t.Error("unknown action accepted")
	}
}
