//go:build linux

package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/google/nftables"
)

// Check is the start-up probe for the current network namespace: it
// fails if nf_tables cannot be used (no CAP_NET_ADMIN, or a kernel
// without one of the expressions the rules need) or if a table named
// table exists that Tandem did not create. It changes nothing.
func Check(table string) error {
	m, err := New(table, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Check()
}

// Check is the package-level Check for the Manager's namespace and table.
func (m *Manager) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.owned(); err != nil {
		return fmt.Errorf("nft: check: %w", err)
	}
	// A transaction that creates a scratch table holding every kind of
	// rule Apply writes, then deletes it: the kernel validates each rule
	// as it comes and commits nothing visible.
	probe := probeSpec(fmt.Sprintf("tandem_probe_%d", os.Getpid()))
	r := render(probe)
	m.nft.AddTable(r.table)
	_, qerr := m.queue(tableState{}, r)
	m.nft.DelTable(r.table)
	if qerr != nil {
		m.nft.DelTable(&nftables.Table{Name: abortTable, Family: nftables.TableFamilyINet})
	}
	if err := errors.Join(qerr, m.nft.Flush()); err != nil {
		return fmt.Errorf("nft: check: nf_tables cannot hold Tandem's rules: %w", err)
	}
	return nil
}

// probeSpec uses every feature: both families and protocols, all picks,
// persistence, allow lists, connection limits, SNAT and the outbound policy.
func probeSpec(table string) Spec {
	a4 := netip.MustParseAddrPort("198.18.0.21:80")
	a6 := netip.MustParseAddrPort("[2001:2::21]:53")
	return Spec{
		Table: table,
		Services: []Service{
			{Name: "p4", Mark: 1, VIP: netip.MustParseAddr("198.18.0.100"), Port: 80, Proto: "tcp",
				Pick: PickFiveTuple, Seed: 1, Slots: []netip.AddrPort{a4}, Eligible: []netip.AddrPort{a4},
				SNAT: netip.MustParseAddr("198.18.0.101"), Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
				MaxConns: 10, Sticky: &Sticky{Mask: 24, Timeout: time.Minute}},
			{Name: "p6", Mark: 2, VIP: netip.MustParseAddr("2001:2::100"), Port: 53, Proto: "udp",
				Pick: PickSourceHash, Slots: []netip.AddrPort{a6}},
			{Name: "p4rr", Mark: 3, VIP: netip.MustParseAddr("198.18.0.100"), Port: 81, Proto: "tcp"},
		},
		Outbound: &Outbound{InIface: "lo", Sources: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")},
			SNAT: netip.MustParseAddr("198.18.0.100"), Mark: 4,
			Allow: []OutRule{{Dest: netip.MustParsePrefix("0.0.0.0/0"), Proto: "tcp", Ports: []uint16{443}}}},
	}
}
