package vip

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// allNodes is where unsolicited neighbour advertisements go (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// sendGARP writes a gratuitous ARP request and a gratuitous ARP reply for
// ip to the Ethernet broadcast address. Both carry ip as sender and target
// address and mac as sender hardware address: some hosts only update their
// caches from one kind or the other. The request's target hardware address
// is zero (RFC 5227 announcement), the reply's is broadcast.
func sendGARP(c *arp.Client, mac net.HardwareAddr, ip netip.Addr) error {
	zero := make(net.HardwareAddr, len(mac))
	req, err := arp.NewPacket(arp.OperationRequest, mac, ip, zero, ip)
	if err != nil {
		return fmt.Errorf("build ARP request: %w", err)
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, ip, ethernet.Broadcast, ip)
	if err != nil {
		return fmt.Errorf("build ARP reply: %w", err)
	}
	if err := c.WriteTo(req, ethernet.Broadcast); err != nil {
		return fmt.Errorf("send ARP request: %w", err)
	}
	if err := c.WriteTo(rep, ethernet.Broadcast); err != nil {
		return fmt.Errorf("send ARP reply: %w", err)
	}
	return nil
}

// unsolicitedNA builds the neighbour advertisement that announces ip at
// mac: not solicited, override set so caches replace the old address, and
// the target link-layer address option that carries mac.
func unsolicitedNA(ip netip.Addr, mac net.HardwareAddr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      mac,
		}},
	}
}
