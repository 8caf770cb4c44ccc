package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/vip"
)

func newReleaseCmd() *cobra.Command {
	var cfgPath, socket string
	var force bool
	cmd := &cobra.Command{
		Use:   "release [--config FILE | --socket PATH]",
		Short: "Remove the VIPs from the interface after a crash (refused while the node runs)",
		Long: `Removes the VIPs a node left behind. A node that was killed (kill -9, a
crash, the OOM killer) cannot remove its VIPs, and the kernel goes on
answering ARP for them until the node restarts; the systemd unit runs this
as ExecStopPost, so a node never leaves a VIP behind whichever way it ends.

What is removed is what the node recorded in its state file (beside
node.api_socket, written before it adds a VIP): it needs no valid config,
and a VIP taken out of the config while the node ran is removed too. Only
when there is no state file are the config's VIPs removed, except any that
is the box's own address (cluster.bind, a heartbeat path's bind).
Refused (exit 1) while a node answers on node.api_socket, unless --force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			var cfg *config.Config
			if cfgPath != "" {
				var err error
				// An invalid config still names the socket and the VIPs.
				if cfg, err = config.Load(cfgPath); err != nil {
					fmt.Fprintf(errw, "%s does not validate (%v); releasing from the node's state file\n", cfgPath, err)
				}
			}
			switch {
			case socket != "":
			case cfg != nil:
				socket = cfg.Node.APISocket
			default:
				socket = defaultSocket
			}
			if !force {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				st, err := api.NewClient(socket).Status(ctx)
				var ue *api.UnreachableError
				switch {
				case err == nil:
					return exitCode(1, fmt.Errorf("node %s is running (%s) on %s: it manages its VIPs itself; stop it first or use --force", st.Node, st.State, socket))
				case !errors.As(err, &ue):
					return exitCode(1, fmt.Errorf("cannot tell whether a node is running on %s: %w", socket, err))
				}
			}
			// Whatever the config says now: a node that ran nat clusters
			// left its table, and nothing else may own that name.
			removedNAT, err := removeNATRules()
			if err != nil {
				return exitCode(1, err)
			}
			if removedNAT {
				fmt.Fprintln(out, "removed the nftables table inet tandem")
			}
			log := newLogger("info").With("component", "vip")
			files, err := vip.StateFiles(socket)
			if err != nil {
				return exitCode(1, err)
			}
			var errs []error
			for _, f := range files {
				removed, _, err := vip.ReleaseState(f, log)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(out, "%s: removed %v\n", f, removed)
			}
			if len(files) > 0 || len(errs) > 0 {
				if err := errors.Join(errs...); err != nil {
					return exitCode(1, err)
				}
				return nil
			}
			if cfg == nil {
				fmt.Fprintf(out, "no state file beside %s and no readable config: nothing to release\n", socket)
				return nil
			}
			return releaseConfigVIPs(cfg, out)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (need not validate)")
	cmd.Flags().StringVar(&socket, "socket", "", "the node's control socket; its state files sit beside it [node.api_socket of --config]")
	cmd.Flags().BoolVar(&force, "force", false, "remove the VIPs even if a node answers on the socket")
	return cmd
}

// releaseConfigVIPs is the fallback without a state file: the config's
// VIPs, but never the box's own addresses.
func releaseConfigVIPs(cfg *config.Config, out io.Writer) error {
	own := map[netip.Addr]bool{}
	binds := []string{cfg.Cluster.Bind}
	for _, hp := range cfg.Cluster.HeartbeatPaths {
		binds = append(binds, hp.Bind)
	}
	for _, b := range binds {
		if ap, err := netip.ParseAddrPort(b); err == nil {
			own[ap.Addr().Unmap()] = true
		}
	}
	f := cfg.Failover
	released := false
	for _, iface := range f.VIPInterfaces() {
		var vips []netip.Prefix
		for _, p := range f.PrefixesOn(iface) {
			if own[p.Addr().Unmap()] {
				fmt.Fprintf(out, "not removing %s: it is this box's own address\n", p)
				continue
			}
			vips = append(vips, p)
		}
		if iface == "" || len(vips) == 0 {
			continue
		}
		m, err := vip.New(iface, vips, vip.GARP{Count: 1}, newLogger("info").With("node", cfg.Node.Name, "component", "vip"))
		if err != nil {
			return exitCode(1, err)
		}
		err = m.Cleanup()
		m.Close()
		if err != nil {
			return exitCode(1, err)
		}
		fmt.Fprintf(out, "no state file: removed the config's VIPs %v from %s\n", vips, iface)
		released = true
	}
	if !released {
		fmt.Fprintln(out, "no state file and no VIP in the config: nothing to release")
	}
	return nil
}
