package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
)

func newServerCmd() *cobra.Command {
	var socks, cfgs []string
	cmd := &cobra.Command{
		Use:   "server drain|disable|enable CLUSTER SERVER",
		Short: "Take a server out of rotation or bring it back",
		Long: `drain:   no new connections; established ones finish.
disable: out of rotation now (no new connections).
enable:  back in rotation.
Exit 1 for an unknown cluster or server name. Apply it on both boxes
(repeat --socket/--config) so a failover keeps the operator's choice.`,
		Args:      cobra.ExactArgs(3),
		ValidArgs: []string{"drain", "disable", "enable"},
		RunE: func(cmd *cobra.Command, args []string) error {
			action, cluster, server := args[0], args[1], args[2]
			switch action {
			case "drain", "disable", "enable":
			default:
				return exitCode(2, fmt.Errorf("unknown action %q: drain, disable or enable", action))
			}
			paths, err := sockets(socks, cfgs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			for _, p := range paths {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := api.NewClient(p).ServerAction(ctx, cluster, server, action)
				cancel()
				var ue *api.UnreachableError
				switch {
				case errors.As(err, &ue):
					return exitCode(1, err)
				case err != nil:
					return exitCode(1, fmt.Errorf("%s: %w", p, err))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s/%s: %s\n", p, cluster, server, map[string]string{
					"drain": "draining", "disable": "disabled", "enable": "enabled"}[action])
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&socks, "socket", "s", nil, "control socket of a daemon (repeatable)")
	cmd.Flags().StringArrayVarP(&cfgs, "config", "c", nil, "config file whose node.api_socket to use (repeatable)")
	return cmd
}
