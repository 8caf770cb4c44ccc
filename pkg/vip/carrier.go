package vip

import "time"

// LinkEvent is the carrier state of one interface at a moment.
type LinkEvent struct {
	Iface string
	// Up means the interface is administratively up and has carrier
	// (IFF_LOWER_UP / operstate UP). A missing interface is down.
	Up bool
	At time.Time
}
