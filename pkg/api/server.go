package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"golang.org/x/net/netutil"
)

// StatusSource is what the server asks for a status.
type StatusSource interface {
	Status() Status
}

// ServerAdmin changes a server's admin state (enabled, draining,
// disabled); an unknown cluster or server is an ErrNotFound.
type ServerAdmin interface {
	SetServerAdmin(cluster, server, state string) error
}

// PersistenceAdmin lists and flushes sticky tables; an unknown cluster is
// an ErrNotFound.
type PersistenceAdmin interface {
	StickyEntries(cluster string, top int) ([]StickyEntry, error)
	FlushSticky(cluster string) (int, error)
}

// Switcher hands the VIPs to the peer (tandem switchover); an error says
// why it refused.
type Switcher interface {
	Switchover() error
}

// Reloader re-reads the node's config file and applies it (tandem
// reload, SIGHUP); it returns what changed, or why nothing was (a
// *ReloadError carries the problems of an invalid config).
type Reloader interface {
	Reload() ([]string, error)
}

// EventSource gives a node's recent events, oldest first.
type EventSource interface {
	Events() []Event
}

// ErrNotFound is returned for an unknown cluster or server name.
var ErrNotFound = errors.New("not found")

// Deps are what the API serves, one small interface per feature, wired
// explicitly by the node: nothing is discovered by type assertion, so a
// feature cannot appear or vanish because a method was renamed. Status is
// required; a nil optional part answers as a node without it would.
type Deps struct {
	Status      StatusSource
	Servers     ServerAdmin      // nil: server actions answer 501 (no dataplane)
	Persistence PersistenceAdmin // nil: the list is empty, a flush 404
	Switchover  Switcher         // nil: no /v1/switchover route
	Reload      Reloader         // nil: no /v1/reload route
	Events      EventSource      // nil: no /v1/events route
}

// Handler returns the API's routes over d.
func Handler(d Deps) http.Handler {
	src, admin, pers := d.Status, d.Servers, d.Persistence
	mux := http.NewServeMux()
	if es := d.Events; es != nil {
		mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, es.Events())
		})
	}
	if sw := d.Switchover; sw != nil {
		mux.HandleFunc("POST /v1/switchover", func(w http.ResponseWriter, _ *http.Request) {
			if err := sw.Switchover(); err != nil {
				writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
				return
			}
			writeJSON(w, http.StatusAccepted, map[string]string{"switchover": "started"})
		})
	}
	if rl := d.Reload; rl != nil {
		mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, _ *http.Request) {
			changes, err := rl.Reload()
			if err != nil {
				res := ReloadResult{Changes: []string{}, Error: err.Error()}
				var re *ReloadError
				if errors.As(err, &re) {
					res.Problems = re.Problems
				}
				writeJSON(w, http.StatusConflict, res)
				return
			}
			if changes == nil {
				changes = []string{}
			}
			writeJSON(w, http.StatusOK, ReloadResult{Changes: changes})
		})
	}
	mux.HandleFunc("GET /v1/persistence", func(w http.ResponseWriter, r *http.Request) {
		if pers == nil {
			writeJSON(w, http.StatusOK, []StickyEntry{})
			return
		}
		top, _ := strconv.Atoi(r.URL.Query().Get("top"))
		if top <= 0 {
			top = 20
		}
		top = min(top, MaxTop)
		list, err := pers.StickyEntries(r.URL.Query().Get("cluster"), top)
		if err != nil {
			writeErr(w, err)
			return
		}
		if list == nil {
			list = []StickyEntry{}
		}
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("POST /v1/persistence/{cluster}/flush", func(w http.ResponseWriter, r *http.Request) {
		if pers == nil {
			writeJSON(w, http.StatusNotFound, Error{Error: "no persistence"})
			return
		}
		k, err := pers.FlushSticky(r.PathValue("cluster"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"flushed": k})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, src.Status())
	})
	mux.HandleFunc("POST /v1/clusters/{cluster}/servers/{server}/{action}", func(w http.ResponseWriter, r *http.Request) {
		state, ok := map[string]string{"drain": "draining", "disable": "disabled", "enable": "enabled"}[r.PathValue("action")]
		if !ok {
			writeJSON(w, http.StatusBadRequest, Error{Error: "action must be drain, disable or enable"})
			return
		}
		if admin == nil {
			writeJSON(w, http.StatusNotImplemented, Error{Error: "this node has no dataplane"})
			return
		}
		err := admin.SetServerAdmin(r.PathValue("cluster"), r.PathValue("server"), state)
		switch {
		case errors.Is(err, ErrNotFound):
			writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"cluster": r.PathValue("cluster"),
				"server": r.PathValue("server"), "admin": state})
		}
	})
	return mux
}

func writeErr(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Listen opens the unix socket at path with mode 0600, creating its
// directory and replacing a stale socket left by a crash. It refuses to
// replace a socket that a live daemon still answers on. Only root and the
// daemon's own user may connect (see ListenAccess).
func Listen(path string) (net.Listener, error) {
	return ListenAccess(path, Access{GID: -1, AdminGID: -1})
}

// listenSocket opens the socket; ListenAccess sets its mode and group.
func listenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s: another tandem is running there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale api socket: %w", err)
		}
	}
	// Between here and the chmod the socket has the umask's mode; the
	// peer-credentials check guards that moment.
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	return l, nil
}

// Limits of every connection Serve answers (the control socket and the
// metrics endpoint): a client can make the server hold no more than
// MaxConns connections, MaxHeaderBytes of request header and
// MaxBodyBytes of body each, and no connection longer than the timeouts.
const (
	MaxConns          = 64
	MaxHeaderBytes    = 16 << 10
	MaxBodyBytes      = 64 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = time.Minute // a reload may take a few seconds
	idleTimeout       = 10 * time.Second
)

// MaxTop bounds the entries `persistence list --top N` returns.
const MaxTop = 10000

// Serve answers on l until ctx ends, then removes the socket file. A
// handler that panics is logged with its stack and answered 500; the
// server and the node keep running.
func Serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           recoverPanics(http.MaxBytesHandler(gate(h, log), MaxBodyBytes), log),
		ConnContext:       withLevel,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cl, ok := l.(*credListener); ok {
		// It limits itself, so the connections it returns are its own
		// and carry their level.
		cl.slots = make(chan struct{}, MaxConns)
	} else {
		l = netutil.LimitListener(l, MaxConns)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		log.Error("control API stopped", "err", err)
		return fmt.Errorf("control api: %w", err)
	}
}

// recoverPanics answers 500 to a request whose handler panicked and logs
// the panic with its stack. net/http would recover it too, but only by
// dropping the connection and printing to the standard logger; this makes
// it visible in the node's log and gives the client an answer.
func recoverPanics(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("control API handler panicked", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, Error{Error: fmt.Sprintf("internal error: %v", v)})
			}
		}()
		h.ServeHTTP(w, r)
	})
}
