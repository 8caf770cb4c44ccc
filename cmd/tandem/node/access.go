package node

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/tandem-lb/tandem/pkg/api"
	"github.com/tandem-lb/tandem/pkg/config"
)

// listenAPI opens the control socket for root and the daemon's user, and
// node.api_group when set (mode 0660, that group's; members let in by
// their peer credentials).
func listenAPI(nc config.Node, log *slog.Logger) (net.Listener, error) {
	gid, err := nc.APIGroupID()
	if err != nil {
		return nil, fmt.Errorf("node.api_group: %w", err)
	}
	admin, err := nc.APIAdminGroupID()
	if err != nil {
		return nil, fmt.Errorf("node.api_admin_group: %w", err)
	}
	return api.ListenAccess(nc.APISocket, api.Access{GID: gid, AdminGID: admin, Log: log})
}
