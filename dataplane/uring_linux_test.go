//go:build linux

package dataplane

import "testing"

// TestURingProbe: on this kernel a socket parked in a ring (descriptor
// closed) is still reported by epoll, and sends and receives on it
// complete inside io_uring_enter. Without io_uring the test skips.
func TestURingProbe(t *testing.T) {
	if err := probeURing(); err != nil {
		t.Skipf("io_uring unusable here: %v", err)
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
	} {
		t.Run(tc.name, tc.fn)
	}
}
