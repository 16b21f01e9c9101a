package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sentinel/internal/twiliofake"
)

// The tests in this file are an operator's: commands typed, or pasted from
// an alert, in a shell elsewhere on the host, with no credentials, as
// another user.

// slackCommand returns the reinstate command of sid's suspension alert as
// a person sees it in Slack and copies it: the code span that holds it,
// its entities decoded.
func slackCommand(t *testing.T, w *world, sid string) string {
	t.Helper()
	re := regexp.MustCompile("`([^`]* -reinstate " + sid + " [^`]*)`")
	for _, post := range w.slack.find(sid, "Suspended") {
		var v any
		if err := json.Unmarshal([]byte(post), &v); err != nil {
			t.Fatalf("a Slack post is not JSON: %v\n%s", err, post)
		}
		if m := re.FindStringSubmatch(strings.Join(jsonStrings(v), "\n")); m != nil {
			return html.UnescapeString(m[1])
		}
	}
	t.Fatalf("no suspension alert of %s with a reinstate command; posts:\n%s", sid, strings.Join(w.slack.Posts(), "\n"))
	return ""
}

// jsonStrings returns every string in v, a decoded JSON value.
func jsonStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, jsonStrings(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range v {
			out = append(out, jsonStrings(e)...)
		}
		return out
	}
	return nil
}

