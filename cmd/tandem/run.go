package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/cmd/tandem/node"
	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/vip"
)

// loadConfig reads and validates a config; every problem is printed as
// FILE:LINE: key: message and the error carries exit code 2.
func loadConfig(path string, stderr io.Writer) (*config.Config, error) {
	if path == "" {
		return nil, exitCode(2, errors.New("--config FILE is required"))
	}
	cfg, err := config.Load(path)
	if err != nil {
		var probs config.Errors
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(stderr, p.String())
			}
			return nil, exitCode(2, fmt.Errorf("%s: %d problem(s); the node was not started", path, len(probs)))
		}
		return nil, exitCode(2, err)
	}
	return cfg, nil
}

func newRunCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run this box of the pair in the foreground",
		Long: `Runs the node: membership, election, VIPs and the control API.
SIGTERM or SIGINT: a master releases its VIPs (the peer takes over at once)
and the node exits 0. SIGHUP: reload the config file without dropping
established connections (see tandem reload).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			log := newLogger(cfg.Node.LogLevel).With("node", cfg.Node.Name)
			for _, w := range cfg.Warnings() {
				log.Warn("config: " + w)
			}
			if how, err := raisePriority(cfg.Node.RTPriority); err != nil {
				log.Warn("scheduling priority: heartbeats may be late under CPU load", "err", err)
			} else {
				log.Debug("scheduling", "policy", how)
			}
			n, err := node.New(cfg, versionString(), log)
			if err != nil {
				return exitCode(1, err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			// The SIGHUP loop ends with the node, whatever ends it.
			hupCtx, endHUP := context.WithCancel(ctx)
			hupDone := make(chan struct{})
			go func() {
				defer close(hupDone)
				reloadOnHUP(hupCtx, hup, n, log)
			}()
			defer func() {
				endHUP()
				<-hupDone
			}()
			log.Info("starting", "version", versionString(), "config", cfgPath, "config_hash", cfg.Hash())
			if err := n.Run(ctx); err != nil {
				log.Error("stopped on error", "err", err)
				return exitCode(1, err)
			}
			log.Info("stopped")
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "config file (YAML)")
	return cmd
}

// reloadOnHUP reloads the node on each SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, n *node.Node, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload(n, log)
		}
	}
}

// reload applies the config file again on SIGHUP and logs the outcome:
// what changed, or every problem of a refused file, one per line.
func reload(n *node.Node, log *slog.Logger) {
	changes, err := n.Reload()
	if err != nil {
		var re *api.ReloadError
		if errors.As(err, &re) {
			for _, p := range re.Problems {
				log.Error("reload: " + p)
			}
		}
		log.Error("SIGHUP: reload refused; the running config is kept", "err", err)
		return
	}
	log.Info("SIGHUP: config reloaded", "changes", len(changes))
	for _, c := range changes {
		log.Info("reload: " + c)
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func newValidateCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a config file and exit (0 valid, 2 invalid)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := checkOwnAddresses(cfg, cmd.ErrOrStderr()); err != nil {
				return err
			}
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s\n", cfgPath, w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (node %s, config %s)\n", cfgPath, cfg.Node.Name, cfg.Hash())
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "config file (YAML)")
	return cmd
}

// checkOwnAddresses refuses, on the box itself, a VIP that its interface
// already has and that no Tandem node put there (the box's own address):
// the node would refuse to start with it.
func checkOwnAddresses(cfg *config.Config, stderr io.Writer) error {
	f := cfg.Failover
	foreign, err := vip.Foreign(f.Interface, f.Prefixes(), vip.StateFile(cfg.Node.APISocket, f.Interface))
	if err != nil || len(foreign) == 0 {
		return nil // not this box, or its addresses cannot be read: the start checks again
	}
	fmt.Fprintf(stderr, "%s: failover.vips: %v already on %s and not put there by Tandem (the box's own address?): a VIP must be an address only the master holds\n",
		cfg.File, foreign, f.Interface)
	return exitCode(2, fmt.Errorf("%s: 1 problem(s)", cfg.File))
}

func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random cluster key (base64, 32 bytes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return exitCode(1, fmt.Errorf("random key: %w", err))
			}
			fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(key))
			return nil
		},
	}
}

func versionString() string {
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					c = s.Value[:12]
				}
			}
		}
	}
	if c == "" {
		return version
	}
	return version + " (" + c + ")"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "tandem %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
