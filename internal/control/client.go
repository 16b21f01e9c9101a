package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"sentinel/internal/actions"
)

// ErrNoDaemon means nothing listens on the control socket: the CLI may open
// the database itself.
var ErrNoDaemon = errors.New("no sentinel daemon on the control socket")

// Error is a non-2xx answer from the daemon. It matches actions.ErrRefused
// (409), actions.ErrUnknownAccount (404) and actions.ErrInvalid (400) with
// errors.Is, so the CLI branches the same way with or without a daemon.
type Error struct {
	Status  int
	Message string
	// Unchanged: the daemon found nothing to do (actions.ErrUnchanged).
	Unchanged bool
}

func (e *Error) Error() string { return "daemon: " + e.Message }

func (e *Error) Unwrap() error {
	if e.Unchanged {
		return actions.ErrUnchanged
	}
	switch e.Status {
	case http.StatusConflict:
		return actions.ErrRefused
	case http.StatusNotFound:
		return actions.ErrUnknownAccount
	case http.StatusBadRequest:
		return actions.ErrInvalid
	}
	return nil
}

// Client talks to a running daemon over its control socket.
type Client struct {
	path string
	hc   *http.Client
}

// dialTimeout bounds connecting to the socket.
const dialTimeout = 2 * time.Second

// Dial checks that a daemon answers on the socket at path and that it may be
// believed, and returns a Client for it. When nothing listens there (no
// socket file, or a stale one nobody accepts on) the error wraps
// ErrNoDaemon, as it does for a path too long for a unix socket.
//
// The daemon is believed only if the kernel says it runs as root, as this
// process's user, or as the owner of the socket's directory, and only if no
// other user can write to that directory (see trust); otherwise the error
// wraps ErrUntrusted or ErrUnsafeDir and nothing is sent. Every connection
// the Client makes later is checked the same way.
func Dial(path string) (*Client, error) { return dial(path, PeerCred) }

func dial(path string, peerCred func(net.Conn) (Cred, error)) (*Client, error) {
	if len(path) > maxPath {
		// No daemon can listen there.
		return nil, fmt.Errorf("dial %s: longer than a unix socket's path may be (%d bytes): %w", path, maxPath, ErrNoDaemon)
	}
	self := uint32(os.Getuid())
	connect := func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		if err := trust(path, c, peerCred, self); err != nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: %w", path, err)
		}
		return c, nil
	}
	c, err := connect(context.Background())
	switch {
	case errors.Is(err, ErrUntrusted), errors.Is(err, ErrUnsafeDir):
		return nil, err
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("dial %s: %w", path, ErrNoDaemon)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("dial control socket %s: %w: only the daemon's user, root and the members of its -control-group may use it", path, err)
	case err != nil:
		return nil, fmt.Errorf("dial control socket %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{
		DialContext:  func(ctx context.Context, _, _ string) (net.Conn, error) { return connect(ctx) },
		MaxIdleConns: 1,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}, nil
}

// Close releases the Client's idle connection.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Reinstate asks the daemon to reinstate sid.
func (c *Client) Reinstate(ctx context.Context, sid, by, reason string) error {
	return c.manual(ctx, "/reinstate", Request{SID: sid, By: by, Reason: reason})
}

// Suspend asks the daemon to suspend sid. When the daemon finds nothing to
// do, the error wraps actions.ErrUnchanged and says why.
func (c *Client) Suspend(ctx context.Context, sid, by, reason string) error {
	return c.manual(ctx, "/suspend", Request{SID: sid, By: by, Reason: reason})
}

func (c *Client) manual(ctx context.Context, path string, req Request) error {
	var r reply
	if err := c.do(ctx, http.MethodPost, path, req, &r); err != nil {
		return err
	}
	if r.Unchanged {
		return &Error{Status: http.StatusOK, Message: r.Message, Unchanged: true}
	}
	return nil
}

// Status returns every account's status line.
func (c *Client) Status(ctx context.Context) ([]actions.StatusRow, error) {
	var rows []actions.StatusRow
	err := c.do(ctx, http.MethodGet, "/status", nil, &rows)
	return rows, err
}

// History returns sid's incidents and audit records, newest first.
func (c *Client) History(ctx context.Context, sid string) ([]actions.HistoryEntry, error) {
	var h []actions.HistoryEntry
	err := c.do(ctx, http.MethodGet, "/history?sid="+url.QueryEscape(sid), nil, &h)
	return h, err
}

// maxReply bounds a reply body (a large fleet's status is a few MB).
const maxReply = 256 << 20

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://sentinel"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s via %s: %w", method, path, c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return fmt.Errorf("%s %s via %s: %w", method, path, c.path, err)
	}
	if resp.StatusCode/100 != 2 {
		var r reply
		if json.Unmarshal(data, &r) != nil || r.Error == "" {
			r.Error = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
		}
		return &Error{Status: resp.StatusCode, Message: r.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			if _, note := out.(*reply); note {
				// A manual action's success whose note does not read
				// is still a success.
				return nil
			}
			return fmt.Errorf("%s %s via %s: decode reply: %w", method, path, c.path, err)
		}
	}
	return nil
}
