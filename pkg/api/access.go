package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync/atomic"
)

// Access says who may use the control socket. Root and the daemon's own
// user always may; GID, when it is not -1, lets in a client whose primary
// or supplementary groups include it, and makes the socket mode 0660
// owned by that group (0600 otherwise).
type Access struct {
	GID int
	// Log receives a line for every refused connection; nil discards.
	Log *slog.Logger
}

// Cred is what the kernel says about the process at the other end of a
// unix socket connection (SO_PEERCRED, SO_PEERGROUPS).
type Cred struct {
	PID, UID, GID int
	// Groups are the supplementary groups; nil when not fetched.
	Groups []int
}

// allowed decides whether a client may use the API: root, the daemon's
// own uid (self), or, when gid is not -1, a member of gid. groups is
// called only when the primary gid does not match. The reason says why
// not, for the log.
func allowed(c Cred, self, gid int, groups func() ([]int, error)) (bool, string) {
	if c.UID == 0 || c.UID == self {
		return true, ""
	}
	if gid < 0 {
		return false, fmt.Sprintf("uid %d is neither root nor the daemon's uid %d, and node.api_group is not set", c.UID, self)
	}
	if c.GID == gid {
		return true, ""
	}
	g, err := groups()
	if err != nil {
		return false, fmt.Sprintf("uid %d: cannot read its groups: %v", c.UID, err)
	}
	if slices.Contains(g, gid) {
		return true, ""
	}
	return false, fmt.Sprintf("uid %d (gid %d) is not in node.api_group (gid %d)", c.UID, c.GID, gid)
}

// credListener lets through only the connections allowed admits; the
// others are logged with their reason and closed before any byte is read.
type credListener struct {
	net.Listener
	self, gid int
	log       *slog.Logger
	refused   atomic.Uint64
}

// Accept returns the next allowed connection.
func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, groups, err := peerCred(c)
		var ok bool
		var reason string
		if err != nil {
			reason = fmt.Sprintf("cannot read the client's credentials: %v", err)
		} else {
			ok, reason = allowed(cred, l.self, l.gid, groups)
		}
		if ok {
			return c, nil
		}
		l.refused.Add(1)
		l.log.Warn("control socket: connection refused", "uid", cred.UID, "gid", cred.GID, "pid", cred.PID, "reason", reason)
		c.Close()
	}
}

// Refused counts the connections refused so far.
func (l *credListener) Refused() uint64 { return l.refused.Load() }

// ListenAccess is Listen with the access rules of acc: the socket's mode
// and group, and a peer-credentials check of every connection.
func ListenAccess(path string, acc Access) (net.Listener, error) {
	l, err := listenSocket(path)
	if err != nil {
		return nil, err
	}
	mode := os.FileMode(0o600)
	if acc.GID >= 0 {
		mode = 0o660
		if err := os.Chown(path, -1, acc.GID); err != nil {
			l.Close()
			return nil, fmt.Errorf("api socket: give it to group %d (node.api_group): %w", acc.GID, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("api socket mode: %w", err)
	}
	log := acc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &credListener{Listener: l, self: os.Geteuid(), gid: acc.GID, log: log}, nil
}

var errNotUnix = errors.New("not a unix socket connection")
