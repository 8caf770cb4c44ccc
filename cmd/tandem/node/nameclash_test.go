package node

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/failover"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/peer"
)

func TestNameClashStatus(t *testing.T) {
	now := time.Unix(1767225600, 0)
	clash := peer.NameClash{From: "198.18.0.12:7946", At: now.Add(-time.Second)}
	p := api.Peer{Address: "198.18.0.12:7946", State: "UNKNOWN", ConfigMatch: true}
	nameClashPeer(&p, "lb1", clash, now)
	if p.Name != "lb1" || p.ConfigMatch || len(p.ConfigDiff) != 1 || !strings.Contains(p.ConfigDiff[0], "node.name") {
		t.Fatalf("status peer %+v", p)
	}
	p = api.Peer{Address: "198.18.0.12:7946", State: "UNKNOWN", ConfigMatch: true}
	nameClashPeer(&p, "lb1", clash, now.Add(failover.NameClashFor+time.Second))
	if !p.ConfigMatch || p.Name != "" {
		t.Fatalf("peer marked long after the last advert: %+v", p)
	}
	other := api.Peer{Address: "198.18.0.13:7946", Name: "lb3", ConfigMatch: true}
	nameClashPeer(&other, "lb1", clash, now)
	if !other.ConfigMatch || other.Name != "lb3" {
		t.Fatalf("another peer marked: %+v", other)
	}
}
