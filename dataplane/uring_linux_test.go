//go:build linux

package dataplane

import "testing"

// TestURingProbe: where this process gets a ring at all, the probe finds
// that a socket parked in it (descriptor closed) is still reported by
// epoll and that sends and receives on it complete inside
// io_uring_enter, and UDPParking says parking is on. It skips only when
// the kernel refuses the ring itself (no io_uring, io_uring_disabled, a
// seccomp filter, a kernel before 5.4): a ring that opens but cannot
// park, the regression of the ring code the probe would otherwise hide by
// turning parking off, fails.
func TestURingProbe(t *testing.T) {
	r, err := newURing(2)
	if err != nil {
		t.Skipf("no io_uring ring for this process: %v", err)
	}
	r.close()
	if err := probeURing(); err != nil {
		t.Fatalf("a ring opens, but a socket parked in it does not work: %v", err)
	}
	if err := UDPParking(); err != nil {
		t.Errorf("UDPParking() = %v, though the probe passes", err)
	}
}

// udpTestPark makes startUDPCluster park every flow's socket.
var udpTestPark bool

// TestUDPParked runs the UDP cluster tests again with every flow's socket
// parked in io_uring instead of held by a descriptor.
func TestUDPParked(t *testing.T) {
	if err := UDPParking(); err != nil {
		t.Skipf("io_uring unusable here: %v", err)
	}
	udpTestPark = true
	defer func() { udpTestPark = false }()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"SpreadAndSource", TestUDPSpreadAndSource},
		{"IdleFlowsExpire", TestUDPIdleFlowsExpire},
		{"StandbyDrops", TestUDPStandbyDrops},
		{"MaxConns", TestUDPMaxConns},
		{"LargeAndOversize", TestUDPLargeAndOversize},
		{"ServerDownFlowMoves", TestUDPServerDownFlowMoves},
		{"NoServer", TestUDPNoServer},
		{"UpstreamError", TestUDPUpstreamError},
		{"StickyKeepsClientsServer", TestUDPStickyKeepsClientsServer},
		{"PanicRecovered", TestUDPPanicRecovered},
		{"SeveralLoops", TestUDPSeveralLoops},
		{"DrainAfterStandby", TestUDPDrainAfterStandby},
		{"PanicMidBatchFinishesBatch", TestUDPPanicMidBatchFinishesBatch},
		{"IPv6VIP", TestUDPIPv6VIP},
		{"ConcurrentStatsAndHealth", TestUDPConcurrentStatsAndHealth},
		{"RetryMovesFlow", TestUDPRetryMovesFlow},
		{"RetryDNSQueries", TestUDPRetryDNSQueries},
	} {
		t.Run(tc.name, tc.fn)
	}
}
