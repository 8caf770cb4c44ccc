package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tandem-lb/tandem/pkg/console"
)

func newWebCmd() *cobra.Command {
	web := &cobra.Command{
		Use:   "web",
		Short: "The browser console (node.web_listen)",
	}
	var role string
	passwd := &cobra.Command{
		Use:   "passwd FILE USER",
		Short: "Add a console user to a users file, or change its password and role",
		Long: `Writes USER with a bcrypt hash of the password and its role to FILE
(node.web_users_file), keeping the other users; the file is made mode 0600.
The password is asked twice on a terminal, or read as the first line of
standard input. A running node reads the file again when it changes.
Roles: viewer (sees everything) and admin (may also drain, disable,
enable servers and switch over).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role != console.RoleAdmin && role != console.RoleViewer {
				return exitCode(2, fmt.Errorf("--role must be admin or viewer (got %q)", role))
			}
			pw, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return exitCode(1, err)
			}
			if err := console.SetPassword(args[0], args[1], pw, role); err != nil {
				return exitCode(1, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s)\n", args[0], args[1], role)
			return nil
		},
	}
	passwd.Flags().StringVar(&role, "role", console.RoleViewer, "admin or viewer")
	web.AddCommand(passwd)
	return web
}

// readPassword asks twice without echo when in is a terminal, else
// reads its first line.
func readPassword(in io.Reader, prompt io.Writer) (string, error) {
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		fmt.Fprint(prompt, "Password: ")
		a, err := readNoEcho(f)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		fmt.Fprint(prompt, "Again: ")
		b, err := readNoEcho(f)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		if a != b {
			return "", errors.New("the passwords differ")
		}
		return a, nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
