package api

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxPeerGroups bounds the supplementary groups read (NGROUPS_MAX is 65536;
// a client in more groups than this is judged on the first ones).
const maxPeerGroups = 1024

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

func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, maxPeerGroups)
	n := uint32(len(buf) * 4)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 && errno != unix.ERANGE {
		return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
	}
	k := min(int(n/4), len(buf))
	out := make([]int, k)
	for i := range k {
		out[i] = int(buf[i])
	}
	return out, nil
}
