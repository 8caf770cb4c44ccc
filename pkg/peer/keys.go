package peer

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// ErrKeysNeedRestart is returned by SetKeys for a change a running
// transport cannot make: from no encryption to a key, or back.
var ErrKeysNeedRestart = errors.New("switching between encrypted and insecure needs a restart")

// SetKeys replaces the cluster keys while the transport runs, for a key
// rotation without a restart: keys[0] becomes the primary (the one
// packets are sent with) and every key is accepted on receive. New keys
// are installed before the primary changes and old ones removed after,
// so no packet is sent with a key the keyring does not hold. Before Start
// it only replaces Config.Keys.
func (t *Transport) SetKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return fmt.Errorf("peer: set keys: %w", ErrKeysNeedRestart)
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("peer: set keys: keys[%d]: %d bytes: %w", i, len(k), err)
		}
		if slices.ContainsFunc(keys[:i], func(o []byte) bool { return bytes.Equal(o, k) }) {
			return fmt.Errorf("peer: set keys: keys[%d] repeats an earlier key", i)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.cfg.Keys) == 0 {
		return fmt.Errorf("peer: set keys: %w", ErrKeysNeedRestart)
	}
	cp := make([][]byte, len(keys))
	for i, k := range keys {
		cp[i] = slices.Clone(k)
	}
	t.cfg.Keys = cp
	kr := t.keyring
	if kr == nil {
		return nil // not started: Start builds the keyring from cfg.Keys
	}
	for _, k := range cp {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("peer: add key: %w", err)
		}
	}
	if err := kr.UseKey(cp[0]); err != nil {
		return fmt.Errorf("peer: use key: %w", err)
	}
	for _, k := range kr.GetKeys() {
		if !slices.ContainsFunc(cp, func(o []byte) bool { return bytes.Equal(o, k) }) {
			if err := kr.RemoveKey(k); err != nil {
				return fmt.Errorf("peer: remove key: %w", err)
			}
		}
	}
	t.log.Info("cluster keys changed", "keys", len(cp))
	return nil
}

// KeyCount returns how many keys the keyring holds (0 without
// encryption); the primary is one of them.
func (t *Transport) KeyCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keyring == nil {
		return len(t.cfg.Keys)
	}
	return len(t.keyring.GetKeys())
}
