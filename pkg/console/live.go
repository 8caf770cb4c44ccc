package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// The live feed: the hub looks at the node every liveCheck and pushes a
// new snapshot to every open page when something an operator watches
// changed (state, peer, holds, VIPs, health, admin, sync, a new event),
// and at least every liveRefresh otherwise (counters, ages). One
// goroutine builds each snapshot once for all pages, and none while no
// page is open.
const (
	liveCheck   = 250 * time.Millisecond
	liveRefresh = time.Second
	maxLive     = 64
	liveWrite   = 10 * time.Second
)

// liveMsg is one server-sent "status" event.
type liveMsg struct {
	Status api.Status `json:"status"`
	// EventsVersion changes when the event log does; the page then asks
	// for /api/events.
	EventsVersion string `json:"events_version"`
	// PeerEvents is false: the node cannot fetch the peer's events, so
	// the timeline shows this box's only (and says so).
	PeerEvents bool `json:"peer_events"`
}

// snapshot builds the live message from the node.
func (c *Console) snapshot() liveMsg {
	evs := c.src.Events()
	v := "0"
	if n := len(evs); n > 0 {
		v = fmt.Sprintf("%d-%d", n, evs[n-1].At.UnixNano())
	}
	return liveMsg{Status: c.src.Status(), EventsVersion: v}
}

// watchKey is what of a snapshot is pushed at once when it changes.
func watchKey(m liveMsg) string {
	st := m.Status
	type srv struct {
		Healthy, OK bool
		Admin       string
	}
	type peer struct {
		Name, State  string
		Alive, Match bool
	}
	k := struct {
		State, Sync, Events string
		Holds, Down         []string
		Trans               uint64
		Peers               []peer
		VIPs                []bool
		Servers             []srv
	}{State: st.State, Sync: st.Persistence.State, Events: m.EventsVersion, Holds: st.Holds, Down: st.Down,
		Trans: st.TransitionsTotal}
	for _, p := range st.Peers {
		k.Peers = append(k.Peers, peer{p.Name, p.State, p.Alive, p.ConfigMatch})
	}
	for _, v := range st.VIPs {
		k.VIPs = append(k.VIPs, v.Held)
	}
	for _, cl := range st.Clusters {
		for _, s := range cl.Servers {
			k.Servers = append(k.Servers, srv{s.Healthy, s.LastCheckOK, s.Admin})
		}
	}
	b, _ := json.Marshal(k)
	return string(b)
}

// hub fans the snapshots out to the open pages.
type hub struct {
	build func() liveMsg
	now   func() time.Time
	pokec chan struct{}

	mu   sync.Mutex
	subs map[chan []byte]struct{}
}

func newHub(build func() liveMsg, now func() time.Time) *hub {
	return &hub{build: build, now: now, pokec: make(chan struct{}, 1), subs: map[chan []byte]struct{}{}}
}

// poke asks for a check now (after an action).
func (h *hub) poke() {
	select {
	case h.pokec <- struct{}{}:
	default:
	}
}

// subscribe adds a page; nil when maxLive pages are open.
func (h *hub) subscribe() chan []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= maxLive {
		return nil
	}
	ch := make(chan []byte, 1)
	h.subs[ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, ch)
}

func (h *hub) open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// publish hands data to every page; a page that has not taken the last
// one gets this one instead (only the newest snapshot matters).
func (h *hub) publish(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case <-ch:
		default:
		}
		ch <- data
	}
}

// run checks the node until ctx ends.
func (h *hub) run(ctx context.Context) {
	t := time.NewTicker(liveCheck)
	defer t.Stop()
	var lastKey string
	var lastSent time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.pokec:
		}
		if h.open() == 0 {
			lastKey = ""
			continue
		}
		m := h.build()
		key := watchKey(m)
		now := h.now()
		if key == lastKey && now.Sub(lastSent) < liveRefresh {
			continue
		}
		data, err := json.Marshal(m)
		if err != nil {
			continue
		}
		lastKey, lastSent = key, now
		h.publish(data)
	}
}

// liveFeed is the server-sent events stream of a page: a snapshot at
// once, then the hub's. The page shows "connection lost" when it ends
// and reconnects (EventSource retries by itself).
func (c *Console) liveFeed(w http.ResponseWriter, r *http.Request, _ User, _ session) {
	ch := c.live.subscribe()
	if ch == nil {
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: fmt.Sprintf("%d consoles are open on this node already", maxLive)})
		return
	}
	defer c.live.unsubscribe(ch)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	first, err := json.Marshal(c.snapshot())
	if err != nil {
		return
	}
	send := func(data []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(liveWrite))
		if _, err := fmt.Fprintf(w, "retry: 2000\nevent: status\ndata: %s\n\n", data); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send(first) != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case data := <-ch:
			if send(data) != nil {
				return
			}
		}
	}
}
