package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
)

func newReloadCmd() *cobra.Command {
	var socks, cfgs []string
	cmd := &cobra.Command{
		Use:   "reload [--config FILE | --socket PATH]",
		Short: "Apply the changed config file of a running node (exit 1 if refused)",
		Long: `Asks the running node to read its config file again (as SIGHUP does) and
apply it without dropping established connections: clusters added,
changed (the new listener starts beside the old one) or removed (it
stops accepting, its connections finish), servers, checks, VIPs,
priority, preempt, the notify hook and the cluster keys (cluster.secret,
secret_file and accept_secrets: a key rotation needs no restart). An
invalid file is refused with every problem printed as FILE:LINE: key:
message, and a change that needs a restart (node.*, the other
cluster.* keys, failover.interface,
failover.track_interfaces, failover.advert_interval) is refused; the
node then runs on unchanged. Reload both boxes: until then status shows
the config drift. Prints what changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := sockets(socks, cfgs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			changes, err := api.NewClient(paths[0]).Reload(ctx)
			if err != nil {
				var re *api.ReloadError
				if errors.As(err, &re) {
					for _, p := range re.Problems {
						fmt.Fprintln(cmd.ErrOrStderr(), p)
					}
					return exitCode(1, fmt.Errorf("reload refused: %s", re.Msg))
				}
				return exitCode(1, err)
			}
			out := cmd.OutOrStdout()
			if len(changes) == 0 {
				fmt.Fprintln(out, "reloaded: no change")
				return nil
			}
			fmt.Fprintln(out, "reloaded:")
			for _, c := range changes {
				fmt.Fprintln(out, "  "+c)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&socks, "socket", "s", nil, "control socket of the node")
	cmd.Flags().StringArrayVarP(&cfgs, "config", "c", nil, "config file whose node.api_socket to use")
	return cmd
}
