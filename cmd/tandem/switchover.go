package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
)

func newSwitchoverCmd() *cobra.Command {
	var socks, cfgs []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "switchover [--config FILE | --socket PATH]",
		Short: "Hand the VIPs to the peer for maintenance (exit 1 if the peer is not ready)",
		Long: `Run on the master. The peer must be alive, BACKUP, on the same config and,
with persistence, IN SYNC. The master sends priority-0 adverts, the peer
claims the VIPs and announces them, and the master releases them one
advert interval later, so no new connection fails. The old master stays
BACKUP and does not preempt back until it has been master again or
restarts. Prints how long the hand-over took (a failover drill).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := sockets(socks, cfgs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			c := api.NewClient(paths[0])
			ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
			defer cancel()
			before, err := c.Status(ctx)
			if err != nil {
				return exitCode(1, err)
			}
			start := time.Now()
			if err := c.Switchover(ctx); err != nil {
				var ue *api.UnreachableError
				if errors.As(err, &ue) {
					return exitCode(1, err)
				}
				return exitCode(1, fmt.Errorf("switchover refused: %w", err))
			}
			out := cmd.OutOrStdout()
			var peerMaster, released time.Duration
			for time.Since(start) < timeout {
				st, err := c.Status(ctx)
				if err != nil {
					return exitCode(1, err)
				}
				if peerMaster == 0 && len(st.Peers) > 0 && st.Peers[0].Alive && st.Peers[0].State == "MASTER" {
					peerMaster = time.Since(start)
				}
				if st.State == "BACKUP" {
					released = time.Since(start)
					if peerMaster == 0 {
						peerMaster = released
					}
					fmt.Fprintf(out, "switchover: %s → %s\n", before.Node, st.Peers[0].Name)
					fmt.Fprintf(out, "  %s announced itself master after %s\n", st.Peers[0].Name, human(peerMaster))
					fmt.Fprintf(out, "  %s released the VIPs after %s and is BACKUP (no preempt back)\n", st.Node, human(released))
					return nil
				}
				time.Sleep(5 * time.Millisecond)
			}
			return exitCode(1, fmt.Errorf("switchover did not complete within %s (see tandem status)", timeout))
		},
	}
	cmd.Flags().StringArrayVarP(&socks, "socket", "s", nil, "control socket of the master")
	cmd.Flags().StringArrayVarP(&cfgs, "config", "c", nil, "config file whose node.api_socket to use")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the hand-over")
	return cmd
}
