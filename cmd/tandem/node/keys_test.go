package node

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/peer"
	"github.com/tandem-lb/tandem/pkg/replicate"
)

var (
	testSecret = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	newSecret  = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
)

func keyedNode(t *testing.T, cfg *config.Config) *Node {
	t.Helper()
	keys, err := cfg.ClusterKeys()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := peer.New(peer.Config{NodeName: "lb1", Bind: "127.0.0.1:7946", Peers: []string{"127.0.0.2:7946"}, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	rp, err := replicate.New(replicate.Config{Node: "lb1", Listen: "127.0.0.1:7947", Peer: "127.0.0.2:7947", Key: keys[0]}, nopStore{})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{log: slog.New(slog.NewTextHandler(io.Discard, nil)), peer: tr, repl: rp}
	n.reload.keys = keys
	return n
}

type nopStore struct{}

func (nopStore) Apply(replicate.Entry)               {}
func (nopStore) Snapshot(func(replicate.Entry) bool) {}

// TestReloadKeys: a reload that changes only the keys is not a restart,
// reaches the transport and the replication, and notices a secret_file
// whose contents changed under the same path.
func TestReloadKeys(t *testing.T) {
	cfg := config.Default()
	cfg.Cluster.Secret = testSecret
	n := keyedNode(t, &cfg)

	next := cfg
	next.Cluster.AcceptSecrets = []string{newSecret}
	if err := n.needsRestart(&cfg, &next); err != nil {
		t.Fatalf("accept_secrets needs a restart: %v", err)
	}
	changes, err := n.reloadKeys(&next)
	if err != nil || len(changes) != 1 || !strings.Contains(changes[0], "1 accepted") {
		t.Fatalf("reloadKeys = %q, %v", changes, err)
	}
	if got := n.peer.KeyCount(); got != 2 {
		t.Errorf("transport holds %d keys, want 2", got)
	}
	if changes, _ := n.reloadKeys(&next); changes != nil {
		t.Errorf("same keys again: %q", changes)
	}

	// The same secret_file path, new contents: the new key becomes primary.
	file := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := config.Default()
	fromFile.Cluster.SecretFile = file
	n = keyedNode(t, &fromFile)
	if err := os.WriteFile(file, []byte("# rotating\n"+newSecret+"\n"+testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.needsRestart(&fromFile, &fromFile); err != nil {
		t.Fatal(err)
	}
	changes, err = n.reloadKeys(&fromFile)
	if err != nil || len(changes) != 1 {
		t.Fatalf("changed key file: %q, %v", changes, err)
	}
	if !bytes.Equal(n.reload.keys[0], bytes.Repeat([]byte{2}, 32)) || n.peer.KeyCount() != 2 {
		t.Errorf("running primary is %x, want the file's first key", n.reload.keys[0])
	}

	// Keyed to insecure needs a restart (insecure: true with a key
	// still uses the key, so dropping the key is what is refused).
	off := cfg
	off.Cluster.Secret, off.Cluster.Insecure = "", true
	if err := n.needsRestart(&cfg, &off); err == nil || !strings.Contains(err.Error(), "restart needed") {
		t.Errorf("keyed to insecure: %v", err)
	}
	cfg.Cluster.Insecure = true
	if err := n.needsRestart(&cfg, &off); err == nil || !strings.Contains(err.Error(), "encrypted and insecure") {
		t.Errorf("key dropped, insecure kept: %v", err)
	}
}
