package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
)

// Access says who may use the control socket, at two levels: reading
// (status, events, persistence list: every GET) and acting (switchover,
// server, reload, persistence flush: every other method). Root and the
// daemon's own user always may do both. GID, when it is not -1, lets a
// member (primary or supplementary group) read; AdminGID, when it is not
// -1, lets a member act. The socket is mode 0660 and owned by GID (or by
// AdminGID when only that is set), 0600 and the daemon's otherwise: an
// admin must also be able to open the file, so with both set, make the
// admins members of GID too.
type Access struct {
	GID      int
	AdminGID int
	// Log receives a line for every refused connection and request; nil
	// discards.
	Log *slog.Logger
}

// Level is what a client of the control socket may do.
type Level int

// Levels, from none to all.
const (
	LevelNone  Level = iota
	LevelRead        // GET: status, events, persistence list
	LevelAdmin       // anything: switchover, server, reload, flush too
)

func (l Level) String() string {
	switch l {
	case LevelRead:
		return "read"
	case LevelAdmin:
		return "admin"
	}
	return "none"
}

// levelOf decides what a client may do: root and the daemon's own uid
// (self) everything; a member of adminGID everything; a member of gid
// reading. groups is called only when the primary gid does not decide.
// The reason says why not (or why only reading), for the log.
func levelOf(c Cred, self, gid, adminGID int, groups func() ([]int, error)) (Level, string) {
	if c.UID == 0 || c.UID == self {
		return LevelAdmin, ""
	}
	if gid < 0 && adminGID < 0 {
		return LevelNone, fmt.Sprintf("uid %d is neither root nor the daemon's uid %d, and node.api_group is not set", c.UID, self)
	}
	in := func(g int) bool { return g >= 0 && c.GID == g }
	if in(adminGID) {
		return LevelAdmin, ""
	}
	var sup []int
	if !in(gid) {
		var err error
		if sup, err = groups(); err != nil {
			return LevelNone, fmt.Sprintf("uid %d: cannot read its groups: %v", c.UID, err)
		}
	} else if adminGID >= 0 {
		// A reader by its primary group may still be an admin by a
		// supplementary one.
		sup, _ = groups()
	}
	if adminGID >= 0 && slices.Contains(sup, adminGID) {
		return LevelAdmin, ""
	}
	if in(gid) || gid >= 0 && slices.Contains(sup, gid) {
		return LevelRead, fmt.Sprintf("uid %d is not in node.api_admin_group", c.UID)
	}
	return LevelNone, fmt.Sprintf("uid %d (gid %d) is not in node.api_group (gid %d) nor node.api_admin_group (gid %d)", c.UID, c.GID, gid, adminGID)
}

// Cred is what the kernel says about the process at the other end of a
// unix socket connection (SO_PEERCRED, SO_PEERGROUPS).
type Cred struct {
	PID, UID, GID int
	// Groups are the supplementary groups; nil when not fetched.
	Groups []int
}

// allowed decides whether a client may use the API at all (see levelOf).
func allowed(c Cred, self, gid int, groups func() ([]int, error)) (bool, string) {
	l, reason := levelOf(c, self, gid, -1, groups)
	if l == LevelNone {
		return false, reason
	}
	return true, ""
}

// credListener lets through only the connections that may at least read;
// the others are logged with their reason and closed before any byte is
// read. The connections it returns carry their Level (credConn).
type credListener struct {
	net.Listener
	self, gid, adminGID int
	log                 *slog.Logger
	refused             atomic.Uint64
	// slots, when set (by Serve), bounds the open connections: a slot is
	// taken before Accept and given back when the connection closes.
	slots chan struct{}
}

// credConn is a connection and what its client may do.
type credConn struct {
	net.Conn
	level   Level
	cred    Cred
	reason  string // why not admin
	release func() // gives the listener's slot back, once
}

// Close closes the connection and gives its slot back.
func (c *credConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.release()
	}
	return err
}

// Accept returns the next allowed connection.
func (l *credListener) Accept() (net.Conn, error) {
	for {
		release := func() {}
		if l.slots != nil {
			l.slots <- struct{}{}
			var once sync.Once
			release = func() { once.Do(func() { <-l.slots }) }
		}
		c, err := l.Listener.Accept()
		if err != nil {
			release()
			return nil, err
		}
		cred, groups, err := peerCred(c)
		lv := LevelNone
		var reason string
		if err != nil {
			reason = fmt.Sprintf("cannot read the client's credentials: %v", err)
		} else {
			lv, reason = levelOf(cred, l.self, l.gid, l.adminGID, groups)
		}
		if lv != LevelNone {
			return &credConn{Conn: c, level: lv, cred: cred, reason: reason, release: release}, nil
		}
		l.refused.Add(1)
		l.log.Warn("control socket: connection refused", "uid", cred.UID, "gid", cred.GID, "pid", cred.PID, "reason", reason)
		c.Close()
		release()
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
	if g, key := socketGroup(acc); g >= 0 {
		mode = 0o660
		if err := os.Chown(path, -1, g); err != nil {
			l.Close()
			return nil, fmt.Errorf("api socket: give it to group %d (%s): %w", g, key, err)
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
	return &credListener{Listener: l, self: os.Geteuid(), gid: acc.GID, adminGID: acc.AdminGID, log: log}, nil
}

// socketGroup is the group the socket file belongs to, and its key.
func socketGroup(acc Access) (int, string) {
	if acc.GID >= 0 {
		return acc.GID, "node.api_group"
	}
	if acc.AdminGID >= 0 {
		return acc.AdminGID, "node.api_admin_group"
	}
	return -1, ""
}

var errNotUnix = errors.New("not a unix socket connection")
