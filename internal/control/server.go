// Package control is the running daemon's local control endpoint: HTTP over
// a unix socket, so that `sentinel -reinstate`, `-suspend`, `-status` and
// `-history` go through the daemon while it runs.
//
// # Why
//
// There is one writer. The daemon holds the bbolt file lock for as long as it
// runs, so a second process cannot open the database; and even if it could,
// a reinstatement made behind the daemon's back would race its breaker. The
// CLI therefore Dials the daemon's socket first and falls back to opening
// the database itself only when Dial reports ErrNoDaemon.
//
// # Security
//
// Both ends check who is at the other end with the kernel's record of the
// peer (SO_PEERCRED), not with anything sent over the socket.
//
//   - The socket is created with mode 0600 (bound in a private directory,
//     chmodded, then linked into place), so only the daemon's user and root
//     can connect; and the daemon answers only a caller running as its own
//     user or root (Server.allowed), everyone else gets 403.
//   - With a Socket.Group (-control-group), the socket is given to that
//     group with mode 0660 before it is linked into place, and the daemon
//     also answers a caller whose primary or supplementary groups include
//     it. The supplementary groups come from SO_PEERGROUPS (Linux 4.13),
//     the kernel's record of the caller at connect, like SO_PEERCRED. Not
//     from /proc/<pid>/status: a pid can exit and be reused between the
//     connect and the read, and a hardened daemon (ProtectProc=invisible in
//     the shipped unit) cannot see other users' processes at all.
//   - Requests carry who acts (-by) and why (-reason). The audit log records
//     the -by name followed by the caller's OS user as the kernel reports it:
//     "alice (uid 1000 alice)" (see Attribute).
//   - The CLI believes a daemon only if it runs as root, as the CLI's own
//     user, or as the owner of the socket's directory (see Dial), so an
//     impostor's socket cannot print forged rows or a fake success.
//   - Neither end creates or uses a socket in a directory that users other
//     than the daemon's can write to (unless it is sticky and belongs to the
//     daemon's user): anyone who can write there could put their own socket
//     in its place (ErrUnsafeDir).
//
// A stale socket file left by a crash is removed at start, but only after
// checking that no daemon answers on it; anything at the path that is not a
// socket is left alone and Run refuses to start.
//
// # Endpoints
//
//	POST /reinstate   {"sid", "by", "reason"}  -> 200 {"message"}
//	POST /suspend     {"sid", "by", "reason"}  -> 200 {"message"}
//	GET  /status                               -> 200 [actions.StatusRow]
//	GET  /history?sid=AC...                    -> 200 [actions.HistoryEntry]
//	GET  /backtest/history?since=&to=&...      -> 200 backtest.History (backtest.go)
//	GET  /explain?sid=AC...                    -> 200 backtest.Explanation
//
// Errors are JSON {"error": "..."} with 400 (bad request), 403 (a caller
// that is neither the daemon's user, root nor in its group), 404 (unknown account), 409
// (refused: the parent, a closed account, one suspended by Twilio, one not
// suspended) or 500/502 (the store or Twilio failed).
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/store"
)

// Actions is what the endpoint asks of the daemon (*actions.Actor).
type Actions interface {
	Reinstate(ctx context.Context, sid, by, reason string) error
	Suspend(ctx context.Context, sid, by, reason string) error
	// Status judges every account with the daemon's current policies.
	Status(ctx context.Context) ([]actions.StatusRow, error)
}

var _ Actions = (*actions.Actor)(nil)

// ErrRunning means another daemon answers on the socket path.
var ErrRunning = errors.New("another sentinel daemon answers on the control socket")

// ActionTimeout bounds one manual action. The action runs on a context
// detached from the request, so a CLI that gives up (Ctrl-C) cannot cut a
// Twilio call off half-way; Reconcile would recover, but there is no need.
const ActionTimeout = 5 * time.Minute

// shutdownGrace bounds how long Run waits for requests in flight.
const shutdownGrace = 10 * time.Second

// maxBody bounds a request body.
const maxBody = 64 << 10

// Server serves the control endpoint.
type Server struct {
	path  string
	act   Actions
	st    *store.Store
	log   *slog.Logger
	now   func() time.Time
	ready chan struct{}
	once  sync.Once

	// uid is the daemon's user.
	uid uint32
	// group is Socket.Group; gid is its gid when shared.
	group  string
	gid    uint32
	shared bool
	// peerCred reads a caller's credentials: PeerCred, except in tests that
	// pretend to be another user; peerGroups likewise its supplementary
	// groups.
	peerCred   func(net.Conn) (Cred, error)
	peerGroups func(net.Conn) ([]uint32, error)
}

