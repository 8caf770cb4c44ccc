package replicate

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
)

// keySet is the keys a Replicator holds: it dials with primary (the
// Noise PSK of its hello), and accepts a hello that opens under any of
// all (primary first). A connection's keys derive from the key the
// dialing side used, which the accepting side must hold too.
type keySet struct {
	primary keys
	all     []keys
}

func newKeySet(masters [][]byte) (*keySet, error) {
	ks := &keySet{}
	for i, m := range masters {
		k, err := deriveKeys(m)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		ks.all = append(ks.all, k)
	}
	ks.primary = ks.all[0]
	return ks, nil
}

// holds reports whether master is one of the set's keys.
func (ks *keySet) holds(master []byte) bool {
	return slices.ContainsFunc(ks.all, func(k keys) bool { return bytes.Equal(k.master, master) })
}

// checkKeys validates a key list: 16, 24 or 32 bytes each, no repeats.
func checkKeys(list [][]byte) error {
	for i, k := range list {
		switch len(k) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("replicate: key %d is %d bytes, want 16, 24 or 32", i, len(k))
		}
		if slices.ContainsFunc(list[:i], func(o []byte) bool { return bytes.Equal(o, k) }) {
			return fmt.Errorf("replicate: key %d repeats an earlier key", i)
		}
	}
	return nil
}

// ErrInsecure is returned by SetKeys on a Replicator started without a
// key: switching to or from Insecure needs a restart.
var ErrInsecure = errors.New("replicate: switching between insecure and keyed needs a restart")

// SetKeys replaces the cluster keys while running, for a rotation without
// a restart: keys[0] becomes the primary, all are accepted. New
// connections use the new set at once; an established connection
// authenticated with a key that is no longer in the set is closed, so a
// dropped key stops working immediately (the sender then reconnects with
// the new keys and resumes where it was).
func (r *Replicator) SetKeys(list [][]byte) error {
	if len(list) == 0 || r.cfg.Insecure && len(r.cfg.Key) == 0 {
		return ErrInsecure
	}
	if err := checkKeys(list); err != nil {
		return err
	}
	cp := make([][]byte, len(list))
	for i, k := range list {
		cp[i] = slices.Clone(k)
	}
	ks, err := newKeySet(cp)
	if err != nil {
		return fmt.Errorf("replicate: derive keys: %w", err)
	}
	r.keys.Store(ks)
	var stale []net.Conn
	r.mu.Lock()
	if r.inConn != nil && !ks.holds(r.inKey) {
		stale = append(stale, r.inConn)
	}
	if r.outConn != nil && r.outKey != nil && !ks.holds(r.outKey) {
		stale = append(stale, r.outConn)
	}
	r.mu.Unlock()
	for _, c := range stale {
		c.Close()
	}
	r.log.Info("replication keys changed", "keys", len(cp), "connections_closed", len(stale))
	return nil
}
