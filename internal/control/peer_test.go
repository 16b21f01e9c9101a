package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sentinel/internal/actions"
	"sentinel/internal/control"
	"sentinel/internal/store"
)

// osUser is how the audit names this test's own user, worked out without
// the control package: "(uid 1000 alice)".
func osUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("(uid %s %s)", u.Uid, u.Username)
}

// foreign is a uid that is neither this test's nor root.
func foreign() uint32 {
	if os.Getuid() == 4242 {
		return 4343
	}
	return 4242
}

// as reads a connection's real credentials and reports uid instead.
func as(uid uint32) func(net.Conn) (control.Cred, error) {
	return func(c net.Conn) (control.Cred, error) {
		cred, err := control.PeerCred(c)
		cred.UID = uid
		return cred, err
	}
}

func mustOpenStore(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// TestPeerCredOfRealSocket checks what the kernel reports for a real
// connection: this process, on both ends.
func TestPeerCredOfRealSocket(t *testing.T) {
	path := socketPath(t)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	defer s.Close()
	want := control.Cred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	for name, conn := range map[string]net.Conn{"client's view of the listener": c, "server's view of the caller": s} {
		got, err := control.PeerCred(conn)
		if err != nil || got != want {
			t.Errorf("%s: PeerCred = %+v, %v; want %+v", name, got, err, want)
		}
	}
}

// TestDaemonChecksCaller runs the server on a real socket and has callers
// of several users (simulated, but for this test's own) use it: only the
// daemon's user and root are answered, and the audit records the caller's
// OS user beside the name it gave.
func TestDaemonChecksCaller(t *testing.T) {
	sid := "AC" + strings.Repeat("1", 32)
	for _, tc := range []struct {
		name string
		// uid is the caller's, as the server reads it; nil: the real one.
		uid *uint32
		// calls are the actions that must reach the actor.
		calls []string
		// refused: the daemon answers 403 naming the caller's uid.
		refused bool
	}{
		{name: "the daemon's own user", calls: []string{"suspend " + sid + " bob " + osUser(t) + " why"}},
		{name: "root", uid: new(uint32(0)), calls: []string{"suspend " + sid + " bob (uid 0 root) why"}},
		{name: "another user", uid: new(foreign()), refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			act := &stub{}
			path := socketPath(t)
			srv, err := control.New(control.Socket{Path: path}, act, mustOpenStore(t), nil, clock)
			if err != nil {
				t.Fatal(err)
			}
			if tc.uid != nil {
				control.SetPeerCred(srv, as(*tc.uid))
			}
			serve(t, srv)
			c, err := control.Dial(path)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			ctx := context.Background()
			errs := map[string]error{"suspend": c.Suspend(ctx, sid, "bob", "why")}
			_, errs["status"] = c.Status(ctx)
			for op, err := range errs {
				var de *control.Error
				switch {
				case tc.refused && (!errors.As(err, &de) || de.Status != http.StatusForbidden ||
					!strings.Contains(de.Message, fmt.Sprintf("uid %d may not use", *tc.uid))):
					t.Errorf("%s: %v, want 403 naming uid %d", op, err, *tc.uid)
				case !tc.refused && err != nil:
					t.Errorf("%s: %v", op, err)
				}
			}
			if diff := cmp.Diff(tc.calls, act.calls); diff != "" {
				t.Errorf("actions called (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHandlerNeedsCaller checks that the handler answers nothing whose
// caller is unknown (a request that did not come on the socket).
func TestHandlerNeedsCaller(t *testing.T) {
	act := &stub{}
	srv, _ := control.New(control.Socket{Path: socketPath(t)}, act, mustOpenStore(t), nil, clock)
	h := srv.Handler()
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "/suspend", strings.NewReader(`{"sid":"AC1","by":"b","reason":"r"}`)),
		httptest.NewRequest("GET", "/status", nil),
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "unknown caller") {
			t.Errorf("%s %s without a caller = %d %s, want 403", r.Method, r.URL.Path, rec.Code, rec.Body)
		}
	}
	if len(act.calls) != 0 {
		t.Errorf("requests without a caller reached the actions: %v", act.calls)
	}
}

// impostor is a plain HTTP server on a unix socket that forges the
// daemon's answers and counts the requests it gets.
type impostor struct {
	path     string
	requests atomic.Int32
}

func newImpostor(t *testing.T, path string) *impostor {
	t.Helper()
	imp := &impostor{path: path}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		imp.requests.Add(1)
		if r.URL.Path == "/status" {
			json.NewEncoder(w).Encode([]actions.StatusRow{{SID: "AC" + strings.Repeat("f", 32), Name: "forged", Status: "active"}})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"message": "reinstated"})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return imp
}

// TestClientChecksDaemon puts an impostor on the socket path: the CLI must
// not believe a process that runs as another user, on any connection.
func TestClientChecksDaemon(t *testing.T) {
	ctx := context.Background()

	t.Run("another user is refused before anything is sent", func(t *testing.T) {
		imp := newImpostor(t, socketPath(t))
		c, err := control.DialWith(imp.path, as(foreign()))
		if !errors.Is(err, control.ErrUntrusted) || !strings.Contains(err.Error(), fmt.Sprintf("uid %d", foreign())) {
			t.Errorf("Dial: %v, want ErrUntrusted naming uid %d", err, foreign())
		}
		if c != nil {
			t.Error("Dial returned a client")
		}
		if n := imp.requests.Load(); n != 0 {
			t.Errorf("the impostor got %d requests", n)
		}
	})

	t.Run("a later connection is checked too", func(t *testing.T) {
		imp := newImpostor(t, socketPath(t))
		// The first connection (Dial's) meets this test's own user; every
		// later one another user, as if the daemon had been replaced.
		var n atomic.Int32
		cred := func(c net.Conn) (control.Cred, error) {
			if n.Add(1) == 1 {
				return control.PeerCred(c)
			}
			return as(foreign())(c)
		}
		c, err := control.DialWith(imp.path, cred)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		rows, err := c.Status(ctx)
		if !errors.Is(err, control.ErrUntrusted) || rows != nil {
			t.Errorf("Status: %v, %v; want ErrUntrusted and no rows", rows, err)
		}
		if err := c.Reinstate(ctx, "AC"+strings.Repeat("1", 32), "alice", "x"); !errors.Is(err, control.ErrUntrusted) {
			t.Errorf("Reinstate: %v, want ErrUntrusted", err)
		}
		if n := imp.requests.Load(); n != 0 {
			t.Errorf("the impostor got %d requests", n)
		}
	})

	t.Run("the owner of the socket's directory is believed", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to give the directory to another user")
		}
		imp := newImpostor(t, socketPath(t))
		if err := os.Chown(filepath.Dir(imp.path), int(foreign()), -1); err != nil {
			t.Fatal(err)
		}
		c, err := control.DialWith(imp.path, as(foreign()))
		if err != nil {
			t.Fatalf("Dial of a daemon running as the directory's owner: %v", err)
		}
		defer c.Close()
		if _, err := c.Status(ctx); err != nil {
			t.Errorf("Status: %v", err)
		}
	})
}

