package config

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// APIGroupID returns the gid of node.api_group, -1 when it is empty. A
// number is taken as a gid as is; a name must exist in the group database.
func (n Node) APIGroupID() (int, error) {
	g := strings.TrimSpace(n.APIGroup)
	if g == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(g); err == nil {
		if id < 0 {
			return -1, fmt.Errorf("gid must not be negative (got %d)", id)
		}
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return -1, fmt.Errorf("unknown group %q: create it (groupadd %s) or give a numeric gid", g, g)
		}
		return -1, fmt.Errorf("look up group %q: %w", g, err)
	}
	id, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return -1, fmt.Errorf("group %q has a non-numeric gid %q", g, grp.Gid)
	}
	return id, nil
}
