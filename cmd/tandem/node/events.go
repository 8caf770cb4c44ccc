package node

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// keepEvents is how many events the node remembers for `tandem events`.
const keepEvents = 512

// eventLog is a bounded, ordered record of what happened on this node:
// transitions, VIP claims and releases, announcements, health changes,
// admin actions, holds, sync state. Safe for concurrent use.
type eventLog struct {
	node string
	mu   sync.Mutex
	evs  []api.Event
}

func (l *eventLog) add(kind, format string, args ...any) {
	e := api.Event{At: time.Now(), Node: l.node, Kind: kind, Message: fmt.Sprintf(format, args...)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, e)
	if len(l.evs) > keepEvents {
		l.evs = slices.Delete(l.evs, 0, len(l.evs)-keepEvents)
	}
}

// Events returns the recorded events, oldest first (api.EventSource).
func (n *Node) Events() []api.Event {
	n.events.mu.Lock()
	defer n.events.mu.Unlock()
	return slices.Clone(n.events.evs)
}