// New returns a Server for sock. It checks that sock's group exists and
// includes this process, but does not touch the path until Run.
func New(sock Socket, act Actions, st *store.Store, log *slog.Logger, now func() time.Time) (*Server, error) {
	switch {
	case sock.Path == "":
		return nil, errors.New("new control server: no socket path")
	case act == nil:
		return nil, errors.New("new control server: no actions")
	case st == nil:
		return nil, errors.New("new control server: no store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	gid, shared, err := sock.group()
	if err != nil {
		return nil, fmt.Errorf("new control server: %w", err)
	}
	return &Server{path: sock.Path, act: act, st: st, log: log, now: now, ready: make(chan struct{}),
		uid: uint32(os.Getuid()), group: sock.Group, gid: gid, shared: shared,
		peerCred: PeerCred, peerGroups: PeerGroups}, nil
}

// allowed is the set of callers the daemon answers: its own user, root,
// and, with a Socket.Group, that group's members. The socket's mode (0600,
// or 0660 for the group) already keeps everyone else from connecting;
// checking each caller as well means that the accepted set is spelled out
// here, and holds even where the file's mode does not (root's socket, a
// socket linked elsewhere).
func (s *Server) allowed(p peer) bool {
	c := p.cred
	return c.UID == s.uid || c.UID == 0 || s.member(p)
}

// member says whether p is in the socket's group: its primary group, as
// SO_PEERCRED reports it, or one of its supplementary groups.
func (s *Server) member(p peer) bool {
	return s.shared && (p.cred.GID == s.gid || slices.Contains(p.groups, s.gid))
}

// who is the set of callers allowed, for a refusal.
func (s *Server) who() string {
	if s.shared {
		return fmt.Sprintf("the daemon's user (uid %d), root and the members of group %s (gid %d)", s.uid, s.group, s.gid)
	}
	return fmt.Sprintf("the daemon's user (uid %d) and root", s.uid)
}

// Ready is closed once the socket accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run listens on the socket and serves until ctx ends, then stops accepting,
// waits for requests in flight (bounded) and removes the socket. It returns
// nil after ctx ends, ErrRunning if another daemon answers on the path.
func (s *Server) Run(ctx context.Context) error {
	l, err := s.listen()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// Who is calling, from the kernel, for guard and the audit.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, s.peerOf(c))
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.once.Do(func() { close(s.ready) })
	select {
	case err := <-errc:
		return fmt.Errorf("control socket %s: %w", s.path, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx) // closes the listener, which removes the socket
	<-errc
	if err != nil {
		return fmt.Errorf("control socket %s: shutdown: %w", s.path, err)
	}
	return nil
}

// peerOf reads who is at the other end of c. The groups are read only
// when they can matter: a caller that is neither the daemon's user nor
// root, with a Socket.Group.
func (s *Server) peerOf(c net.Conn) peer {
	cred, err := s.peerCred(c)
	p := peer{cred: cred, err: err}
	if err == nil && s.shared && cred.UID != s.uid && cred.UID != 0 {
		p.groups, p.groupsErr = s.peerGroups(c)
	}
	return p
}

// listen binds the socket with mode 0600 (0660 and its group with a
// Socket.Group), after removing a stale one. It refuses a directory others
// can write to (checkDir).
func (s *Server) listen() (net.Listener, error) {
	if err := fits(s.path); err != nil {
		return nil, err
	}
	if _, err := checkDir(filepath.Dir(s.path), s.uid); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", s.path, err)
	}
	stale, err := vacant(s.path)
	if err != nil {
		return nil, err
	}
	if stale {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", s.path, err)
		}
		s.log.Info("removed stale control socket", "path", s.path)
	}
	l, err := listenPrivate(s.path, s.gid, s.shared)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", s.path, err)
	}
	return l, nil
}

// vacant returns an error unless a daemon may put its socket at path:
// nothing is there, or a stale socket (stale), which nobody accepts on. A
// socket a daemon answers on is ErrRunning, and anything else at path is
// left alone.
func vacant(path string) (stale bool, err error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("control socket %s: %w", path, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return false, fmt.Errorf("control socket %s: exists and is not a socket; not touching it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false, fmt.Errorf("control socket %s: %w", path, ErrRunning)
	}
	return true, nil
}

// tempPrefix names the directory listenPrivate binds in.
const tempPrefix = ".sentinel-control-"

// maxPath is the longest path a unix socket may have here (107 bytes on
// Linux, 103 on the BSDs).
var maxPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// fits returns an error unless listenPrivate can bind path: neither it nor
// the temporary path bound first beside it (with os.MkdirTemp's longest
// random part) is longer than maxPath.
func fits(path string) error {
	tmp := filepath.Join(filepath.Dir(path), tempPrefix+"4294967295", "s")
	if n := max(len(path), len(tmp)); n > maxPath {
		return fmt.Errorf("control socket %s: too long: a unix socket's path has at most %d bytes, and the daemon binds it first as %s (%d); pass a shorter -control-socket",
			path, maxPath, tmp, len(tmp))
	}
	return nil
}

// listenPrivate binds a unix socket at path that only the owner (and, if
// shared, the members of group gid) can connect to, with no moment in which
// it is open to others and without touching the process-wide umask: the
// socket is bound inside a fresh 0700 directory, made 0600 (or given to gid
// and made 0660), and linked into place (the link is the same bound
// socket). The listener removes path when closed, if path is still this
// socket.
func listenPrivate(path string, gid uint32, shared bool) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), tempPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the bound name moves; removal is ours
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		return nil, err
	}
	fi, err := os.Lstat(tmp)
	if err != nil {
		return fail(err)
	}
	mode := fs.FileMode(0o600)
	if shared {
		// Given to the group only when it is not the group's already. A
		// daemon whose primary group it is (the unit's Group=) makes it
		// so, and the unit forbids chown (SystemCallFilter=~@privileged).
		if g, ok := groupOf(fi); !ok || g != gid {
			if err := os.Chown(tmp, -1, int(gid)); err != nil {
				return fail(err)
			}
		}
		mode = 0o660
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if fi, err = os.Lstat(tmp); err != nil {
		return fail(err)
	}
	// A hard link, unlike rename, never replaces what may have appeared at
	// path since it was checked.
	if err := os.Link(tmp, path); err != nil {
		return fail(err)
	}
	return &socketListener{UnixListener: ul, path: path, fi: fi}, nil
}

