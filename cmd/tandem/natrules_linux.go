//go:build linux

package main

import (
	"errors"
	"log/slog"

	"github.com/tandem-lb/tandem/pkg/nft"
)

// removeNATRules deletes Tandem's nftables table left by a crashed node
// (a foreign table of the same name is left alone); it reports whether
// there was one.
func removeNATRules() (bool, error) {
	m, err := nft.New(nft.DefaultTable, slog.New(slog.DiscardHandler))
	if err != nil {
		return false, nil // no nf_tables: there can be no table
	}
	defer m.Close()
	found, err := m.Exists()
	if err != nil {
		if errors.Is(err, nft.ErrForeignTable) {
			return false, nil
		}
		return false, err
	}
	if !found {
		return false, nil
	}
	return true, m.Remove()
}
