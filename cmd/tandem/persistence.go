package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
)

func newPersistenceCmd() *cobra.Command {
	var socks, cfgs []string
	var top int
	cmd := &cobra.Command{
		Use:   "persistence list [CLUSTER] | flush CLUSTER",
		Short: "Show or empty the sticky tables",
		Long: `list:  the most recently refreshed sticky entries (client prefix, server,
       expires in) of a cluster, or of every cluster.
flush: empty a cluster's sticky table; its clients are balanced afresh.
       Flush both boxes (repeat --socket) or the peer's copy returns at the
       next full sync.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			paths, err := sockets(socks, cfgs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			switch args[0] {
			case "list":
				cluster := ""
				if len(args) == 2 {
					cluster = args[1]
				}
				for _, p := range paths {
					list, err := api.NewClient(p).StickyEntries(ctx, cluster, top)
					if err != nil {
						return exitCode(1, fmt.Errorf("%s: %w", p, err))
					}
					if len(paths) > 1 {
						fmt.Fprintf(out, "%s:\n", p)
					}
					tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "CLUSTER\tCLIENT\tSERVER\tEXPIRES IN")
					for _, e := range list {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Cluster, e.Client, e.Server,
							human(time.Duration(e.ExpiresInMs)*time.Millisecond))
					}
					tw.Flush()
				}
			case "flush":
				if len(args) != 2 {
					return exitCode(2, errors.New("flush needs a CLUSTER"))
				}
				for _, p := range paths {
					k, err := api.NewClient(p).FlushSticky(ctx, args[1])
					if err != nil {
						return exitCode(1, fmt.Errorf("%s: %w", p, err))
					}
					fmt.Fprintf(out, "%s: %s: %d entries flushed\n", p, args[1], k)
				}
			default:
				return exitCode(2, fmt.Errorf("unknown action %q: list or flush", args[0]))
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&socks, "socket", "s", nil, "control socket of a daemon (repeatable)")
	cmd.Flags().StringArrayVarP(&cfgs, "config", "c", nil, "config file whose node.api_socket to use (repeatable)")
	cmd.Flags().IntVarP(&top, "top", "n", 20, "entries to list per cluster")
	return cmd
}
