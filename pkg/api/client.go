package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client talks to a node's control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the unix socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		// One connection per request: a Client is cheap and often made per
		// call, and an idle connection left behind would hold one of the
		// server's MaxConns slots until its idle timeout.
		DisableKeepAlives: true,
	}
	return &Client{socket: path, http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// UnreachableError says the daemon did not answer on its socket.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("daemon unreachable on %s: %v", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ServerAction asks for drain, disable or enable of a server. An unknown
// cluster or server name is an error wrapping ErrNotFound.
func (c *Client) ServerAction(ctx context.Context, cluster, server, action string) error {
	return c.do(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/servers/"+
		url.PathEscape(server)+"/"+url.PathEscape(action), nil)
}

// StickyEntries lists up to top sticky entries of a cluster ("" for all).
func (c *Client) StickyEntries(ctx context.Context, cluster string, top int) ([]StickyEntry, error) {
	var out []StickyEntry
	q := url.Values{}
	if cluster != "" {
		q.Set("cluster", cluster)
	}
	q.Set("top", strconv.Itoa(top))
	err := c.do(ctx, http.MethodGet, "/v1/persistence?"+q.Encode(), &out)
	return out, err
}

// FlushSticky empties a cluster's sticky table and returns how many
// entries it removed.
func (c *Client) FlushSticky(ctx context.Context, cluster string) (int, error) {
	var out struct {
		Flushed int `json:"flushed"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/persistence/"+url.PathEscape(cluster)+"/flush", &out)
	return out.Flushed, err
}

// Switchover asks the master to hand its VIPs to the peer; the error says
// why it refused.
func (c *Client) Switchover(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/switchover", nil)
}

// Reload asks the node to re-read its config file and returns what
// changed; a refused reload is a *ReloadError (with the problems of an
// invalid config).
func (c *Client) Reload(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://tandem/v1/reload", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &UnreachableError{Socket: c.socket, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, &UnreachableError{Socket: c.socket, Err: err}
	}
	var res ReloadResult
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("POST /v1/reload: %s", resp.Status)
	}
	if resp.StatusCode/100 != 2 {
		if res.Error == "" {
			res.Error = "POST /v1/reload: " + resp.Status
		}
		return nil, &ReloadError{Msg: res.Error, Problems: res.Problems}
	}
	return res.Changes, nil
}

// Events fetches the node's recent events, oldest first.
func (c *Client) Events(ctx context.Context) ([]Event, error) {
	var out []Event
	err := c.do(ctx, http.MethodGet, "/v1/events", &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://tandem"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &UnreachableError{Socket: c.socket, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return &UnreachableError{Socket: c.socket, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusNotFound {
				return fmt.Errorf("%s: %w", e.Error, ErrNotFound)
			}
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
