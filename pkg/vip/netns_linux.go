package vip

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread switched into ns and switches back. Sockets
// opened by fn stay in ns, so the Manager works in the namespace it was
// created in whichever thread later calls it.
//
// When the thread is in ns already it calls fn as it is: entering a
// namespace, even one's own, needs CAP_SYS_ADMIN, which the node does not
// have when it runs with only the capabilities it needs.
func inNetns(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if orig.Equal(ns) {
		runtime.UnlockOSThread()
		return fn()
	}
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime then retires it with the
		// goroutine instead of reusing it in the wrong namespace.
		return fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// newHandleIn opens a route netlink handle in ns, without entering it
// when the calling thread is in ns already (see inNetns).
func newHandleIn(ns netns.NsHandle) (*netlink.Handle, error) {
	if cur, err := netns.Get(); err == nil {
		defer cur.Close()
		if cur.Equal(ns) {
			return netlink.NewHandle(unix.NETLINK_ROUTE)
		}
	}
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

// otherNetns is &ns, or nil when the calling thread is in ns already, for
// netlink's options that enter a namespace (see inNetns).
func otherNetns(ns netns.NsHandle) *netns.NsHandle {
	if cur, err := netns.Get(); err == nil {
		defer cur.Close()
		if cur.Equal(ns) {
			return nil
		}
	}
	return &ns
}
