//go:build !linux

package nft

import (
	"log/slog"
	"net/netip"
)

// Manager owns one nftables table; it needs Linux.
type Manager struct{}

// New fails with ErrUnsupported: nftables is Linux only.
func New(table string, log *slog.Logger) (*Manager, error) { return nil, unsupportedError{} }

// NewInNetns fails with ErrUnsupported: nftables is Linux only.
func NewInNetns(fd int, table string, log *slog.Logger) (*Manager, error) {
	return nil, unsupportedError{}
}

// Check fails with ErrUnsupported: nftables is Linux only.
func Check(table string) error { return unsupportedError{} }

func (m *Manager) Close() error                           { return unsupportedError{} }
func (m *Manager) Table() string                          { return "" }
func (m *Manager) Check() error                           { return unsupportedError{} }
func (m *Manager) Exists() (bool, error)                  { return false, unsupportedError{} }
func (m *Manager) Remove() error                          { return unsupportedError{} }
func (m *Manager) Apply(spec Spec) error                  { return unsupportedError{} }
func (m *Manager) AddSticky(string, ...StickyEntry) error { return unsupportedError{} }
func (m *Manager) StickyEntries(string) ([]StickyEntry, error) {
	return nil, unsupportedError{}
}
func (m *Manager) DeleteSticky(string, netip.AddrPort) (int, error) { return 0, unsupportedError{} }
func (m *Manager) Counters() (map[string]map[string]uint64, error) {
	return nil, unsupportedError{}
}
