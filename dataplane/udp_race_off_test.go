//go:build !race

package dataplane

// udpRaceEnabled reports a -race build, whose memory figures mean little.
const udpRaceEnabled = false
