package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// nodeSpecific lists, per section, the keys that legitimately differ
// between the two boxes of a pair. Hash and SectionHashes leave them out.
// Secrets never enter the hash (their json tag is "-"), so a hash shown in
// status cannot help guess them.
var nodeSpecific = map[string][]string{
	"cluster":  {"bind", "peers", "secret", "secret_file", "heartbeat_paths"},
	"failover": {"priority", "interface", "track_interfaces", "notify", "witness"},
}

// Hash returns "sha256:<hex>" of a canonical JSON form of the config
// without its node-specific keys (node.*, cluster.bind, cluster.peers,
// cluster.secret*, failover.priority, failover.interface,
// failover.track_interfaces, failover.notify). The two boxes of a matching
// pair have the same hash; peers exchange it to detect drift. Defaults are
// applied before hashing, so leaving a key out and writing its default
// give the same hash; the order of clusters and servers counts.
func (c *Config) Hash() string {
	return digest(c.shared())
}

// SectionHashes returns the hash of each shared section, "cluster",
// "failover" and "clusters", with the same exclusions as Hash, so drift
// between the boxes can be reported by section.
func (c *Config) SectionHashes() map[string]string {
	s := c.shared()
	out := make(map[string]string, 3)
	for _, sec := range []string{"cluster", "failover", "clusters"} {
		out[sec] = digest(s[sec])
	}
	return out
}

// shared returns the config as generic JSON values, node-specific keys
// removed and empty values dropped, so that `allow: []` and no allow at
// all hash alike.
func (c *Config) shared() map[string]any {
	b, err := json.Marshal(c)
	if err != nil {
		panic("config: cannot marshal: " + err.Error()) // only plain types
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic("config: cannot unmarshal own JSON: " + err.Error())
	}
	delete(m, "node")
	for sec, keys := range nodeSpecific {
		if s, ok := m[sec].(map[string]any); ok {
			for _, k := range keys {
				delete(s, k)
			}
		}
	}
	return prune(m).(map[string]any)
}

// prune drops nulls, empty lists and empty maps inside maps, recursively.
func prune(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			e = prune(e)
			if isEmpty(e) {
				delete(v, k)
				continue
			}
			v[k] = e
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = prune(e)
		}
		return v
	}
	return v
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// digest hashes v's JSON; encoding/json sorts map keys, which makes it
// canonical.
func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("config: cannot marshal: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
