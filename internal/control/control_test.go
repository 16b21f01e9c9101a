package control_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"sentinel/internal/actions"
	"sentinel/internal/control"
	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

var now = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

type notes struct {
	mu  sync.Mutex
	evs []slack.Event
}

func (n *notes) Notify(_ context.Context, ev slack.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.evs = append(n.evs, ev)
	return nil
}

// socketPath returns a short socket path (unix socket paths are limited to
// about 100 bytes, more than t.TempDir() may leave).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// serve runs srv until the test ends and waits until it accepts.
func serve(t *testing.T, srv *control.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
}

type world struct {
	fake *twiliofake.Server
	st   *store.Store
	act  *actions.Actor
	subs []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	w.fake = twiliofake.New(twiliofake.Options{Now: clock, Seed: 2})
	w.fake.Start()
	t.Cleanup(w.fake.Close)
	for i := range 2 {
		a, err := w.fake.AddSubaccount(twiliofake.Account{SID: fmt.Sprintf("AC%032x", 0xb000+i), FriendlyName: fmt.Sprintf("client %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		w.subs = append(w.subs, a.SID)
	}
	tw, err := twilioapi.New(twilioapi.Config{BaseURL: w.fake.URL(), AccountSID: w.fake.ParentSID(), AuthToken: w.fake.ParentToken(), MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.st, err = store.Open(filepath.Join(t.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	var accts []store.Account
	for _, a := range w.fake.Accounts() {
		accts = append(accts, store.Account{SID: a.SID, FriendlyName: a.FriendlyName, Status: a.Status, Parent: a.Parent})
	}
	if _, err := w.st.SyncAccounts(accts, now); err != nil {
		t.Fatal(err)
	}
	var msgs []traffic.Message
	for i := range 10 {
		msgs = append(msgs, traffic.Message{SID: fmt.Sprintf("SM%032x", i), AccountSID: w.subs[0], Direction: traffic.OutboundAPI,
			Status: "delivered", Time: now.Add(-time.Duration(i+1) * time.Minute), MessagingService: true})
	}
	msgs[0].Status, msgs[0].ErrorCode = "undelivered", 30007
	if _, err := w.st.PutMessages(w.subs[0], msgs); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(`
rules:
  - name: filtered
    description: filtering
    signal: error_rate
    codes: [30007]
    window: 1h
    trip: 50%
    severity: critical
    action: suspend
`), 0o600)
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.act, err = actions.New(actions.Config{}, w.st, tw, func() *policy.Set { return set }, &notes{}, nil, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestControlSocket(t *testing.T) {
	w := newWorld(t)
	path := socketPath(t)
	srv, err := control.New(control.Socket{Path: path}, w.act, w.st, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}

	c, err := control.Dial(path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	ctx := context.Background()
	sid := w.subs[0]

	if err := c.Suspend(ctx, sid, "bob", "fraud report"); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	if err := c.Reinstate(ctx, sid, "alice", "customer fixed it"); err != nil {
		t.Fatalf("Reinstate: %v", err)
	}
	b, err := w.st.Breaker(sid)
	if err != nil || b.State != actions.StateProbation {
		t.Fatalf("breaker %+v, %v; want probation", b, err)
	}
	if a, _ := w.fake.Account(sid); a.Status != "active" {
		t.Errorf("twilio status %s, want active", a.Status)
	}

	// Errors come back with their meaning and a clear message.
	for _, tc := range []struct {
		name string
		do   func() error
		want error
		text string
	}{
		{"not suspended", func() error { return c.Reinstate(ctx, sid, "alice", "again") }, actions.ErrRefused, "not suspended"},
		{"parent", func() error { return c.Suspend(ctx, w.fake.ParentSID(), "eve", "x") }, actions.ErrRefused, "parent"},
		{"unknown", func() error { return c.Reinstate(ctx, "AC"+strings.Repeat("f", 32), "alice", "x") }, actions.ErrUnknownAccount, "no subaccount"},
		{"no reason", func() error { return c.Suspend(ctx, sid, "bob", "") }, actions.ErrInvalid, "reason"},
		{"history of nobody", func() error { _, err := c.History(ctx, "AC"+strings.Repeat("e", 32)); return err }, actions.ErrUnknownAccount, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			var de *control.Error
			if !errors.As(err, &de) || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %v, want a daemon error matching %v and saying %q", err, tc.want, tc.text)
			}
		})
	}

	rows, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d status rows, want 3: %+v", len(rows), rows)
	}
	var row actions.StatusRow
	for _, r := range rows {
		if r.SID == sid {
			row = r
		}
	}
	if row.Breaker != actions.StateProbation || row.Status != "active" || row.Outbound1h != 10 {
		t.Errorf("status row = %+v", row)
	}

	h, err := c.History(ctx, sid)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var kinds, actors []string
	for i, e := range h {
		if i > 0 && e.At.After(h[i-1].At) {
			t.Errorf("history not newest first at %d: %v after %v", i, e.At, h[i-1].At)
		}
		kinds = append(kinds, e.Kind+"/"+e.Action)
		actors = append(actors, e.Actor)
	}
	// Newest first: the reinstatement's outcome, then its intent, then the
	// suspension's outcome and intent.
	want := []string{"outcome/reinstate", "intent/reinstate", "outcome/suspend", "intent/suspend"}
	if got := strings.Join(kinds, " "); got != strings.Join(want, " ") {
		t.Errorf("history kinds = %s, want %s", got, strings.Join(want, " "))
	}
	// The audit names each person as they said (-by) and as the kernel
	// reported the caller: this test's own user.
	me := osUser(t)
	wantActors := []string{"alice " + me, "alice " + me, "bob " + me, "bob " + me}
	if diff := cmp.Diff(wantActors, actors); diff != "" {
		t.Errorf("history actors (-want +got):\n%s", diff)
	}

	// A second daemon on the same socket refuses to start.
	srv2, _ := control.New(control.Socket{Path: path}, w.act, w.st, nil, clock)
	if err := srv2.Run(context.Background()); !errors.Is(err, control.ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	if _, err := control.Dial(path); err != nil {
		t.Errorf("the first daemon stopped answering: %v", err)
	}
}

func TestDialNoDaemon(t *testing.T) {
	path := socketPath(t)
	if _, err := control.Dial(path); !errors.Is(err, control.ErrNoDaemon) {
		t.Fatalf("Dial with no socket: %v, want ErrNoDaemon", err)
	}
	// A stale socket file (a daemon that crashed) is no daemon either.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	if _, err := control.Dial(path); !errors.Is(err, control.ErrNoDaemon) {
		t.Fatalf("Dial with a stale socket: %v, want ErrNoDaemon", err)
	}
}

// stub is an Actions that records its calls.
type stub struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (s *stub) Reinstate(_ context.Context, sid, by, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "reinstate "+sid+" "+by+" "+reason)
	return s.err
}

func (s *stub) Status(context.Context) ([]actions.StatusRow, error) { return nil, nil }

func (s *stub) Suspend(_ context.Context, sid, by, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "suspend "+sid+" "+by+" "+reason)
	return s.err
}

func TestStaleSocketReplacedAndRemovedOnStop(t *testing.T) {
	defer goleak.VerifyNone(t)
	st, err := store.Open(filepath.Join(t.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	path := socketPath(t)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	act := &stub{err: fmt.Errorf("boom: %w", actions.ErrRefused)}
	srv, err := control.New(control.Socket{Path: path}, act, st, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	c, err := control.Dial(path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	err = c.Suspend(context.Background(), "AC"+strings.Repeat("1", 32), "bob", "why")
	var de *control.Error
	if !errors.As(err, &de) || de.Status != 409 || !strings.Contains(de.Message, "boom") {
		t.Errorf("Suspend: %v, want 409 saying boom", err)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Run returned: %v", err)
	}
	if len(act.calls) != 1 {
		t.Errorf("calls = %v", act.calls)
	}
}

func TestNotASocketLeftAlone(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	path := socketPath(t)
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, _ := control.New(control.Socket{Path: path}, &stub{}, st, nil, clock)
	if err := srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Run: %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Errorf("file at the socket path changed: %q", b)
	}
}

func TestBadRequests(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	act := &stub{}
	srv, _ := control.New(control.Socket{Path: socketPath(t)}, act, st, nil, clock)
	h := srv.Handler()
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		text                     string
	}{
		{"not json", "POST", "/reinstate", "sid=x", 400, "bad request body"},
		{"unknown field", "POST", "/suspend", `{"sid":"AC1","by":"b","reason":"r","force":true}`, 400, "unknown field"},
		{"missing fields", "POST", "/suspend", `{"sid":"AC1"}`, 400, "missing by, reason"},
		{"two values", "POST", "/suspend", `{"sid":"AC1","by":"b","reason":"r"} {}`, 400, "more than one"},
		{"wrong method", "GET", "/suspend", "", 405, ""},
		{"history without sid", "GET", "/history", "", 400, "missing sid"},
		{"unknown path", "GET", "/nope", "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptestRecorder(h, tc.method, tc.path, tc.body)
			if rec.code != tc.code || !strings.Contains(rec.body, tc.text) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, rec.code, rec.body, tc.code, tc.text)
			}
		})
	}
	if len(act.calls) != 0 {
		t.Errorf("bad requests reached the actions: %v", act.calls)
	}
}

type recorded struct {
	code int
	body string
}

// httptestRecorder serves one request as if it came on the socket from this
// test's own user.
func httptestRecorder(h http.Handler, method, path, body string) recorded {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	h.ServeHTTP(rec, control.WithCaller(req, control.Cred{UID: uint32(os.Getuid())}))
	return recorded{rec.Code, rec.Body.String()}
}

// TestLongSocketPath: a unix socket's path has a length limit (107 bytes
// on Linux). A path longer than that can hold no daemon, so Dial says
// ErrNoDaemon, and a command goes on to the next candidate or the
// database; and Check, which the daemon runs before it creates its
// database, passes only a path that Run can then serve.
func TestLongSocketPath(t *testing.T) {
	for _, n := range []int{96, 104, 130} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			base := filepath.Dir(socketPath(t))
			dir := filepath.Join(base, strings.Repeat("d", max(1, n-len(base)-len("/x/sentinel.db.sock"))), "x")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "sentinel.db.sock")
			if _, err := control.Dial(path); !errors.Is(err, control.ErrNoDaemon) {
				t.Errorf("Dial of a %d-byte path with no socket: %v, want ErrNoDaemon", len(path), err)
			}
			sock := control.Socket{Path: path}
			if err := sock.Check(); err != nil {
				t.Logf("Check of a %d-byte path: %v", len(path), err)
				return
			}
			srv, err := control.New(sock, &stub{}, mustOpenStore(t), nil, clock)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			select {
			case <-srv.Ready():
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			case err := <-done:
				cancel()
				t.Errorf("Check passed a %d-byte path that Run cannot serve: %v", len(path), err)
			}
		})
	}
}
