package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSocketOrder checks where the daemon listens and where commands look
// for it: a socket named by -control-socket, else by SENTINEL_SOCKET, is
// the only one; otherwise the daemon takes the database's path plus
// ".sock" and commands try the unit's socket first. The binary's tests
// (TestDiscovery) show the same through running daemons.
func TestSocketOrder(t *testing.T) {
	for _, tc := range []struct {
		name           string
		flag, env, db  string
		wantSocket     string
		wantFrom       string
		wantCandidates []string
	}{
		{name: "flag first", flag: "/f.sock", env: "/e.sock", db: "/db/s.db",
			wantSocket: "/f.sock", wantFrom: fromFlag, wantCandidates: []string{"/f.sock"}},
		{name: "then SENTINEL_SOCKET", env: "/e.sock", db: "/db/s.db",
			wantSocket: "/e.sock", wantFrom: fromEnv, wantCandidates: []string{"/e.sock"}},
		{name: "then the unit's, then the database's", db: "/db/s.db",
			wantSocket: "/db/s.db.sock", wantCandidates: []string{unitSocket, "/db/s.db.sock"}},
		{name: "a relative database", db: "sentinel.db",
			wantSocket: "sentinel.db.sock", wantCandidates: []string{unitSocket, "sentinel.db.sock"}},
		{name: "the unit's once", db: filepath.Join(filepath.Dir(unitSocket), "control"),
			wantSocket: unitSocket, wantCandidates: []string{unitSocket}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config{db: tc.db}
			cfg.socket, cfg.socketFrom = daemonSocket(tc.flag, tc.env, tc.db)
			if cfg.socket != tc.wantSocket || cfg.socketFrom != tc.wantFrom {
				t.Errorf("daemonSocket = %q from %q, want %q from %q", cfg.socket, cfg.socketFrom, tc.wantSocket, tc.wantFrom)
			}
			if diff := cmp.Diff(tc.wantCandidates, cfg.candidates()); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHostCommand checks the start of the reinstate command: this binary,
// then only what a command would not find by itself, quoted for a shell
// where needed.
func TestHostCommand(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	const self = "/usr/local/bin/sentinel"
	for _, tc := range []struct {
		name    string
		cfg     config
		serving bool
		want    string
	}{
		{name: "the unit's socket", cfg: config{socket: unitSocket}, serving: true, want: self},
		{name: "another socket, made absolute", cfg: config{socket: "sentinel.db.sock"}, serving: true,
			want: self + " -control-socket " + filepath.Join(wd, "sentinel.db.sock")},
		{name: "a socket path quoted", cfg: config{socket: "/srv/it's here/c.sock"}, serving: true,
			want: self + ` -control-socket '/srv/it'\''s here/c.sock'`},
		{name: "no daemon: the database and policies",
			cfg:  config{db: "sentinel.db", policies: "/etc/sentinel/policies", twilioURL: defaultTwilioURL, retention: defaultRetention},
			want: self + " -db " + filepath.Join(wd, "sentinel.db") + " -policies /etc/sentinel/policies"},
		{name: "no daemon, another Twilio and retention",
			cfg:  config{db: "/d/s.db", policies: "/p", twilioURL: "http://127.0.0.1:8080", retention: 30 * 24 * time.Hour},
			want: self + " -db /d/s.db -policies /p -twilio-api-url http://127.0.0.1:8080 -retention 720h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hostCommand(self, &tc.cfg, tc.serving); got != tc.want {
				t.Errorf("hostCommand = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"sentinel.db": "./sentinel.db", "./x.db": "./x.db", "../x.db": "../x.db", "/var/lib/x.db": "/var/lib/x.db",
	} {
		if got := shown(in); got != want {
			t.Errorf("shown(%q) = %q, want %q", in, got, want)
		}
	}
}
