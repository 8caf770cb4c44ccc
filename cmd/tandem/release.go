package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/vip"
)

func newReleaseCmd() *cobra.Command {
	var cfgPath string
	var force bool
	cmd := &cobra.Command{
		Use:   "release --config FILE",
		Short: "Remove the VIPs from the interface after a crash (refused while the node runs)",
		Long: `Removes every VIP of the config from failover.interface. A node that was
killed (kill -9, a crash, the OOM killer) cannot remove its VIPs, and the
kernel goes on answering ARP for them until the node restarts; the
systemd unit runs this as ExecStopPost, so a node never leaves a VIP
behind whichever way it ends. Refused (exit 1) while a node answers on
node.api_socket, unless --force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if !force {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				st, err := api.NewClient(cfg.Node.APISocket).Status(ctx)
				var ue *api.UnreachableError
				switch {
				case err == nil:
					return exitCode(1, fmt.Errorf("node %s is running (%s) on %s: it manages its VIPs itself; stop it first or use --force", st.Node, st.State, cfg.Node.APISocket))
				case !errors.As(err, &ue):
					return exitCode(1, fmt.Errorf("cannot tell whether a node is running on %s: %w", cfg.Node.APISocket, err))
				}
			}
			f := cfg.Failover
			log := newLogger("info").With("node", cfg.Node.Name)
			for _, iface := range f.VIPInterfaces() {
				m, err := vip.New(iface, f.PrefixesOn(iface), vip.GARP{Count: 1}, log.With("component", "vip"))
				if err != nil {
					return exitCode(1, err)
				}
				err = m.Cleanup()
				m.Close()
				if err != nil {
					return exitCode(1, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "no VIP of %s left on %s\n", cfgPath, iface)
			}
			// Whatever the config says now: a node that ran nat clusters
			// left its table, and nothing else may own that name.
			removed, err := removeNATRules()
			if err != nil {
				return exitCode(1, err)
			}
			if removed {
				fmt.Fprintln(cmd.OutOrStdout(), "removed the nftables table inet tandem")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file")
	cmd.Flags().BoolVar(&force, "force", false, "remove the VIPs even if a node answers on the socket")
	return cmd
}
