package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// execute runs the CLI in-process and returns stdout, stderr-ish error
// text and the exit code main would use.
func execute(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	code := 0
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		} else {
			code = 2
		}
	}
	return out.String(), code
}

func TestKeygenPrintsA32ByteKey(t *testing.T) {
	out, code := execute(t, "keygen")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil || len(key) != 32 {
		t.Fatalf("keygen printed %q: %d bytes, err %v", out, len(key), err)
	}
	again, _ := execute(t, "keygen")
	if again == out {
		t.Error("two keys are equal")
	}
}

func TestValidateExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := `node:
  name: lb1
  api_socket: /run/tandem/lb1.sock
cluster:
  bind: 198.18.0.11:7946
  peers: [198.18.0.12:7946]
  insecure: true
failover:
  interface: eth0
  vips: [198.18.0.100/24]
`
	goodPath := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(goodPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := execute(t, "validate", "--config", goodPath); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("good config: exit %d, output %q", code, out)
	}

	// Bad: priority out of range on line 11, an unknown key on line 12.
	bad := strings.Replace(good, "  vips: [198.18.0.100/24]\n", "  vips: [198.18.0.100/24]\n  priority: 300\n  garp: {cuont: 3}\n", 1)
	badPath := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := execute(t, "validate", "--config", badPath)
	if code != 2 {
		t.Fatalf("bad config: exit %d, want 2", code)
	}
	for _, want := range []string{badPath + ":11: failover.priority: ", badPath + ":12: failover.garp.cuont: "} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	if _, code := execute(t, "run", "--config", badPath); code != 2 {
		t.Fatalf("run with a bad config: exit %d, want 2 (never starts)", code)
	}
	if _, code := execute(t, "validate"); code != 2 {
		t.Fatalf("validate without --config: exit %d, want 2", code)
	}
}

func TestStatusOfAbsentDaemonIsUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	out, code := execute(t, "status", "--socket", sock)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "UNREACHABLE") || strings.Contains(out, "MASTER") {
		t.Fatalf("output %q: want UNREACHABLE and never MASTER", out)
	}
}

func TestVersion(t *testing.T) {
	out, code := execute(t, "version")
	if code != 0 || !strings.HasPrefix(out, "tandem ") || !strings.Contains(out, "go1") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}