// shared returns a fresh directory with mode; it is removed when t ends.
func shared(t *testing.T, mode fs.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSocketDirectory(t *testing.T) {
	self := uint32(os.Getuid())
	for _, tc := range []struct {
		name string
		mode fs.FileMode
		// daemon is the uid the daemon runs as.
		daemon uint32
		ok     bool
	}{
		{"private", 0o700, self, true},
		{"readable by others", 0o755, self, true},
		{"writable by its group", 0o770, self, false},
		{"writable by everyone", 0o777, self, false},
		{"sticky and the daemon's", 0o777 | fs.ModeSticky, self, true},
		// /tmp for a daemon running as a dedicated user.
		{"sticky and someone else's", 0o777 | fs.ModeSticky, foreign(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := control.CheckDir(shared(t, tc.mode), tc.daemon)
			switch {
			case tc.ok && err != nil:
				t.Errorf("CheckDir: %v, want it accepted", err)
			case !tc.ok && !errors.Is(err, control.ErrUnsafeDir):
				t.Errorf("CheckDir: %v, want ErrUnsafeDir", err)
			}
		})
	}

	t.Run("the daemon refuses a world-writable directory and says where to go", func(t *testing.T) {
		path := filepath.Join(shared(t, 0o777), "s.sock")
		srv, _ := control.New(control.Socket{Path: path}, &stub{}, mustOpenStore(t), nil, clock)
		// Cancelled already: a Run that wrongly starts stops at once.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := srv.Run(ctx)
		if !errors.Is(err, control.ErrUnsafeDir) || !strings.Contains(err.Error(), "/run/sentinel") ||
			!strings.Contains(err.Error(), path) {
			t.Errorf("Run: %v, want ErrUnsafeDir naming %s and /run/sentinel", err, path)
		}
		if err := (control.Socket{Path: path}).Check(); !errors.Is(err, control.ErrUnsafeDir) {
			t.Errorf("Check: %v, want ErrUnsafeDir", err)
		}
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
			t.Errorf("Run left %v behind", entries)
		}
	})

	t.Run("the CLI refuses a socket in a world-writable directory", func(t *testing.T) {
		imp := newImpostor(t, filepath.Join(shared(t, 0o777), "s.sock"))
		if _, err := control.Dial(imp.path); !errors.Is(err, control.ErrUnsafeDir) || !strings.Contains(err.Error(), "/run/sentinel") {
			t.Errorf("Dial: %v, want ErrUnsafeDir naming /run/sentinel", err)
		}
		if n := imp.requests.Load(); n != 0 {
			t.Errorf("the socket got %d requests", n)
		}
	})
}

