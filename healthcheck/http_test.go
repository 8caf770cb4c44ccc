package healthcheck

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

func TestHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Host != r.Context().Value(http.LocalAddrContextKey).(interface{ String() string }).String() {
			http.Error(w, "bad host "+r.Host, http.StatusBadRequest)
			return
		}
		if r.Header.Get("Connection") != "close" {
			http.Error(w, "keep-alive", http.StatusBadRequest)
			return
		}
		w.Write([]byte("all is well " + strings.Repeat("x", 100<<10) + " tail"))
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	})
	srv := httptest.NewServer(mux) // 127.0.0.1, a free port
	t.Cleanup(srv.Close)
	addr := addrOf(t, srv.Listener.Addr())

	tests := []struct {
		name   string
		hc     config.HealthCheck
		ok     bool
		detail string
	}{
		{"200", config.HealthCheck{Path: "/ok"}, true, "HTTP 200 in"},
		{"500", config.HealthCheck{Path: "/fail"}, false, "HTTP 500, want 200"},
		{"500 expected", config.HealthCheck{Path: "/fail", ExpectStatus: 500}, true, "HTTP 500 in"},
		{"body match", config.HealthCheck{Path: "/ok", ExpectBody: "all is well"}, true, "HTTP 200"},
		{"body mismatch", config.HealthCheck{Path: "/ok", ExpectBody: "on fire"}, false, `body did not contain "on fire"`},
		{"body beyond 64KiB not read", config.HealthCheck{Path: "/ok", ExpectBody: "tail"}, false, "body did not contain"},
		{"redirect not followed", config.HealthCheck{Path: "/redirect"}, false, "HTTP 302, want 200"},
		{"slow server times out", config.HealthCheck{Path: "/slow"}, false, "timeout after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.hc.Type = "http"
			c := mustNew(t, tt.hc)
			start := time.Now()
			res := check(t, c, addr, 300*time.Millisecond)
			wantResult(t, res, tt.ok, tt.detail)
			if time.Since(start) > 2*time.Second {
				t.Errorf("probe took %v, past its 300ms timeout", time.Since(start))
			}
		})
	}
}

func TestHTTPRefused(t *testing.T) {
	c := mustNew(t, config.HealthCheck{Type: "http", Path: "/"})
	wantResult(t, check(t, c, closedPort(t), time.Second), false, "connection refused")
}
