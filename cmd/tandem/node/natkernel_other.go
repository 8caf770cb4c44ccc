//go:build !linux

package node

import (
	"errors"
	"log/slog"

	"github.com/tandem-lb/tandem/pkg/config"
)

// openNAT: nat clusters need Linux's netfilter.
func openNAT(*config.Config, *slog.Logger) (natRules, flowTable, error) {
	return nil, nil, errors.New("mode: nat clusters need Linux netfilter (nf_tables and conntrack), not available on this platform")
}
