package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// cmdVipwatch prints every address added to or removed from an interface
// as a JSON line (AddrEvent), timestamped when netlink reports it, until
// SIGTERM/SIGINT. Run it inside a box's namespace (ip netns exec): the
// chaos suite computes from two of them when both boxes held a VIP. The
// addresses present at start are printed as adds, then a "ready" line.
func cmdVipwatch(args []string) error {
	fs := flag.NewFlagSet("vipwatch", flag.ContinueOnError)
	iface := fs.String("iface", "eth0", "interface to watch")
	box := fs.String("box", "", "box name written on every line (default: hostname)")
	out := fs.String("out", "", "append the lines to this file instead of stdout")
	dur := fs.Duration("duration", time.Hour, "stop after this long (at most 1h)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() != 0 || *dur <= 0 || *dur > maxDuration {
		return usageError("no positional arguments; -duration in (0, 1h]")
	}
	if *box == "" {
		*box, _ = os.Hostname()
	}
	w := os.Stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	link, err := netlink.LinkByName(*iface)
	if err != nil {
		return fmt.Errorf("%s: %w", *iface, err)
	}
	idx := link.Attrs().Index

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()

	ch := make(chan netlink.AddrUpdate, 4096)
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 1)
	err = netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
		ListExisting:      true,
		ReceiveBufferSize: 1 << 20,
		ErrorCallback: func(err error) {
			select {
			case errc <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("netlink subscribe: %w", err)
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(AddrEvent{At: time.Now(), Box: *box, Op: "ready"}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("netlink: %w", err)
		case u, ok := <-ch:
			if !ok {
				return fmt.Errorf("netlink subscription closed")
			}
			if u.LinkIndex != idx || u.LinkAddress.IP == nil {
				continue
			}
			op := "del"
			if u.NewAddr {
				op = "add"
			}
			if err := enc.Encode(AddrEvent{At: time.Now(), Box: *box, Addr: u.LinkAddress.String(), Op: op}); err != nil {
				return err
			}
		}
	}
}
