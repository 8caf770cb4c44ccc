package api

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxPeerGroups is the kernel's NGROUPS_MAX: no process has more
// supplementary groups.
const maxPeerGroups = 65536

// firstPeerGroups is the buffer tried first; a client in more groups is
// asked again with the size the kernel says it needs.
const firstPeerGroups = 1024

// peerCred reads the client's pid, uid and gid (SO_PEERCRED) and returns
// a function that reads its supplementary groups (SO_PEERGROUPS, Linux
// 4.13+), both as of the client's connect.
func peerCred(c net.Conn) (Cred, func() ([]int, error), error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, nil, errNotUnix
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, nil, err
	}
	var cred Cred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		var u *unix.Ucred
		u, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if serr == nil {
			cred = Cred{PID: int(u.Pid), UID: int(u.Uid), GID: int(u.Gid)}
		}
	}); err != nil {
		return Cred{}, nil, err
	}
	if serr != nil {
		return Cred{}, nil, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	groups := func() ([]int, error) {
		var out []int
		var gerr error
		if err := raw.Control(func(fd uintptr) { out, gerr = peerGroups(int(fd)) }); err != nil {
			return nil, err
		}
		return out, gerr
	}
	return cred, groups, nil
}

// peerGroups reads the client's supplementary groups. When the buffer is
// too small the kernel copies nothing, answers ERANGE and says how much
// it needs: the call is made again with that size (never reading a
// buffer it did not fill, which would list gid 0).
func peerGroups(fd int) ([]int, error) {
	size := firstPeerGroups
	for {
		buf := make([]uint32, size)
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch {
		case errno == unix.ERANGE:
			need := int(n / 4)
			if need <= size || need > maxPeerGroups {
				return nil, fmt.Errorf("SO_PEERGROUPS: the client has %d groups", need)
			}
			size = need
			continue
		case errno != 0:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
		k := min(int(n/4), len(buf))
		out := make([]int, k)
		for i := range k {
			out[i] = int(buf[i])
		}
		return out, nil
	}
}
