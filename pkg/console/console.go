// Package console is the browser console of a node: one page with the
// pair at a glance, the clusters and servers, plots of the last 30
// minutes, the event log, live updates over server-sent events, and the
// control API's admin actions for users of the admin role. Its assets
// are embedded (no build step, no CDN: the boxes often have no internet).
//
// It reads and acts only through the small interfaces below, which the
// node implements with the same code the control API calls, so the
// console can never do more than the API's admin role.
package console

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// Source is what the console shows: the node's status and its events,
// oldest first.
type Source interface {
	Status() api.Status
	Events() []api.Event
}

// Actor performs the admin actions for a console user: the node's
// SetServerAdmin and Switchover (the control API's code paths), with the
// user named in the event log. An unknown name is an api.ErrNotFound;
// any other error is a refusal whose text the page shows.
type Actor interface {
	SetServerAdmin(user, cluster, server, state string) error
	Switchover(user string) error
}

// Options configures a Console.
type Options struct {
	// UsersFile is node.web_users_file.
	UsersFile string
	Source    Source
	Actor     Actor
	// TLS marks the session cookie Secure.
	TLS bool
	Log *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

//go:embed assets
var assets embed.FS

// Console serves the console's pages. Build it with New, serve Handler
// and run Run (the history sampler and the live feed) beside it.
type Console struct {
	src      Source
	act      Actor
	users    *userFile
	sessions sessions
	logins   limiter
	tls      bool
	log      *slog.Logger
	now      func() time.Time
	pages    *template.Template
	static   fs.FS
	hist     *History
	live     *hub
}

// New reads the users file and builds the console. A users file that
// cannot be read, is invalid or lists nobody is an error: nobody could
// log in.
func New(o Options) (*Console, error) {
	if o.Source == nil || o.Actor == nil {
		return nil, errors.New("console: Source and Actor are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	uf := &userFile{path: o.UsersFile}
	users, err := uf.load()
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("console: users file %s lists nobody: add one with `tandem web passwd %s USER --role admin`",
			o.UsersFile, o.UsersFile)
	}
	pages, err := template.ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("console: assets: %w", err)
	}
	c := &Console{src: o.Source, act: o.Actor, users: uf, tls: o.TLS, log: o.Log, now: o.Now,
		pages: pages, static: static, hist: NewHistory(HistoryLen)}
	c.live = newHub(c.snapshot, o.Now)
	return c, nil
}

// Handler returns the console's routes with its security headers.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(c.static)))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.authed(c.logout, false))
	mux.HandleFunc("GET /{$}", c.index)
	mux.HandleFunc("GET /api/session", c.authed(c.whoami, false))
	mux.HandleFunc("GET /api/status", c.authed(c.status, false))
	mux.HandleFunc("GET /api/events", c.authed(c.events, false))
	mux.HandleFunc("GET /api/live", c.authed(c.liveFeed, false))
	mux.HandleFunc("GET /plot/{metric}", c.authed(c.plot, false))
	mux.HandleFunc("POST /api/clusters/{cluster}/servers/{server}/{action}", c.authed(c.serverAction, true))
	mux.HandleFunc("POST /api/switchover", c.authed(c.switchover, true))
	return headers(mux)
}

// headers sets what every answer carries: no framing, no sniffing, no
// referrer beyond this site, nothing loaded from elsewhere.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; "+
			"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin") // no-referrer would make POSTs' Origin "null"
		if r.URL.Path == "/" || r.URL.Path == "/login" || strings.HasPrefix(r.URL.Path, "/api/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// whoami lets the page check its session after a lost connection.
func (c *Console) whoami(w http.ResponseWriter, _ *http.Request, u User, s session) {
	writeJSON(w, http.StatusOK, map[string]string{"user": u.Name, "role": u.Role, "csrf": s.csrf})
}

func (c *Console) status(w http.ResponseWriter, _ *http.Request, _ User, _ session) {
	writeJSON(w, http.StatusOK, c.src.Status())
}

// events answers the event log newest first.
func (c *Console) events(w http.ResponseWriter, _ *http.Request, _ User, _ session) {
	evs := c.src.Events()
	out := make([]api.Event, 0, len(evs))
	for i := len(evs) - 1; i >= 0; i-- {
		out = append(out, evs[i])
	}
	writeJSON(w, http.StatusOK, out)
}