// statusCommand returns the reinstate command -status SID prints.
func statusCommand(t *testing.T, r result) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  reinstate:  (.*)$`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("-status SID printed no reinstate command: %s", r)
	}
	return m[1]
}

// TestDiscovery runs two daemons as an operator meets them: the unit's, on
// its socket (bin's, binUnitSocket), and another on its database's path
// plus ".sock". Commands run from another directory, without credentials,
// find the daemon in the order the README documents; the reinstate
// command each daemon prints, in Slack and in -status, reinstates when
// pasted into a shell there; and a socket that -control-socket or
// SENTINEL_SOCKET names and that does not answer is an error, not a step
// to the next. It does not run in parallel: every other test's commands
// look on the unit's socket too.
func TestDiscovery(t *testing.T) {
	unitW := newWorld(t, twiliofake.Options{Seed: 11})
	unitOffender, _ := unitW.fleet(t, 1, true)
	unitW.socket = binUnitSocket
	otherW := newWorld(t, twiliofake.Options{Seed: 12})
	otherOffender, _ := otherW.fleet(t, 1, true)
	otherW.socket = otherW.db + ".sock"

	unitD := unitW.start(t, daemonArgs(unitW)...)
	otherD := otherW.start(t, daemonArgs(otherW)...)
	for _, d := range []struct {
		w   *world
		sid string
	}{{unitW, unitOffender}, {otherW, otherOffender}} {
		eventually(t, 60*time.Second, "the offender's suspension alert", func() bool {
			return len(d.w.slack.find(d.sid, "Suspended", " -reinstate "+d.sid)) > 0
		})
	}

	elsewhere := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + elsewhere}
	secrets := append(unitW.secrets(), otherW.secrets()...)
	sentinel := func(t *testing.T, extraEnv []string, args ...string) result {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = elsewhere
		return runCmd(t, cmd, append(append([]string(nil), env...), extraEnv...), secrets)
	}
	// answered says which daemon printed r, a -status -json.
	answered := func(t *testing.T, r result) string {
		t.Helper()
		unit, other := strings.Contains(r.stdout, unitOffender), strings.Contains(r.stdout, otherOffender)
		switch {
		case r.code == 0 && unit && !other:
			return "unit"
		case r.code == 0 && other && !unit:
			return "other"
		}
		t.Fatalf("-status -json answered by neither daemon: %s", r)
		return ""
	}

	t.Run("the order", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{name: "the unit's socket, from anywhere", want: "unit"},
			{name: "the unit's socket before the database's", args: []string{"-db", otherW.db}, want: "unit"},
			{name: "SENTINEL_SOCKET before the unit's", env: []string{"SENTINEL_SOCKET=" + otherW.socket}, want: "other"},
			{name: "-control-socket before SENTINEL_SOCKET", env: []string{"SENTINEL_SOCKET=" + binUnitSocket},
				args: []string{"-control-socket", otherW.socket}, want: "other"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := answered(t, sentinel(t, tc.env, append(tc.args, "-status", "-json")...)); got != tc.want {
					t.Errorf("answered by the %s daemon, want the %s one", got, tc.want)
				}
			})
		}
	})

	t.Run("a named socket that does not answer is an error", func(t *testing.T) {
		dead := filepath.Join(elsewhere, "dead.sock")
		for _, tc := range []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{name: "SENTINEL_SOCKET", env: []string{"SENTINEL_SOCKET=" + dead},
				want: "sentinel: no daemon answers on " + dead + ", which SENTINEL_SOCKET names: is the daemon running, and is that its -control-socket? (to use a database without a daemon, give its -db)\n"},
			{name: "-control-socket", args: []string{"-control-socket", dead},
				want: "sentinel: no daemon answers on " + dead + ", which -control-socket names: is the daemon running, and is that its -control-socket? (to use a database without a daemon, give its -db)\n"},
			{name: "-control-socket, and -db of a running daemon", args: []string{"-control-socket", dead, "-db", unitW.db},
				want: "sentinel: open store " + unitW.db + ": locked by another process, and no daemon answers on " + dead + ": pass the daemon's -control-socket, or set SENTINEL_SOCKET\n"},
		} {
			for _, command := range [][]string{{"-status"}, {"-reinstate", unitOffender, "-reason", "x"}} {
				t.Run(tc.name+" "+command[0], func(t *testing.T) {
					r := sentinel(t, tc.env, append(tc.args, command...)...)
					if r.code != 1 || r.stderr != tc.want || r.stdout != "" {
						t.Errorf("%s\nwant exit 1 and stderr %q", r, tc.want)
					}
				})
			}
		}
		if got := statusOf(t, unitW.fake, unitOffender)[unitOffender]; got != "suspended" {
			t.Errorf("the offender is %s, want still suspended", got)
		}
	})

	t.Run("the printed commands reinstate, pasted elsewhere", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			w    *world
			sid  string
			want string
		}{
			{name: "the unit's daemon", w: unitW, sid: unitOffender,
				want: bin + " -reinstate " + unitOffender + ` -reason "<why>"`},
			{name: "a daemon on a socket of its own", w: otherW, sid: otherOffender,
				want: bin + " -control-socket " + otherW.socket + " -reinstate " + otherOffender + ` -reason "<why>"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				command := slackCommand(t, tc.w, tc.sid)
				if command != tc.want {
					t.Errorf("Slack's reinstate command is %q, want %q", command, tc.want)
				}
				if got := statusCommand(t, sentinel(t, nil, "-control-socket", tc.w.socket, "-status", tc.sid)); got != command {
					t.Errorf("-status prints the reinstate command %q, Slack %q", got, command)
				}
				sh := exec.Command("sh", "-c", command)
				sh.Dir = elsewhere
				r := runCmd(t, sh, env, secrets)
				if r.code != 0 || !regexp.MustCompile(`^`+tc.sid+` reinstated by \S+ \(through the running daemon\)\n$`).MatchString(r.stdout) {
					t.Fatalf("sh -c %q: %s", command, r)
				}
				if got := statusOf(t, tc.w.fake, tc.sid)[tc.sid]; got != "active" {
					t.Errorf("after the pasted command the subaccount is %s in Twilio, want active", got)
				}
			})
		}
	})

	t.Run("without the unit's daemon, the database's socket", func(t *testing.T) {
		if code := unitD.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("the unit's daemon: exit %d after SIGTERM:\n%s", code, unitD.stderr)
		}
		if got := answered(t, sentinel(t, nil, "-db", otherW.db, "-status", "-json")); got != "other" {
			t.Errorf("answered by the %s daemon, want the other one", got)
		}
		// Neither default answers, and there is no database here.
		r := sentinel(t, nil, "-status")
		if want := "sentinel: no daemon answers on " + binUnitSocket + " or ./sentinel.db.sock, and ./sentinel.db does not exist: pass -db or -control-socket\n"; r.code != 1 || r.stderr != want {
			t.Errorf("%s\nwant exit 1 and stderr %q", r, want)
		}
	})
	if code := otherD.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("the other daemon: exit %d after SIGTERM:\n%s", code, otherD.stderr)
	}
}

