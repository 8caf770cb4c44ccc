package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-lb/tandem/pkg/config"
)

// keyFields are the cluster.* keys a reload applies live (see reloadKeys);
// every other cluster.* key needs a restart.
var keyFields = []string{"cluster.secret", "cluster.secret_file", "cluster.accept_secrets"}

// keySetter takes a new list of cluster keys, the primary first: the
// peer transport's keyring and the replication channel.
type keySetter interface {
	SetKeys(keys [][]byte) error
}

// keysNeedRestart says why a change of keys cannot be applied live: going
// from a key to none (insecure) or back.
func keysNeedRestart(running [][]byte, cfg *config.Config) error {
	keys, err := cfg.ClusterKeys()
	if err != nil {
		return fmt.Errorf("cluster keys: %w", err)
	}
	if (len(keys) == 0) != (len(running) == 0) {
		return errors.New("restart needed: the cluster switches between encrypted and insecure; nothing reloaded")
	}
	return nil
}

// reloadKeys applies cfg's cluster keys to the transport and the
// replication if they differ from the running ones (a changed secret,
// accept_secrets, or secret_file contents), and returns what changed. The
// caller has checked keysNeedRestart.
func (n *Node) reloadKeys(cfg *config.Config) ([]string, error) {
	keys, err := cfg.ClusterKeys()
	if err != nil {
		return nil, fmt.Errorf("cluster keys: %w", err)
	}
	if slices.EqualFunc(keys, n.reload.keys, bytes.Equal) {
		return nil, nil
	}
	to := []keySetter{n.peer}
	if n.repl != nil {
		to = append(to, n.repl)
	}
	for _, s := range to {
		if err := s.SetKeys(keys); err != nil {
			return nil, fmt.Errorf("apply cluster keys: %w", err)
		}
	}
	n.reload.keys = keys
	n.setHTTPCookieKeys(keys)
	msg := fmt.Sprintf("cluster keys: primary %s, %d accepted", keyID(keys[0]), len(keys)-1)
	n.log.Info("cluster keys changed", "primary", keyID(keys[0]), "accepted", len(keys)-1)
	return []string{msg}, nil
}

// keyID names a key in logs and events without revealing it: the first
// 8 hex digits of its SHA-256, so both boxes' keys can be compared.
func keyID(k []byte) string {
	sum := sha256.Sum256(k)
	return "sha256:" + hex.EncodeToString(sum[:4])
}
