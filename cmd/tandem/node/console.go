package node

import (
	"context"
	"fmt"

	"github.com/tandem-lb/tandem/pkg/config"
	"github.com/tandem-lb/tandem/pkg/console"
)

// consoleActor performs the console's actions through the control API's
// code paths (SetServerAdmin, Switchover: the same refusals), with the
// console user recorded in the event log first.
type consoleActor struct{ n *Node }

func (a consoleActor) SetServerAdmin(user, cluster, server, state string) error {
	a.n.events.add("console", "%s asked from the console: %s/%s %s", user, cluster, server, state)
	err := a.n.SetServerAdmin(cluster, server, state)
	if err != nil {
		a.n.events.add("console", "%s's request refused: %v", user, err)
	}
	return err
}

func (a consoleActor) Switchover(user string) error {
	a.n.events.add("console", "%s asked from the console for a switchover", user)
	err := a.n.Switchover()
	if err != nil {
		a.n.events.add("console", "%s's switchover refused: %v", user, err)
	}
	return err
}

// newConsole builds the console when node.web_listen is set (nil
// otherwise), so a bad users file stops the node at start-up.
func (n *Node) newConsole(nc config.Node) (*console.Console, error) {
	if nc.WebListen == "" {
		return nil, nil
	}
	c, err := console.New(console.Options{
		UsersFile: nc.WebUsersFile,
		Source:    n,
		Actor:     consoleActor{n},
		TLS:       nc.WebCertFile != "",
		Log:       n.log.With("component", "console"),
	})
	if err != nil {
		return nil, fmt.Errorf("node.web_users_file: %w", err)
	}
	return c, nil
}

// serveConsole serves the console until ctx ends.
func (n *Node) serveConsole(ctx context.Context, c *console.Console, nc config.Node) error {
	return c.Serve(ctx, console.ServeOptions{Listen: nc.WebListen, CertFile: nc.WebCertFile, KeyFile: nc.WebKeyFile})
}