// TestNoCommandCreatesADatabase runs every command that reads or changes
// the database in a directory that holds none, without -db: each says
// where it looked and leaves the directory empty.
func TestNoCommandCreatesADatabase(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 1, true)
	policies := mustAbs(t, "../../policies")
	want := "sentinel: no daemon answers on " + binUnitSocket + " or ./sentinel.db.sock, and ./sentinel.db does not exist: pass -db or -control-socket\n"
	for name, args := range map[string][]string{
		"-reinstate":  {"-reinstate", offender, "-reason", "pasted in the wrong directory"},
		"-suspend":    {"-suspend", offender, "-reason", "pasted in the wrong directory"},
		"-status":     {"-status"},
		"-status SID": {"-status", offender},
		"-history":    {"-history", offender},
		"-explain":    {"-policies", policies, "-explain", offender},
		"-backtest":   {"-policies", policies, "-backtest"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin, append([]string{"-twilio-api-url", w.fake.URL()}, args...)...)
			cmd.Dir = dir
			// With the parent's credentials: a database is all it lacks.
			r := runCmd(t, cmd, w.environ(), w.secrets())
			if r.code != 1 || r.stderr != want {
				t.Errorf("%s\nwant exit 1 and stderr %q", r, want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("it left %v in its directory", entries)
			}
		})
	}
	if len(w.fake.Requests()) > 0 {
		t.Errorf("Twilio was called: %v", w.fake.Requests())
	}
}

// publicDir returns a directory every user may look into (mode 0755, its
// parents too), removed when t ends: t.TempDir's parent is its owner's
// alone.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asUser makes cmd run as uid, with primary group gid and supplementary
// groups.
func asUser(cmd *exec.Cmd, uid, gid uint32, groups ...uint32) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	return cmd
}

