// Package sdnotify speaks systemd's notify protocol (sd_notify(3)) without
// a dependency: a datagram of NEWLINE-separated VAR=VALUE assignments to
// the unix socket named by $NOTIFY_SOCKET. Outside systemd (no socket) it
// does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Messages.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notify sends state to the service manager. It reports false, nil
// when there is no manager to tell.
func Notify(state string) (bool, error) {
	return notify(os.Getenv("NOTIFY_SOCKET"), state)
}

func notify(socket, state string) (bool, error) {
	if socket == "" {
		return false, nil
	}
	if socket[0] == '@' {
		socket = "\x00" + socket[1:] // an abstract socket
	} else if socket[0] != '/' {
		return false, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither a path nor abstract", socket)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	return true, nil
}

// WatchdogInterval is the service's WatchdogSec (from $WATCHDOG_USEC,
// when $WATCHDOG_PID is unset or this process); 0 when the watchdog is
// off. Keep-alives should go out at about half of it.
func WatchdogInterval() time.Duration {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

func watchdogInterval(usec, pid string, self int) time.Duration {
	if usec == "" {
		return 0
	}
	if pid != "" {
		if p, err := strconv.Atoi(pid); err != nil || p != self {
			return 0
		}
	}
	us, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}
