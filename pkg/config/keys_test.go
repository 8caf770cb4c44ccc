package config

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two more keys beside testKey, of other lengths.
var (
	key16 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x16}, 16))
	key24 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x24}, 24))
)

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClusterKeysRotation: the primary first, then the secret file's other
// keys, then accept_secrets; comments and blank lines in the file ignored.
func TestClusterKeysRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cluster.key")
	src := "# rotation: new key first, the old one still accepted\n\n" + key16 + "\n  # old\n" + testKey + "\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"secret only", base, []string{testKey}},
		{"secret and accepted", edit(t, "  secret: "+testKey, "  secret: "+testKey+"\n  accept_secrets: ["+key16+", "+key24+"]"),
			[]string{testKey, key16, key24}},
		{"file of two keys and accepted", edit(t, "  secret: "+testKey, "  secret_file: "+file+"\n  accept_secrets: ["+key24+"]"),
			[]string{key16, testKey, key24}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.src))
			if err != nil {
				t.Fatal(err)
			}
			keys, err := c.ClusterKeys()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tt.want) {
				t.Fatalf("%d keys, want %d", len(keys), len(tt.want))
			}
			for i, w := range tt.want {
				if !bytes.Equal(keys[i], mustDecode(t, w)) {
					t.Errorf("keys[%d] = %x, want %s", i, keys[i], w)
				}
			}
			primary, err := c.ClusterKey()
			if err != nil || !bytes.Equal(primary, keys[0]) {
				t.Errorf("ClusterKey = %x, %v; want the first key", primary, err)
			}
		})
	}
}

// TestClusterKeysProblems: every bad or repeated key is reported at its
// key path (and, in a key file, its line in that file).
func TestClusterKeysProblems(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badLine := write("bad.key", key16+"\n# old\nc2hvcnQ=\n")
	dupFile := write("dup.key", key16+"\n"+testKey+"\n"+key16+"\n")
	empty := write("empty.key", "# nothing yet\n\n")
	withAccepted := func(list string) string {
		return edit(t, "  secret: "+testKey, "  secret: "+testKey+"\n  accept_secrets: "+list)
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"accepted not base64", withAccepted(`["!!!"]`),
			[]string{"FILE:9: cluster.accept_secrets[0]: must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): not valid base64"}},
		{"accepted short", withAccepted("\n    - " + key16 + "\n    - c2hvcnQ="),
			[]string{"FILE:11: cluster.accept_secrets[1]: must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): got 5 bytes"}},
		{"accepted same as primary", withAccepted("[" + testKey + "]"),
			[]string{"FILE:9: cluster.accept_secrets[0]: cluster.accept_secrets[0] is the same key as cluster.secret"}},
		{"accepted twice", withAccepted("[" + key16 + ", " + key16 + "]"),
			[]string{"FILE:9: cluster.accept_secrets[1]: cluster.accept_secrets[1] is the same key as cluster.accept_secrets[0]"}},
		{"accepted without primary", edit(t, "  secret: "+testKey, "  insecure: true\n  accept_secrets: ["+key16+"]"),
			[]string{"FILE:9: cluster.accept_secrets: accepted keys need a primary key: set cluster.secret or cluster.secret_file"}},
		{"file with a bad line", edit(t, "  secret: "+testKey, "  secret_file: "+badLine),
			[]string{"FILE:8: cluster.secret_file: DIR/bad.key:3: must be base64 of a 16, 24 or 32-byte key (`tandem keygen` makes one): got 5 bytes"}},
		{"file with a key twice", edit(t, "  secret: "+testKey, "  secret_file: "+dupFile),
			[]string{"FILE:8: cluster.secret_file: DIR/dup.key:3 is the same key as DIR/dup.key:1"}},
		{"file and accepted repeat", edit(t, "  secret: "+testKey, "  secret_file: "+dupFile+"\n  accept_secrets: ["+testKey+"]"),
			[]string{"FILE:8: cluster.secret_file: DIR/dup.key:3 is the same key as DIR/dup.key:1",
				"FILE:9: cluster.accept_secrets[0]: cluster.accept_secrets[0] is the same key as DIR/dup.key:2"}},
		{"file with no key", edit(t, "  secret: "+testKey, "  secret_file: "+empty),
			[]string{"FILE:8: cluster.secret_file: DIR/empty.key holds no key (`tandem keygen > DIR/empty.key` makes one)"}},
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

// TestAcceptSecretsFromEnv: the environment gives a comma-separated list.
func TestAcceptSecretsFromEnv(t *testing.T) {
	t.Setenv("TANDEM_CLUSTER_ACCEPT_SECRETS", key16+","+key24)
	c, err := Load(writeConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.ClusterKeys()
	if err != nil || len(keys) != 3 || !bytes.Equal(keys[2], mustDecode(t, key24)) {
		t.Fatalf("keys = %x, %v; want primary, key16, key24", keys, err)
	}
	if h := c.Hash(); h != mustLoad(t, base).Hash() {
		t.Error("accepted keys changed the config hash: secrets must never enter it")
	}
}

func mustLoad(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Load(writeConfig(t, src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAPIGroup: a name must exist; a number is a gid as is.
func TestAPIGroup(t *testing.T) {
	withGroup := func(g string) string { return edit(t, "  log_level: info", "  log_level: info\n  api_group: "+g) }
	if got := problems(t, withGroup("root")); got != nil {
		t.Errorf("api_group root: %v", got)
	}
	if got := problems(t, withGroup(`"4242"`)); got != nil {
		t.Errorf("api_group 4242: %v", got)
	}
	c := mustLoad(t, withGroup(`"4242"`))
	if gid, err := c.Node.APIGroupID(); gid != 4242 || err != nil {
		t.Errorf("APIGroupID = %d, %v", gid, err)
	}
	if gid, err := mustLoad(t, base).Node.APIGroupID(); gid != -1 || err != nil {
		t.Errorf("no api_group: APIGroupID = %d, %v; want -1", gid, err)
	}
	assertProblems(t, problems(t, withGroup("no-such-group-tandem")),
		[]string{`FILE:5: node.api_group: unknown group "no-such-group-tandem": create it (groupadd no-such-group-tandem) or give a numeric gid`})
}
