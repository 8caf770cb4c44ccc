package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/api"
)

const defaultSocket = "/run/tandem/tandem.sock"

// sockets resolves --socket and --config (each may repeat, to show both
// boxes of a lab on one machine) to control sockets.
func sockets(socks, cfgs []string, stderr io.Writer) ([]string, error) {
	out := append([]string(nil), socks...)
	for _, c := range cfgs {
		cfg, err := loadConfig(c, stderr)
		if err != nil {
			return nil, err
		}
		out = append(out, cfg.Node.APISocket)
	}
	if len(out) == 0 {
		out = []string{defaultSocket}
	}
	return out, nil
}

func newStatusCmd() *cobra.Command {
	var (
		socks, cfgs []string
		asJSON      bool
		watch       bool
		every       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [--config FILE | --socket PATH] [--json] [--watch]",
		Short: "Show the pair as this node sees it (exit 1 if the daemon is unreachable)",
		Long: `Shows both boxes: roles, priorities, time in state, peer liveness and last
advert, config MATCH or MISMATCH, the VIPs and who holds them, and the
transition timeline with reasons. --socket and --config may be repeated to
show several daemons of one machine (a lab).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := sockets(socks, cfgs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for {
				if watch && !asJSON {
					fmt.Fprint(out, "\033[H\033[2J")
				}
				unreachable := showStatus(cmd.Context(), out, paths, asJSON)
				if !watch {
					if unreachable > 0 {
						return exitCode(1, fmt.Errorf("%d daemon(s) unreachable", unreachable))
					}
					return nil
				}
				time.Sleep(every)
			}
		},
	}
	cmd.Flags().StringArrayVarP(&socks, "socket", "s", nil, "control socket of a daemon (repeatable)")
	cmd.Flags().StringArrayVarP(&cfgs, "config", "c", nil, "config file whose node.api_socket to use (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON (CONTRACT.md fields)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&every, "interval", time.Second, "refresh period with --watch")
	return cmd
}

// showStatus prints the status of each socket and returns how many did
// not answer.
func showStatus(ctx context.Context, out io.Writer, paths []string, asJSON bool) int {
	if ctx == nil {
		ctx = context.Background()
	}
	unreachable := 0
	var all []any
	for i, p := range paths {
		st, err := api.NewClient(p).Status(ctx)
		if err != nil {
			unreachable++
			if asJSON {
				all = append(all, map[string]any{"socket": p, "reachable": false, "error": err.Error()})
			} else {
				if i > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintf(out, "UNREACHABLE  no daemon answers on %s\n  (%v)\n", p, err)
			}
			continue
		}
		if asJSON {
			all = append(all, st)
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		renderStatus(out, st)
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if len(all) == 1 {
			_ = enc.Encode(all[0])
		} else {
			_ = enc.Encode(all)
		}
	}
	return unreachable
}

func renderStatus(out io.Writer, st *api.Status) {
	fmt.Fprintf(out, "Tandem pair as seen by %s   %s   %s\n\n", st.Node, st.Now.Local().Format("2006-01-02 15:04:05"), st.Version)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tPRIO\tIN STATE\tLAST HEARD\tCONFIG")
	state := st.State
	if len(st.Holds) > 0 && st.State == "BACKUP" {
		state += " (held: " + strings.Join(st.Holds, "; ") + ")"
	}
	if len(st.Down) > 0 {
		state += " (no carrier: " + strings.Join(st.Down, ", ") + ")"
	}
	fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", st.Node, state, st.Priority,
		human(time.Duration(st.StateAgeMs)*time.Millisecond), "(this node)", shortHash(st.ConfigHash))
	for _, p := range st.Peers {
		name := p.Name
		if name == "" {
			name = p.Address
		}
		heard := "never"
		if p.LastHeardMs >= 0 {
			heard = human(time.Duration(p.LastHeardMs)*time.Millisecond) + " ago"
		}
		pstate, age, match := "UNREACHABLE", "-", "-"
		if p.Alive {
			pstate = p.State
			age = human(time.Duration(p.StateAgeMs) * time.Millisecond)
		} else if p.LastState != "" {
			pstate = "UNREACHABLE (last said " + p.LastState + ")"
		}
		if p.ConfigHash != "" {
			match = shortHash(p.ConfigHash) + " MISMATCH (" + strings.Join(p.ConfigDiff, ", ") + ")"
			if p.ConfigMatch {
				match = shortHash(p.ConfigHash) + " MATCH"
			}
		}
		prio := "-"
		if p.LastHeardMs >= 0 {
			prio = fmt.Sprint(p.Priority)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, pstate, prio, age, heard, match)
	}
	tw.Flush()

	fmt.Fprintln(out, "\nVIPs")
	for _, v := range st.VIPs {
		owner := "not held here"
		if v.Held {
			owner = "HELD by " + st.Node
		} else {
			for _, p := range st.Peers {
				if p.Alive && p.State == "MASTER" {
					owner = "held by " + p.Name + " (per its adverts)"
				}
			}
		}
		fmt.Fprintf(out, "  %-20s on %-8s %s\n", v.Address, v.Interface, owner)
	}
	if len(st.Clusters) > 0 {
		fmt.Fprintln(out, "\nClusters")
		ctw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(ctw, "  CLUSTER / SERVER\tADDRESS\tHEALTH\tADMIN\tACTIVE\tTOTAL\tLAST CHECK")
		for _, c := range st.Clusters {
			serving := "standby"
			if c.Serving {
				serving = "serving"
			}
			refused := uint64(0)
			for _, n := range c.Refused {
				refused += n
			}
			extra := fmt.Sprintf("refused %d", refused)
			algo := c.Algorithm
			if c.Mode == "nat" {
				algo = "nat, " + algo
				extra = fmt.Sprintf("flows in the kernel; dropped %d", refused)
			} else if c.HTTP != nil {
				extra = httpExtra(c.HTTP, refused)
			} else if c.Protocol == "udp" {
				extra = fmt.Sprintf("flows; datagrams in %d out %d; dropped %d", c.DatagramsIn, c.DatagramsOut, refused)
				if c.Retries > 0 || c.Unanswered > 0 {
					extra += fmt.Sprintf("; retried %d of %d unanswered", c.Retries, c.Unanswered)
				}
				if c.ParkedFlows > 0 {
					extra += fmt.Sprintf("; %d flows parked in io_uring", c.ParkedFlows)
				}
			}
			fmt.Fprintf(ctw, "  %s (%s, %s)\t%s:%d/%s\t%s\t\t%d\t%d\t%s\n", c.Name, algo, serving,
				c.VIP, c.Port, c.Protocol, "", c.ActiveConns, c.TotalConns, extra)
			for _, s := range c.Servers {
				health := "DOWN"
				if s.Healthy {
					health = "up"
				}
				check := "-"
				if s.LastCheckAt != nil {
					check = s.LastCheck
					if !strings.Contains(check, "ms") {
						check += fmt.Sprintf(" (%.1fms)", s.LastCheckLatency)
					}
					if s.CheckWarning != "" {
						check += "; WARNING: " + s.CheckWarning
					}
				}
				if !s.Healthy && s.DownReason != "" && s.DownReason != s.LastCheck {
					check = s.DownReason + "; last check: " + check
				}
				admin, check := agentColumns(s, check)
				fmt.Fprintf(ctw, "    %s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, s.Address, health, admin,
					s.ActiveConns, s.TotalConns, check)
			}
		}
		ctw.Flush()
	}
	if p := st.Persistence; p.Enabled || p.State != "" {
		fmt.Fprintf(out, "\nPersistence  %s", orDash(p.State))
		if p.Peer != "" {
			fmt.Fprintf(out, " with %s", p.Peer)
		}
		if p.Reason != "" {
			fmt.Fprintf(out, " (%s)", p.Reason)
		}
		fmt.Fprintf(out, "\n  entries %d  sent %d  received %d  acked %d  lag %.1fms  last bulk %d entries in %.0fms\n",
			p.Entries, p.Sent, p.Received, p.Acked, p.LagMs, p.LastBulkEntries, p.LastBulkMs)
		if p.ConntrackEntries > 0 || p.FlowsSent > 0 || p.FlowsApplied > 0 {
			fmt.Fprintf(out, "  conntrack: %d entries of nat clusters, %d sent, %d applied", p.ConntrackEntries, p.FlowsSent, p.FlowsApplied)
			for reason, n := range p.FlowErrors {
				fmt.Fprintf(out, ", %d %s", n, reason)
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(out, "\nAdverts  sent %d  received %d", st.Adverts.Sent, st.Adverts.Received)
	for reason, n := range st.Adverts.Dropped {
		if n > 0 {
			fmt.Fprintf(out, "  dropped(%s) %d", reason, n)
		}
	}
	fmt.Fprintln(out)
	printSplitBrain(out, st.SplitBrain)

	fmt.Fprintln(out, "\nTransitions (newest last)")
	tr := st.Transitions
	if len(tr) > 10 {
		tr = tr[len(tr)-10:]
	}
	for _, t := range tr {
		fmt.Fprintf(out, "  %s  %-6s -> %-6s  %s\n", t.At.Local().Format("15:04:05.000"), t.From, t.To, t.Reason)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortHash(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// human prints a duration the way an operator reads it: 340ms, 12.3s,
// 4m05s, 2h07m.
func human(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// printSplitBrain shows the witness and other boxes' announcements of
// our VIPs, when there is something to show.
func printSplitBrain(out io.Writer, sb api.SplitBrain) {
	if w := sb.Witness; w != nil {
		verdict := "REACHABLE"
		if !w.Reachable {
			verdict = "NOT ANSWERING"
		}
		last := "never answered"
		if w.LastAnswerMs >= 0 {
			last = fmt.Sprintf("last answer %dms ago", w.LastAnswerMs)
		}
		fmt.Fprintf(out, "Witness  %s %s (%s; %d pings, %d answers)\n", w.Address, verdict, last, w.Sent, w.Answered)
	}
	if sb.Rivals > 0 || sb.ARPMalformed > 0 {
		fmt.Fprintf(out, "ARP      %d frames read, %d malformed; %d announcements of our VIPs by another box\n",
			sb.ARPRead, sb.ARPMalformed, sb.Rivals)
	}
	if c := sb.LastConflict; c != nil {
		fmt.Fprintf(out, "CONFLICT %d announcements of our VIPs by boxes that are not the peer; last %s announced %s at %s\n",
			sb.AddressConflicts, c.MAC, c.VIP, c.At.Format(time.RFC3339))
	}
}
