package node

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tandem-lb/tandem/pkg/config"
)

// driftSections are the config sections whose hashes travel in adverts.
var driftSections = []string{"cluster", "failover", "clusters"}

// advertHash is what a node advertises as its config hash: the whole
// hash, then a short hash per section, so the peer can say which
// sections differ: "sha256:<64 hex> cluster:<8> failover:<8> clusters:<8>"
// (at most 128 bytes, the advert's limit).
func advertHash(cfg *config.Config) string {
	var b strings.Builder
	b.WriteString(cfg.Hash())
	sections := cfg.SectionHashes()
	for _, s := range driftSections {
		h := strings.TrimPrefix(sections[s], "sha256:")
		if len(h) > 8 {
			h = h[:8]
		}
		fmt.Fprintf(&b, " %s:%s", s, h)
	}
	return b.String()
}

// splitAdvertHash returns the whole hash and the section hashes of an
// advertised config hash (a bare hash has no sections).
func splitAdvertHash(s string) (string, map[string]string) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return "", nil
	}
	secs := map[string]string{}
	for _, kv := range f[1:] {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			secs[k] = v
		}
	}
	return f[0], secs
}

// configDiff names the sections in which the peer's advertised config
// differs from ours; nil when the configs match. When the peer sent no
// section hashes, the whole config is named.
func configDiff(ours, theirs string) []string {
	oh, os := splitAdvertHash(ours)
	th, ts := splitAdvertHash(theirs)
	if oh == th {
		return nil
	}
	var diff []string
	for _, s := range driftSections {
		if ts[s] == "" || ts[s] != os[s] {
			diff = append(diff, s)
		}
	}
	if len(diff) == 0 || len(ts) == 0 {
		return []string{"config"}
	}
	return slices.Clip(diff)
}
