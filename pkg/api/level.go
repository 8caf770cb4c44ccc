package api

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
)

type levelKey struct{}

// withLevel puts a control-socket connection's Level (and credentials)
// in its requests' context (http.Server.ConnContext).
func withLevel(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*credConn); ok {
		return context.WithValue(ctx, levelKey{}, cc)
	}
	return ctx
}

// gate answers 403 to a request that acts (any method but GET and HEAD)
// from a client that may only read. A connection that did not come
// through the credentials check (the metrics listener: GET only) is not
// gated.
func gate(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cc, ok := r.Context().Value(levelKey{}).(*credConn)
		if ok && cc.level < LevelAdmin && r.Method != http.MethodGet && r.Method != http.MethodHead {
			log.Warn("control socket: action refused", "uid", cc.cred.UID, "pid", cc.cred.PID,
				"method", r.Method, "path", r.URL.Path, "reason", cc.reason)
			writeJSON(w, http.StatusForbidden, Error{Error: fmt.Sprintf("forbidden: %s; reading is allowed, acting needs node.api_admin_group (or root)", cc.reason)})
			return
		}
		h.ServeHTTP(w, r)
	})
}
