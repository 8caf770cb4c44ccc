package config

import (
	"net/netip"
	"slices"
	"testing"
)

// natBase is a valid pair config with an inside floating address and a
// nat cluster whose servers sit behind it (lines counted from 1).
const natBase = `node:
  name: lb1
cluster:
  bind: 198.18.0.11:7946
  peers: [198.18.0.12:7946]
  secret: ` + testKey + `
failover:
  interface: eth0
  vips:
    - 198.18.0.100/24
    - 198.19.1.1/24 dev eth1
clusters:
  - name: im
    vip: 198.18.0.100
    port: 5222
    mode: nat
    algorithm: maglev
    servers:
      - {name: im1, address: 198.19.1.21:5222}
      - {name: im2, address: 198.19.1.22:5222}
`

func natEdit(t *testing.T, repl ...string) string {
	t.Helper()
	return editOf(t, natBase, repl...)
}

func TestNATConfigDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, natBase))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	vc := c.Clusters[0]
	if !vc.IsNAT() || vc.NAT == nil || vc.NAT.Return != ReturnGateway || !vc.NAT.Drains() {
		t.Errorf("nat defaults: mode %q nat %+v", vc.Mode, vc.NAT)
	}
	want := []VIP{
		{netip.MustParsePrefix("198.18.0.100/24"), "eth0"},
		{netip.MustParsePrefix("198.19.1.1/24"), "eth1"},
	}
	if got := c.Failover.VIPList(); !slices.Equal(got, want) {
		t.Errorf("VIPList = %v, want %v", got, want)
	}
	if got := c.Failover.TrackInterfaces; !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("track_interfaces default = %v, want both VIP interfaces", got)
	}
	if got := c.Failover.PrefixesOn("eth1"); len(got) != 1 || got[0].String() != "198.19.1.1/24" {
		t.Errorf("PrefixesOn(eth1) = %v", got)
	}
	p, err := Load(writeConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if p.Clusters[0].Mode != ModeProxy || p.HasNAT() {
		t.Errorf("a cluster without mode is %q, want proxy", p.Clusters[0].Mode)
	}
}

func TestNATConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown mode", natEdit(t, "mode: nat", "mode: dsr"),
			[]string{`FILE:16: clusters[0].mode: must be proxy or nat (got "dsr")`}},
		{"algorithm not in kernel", natEdit(t, "algorithm: maglev", "algorithm: least_conn"),
			[]string{`FILE:17: clusters[0].algorithm: least_conn cannot run in the kernel: a nat cluster takes one of round_robin, weighted_round_robin, source_hash, maglev (got "least_conn")`}},
		{"maglev in proxy mode", natEdit(t, "mode: nat", "mode: proxy", "198.19.1.21:5222", "198.18.0.21:5222", "198.19.1.22:5222", "198.18.0.22:5222"),
			[]string{`FILE:17: clusters[0].algorithm: maglev is for mode: nat clusters (it runs in the kernel); a proxy cluster has source_hash`}},
		{"vip with bad dev", natEdit(t, "198.19.1.1/24 dev eth1", "198.19.1.1/24 on eth1"),
			[]string{`FILE:11: failover.vips[1]: must be an address in CIDR form, optionally with its interface, like 198.18.0.100/24 or 198.19.1.1/24 dev eth1 (got "198.19.1.1/24 on eth1")`}},
		{"gateway without inside vip", natEdit(t, "    - 198.19.1.1/24 dev eth1\n", ""),
			[]string{
				"FILE:18: clusters[0].servers[0].address: nat.return gateway: 198.19.1.21:5222 is in no VIP's subnet; the servers' gateway must be an inside floating address of the pair on their subnet (add one to failover.vips, like 198.19.1.1/24 dev eth1) or use nat.return: snat",
				"FILE:19: clusters[0].servers[1].address: nat.return gateway: 198.19.1.22:5222 is in no VIP's subnet; the servers' gateway must be an inside floating address of the pair on their subnet (add one to failover.vips, like 198.19.1.1/24 dev eth1) or use nat.return: snat",
			}},
		{"snat without address", natEdit(t, "    algorithm: maglev\n", "    algorithm: maglev\n    nat: {return: snat}\n"),
			[]string{"FILE:18: clusters[0].nat.snat_address: required with return: snat: one of failover.vips, address only (an inside floating address)"}},
		{"snat address not a vip", natEdit(t, "    algorithm: maglev\n", "    algorithm: maglev\n    nat: {return: snat, snat_address: 198.19.1.2}\n"),
			[]string{"FILE:18: clusters[0].nat.snat_address: 198.19.1.2 is not the address of any of failover.vips: the SNAT address must move with the master"}},
		{"send_proxy in nat", natEdit(t, "{name: im1, address: 198.19.1.21:5222}", "{name: im1, address: 198.19.1.21:5222, send_proxy: true}"),
			[]string{"FILE:19: clusters[0].servers[0].send_proxy: not for mode: nat clusters (the server sees the client's packets, and with return: gateway its address)"}},
		{"outbound bad rule", natBase + "outbound:\n  interface: eth1\n  allow:\n    - {dest: 0.0.0.0/0, ports: [25]}\n",
			[]string{"FILE:24: outbound.allow[0].ports: ports need proto: tcp or udp"}},
		{"outbound snat not a vip", natBase + "outbound:\n  interface: eth1\n  snat_address: 198.18.0.50\n",
			[]string{`FILE:23: outbound.snat_address: must be the address of one of failover.vips, so it moves with the master (got "198.18.0.50")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestOutboundDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, natBase+"outbound:\n  interface: eth1\n  allow:\n    - {dest: 0.0.0.0/0, proto: tcp, ports: [25, 53]}\n"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := c.Outbound.Sources; !slices.Equal(got, []string{"198.19.1.0/24"}) {
		t.Errorf("outbound.sources default = %v, want the inside VIP's subnet", got)
	}
}
