package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// cmdGarp sends gratuitous ARPs for an address from any hardware address,
// as a misconfigured box or a spoofer on the LAN would: the lab's test of
// the address-conflict handling. Bounded by -count.
//
//	labtools garp -ip 198.18.0.100 -mac 02:00:00:00:00:01 [-iface eth0] [-count 50] [-interval 100ms]
func cmdGarp(args []string) error {
	fs := flag.NewFlagSet("garp", flag.ContinueOnError)
	iface := fs.String("iface", "eth0", "interface to send on")
	ipS := fs.String("ip", "", "IPv4 address to announce")
	macS := fs.String("mac", "", "sender hardware address (any)")
	count := fs.Int("count", 50, "announcements to send (1..100000)")
	interval := fs.Duration("interval", 100*time.Millisecond, "between announcements")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	ip, err := netip.ParseAddr(*ipS)
	if err != nil || !ip.Is4() {
		return usageError("-ip must be an IPv4 address")
	}
	mac, err := net.ParseMAC(*macS)
	if err != nil || len(mac) != 6 {
		return usageError("-mac must be an Ethernet address")
	}
	if *count < 1 || *count > 100000 {
		return usageError("-count must be 1..100000")
	}
	ifi, err := net.InterfaceByName(*iface)
	if err != nil {
		return err
	}
	const ethPARP = 0x0806
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(ethPARP)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer syscall.Close(fd)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	frame := make([]byte, 0, 42)
	frame = append(frame, bcast...)
	frame = append(frame, mac...)
	frame = binary.BigEndian.AppendUint16(frame, ethPARP)
	frame = binary.BigEndian.AppendUint16(frame, 1)      // Ethernet
	frame = binary.BigEndian.AppendUint16(frame, 0x0800) // IPv4
	frame = append(frame, 6, 4)
	frame = binary.BigEndian.AppendUint16(frame, 1) // request
	frame = append(frame, mac...)
	frame = append(frame, ip.AsSlice()...)
	frame = append(frame, make([]byte, 6)...)
	frame = append(frame, ip.AsSlice()...)
	to := &syscall.SockaddrLinklayer{Protocol: htons(ethPARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], bcast)
	for i := range *count {
		if err := syscall.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if i < *count-1 {
			time.Sleep(*interval)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
