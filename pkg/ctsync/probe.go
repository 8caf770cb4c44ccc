package ctsync

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors of Probe, wrapped with what the kernel said.
var (
	// ErrUnsupported: this platform has no ctnetlink (not Linux).
	ErrUnsupported = errors.New("conntrack sync needs Linux ctnetlink")
	// ErrNoNfnetlink: the kernel has no netfilter netlink family
	// (CONFIG_NETFILTER_NETLINK).
	ErrNoNfnetlink = errors.New("kernel has no nfnetlink")
	// ErrNoConntrack: connection tracking is not loaded in this network
	// namespace (nf_conntrack, CONFIG_NF_CONNTRACK).
	ErrNoConntrack = errors.New("kernel has no nf_conntrack")
	// ErrNoCtnetlink: nfnetlink has no conntrack subsystem
	// (nf_conntrack_netlink, CONFIG_NF_CT_NETLINK).
	ErrNoCtnetlink = errors.New("kernel has no ctnetlink")
	// ErrPermission: ctnetlink needs CAP_NET_ADMIN in the namespace.
	ErrPermission = errors.New("ctnetlink needs CAP_NET_ADMIN")
	// ErrConflict: an entry with a different original tuple already holds
	// the flow's reply tuple, so the kernel cannot insert it.
	ErrConflict = errors.New("reply tuple taken by another conntrack entry")
)

// classifyProbe turns what Probe saw into one error an operator can act
// on. dialErr is the error of opening a NETLINK_NETFILTER socket,
// conntrackLoaded whether /proc/sys/net/netfilter/nf_conntrack_max
// exists, queryErr the answer to a conntrack statistics request.
func classifyProbe(dialErr error, conntrackLoaded bool, queryErr error) error {
	switch {
	case errors.Is(dialErr, syscall.EPROTONOSUPPORT), errors.Is(dialErr, syscall.EAFNOSUPPORT):
		return fmt.Errorf("%w (CONFIG_NETFILTER_NETLINK): netlink family NETFILTER: %w", ErrNoNfnetlink, dialErr)
	case errors.Is(dialErr, syscall.EPERM), errors.Is(dialErr, syscall.EACCES):
		return fmt.Errorf("%w: %w", ErrPermission, dialErr)
	case dialErr != nil:
		return fmt.Errorf("open netfilter netlink socket: %w", dialErr)
	case !conntrackLoaded:
		return fmt.Errorf("%w (module nf_conntrack, CONFIG_NF_CONNTRACK): /proc/sys/net/netfilter/nf_conntrack_max is absent in this network namespace", ErrNoConntrack)
	case errors.Is(queryErr, syscall.EPERM), errors.Is(queryErr, syscall.EACCES):
		return fmt.Errorf("%w: %w", ErrPermission, queryErr)
	case errors.Is(queryErr, syscall.EINVAL), errors.Is(queryErr, syscall.EOPNOTSUPP), errors.Is(queryErr, syscall.ENOENT):
		return fmt.Errorf("%w (module nf_conntrack_netlink, CONFIG_NF_CT_NETLINK): nfnetlink refused a conntrack request: %w", ErrNoCtnetlink, queryErr)
	case queryErr != nil:
		return fmt.Errorf("query ctnetlink: %w", queryErr)
	}
	return nil
}
