package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/tandem-lb/tandem/pkg/console"
)

func TestWebPasswdAddsAUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader("correct horse\n"))
	root.SetArgs([]string{"web", "passwd", path, "ann", "--role", "admin"})
	if err := root.Execute(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users, err := console.ParseUsers(data)
	if err != nil {
		t.Fatal(err)
	}
	u := users["ann"]
	if u.Role != console.RoleAdmin || bcrypt.CompareHashAndPassword(u.Hash, []byte("correct horse")) != nil {
		t.Fatalf("users file:\n%s", data)
	}
	if _, code := execute(t, "web", "passwd", path, "bob", "--role", "root"); code != 2 {
		t.Errorf("--role root: exit %d, want 2", code)
	}
}
