package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateWeb(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("ann:$2a$10$x:admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := func(lines string) string {
		return edit(t, "  log_level: info", "  log_level: info\n"+lines)
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"loopback without TLS", node("  web_listen: 127.0.0.1:9111\n  web_users_file: " + users), nil},
		{"localhost without TLS", node("  web_listen: localhost:9111\n  web_users_file: " + users), nil},
		{"lab address without TLS refused", node("  web_listen: 198.18.0.11:9111\n  web_users_file: " + users),
			[]string{"FILE:5: node.web_listen: 198.18.0.11:9111 is reachable from other machines: set node.web_cert_file and node.web_key_file (TLS), or node.web_insecure_http: true to send passwords and session cookies in clear"}},
		{"all addresses without TLS refused", node("  web_listen: \":9111\"\n  web_users_file: " + users),
			[]string{`FILE:5: node.web_listen: :9111 is reachable from other machines: set node.web_cert_file and node.web_key_file (TLS), or node.web_insecure_http: true to send passwords and session cookies in clear`}},
		{"lab address insecure_http", node("  web_listen: 198.18.0.11:9111\n  web_users_file: " + users + "\n  web_insecure_http: true"), nil},
		{"lab address with TLS", node("  web_listen: 198.18.0.11:9111\n  web_users_file: " + users +
			"\n  web_cert_file: " + users + "\n  web_key_file: " + users), nil},
		{"cert without key", node("  web_listen: 127.0.0.1:9111\n  web_users_file: " + users + "\n  web_cert_file: " + users),
			[]string{"FILE:7: node.web_cert_file: needs node.web_key_file too: TLS takes both, or set neither"}},
		{"unreadable cert", node("  web_listen: 127.0.0.1:9111\n  web_users_file: " + users +
			"\n  web_cert_file: /nonexistent/cert.pem\n  web_key_file: " + users),
			[]string{"FILE:7: node.web_cert_file: cannot read it: open /nonexistent/cert.pem: no such file or directory"}},
		{"no users file", node("  web_listen: 127.0.0.1:9111"),
			[]string{"FILE:5: node.web_listen: needs node.web_users_file, the console's users (`tandem web passwd FILE USER` adds one)"}},
		{"missing users file", node("  web_listen: 127.0.0.1:9111\n  web_users_file: /nonexistent/users"),
			[]string{"FILE:6: node.web_users_file: cannot read the console's users: open /nonexistent/users: no such file or directory"}},
		{"bad listen", node("  web_listen: \"9111\"\n  web_users_file: " + users),
			[]string{`FILE:5: node.web_listen: must be empty or host:port: got "9111"`}},
		{"users without listen", node("  web_users_file: " + users),
			[]string{"FILE:5: node.web_users_file: has no effect without node.web_listen (the console is off)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src)
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], dir, "DIR")
			}
			assertProblems(t, got, tt.want)
		})
	}
}

func TestLoopbackListen(t *testing.T) {
	for in, want := range map[string]bool{
		"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "127.9.9.9:1": true,
		":1": false, "0.0.0.0:1": false, "198.18.0.11:1": false, "lb1:1": false, "bad": false,
	} {
		if got := LoopbackListen(in); got != want {
			t.Errorf("LoopbackListen(%q) = %v, want %v", in, got, want)
		}
	}
}