// TestPeerGroupsOfRealSocket checks what the kernel reports as the groups
// of a real connection's peer: this process's, on both ends.
func TestPeerGroupsOfRealSocket(t *testing.T) {
	path := socketPath(t)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	defer s.Close()
	own, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for _, g := range own {
		want = append(want, uint32(g))
	}
	slices.Sort(want)
	for name, conn := range map[string]net.Conn{"client's view of the listener": c, "server's view of the caller": s} {
		got, err := control.PeerGroups(conn)
		if err != nil {
			t.Fatalf("%s: PeerGroups: %v", name, err)
		}
		slices.Sort(got)
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: PeerGroups (-getgroups +got):\n%s", name, diff)
		}
	}
}

// sharedGID is a group this process may give its socket to: any, for
// root; otherwise its own.
func sharedGID() uint32 {
	if os.Geteuid() == 0 {
		return 4300
	}
	return uint32(os.Getegid())
}

// TestSocketGroup runs the server with a Socket.Group: the socket is the
// group's, mode 0660, and the daemon answers the group's members besides
// its own user and root, whichever of their groups it is; everyone else
// gets 403 naming who may.
func TestSocketGroup(t *testing.T) {
	gid := sharedGID()
	group := strconv.FormatUint(uint64(gid), 10)
	sid := "AC" + strings.Repeat("1", 32)
	other := foreign()
	for _, tc := range []struct {
		name string
		// The caller is uid other with primary group gid and supplementary
		// groups; unreadable: its groups cannot be read.
		gid        uint32
		groups     []uint32
		unreadable bool
		// refused: 403 containing this.
		refused string
	}{
		{name: "supplementary group", gid: other, groups: []uint32{7, gid}},
		{name: "primary group", gid: gid},
		{name: "another group", gid: other, groups: []uint32{gid + 1}, refused: fmt.Sprintf(
			"uid %d may not use this control socket: only the daemon's user (uid %d), root and the members of group %s (gid %d) may",
			other, os.Getuid(), group, gid)},
		{name: "groups unreadable", gid: other, unreadable: true, refused: "the caller's groups are unreadable: no groups here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			act := &stub{}
			path := socketPath(t)
			srv, err := control.New(control.Socket{Path: path, Group: group}, act, mustOpenStore(t), nil, clock)
			if err != nil {
				t.Fatal(err)
			}
			control.SetPeerCred(srv, func(c net.Conn) (control.Cred, error) {
				cred, err := control.PeerCred(c)
				cred.UID, cred.GID = other, tc.gid
				return cred, err
			})
			control.SetPeerGroups(srv, func(net.Conn) ([]uint32, error) {
				if tc.unreadable {
					return nil, errors.New("no groups here")
				}
				return tc.groups, nil
			})
			serve(t, srv)

			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != gid {
				t.Errorf("socket mode %v group %d, want 0660 and group %d", fi.Mode().Perm(), st.Gid, gid)
			}
			c, err := control.Dial(path)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			err = c.Suspend(context.Background(), sid, "bob", "why")
			var de *control.Error
			switch {
			case tc.refused == "" && err != nil:
				t.Errorf("Suspend by a member: %v", err)
			case tc.refused == "" && !slices.Equal(act.calls, []string{fmt.Sprintf("suspend %s bob (uid %d) why", sid, other)}):
				t.Errorf("actions called: %q, want one suspension attributed to uid %d", act.calls, other)
			case tc.refused != "" && (!errors.As(err, &de) || de.Status != http.StatusForbidden || !strings.Contains(de.Message, tc.refused)):
				t.Errorf("Suspend: %v, want 403 saying %q", err, tc.refused)
			case tc.refused != "" && len(act.calls) != 0:
				t.Errorf("a refused caller reached the actions: %q", act.calls)
			}
		})
	}
}

