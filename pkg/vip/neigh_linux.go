package vip

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FlushUnresolved deletes the neighbour entries of iface that are still
// being resolved or have failed. While a cable is out, packets to the peer
// leave INCOMPLETE entries whose next ARP solicitation may be up to a
// second away (retrans_time) when the carrier returns; deleting them makes
// the next packet resolve at once, so adverts reach the peer immediately
// after a plug-back. It returns how many entries were removed.
func FlushUnresolved(iface string) (int, error) {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return 0, fmt.Errorf("link %s: %w", iface, err)
	}
	neighs, err := netlink.NeighList(link.Attrs().Index, unix.AF_UNSPEC)
	if err != nil {
		return 0, fmt.Errorf("list neighbours of %s: %w", iface, err)
	}
	n := 0
	for i := range neighs {
		if neighs[i].State&(unix.NUD_INCOMPLETE|unix.NUD_FAILED) == 0 {
			continue
		}
		if err := netlink.NeighDel(&neighs[i]); err != nil {
			return n, fmt.Errorf("delete neighbour %s on %s: %w", neighs[i].IP, iface, err)
		}
		n++
	}
	return n, nil
}
