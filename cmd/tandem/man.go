package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write a man page for every command into DIR (for packaging)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return exitCode(1, err)
			}
			hdr := &doc.GenManHeader{Title: "TANDEM", Section: "1", Source: "Tandem " + version}
			if err := doc.GenManTree(cmd.Root(), hdr, args[0]); err != nil {
				return exitCode(1, fmt.Errorf("man pages: %w", err))
			}
			return nil
		},
	}
}
