package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
)

func newEventsCmd() *cobra.Command {
	var socks, cfgs []string
	var asJSON bool
	var last int
	cmd := &cobra.Command{
		Use:   "events [--socket PATH]... [--json] [--last N]",
		Short: "The recent events of one or both boxes in one timeline",
		Long: `Transitions, VIP claims and releases, gratuitous ARPs, health changes, admin
actions, holds, persistence sync state and switchovers, with their reasons.
Repeat --socket (or --config) to merge both boxes into one timeline.
Exit 1 if a daemon is unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := sockets(socks, cfgs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var all []api.Event
			for _, p := range paths {
				evs, err := api.NewClient(p).Events(ctx)
				if err != nil {
					return exitCode(1, err)
				}
				all = append(all, evs...)
			}
			slices.SortStableFunc(all, func(a, b api.Event) int { return a.At.Compare(b.At) })
			if last > 0 && len(all) > last {
				all = all[len(all)-last:]
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tNODE\tKIND\tEVENT")
			for _, e := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.At.Local().Format("15:04:05.000"), e.Node, e.Kind, e.Message)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringArrayVarP(&socks, "socket", "s", nil, "control socket of a daemon (repeatable)")
	cmd.Flags().StringArrayVarP(&cfgs, "config", "c", nil, "config file whose node.api_socket to use (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the events as JSON")
	cmd.Flags().IntVarP(&last, "last", "n", 50, "show the newest N events (0: all)")
	return cmd
}