// TestReadOnlyDatabase runs the read-only commands, with no daemon, on a
// database its user may only read (mode 0444, in a directory of mode
// 0555), as root runs them as another user: each works, and nothing
// changes. -reinstate cannot, and says why.
func TestReadOnlyDatabase(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 2, true)
	for range 2 {
		if r := w.run(t, w.args("-once")...); r.code != 0 {
			t.Fatalf("-once: %s", r)
		}
	}
	base := publicDir(t)
	dir := filepath.Join(base, "ro")
	db := filepath.Join(dir, "sentinel.db")
	orig, err := os.ReadFile(w.db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, orig, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	policies := mustAbs(t, "../../policies")

	command := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"-db", db, "-policies", policies, "-twilio-api-url", w.fake.URL()}, args...)...)
		cmd.Dir = base
		if os.Geteuid() == 0 {
			// Root reads and writes whatever the modes say: nobody may
			// not.
			asUser(cmd, 65534, 65534)
		}
		return cmd
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"-status", []string{"-status"}, `(?m)^` + offender + `\s+acme-blaster\s+suspended by sentinel`},
		{"-status SID", []string{"-status", offender}, `(?m)^  reinstate:  \S+ -db ` + regexp.QuoteMeta(db) + ` -policies \S+ -twilio-api-url \S+ -reinstate ` + offender + ` -reason "<why>"$`},
		{"-history", []string{"-history", offender}, `(?m)^\S+ \S+\s+outcome\s+suspend\s`},
		{"-explain", []string{"-explain", offender}, offender},
		{"-backtest", []string{"-backtest", "-json"}, `"summary"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, command(tc.args...), w.environ(), w.secrets())
			if r.code != 0 || !regexp.MustCompile(tc.want).MatchString(r.stdout) {
				t.Errorf("%s\nwant exit 0 and stdout matching %s", r, tc.want)
			}
		})
	}
	t.Run("-reinstate", func(t *testing.T) {
		r := runCmd(t, command("-reinstate", offender, "-reason", "x"), w.environ(), w.secrets())
		if want := "sentinel: open store " + db + ": open " + db + ": permission denied\n"; r.code != 1 || r.stderr != want {
			t.Errorf("%s\nwant exit 1 and stderr %q", r, want)
		}
	})
	if got, err := os.ReadFile(db); err != nil || !bytes.Equal(got, orig) {
		t.Errorf("the database changed (%v)", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %v, want the database alone", entries)
	}
}

// TestControlGroup runs the daemon as the unit does, as a user of its own
// whose primary group is the socket's group (-control-group), with its
// socket in a directory of that user and group, mode 0750
// (RuntimeDirectoryMode): an operator who is a member of the group
// (usermod -aG) reinstates without root, as the audit log records; a user
// who is not is refused. Switching users needs root.
func TestControlGroup(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	const (
		daemonUID, group = 4201, 4200
		operatorUID      = 4202
		strangerUID      = 4203
	)
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 2, true)
	base := publicDir(t)
	// /run/sentinel and /var/lib/sentinel, as systemd makes them.
	run, state := filepath.Join(base, "run"), filepath.Join(base, "state")
	for _, d := range []string{run, state} {
		if err := os.Mkdir(d, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, daemonUID, group); err != nil {
			t.Fatal(err)
		}
	}
	w.db, w.socket = filepath.Join(state, "sentinel.db"), filepath.Join(run, "control.sock")
	daemon := exec.Command(bin, append(daemonArgs(w), "-control-group", strconv.Itoa(group), "-policies", mustAbs(t, "../../policies"))...)
	daemon.Dir = state
	d := startCmd(t, asUser(daemon, daemonUID, group), w.environ(), w.secrets())
	eventually(t, 60*time.Second, "the offender suspended", func() bool {
		return statusOf(t, w.fake, offender)[offender] == "suspended"
	})
	fi, err := os.Stat(w.socket)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&fs.ModePerm != 0o660 || st.Uid != daemonUID || st.Gid != group {
		t.Errorf("socket mode %v, owner %d:%d; want 0660, %d:%d", fi.Mode()&fs.ModePerm, st.Uid, st.Gid, daemonUID, group)
	}

	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	sentinel := func(uid, gid uint32, groups []uint32, args ...string) result {
		cmd := exec.Command(bin, append([]string{"-control-socket", w.socket}, args...)...)
		cmd.Dir = "/"
		return runCmd(t, asUser(cmd, uid, gid, groups...), env, w.secrets())
	}

	t.Run("a user outside the group is refused", func(t *testing.T) {
		r := sentinel(strangerUID, strangerUID, nil, "-status")
		if r.code != 1 || !strings.Contains(r.stderr, "sentinel: dial control socket "+w.socket+": ") || !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("%s\nwant exit 1 and permission denied on %s", r, w.socket)
		}
		r = sentinel(strangerUID, strangerUID, nil, "-reinstate", offender, "-reason", "x")
		if r.code != 1 || statusOf(t, w.fake, offender)[offender] != "suspended" {
			t.Errorf("-reinstate by a stranger: %s", r)
		}
	})
	t.Run("a member reinstates", func(t *testing.T) {
		if r := sentinel(operatorUID, operatorUID, []uint32{100, group}, "-status", offender); r.code != 0 || !strings.Contains(r.stdout, "suspended by sentinel") {
			t.Errorf("-status by a member: %s", r)
		}
		r := sentinel(operatorUID, operatorUID, []uint32{100, group}, "-reinstate", offender, "-reason", "list cleaned", "-by", "alice")
		if want := offender + " reinstated by alice (through the running daemon)\n"; r.code != 0 || r.stdout != want {
			t.Fatalf("%s\nwant stdout %q", r, want)
		}
		if got := statusOf(t, w.fake, offender)[offender]; got != "active" {
			t.Errorf("after -reinstate the subaccount is %s in Twilio, want active", got)
		}
		h := sentinel(operatorUID, operatorUID, []uint32{group}, "-history", offender)
		if want := fmt.Sprintf("alice (uid %d)", operatorUID); h.code != 0 || !strings.Contains(h.stdout, want) {
			t.Errorf("-history does not name %q: %s", want, h)
		}
	})
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("the daemon: exit %d after SIGTERM:\n%s", code, d.stderr)
	}
}
