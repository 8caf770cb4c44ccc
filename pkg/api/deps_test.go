package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// parts implements every optional interface and records what was called.
type parts struct{ calls []string }

func (p *parts) Switchover() error { p.calls = append(p.calls, "switchover"); return nil }
func (p *parts) Reload() ([]string, error) {
	p.calls = append(p.calls, "reload")
	return []string{"x"}, nil
}
func (p *parts) Events() []Event { p.calls = append(p.calls, "events"); return nil }
func (p *parts) SetServerAdmin(_, _, _ string) error {
	p.calls = append(p.calls, "admin")
	return nil
}

// TestHandlerServesTheDepsItIsGiven: each route reaches the part wired
// for it and no other, and a part left nil answers as a node without it
// (no route, 501 for server actions, an empty persistence list), even
// when the status source happens to have the part's methods: features
// are wired, not discovered.
func TestHandlerServesTheDepsItIsGiven(t *testing.T) {
	routes := []struct {
		method, path, part string
		absent             int // the answer when the part is nil
	}{
		{"POST", "/v1/switchover", "switchover", http.StatusNotFound},
		{"POST", "/v1/reload", "reload", http.StatusNotFound},
		{"GET", "/v1/events", "events", http.StatusNotFound},
		{"POST", "/v1/clusters/web/servers/web1/drain", "admin", http.StatusNotImplemented},
	}
	do := func(h http.Handler, method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	// A status source that has every method, wired as the status only.
	type everything struct {
		fixed
		*parts
	}
	bare := &parts{}
	h := Handler(Deps{Status: everything{fixed{Node: "lb1"}, bare}})
	for _, r := range routes {
		if got := do(h, r.method, r.path).Code; got != r.absent {
			t.Errorf("%s %s without its part: %d, want %d", r.method, r.path, got, r.absent)
		}
	}
	if len(bare.calls) != 0 {
		t.Errorf("parts not wired were called: %v", bare.calls)
	}
	if rec := do(h, "GET", "/v1/persistence"); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("persistence without its part: %d %s", rec.Code, rec.Body.String())
	}
	if rec := do(h, "GET", "/v1/status"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"lb1"`) {
		t.Errorf("status: %d %s", rec.Code, rec.Body.String())
	}

	for _, r := range routes {
		p := &parts{}
		d := Deps{Status: fixed{}}
		switch r.part {
		case "switchover":
			d.Switchover = p
		case "reload":
			d.Reload = p
		case "events":
			d.Events = p
		case "admin":
			d.Servers = p
		}
		if got := do(Handler(d), r.method, r.path).Code; got >= 300 {
			t.Errorf("%s %s with its part: %d", r.method, r.path, got)
		}
		if len(p.calls) != 1 || p.calls[0] != r.part {
			t.Errorf("%s %s called %v, want [%s]", r.method, r.path, p.calls, r.part)
		}
	}
}
