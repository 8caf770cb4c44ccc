// Command tandem runs and operates one box of a Tandem pair.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// exitError carries a process exit code of CONTRACT.md through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(code int, err error) error { return &exitError{code: code, err: err} }

func main() {
	root := newRoot()
	err := root.Execute()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "tandem:", ee.err)
		}
		os.Exit(ee.code)
	}
	// Usage errors from cobra itself.
	fmt.Fprintln(os.Stderr, "tandem:", err)
	os.Exit(2)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "tandem",
		Short: "An active/passive high-availability load-balancer pair",
		Long: `Tandem runs on each of two Linux boxes with matching configs. The boxes
elect a master that holds the virtual IPs; when it fails, loses its cable or
stops, the other takes the VIPs over.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newValidateCmd(), newStatusCmd(), newSwitchoverCmd(), newReleaseCmd(), newReloadCmd(), newEventsCmd(), newServerCmd(), newPersistenceCmd(), newKeygenCmd(), newWebCmd(), newVersionCmd(), newManCmd())
	return root
}
