package vip

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func recorded(t *testing.T, path string) []netip.Prefix {
	t.Helper()
	iface, vips, exists, err := ReadState(path)
	if err != nil || !exists || iface != "eth0" {
		t.Fatalf("state %s: iface %q, exists %v, err %v", path, iface, exists, err)
	}
	return vips
}

// TestStateFileFollowsTheVIPs: the record names every VIP that may be on
// the interface: written before a claim adds them, trimmed after a
// release or a reload removes them.
func TestStateFileFollowsTheVIPs(t *testing.T) {
	ops := newFakeOps()
	m, _ := newTest(t, GARP{}, ops)
	path := filepath.Join(t.TempDir(), StateFile("tandem.sock", "eth0"))
	m.SetStateFile(path)
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, path); len(got) != 0 {
		t.Fatalf("after start: %v", got)
	}
	ctx := context.Background()
	if err := m.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, path); !slices.Equal(got, []netip.Prefix{v4, v6}) {
		t.Fatalf("after claim: %v", got)
	}
	extra := netip.MustParsePrefix("198.18.0.101/24")
	if err := m.SetVIPs(ctx, []netip.Prefix{v4, extra}, GARP{}); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, path); !slices.Equal(got, []netip.Prefix{v4, extra}) || ops.has(v6) {
		t.Fatalf("after a reload: recorded %v, v6 still there %v", got, ops.has(v6))
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, path); len(got) != 0 {
		t.Fatalf("after release: %v", got)
	}
}

// TestOwnAddressIsNeverAVIP: a config VIP already on the interface that
// this node did not record (the box's own address) makes the start fail
// and is left alone; what the record names is removed, even a VIP that
// is no longer in the config; a reload that adds the box's own address
// is refused.
func TestOwnAddressIsNeverAVIP(t *testing.T) {
	gone := netip.MustParsePrefix("198.18.0.102/24") // in the record, no longer in the config
	ops := newFakeOps(v4, v6, gone)                  // v4: the box's own address; v6, gone: left by a crash
	m, _ := newTest(t, GARP{}, ops)
	path := filepath.Join(t.TempDir(), "tandem.eth0.vips")
	if err := writeState(path, "eth0", []netip.Prefix{v6, gone}); err != nil {
		t.Fatal(err)
	}
	m.SetStateFile(path)
	err := m.Cleanup()
	var fe *ForeignError
	if !errors.As(err, &fe) || !slices.Equal(fe.VIPs, []netip.Prefix{v4}) {
		t.Fatalf("Cleanup: %v, want a ForeignError for %v", err, v4)
	}
	if !ops.has(v4) || ops.delCount(v4) != 0 {
		t.Fatal("the box's own address was deleted")
	}
	if ops.has(v6) || ops.has(gone) {
		t.Fatalf("recorded leftovers not removed: v6 %v, %v %v", ops.has(v6), gone, ops.has(gone))
	}
	if got := recorded(t, path); len(got) != 0 {
		t.Fatalf("record after cleanup: %v", got)
	}

	// A reload that adds the box's own address changes nothing.
	ops2 := newFakeOps(netip.MustParsePrefix("198.18.0.11/24"))
	m2, _ := newTest(t, GARP{}, ops2)
	m2.SetStateFile(filepath.Join(t.TempDir(), "tandem.eth0.vips"))
	if err := m2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := m2.Claim(context.Background()); err != nil {
		t.Fatal(err)
	}
	own := netip.MustParsePrefix("198.18.0.11/24")
	if err := m2.SetVIPs(context.Background(), []netip.Prefix{v4, own}, GARP{}); !errors.As(err, &fe) {
		t.Fatalf("SetVIPs with the box's own address: %v", err)
	}
	if err := m2.Release(); err != nil {
		t.Fatal(err)
	}
	if !ops2.has(own) {
		t.Fatal("the release deleted the box's own address")
	}
}

func TestReadStateMissingAndBroken(t *testing.T) {
	dir := t.TempDir()
	if _, _, exists, err := ReadState(filepath.Join(dir, "none.vips")); exists || err != nil {
		t.Fatalf("missing file: exists %v, err %v", exists, err)
	}
	if files, err := StateFiles(filepath.Join(dir, "tandem.sock")); err != nil || len(files) != 0 {
		t.Fatalf("StateFiles: %v %v", files, err)
	}
	p := StateFile(filepath.Join(dir, "tandem.sock"), "eth0")
	if err := writeState(p, "eth0", []netip.Prefix{v4}); err != nil {
		t.Fatal(err)
	}
	if files, _ := StateFiles(filepath.Join(dir, "tandem.sock")); !slices.Equal(files, []string{p}) {
		t.Fatalf("StateFiles: %v", files)
	}
	if err := os.WriteFile(p, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, exists, err := ReadState(p); !exists || err == nil {
		t.Fatalf("broken file: exists %v, err %v", exists, err)
	}
}

// FuzzReadState: a state file of any content is refused or read, never
// panics, and what is read writes back to a file that reads the same.
func FuzzReadState(f *testing.F) {
	f.Add([]byte(`{"interface":"eth0","vips":["198.18.0.100/24","2001:db8::100/64"]}`))
	f.Add([]byte(`{"interface":"eth0","vips":[]}`))
	f.Add([]byte(`{"vips":["x"]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "s.vips")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		iface, vips, exists, err := ReadState(p)
		if err != nil || !exists {
			return
		}
		if err := writeState(p, iface, vips); err != nil {
			t.Fatal(err)
		}
		iface2, vips2, _, err := ReadState(p)
		if err != nil || iface2 != iface || !slices.Equal(vips, vips2) {
			t.Fatalf("round trip: %q %v -> %q %v (%v)", iface, vips, iface2, vips2, err)
		}
	})
}
