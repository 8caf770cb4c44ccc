// Package ctsync carries the kernel conntrack entries of Tandem's nat
// clusters from the master to the backup, so established sessions survive
// a failover: when the VIP moves, packets of a flow find their entry and
// its NAT binding on the new master.
//
// It has three parts, and knows nothing of elections or replication:
//
//   - Flow, the codec (AppendFlow, DecodeFlow): a compact record of one
//     entry for the replication stream, ~30 bytes for IPv4.
//   - Table, the conntrack table of one network namespace over ctnetlink:
//     Events and Dump read it (the master publishes), Write, Update,
//     WriteBatch, Apply, Delete and DeleteWhere change it (the backup
//     applies), Count feeds status.
//   - Probe, which says which kernel piece is missing when ctnetlink is not
//     there (nfnetlink, nf_conntrack, nf_conntrack_netlink, or privilege).
//
// Tandem's flows are told apart by their conntrack mark: the nat engine
// sets mark = 0x7a000000|cluster on every flow of a nat cluster, and the
// mask 0xffff0000 selects them all.
//
// # How an entry is written (Linux 6.18, read in nf_conntrack_netlink.c
// and nf_nat_core.c, and checked by the tests)
//
//   - A created entry is NATed only when the message carries CTA_NAT_DST
//     and/or CTA_NAT_SRC. nf_nat_setup_info starts from the inverse of the
//     reply tuple it is given and sets IPS_DST_NAT/IPS_SRC_NAT only when
//     the manipulation changes it. So Write sends the inverse of the
//     original tuple as the reply, plus exact NAT ranges (address and
//     port, min = max) taken from the master's reply tuple; the kernel
//     then derives the master's reply tuple itself. Sending the master's
//     (already NATed) reply tuple with NAT attributes gives an entry with
//     the right tuples but no DST_NAT bit, whose packets are not rewritten;
//     without NAT attributes there is no binding at all.
//   - CTA_STATUS may only set SEEN_REPLY and ASSURED, never clear them,
//     and must carry IPS_CONFIRMED (set before ctnetlink applies the
//     status): without it the kernel answers EBUSY. NAT bits cannot be set.
//   - An existing entry accepts timeout, status, mark and TCP protoinfo
//     changes, never NAT changes (EOPNOTSUPP): Write deletes and re-creates
//     an entry whose binding differs, after a GET.
//   - TCP entries get IP_CT_TCP_FLAG_BE_LIBERAL on both directions, as
//     conntrackd's do: an injected entry has no window history. The kernel
//     learns the windows from the first packets it sees (the failover test
//     passes without the flag too), but a scaled window learned from one
//     mid-stream packet can make later in-flight segments look out of
//     window; the flag keeps window checks from dropping them. With
//     net.netfilter.nf_conntrack_tcp_loose=0 (recommended on Tandem boxes,
//     and set in the tests) a mid-stream packet without an entry is
//     invalid: the replicated entry is then the only way a session goes
//     on, and a missing one shows as a reset, never as a silent re-pick of
//     a server.
//
// # Events and nf_conntrack_events
//
// net.netfilter.nf_conntrack_events is per namespace: 0 no events, 1
// events for every entry, 2 (the default since Linux 6.0) events only for
// entries created while a ctnetlink event listener existed. On this
// kernel (6.18) that listener may be in any namespace of the host: an
// entry of a namespace without listener reports or not depending on
// other processes (a conntrack -E elsewhere flips it), and one that was
// born unreported never reports, not even its destruction
// (TestNetnsEventsMode). Consequences in mode 2:
//
//   - the master must run Events before its first forwarded packet;
//   - entries a backup writes while it runs no Events may carry no event
//     extension: after it becomes master, their updates and destruction
//     are never reported, and the peer keeps them until they time out.
//
// Set nf_conntrack_events=1 on Tandem nodes (Table.EventsMode reads it;
// with 1 the test shows every entry reporting), and answer every
// promotion with a full resync, as below.
//
// # Losses and resync
//
// Events never loses events silently: it delivers Event{Type: Overflow}
// and every event after it is newer than anything lost (see Events). The
// consumer answers an Overflow, a (re)connection and a promotion alike: a
// full resync, Dump on the master, WriteBatch on the backup and
// DeleteWhere for the backup's Tandem flows the dump lacked, then the
// following events in order. Resync periodically as well: the kernel
// refreshes an entry's timeout on every packet without an event, so an
// idle-looking UDP entry on the backup (120 s stream timeout) can expire
// while the flow lives on the master.
//
// # Roles and echoes
//
// The kernel reports entries created over ctnetlink like any other, to
// every listener except the writing socket. A node therefore runs Events
// only while master and applies only while backup. A node that switches
// role stops one before starting the other; if both overlap briefly, the
// entries it writes come back as New events and are published to the
// peer, which is harmless (the peer holds the same flows: Write finds them
// and updates in place) but wasteful.
//
// # Consumer side
//
// The node defines its own small interfaces; something like:
//
//	type ctSource interface { // master
//		Events(ctx context.Context, mark, mask uint32, out chan<- ctsync.Event) error
//		Dump(mark, mask uint32, fn func(ctsync.Flow) bool) error
//	}
//	type ctSink interface { // backup
//		Apply(ev ctsync.Event) error
//		WriteBatch(fs []ctsync.Flow) error
//		DeleteWhere(mark, mask uint32, match func(ctsync.Flow) bool) (int, error)
//	}
//
// # Figures (2-core VM shared with other jobs, Linux 6.18, one namespace)
//
//	Write, new entry with NAT binding      25,000-28,000 entries/s
//	WriteBatch (100,000 entries)           62,000-77,000 entries/s (1.3-1.6 s)
//	Update, existing entry                 31,000-36,000 entries/s
//	Write, existing entry (checks binding) 10,000-13,000 entries/s
//	Dump of 100,000 entries                0.19-0.26 s, ~110 KB allocated
//	Events, 50,000 destroys at once        160,000-180,000 events/s read
//	Events, 5,000 UDP flows forwarded      all 5,000 New events, ~17,000/s
//	                                       (bound by the traffic generator)
//
// Rerun with
//
//	go test -run XXX -bench . -benchtime=100000x ./pkg/ctsync/   (Write*, Update)
//	go test -run XXX -bench 'Dump|Events' -benchtime=5x ./pkg/ctsync/
package ctsync