// TestSocketGroupChecked: a group that does not exist, or that the daemon
// is not in, is refused by New and Check, before anything is created.
func TestSocketGroupChecked(t *testing.T) {
	dir := filepath.Dir(socketPath(t))
	cases := map[string]string{"no-such-group-for-sentinel": `control socket group "no-such-group-for-sentinel": no such group`}
	if os.Geteuid() != 0 {
		// Only root may give a file to a group it is not in.
		notIn := uint32(os.Getegid()) + 1
		own, _ := os.Getgroups()
		for slices.Contains(own, int(notIn)) {
			notIn++
		}
		cases[strconv.FormatUint(uint64(notIn), 10)] = "is not a member, so it cannot give the socket to it"
	}
	for group, want := range cases {
		sock := control.Socket{Path: filepath.Join(dir, "s.sock"), Group: group}
		if err := sock.Check(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check with group %s: %v, want %q", group, err, want)
		}
		if _, err := control.New(sock, &stub{}, mustOpenStore(t), nil, clock); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New with group %s: %v, want %q", group, err, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("checks left %v behind", entries)
	}
}

// TestCheckSocketPath: Check, which the daemon runs before it creates its
// database, refuses a path a daemon answers on and one that holds
// something else than a socket; a stale socket passes (Run replaces it).
func TestCheckSocketPath(t *testing.T) {
	running := socketPath(t)
	srv, err := control.New(control.Socket{Path: running}, &stub{}, mustOpenStore(t), nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	if err := (control.Socket{Path: running}).Check(); !errors.Is(err, control.ErrRunning) || !strings.Contains(err.Error(), running) {
		t.Errorf("Check of a socket a daemon answers on: %v, want ErrRunning naming %s", err, running)
	}

	stale := socketPath(t)
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := (control.Socket{Path: stale}).Check(); err != nil {
		t.Errorf("Check of a stale socket: %v", err)
	}

	file := socketPath(t)
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (control.Socket{Path: file}).Check(); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("Check of a regular file: %v, want \"exists and is not a socket\"", err)
	}
}
