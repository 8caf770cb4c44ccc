package vip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The state file records the VIPs a Manager may have put on its
// interface. It is written before an address is added and after one is
// removed, so whatever ends the node (kill -9, the OOM killer), the file
// names every VIP of this node that can be on the interface. Two uses:
//
//   - release after a crash (`tandem release`, the unit's ExecStopPost)
//     removes what the file names, not what the config names: it needs
//     no valid config, and a VIP taken out of the config while the node
//     ran is still removed;
//   - at start, a config VIP already on the interface that the file does
//     not name was put there by someone else (the box's own address,
//     configured by the OS): the node refuses to start rather than delete
//     it later.
//
// It lives in a runtime directory (/run/tandem), which a reboot empties
// together with the addresses.

// stateDoc is the file's JSON.
type stateDoc struct {
	Interface string   `json:"interface"`
	VIPs      []string `json:"vips"`
}

// StateFile is where a Manager for iface keeps its record, beside the
// control socket: /run/tandem/tandem.sock gives /run/tandem/tandem.eth0.vips.
func StateFile(apiSocket, iface string) string {
	return strings.TrimSuffix(apiSocket, filepath.Ext(apiSocket)) + "." + iface + ".vips"
}

// StateFiles lists the state files beside apiSocket, every interface's.
func StateFiles(apiSocket string) ([]string, error) {
	m, err := filepath.Glob(strings.TrimSuffix(apiSocket, filepath.Ext(apiSocket)) + ".*.vips")
	if err != nil {
		return nil, fmt.Errorf("vip: state files beside %s: %w", apiSocket, err)
	}
	return m, nil
}

// ReadState returns the interface and VIPs a state file records; exists
// is false when there is no file.
func ReadState(path string) (iface string, vips []netip.Prefix, exists bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("vip: read state %s: %w", path, err)
	}
	var d stateDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return "", nil, true, fmt.Errorf("vip: state %s: %w", path, err)
	}
	for _, s := range d.VIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", nil, true, fmt.Errorf("vip: state %s: %w", path, err)
		}
		vips = append(vips, p)
	}
	return d.Interface, vips, true, nil
}

// writeState replaces the file atomically (a crash leaves the old or the
// new record, never half of one).
func writeState(path, iface string, vips []netip.Prefix) error {
	d := stateDoc{Interface: iface, VIPs: []string{}}
	for _, p := range vips {
		d.VIPs = append(d.VIPs, p.String())
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("vip: write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("vip: write state: %w", err)
	}
	return nil
}

// ForeignError lists config VIPs that were on the interface before this
// node put them there.
type ForeignError struct {
	Interface string
	VIPs      []netip.Prefix
}

func (e *ForeignError) Error() string {
	return fmt.Sprintf("vip: %v already on %s, and this node did not put it there (it is not in its state file): "+
		"a VIP must be an address only the master holds, never the box's own; fix failover.vips, or remove the address "+
		"if an older Tandem left it", e.VIPs, e.Interface)
}

// SetStateFile makes the Manager keep its record in path (see StateFile);
// without one, Cleanup removes the config's VIPs as it finds them.
func (m *Manager) SetStateFile(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = path
}

// record writes vips as the record, when there is a state file. m.mu held.
func (m *Manager) record(vips []netip.Prefix) error {
	if m.state == "" {
		return nil
	}
	if err := writeState(m.state, m.iface, vips); err != nil {
		m.errs.Add(1)
		m.log.Error("recording the VIPs failed: a release after a crash may miss them", "err", err)
		return err
	}
	m.rec = slices.Clone(vips)
	return nil
}

// union is a followed by the prefixes of b not in a.
func union(a, b []netip.Prefix) []netip.Prefix {
	out := slices.Clone(a)
	for _, p := range b {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// adopt is Cleanup with a state file: it removes the VIPs the file
// records, then empties it, and reports the config VIPs found on the
// interface that the file did not record. m.mu held.
func (m *Manager) adopt() error {
	_, rec, _, rerr := ReadState(m.state)
	present, lerr := m.present()
	if lerr != nil {
		return lerr
	}
	var errs []error
	if rerr != nil {
		errs = append(errs, rerr)
	}
	var left []netip.Prefix
	for _, p := range rec {
		if !present[p] {
			continue
		}
		if err := m.ops.Del(p); err != nil {
			m.errs.Add(1)
			left = append(left, p)
			errs = append(errs, fmt.Errorf("vip: remove %v from %s: %w", p, m.iface, err))
			continue
		}
		m.log.Info("removed VIP left over from an earlier run", "vip", p)
	}
	if err := m.record(left); err != nil {
		errs = append(errs, err)
	}
	var foreign []netip.Prefix
	for _, p := range m.vips {
		if present[p] && !slices.Contains(rec, p) {
			foreign = append(foreign, p)
		}
	}
	if len(foreign) > 0 {
		errs = append(errs, &ForeignError{Interface: m.iface, VIPs: foreign})
	}
	return errors.Join(errs...)
}

// refuseForeign returns a ForeignError for the VIPs of added that are
// already on the interface though not recorded (a reload adding the box's
// own address); nil without a state file. m.mu held.
func (m *Manager) refuseForeign(added []netip.Prefix) error {
	if m.state == "" || len(added) == 0 {
		return nil
	}
	present, err := m.present()
	if err != nil {
		return err
	}
	var foreign []netip.Prefix
	for _, p := range added {
		if present[p] && !slices.Contains(m.rec, p) {
			foreign = append(foreign, p)
		}
	}
	if len(foreign) > 0 {
		return &ForeignError{Interface: m.iface, VIPs: foreign}
	}
	return nil
}

// ReleaseState removes from their interface the VIPs a state file
// records and empties it; it reports whether there was a file, and what
// it removed. It needs no config: a crashed node's record is enough.
func ReleaseState(path string, log *slog.Logger) (removed []netip.Prefix, exists bool, err error) {
	iface, rec, exists, err := ReadState(path)
	if err != nil || !exists {
		return nil, exists, err
	}
	if len(rec) == 0 {
		return nil, true, nil
	}
	m, err := New(iface, rec, GARP{Count: 1}, log)
	if err != nil {
		return nil, true, err
	}
	defer m.Close()
	m.SetStateFile(path)
	m.mu.Lock()
	present, _ := m.present()
	m.mu.Unlock()
	if err := m.Release(); err != nil {
		return nil, true, err
	}
	for _, p := range rec {
		if present[p] {
			removed = append(removed, p)
		}
	}
	return removed, true, nil
}

// Foreign lists the VIPs already on iface that the state file at path
// does not record: addresses someone else put there (the box's own),
// which this node would refuse at start. An interface that does not
// exist on this box (a config checked elsewhere) has none.
func Foreign(iface string, vips []netip.Prefix, path string) ([]netip.Prefix, error) {
	ops, ann, err := newPlatform(iface)
	if err != nil {
		return nil, err
	}
	defer ann.Close() // closes the netlink handle too
	addrs, err := ops.List()
	if err != nil {
		if _, lerr := net.InterfaceByName(iface); lerr != nil {
			return nil, nil // no such interface here
		}
		return nil, fmt.Errorf("vip: list addresses of %s: %w", iface, err)
	}
	_, rec, _, err := ReadState(path)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, p := range vips {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
		if slices.Contains(addrs, p) && !slices.Contains(rec, p) {
			out = append(out, p)
		}
	}
	return out, nil
}