// socketListener removes its socket file on Close, unless another socket
// has replaced it.
type socketListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}

// Request is the body of POST /reinstate and POST /suspend.
type Request struct {
	SID    string `json:"sid"`
	By     string `json:"by"`
	Reason string `json:"reason"`
}

type reply struct {
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	// Unchanged marks a manual action that found nothing to do (Message
	// says why): actions.ErrUnchanged.
	Unchanged bool `json:"unchanged,omitempty"`
}

// Handler returns the endpoint's HTTP handler (Run serves it on the socket).
// It answers only requests that arrived on the socket from an allowed
// caller.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reinstate", s.manual("reinstated", s.act.Reinstate))
	mux.HandleFunc("POST /suspend", s.manual("suspended", s.act.Suspend))
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /history", s.history)
	mux.HandleFunc("GET /backtest/history", s.backtestHistory) // backtest.go
	mux.HandleFunc("GET /explain", s.explain)
	return s.guard(mux)
}

// peer is a connection's caller, put in its context by Run. groups are its
// supplementary groups, read only when they can matter (see peerOf).
type peer struct {
	cred      Cred
	err       error
	groups    []uint32
	groupsErr error
}

type peerKey struct{}

func peerOf(r *http.Request) (peer, bool) {
	p, ok := r.Context().Value(peerKey{}).(peer)
	return p, ok
}

// guard refuses requests from callers that are not allowed, and requests
// whose caller is unknown.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerOf(r)
		switch {
		case !ok:
			writeJSON(w, http.StatusForbidden, reply{Error: "unknown caller: the control endpoint answers only on its unix socket"})
		case p.err != nil:
			s.log.Warn("control socket: caller's credentials unreadable", "err", p.err)
			writeJSON(w, http.StatusForbidden, reply{Error: fmt.Sprintf("unknown caller: %v", p.err)})
		case !s.allowed(p):
			s.log.Warn("control socket: refused a caller", "uid", p.cred.UID, "pid", p.cred.PID, "path", r.URL.Path)
			msg := fmt.Sprintf("uid %d may not use this control socket: only %s may", p.cred.UID, s.who())
			if p.groupsErr != nil {
				msg += fmt.Sprintf(" (the caller's groups are unreadable: %v)", p.groupsErr)
			}
			writeJSON(w, http.StatusForbidden, reply{Error: msg})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (s *Server) manual(done string, do func(ctx context.Context, sid, by, reason string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Request
		dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
		dec.DisallowUnknownFields()
		err := dec.Decode(&req)
		if err == nil && dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("more than one JSON value")
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, reply{Error: fmt.Sprintf("bad request body: %v", err)})
			return
		}
		req.SID = strings.TrimSpace(req.SID)
		var missing []string
		for name, v := range map[string]string{"sid": req.SID, "by": req.By, "reason": req.Reason} {
			if strings.TrimSpace(v) == "" {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			writeJSON(w, http.StatusBadRequest, reply{Error: "missing " + strings.Join(slices.Sorted(slices.Values(missing)), ", ")})
			return
		}
		// guard let the request through, so the caller is known.
		p, _ := peerOf(r)
		by := Attribute(req.By, p.cred.UID)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), ActionTimeout)
		defer cancel()
		err = do(ctx, req.SID, by, req.Reason)
		if errors.Is(err, actions.ErrUnchanged) {
			writeJSON(w, http.StatusOK, reply{Message: err.Error(), Unchanged: true})
			return
		}
		if err != nil {
			s.log.Warn("control request failed", "subaccount", req.SID, "action", r.URL.Path, "err", err)
			writeJSON(w, statusOf(err), reply{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, reply{Message: fmt.Sprintf("%s %s", req.SID, done)})
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	rows, err := s.act.Status(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, reply{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, rows)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	sid := strings.TrimSpace(r.URL.Query().Get("sid"))
	if sid == "" {
		writeJSON(w, http.StatusBadRequest, reply{Error: "missing sid"})
		return
	}
	h, err := actions.History(s.st, sid)
	if err != nil {
		writeJSON(w, statusOf(err), reply{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// statusOf maps an action's error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, actions.ErrUnknownAccount), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, actions.ErrRefused):
		return http.StatusConflict
	case errors.Is(err, actions.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusBadGateway
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}
