package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tandem-lb/tandem/pkg/api"
)

// authed wraps a handler that needs a logged-in user; admin handlers
// also need the admin role. Every POST must carry the session's CSRF
// token (header X-CSRF-Token or form field csrf) and, when the browser
// names one, this site as its Origin.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, User, session), admin bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, s, ok := c.current(r)
		if !ok {
			writeJSON(w, http.StatusUnauthorized, api.Error{Error: "not logged in (or the session ended): log in again"})
			return
		}
		if r.Method == http.MethodPost {
			tok := r.Header.Get(csrfHeader)
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if !sameToken(tok, s.csrf) || !sameOrigin(r) {
				c.log.Warn("console request refused: missing or wrong CSRF token", "user", u.Name,
					"path", r.URL.Path, "from", sourceAddr(r))
				writeJSON(w, http.StatusForbidden, api.Error{Error: "refused: the request did not carry this session's CSRF token"})
				return
			}
		}
		if admin && u.Role != RoleAdmin {
			writeJSON(w, http.StatusForbidden, api.Error{Error: "refused: " + u.Name + " is a viewer; only admins may act"})
			return
		}
		h(w, r, u, s)
	}
}

// current is the request's session and user. The user is read from the
// users file each time, so removing a user or changing a role applies to
// open sessions too.
func (c *Console) current(r *http.Request) (User, session, bool) {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return User{}, session{}, false
	}
	s, ok := c.sessions.get(ck.Value, c.now())
	if !ok {
		return User{}, session{}, false
	}
	users, _ := c.users.load()
	u, ok := users[s.user]
	if !ok {
		c.sessions.remove(ck.Value)
		return User{}, session{}, false
	}
	return u, s, true
}

type loginData struct {
	CSRF  string
	Error string
}

// loginPage sets a login CSRF cookie (double submit: the form carries
// the same random value) so another site cannot log a browser in.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.current(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.renderLogin(w, r, http.StatusOK, "")
}

// renderLogin shows the form; a browser that has a login cookie keeps
// it, so two open forms (or a reloaded one) stay valid.
func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	tok := newToken()
	if ck, err := r.Cookie(loginCookie); err == nil && len(ck.Value) == len(tok) {
		tok = ck.Value
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/login", HttpOnly: true,
		Secure: c.tls, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := c.pages.ExecuteTemplate(w, "login.html", loginData{CSRF: tok, Error: msg}); err != nil {
		c.log.Warn("console login page", "err", err)
	}
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	from := sourceAddr(r)
	if ok, wait := c.logins.allow(from, c.now()); !ok {
		secs := int(wait.Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		c.log.Warn("console login refused: too many attempts", "from", from)
		c.renderLogin(w, r, http.StatusTooManyRequests, "Too many login attempts from "+from+": wait "+strconv.Itoa(max(secs, 1))+" s.")
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostFormValue("csrf"), ck.Value) || !sameOrigin(r) {
		c.renderLogin(w, r, http.StatusForbidden, "The login form expired: try again.")
		return
	}
	name := r.PostFormValue("user")
	u, ok := c.users.check(name, r.PostFormValue("password"))
	if !ok {
		c.log.Warn("console login failed", "user", name, "from", from)
		c.renderLogin(w, r, http.StatusUnauthorized, "Wrong user name or password.")
		return
	}
	tok, _ := c.sessions.create(u.Name, c.now())
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true,
		Secure: c.tls, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/login", MaxAge: -1})
	c.log.Info("console login", "user", u.Name, "role", u.Role, "from", from)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, u User, _ session) {
	if ck, err := r.Cookie(cookieName); err == nil {
		c.sessions.remove(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: c.tls, SameSite: http.SameSiteStrictMode})
	c.log.Info("console logout", "user", u.Name)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type indexData struct {
	Node  string
	User  string
	Role  string
	Admin bool
	CSRF  string
}

func (c *Console) index(w http.ResponseWriter, r *http.Request) {
	u, s, ok := c.current(r)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	d := indexData{Node: c.src.Status().Node, User: u.Name, Role: u.Role, Admin: u.Role == RoleAdmin, CSRF: s.csrf}
	if err := c.pages.ExecuteTemplate(w, "index.html", d); err != nil {
		c.log.Warn("console page", "err", err)
	}
}

// actionStates maps the page's verbs to admin states (as the API).
var actionStates = map[string]string{"drain": "draining", "disable": "disabled", "enable": "enabled"}

func (c *Console) serverAction(w http.ResponseWriter, r *http.Request, u User, _ session) {
	cluster, server := r.PathValue("cluster"), r.PathValue("server")
	state, ok := actionStates[r.PathValue("action")]
	if !ok {
		writeJSON(w, http.StatusBadRequest, api.Error{Error: "action must be drain, disable or enable"})
		return
	}
	err := c.act.SetServerAdmin(u.Name, cluster, server, state)
	switch {
	case errors.Is(err, api.ErrNotFound):
		writeJSON(w, http.StatusNotFound, api.Error{Error: err.Error()})
	case err != nil:
		writeJSON(w, http.StatusConflict, api.Error{Error: err.Error()})
	default:
		c.log.Info("console action", "user", u.Name, "cluster", cluster, "server", server, "admin", state)
		c.live.poke()
		writeJSON(w, http.StatusOK, map[string]string{"cluster": cluster, "server": server, "admin": state})
	}
}

func (c *Console) switchover(w http.ResponseWriter, _ *http.Request, u User, _ session) {
	if err := c.act.Switchover(u.Name); err != nil {
		writeJSON(w, http.StatusConflict, api.Error{Error: "switchover refused: " + err.Error()})
		return
	}
	c.log.Info("console switchover", "user", u.Name)
	c.live.poke()
	writeJSON(w, http.StatusAccepted, map[string]string{"switchover": "started"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
