package main

import (
	"net"
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

// badPolicies copies the shipped policies into a temporary directory and
// adds a file with two mistakes. It returns the directory.
func badPolicies(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("../../policies/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped policies: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bad := `rules:
  - name: broken
    description: Filtered messages.
    signal: error_rate
    codes: [30007]
    window: 1h
    trip: 1.5
    resolve: 150%
    severity: critical
    action: suspend
`
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestExitStatus checks what sentinel tells the shell and the person when
// it cannot run: the exit status and a reason they can act on.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 2, false)
	policies := badPolicies(t)
	// A token of the right shape that is not the parent's: Twilio answers
	// 401.
	wrongToken := "WrOnGtOkEn0123456789abcdefABCDEF"
	// A directory everyone can write to (like /tmp without its sticky bit)
	// and a socket someone put there.
	shared := sharedDir(t)
	planted := filepath.Join(shared, "planted.sock")
	l, err := net.Listen("unix", planted)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// Web configurations for the metrics listener: one that does not
	// parse, one with a password where its bcrypt hash belongs.
	const plainPassword = "hunter2-plain"
	badWeb, plainWeb := filepath.Join(w.dir, "bad-web.yml"), filepath.Join(w.dir, "plain-web.yml")
	for path, text := range map[string]string{
		badWeb:   "tls_server_config:\n  cert_file: x.crt\nbasic_auth_user:\n  prometheus: x\n",
		plainWeb: "basic_auth_users:\n  prometheus: " + plainPassword + "\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		// env replaces variables of w's environment ("" removes one).
		env map[string]string
		// code is the exit status; 0 means "any but 0".
		code int
		// want are regexps stderr must match.
		want []string
		// oneLine: the error is one line, the last (log records aside).
		oneLine bool
	}{
		{
			name: "unknown flag", args: []string{"-bogus"}, code: 2, oneLine: true,
			want: []string{`^sentinel: flag provided but not defined: -bogus\n$`},
		},
		{
			name: "invalid flag value", args: w.args("-once", "-concurrency", "0"), code: 2, oneLine: true,
			want: []string{`^sentinel: -concurrency 0: want at least 1\n$`},
		},
		{
			name: "bad schedule", args: w.args("-messages-schedule", "every minute"), code: 2, oneLine: true,
			want: []string{`^sentinel: -messages-schedule: .*bad spec "every minute"`},
		},
		{
			name: "invalid policy", args: append(w.args("-once"), "-policies", policies),
			want: []string{`broken\.yaml:7: rules\[0\]\.trip: 1\.5 is outside 0\.\.1 for a rate`,
				`broken\.yaml:8: rules\[0\]\.resolve: 150% is outside 0\.\.1 for a rate`},
		},
		{
			name: "invalid policy, checked", args: []string{"-check-policies", "-policies", policies},
			want: []string{`policies in .* are invalid`, `broken\.yaml:7: rules\[0\]\.trip`, `broken\.yaml:8: rules\[0\]\.resolve`},
		},
		{
			name: "wrong credentials", args: w.args("-once"), env: map[string]string{"TWILIO_AUTH_TOKEN": wrongToken},
			oneLine: true, want: []string{`(?m)^sentinel: .*401.*20003`},
		},
		{
			name: "missing credentials", args: w.args("-once"), env: map[string]string{"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": ""},
			code: 2, oneLine: true, want: []string{`^sentinel: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set`},
		},
		{
			name: "missing credentials, reinstate", args: w.args("-reinstate", "AC00000000000000000000000000000001", "-reason", "x"),
			env: map[string]string{"TWILIO_AUTH_TOKEN": ""}, oneLine: true,
			// The database is there: "wrong credentials" made it.
			want: []string{`^sentinel: no daemon answers on \S+/control\.sock, and acting on \S+/sentinel\.db without a daemon needs the parent's credentials in TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN\n$`},
		},
		{
			name: "listen nonsense", args: w.args("-once", "-listen", "nonsense"), code: 2, oneLine: true,
			want: []string{`^sentinel: -listen "nonsense": want host:port`},
		},
		{
			name: "malformed account SID", args: w.args("-once"), env: map[string]string{"TWILIO_ACCOUNT_SID": "ACnotasid"},
			code: 2, oneLine: true, want: []string{`^sentinel: TWILIO_ACCOUNT_SID is not an account SID`},
		},
		{
			name: "history of nothing", args: w.args("-history", ""), code: 2, oneLine: true,
			want: []string{`^sentinel: -history needs a subaccount SID`},
		},
		{
			name: "lower-case SID", args: w.args("-history", "ac00000000000000000000000000000001"), code: 2, oneLine: true,
			want: []string{`^sentinel: -history "ac0+1": Twilio writes SIDs as AC and 32 lower-case hex digits: use AC0+1\n$`},
		},
		{
			name: "status of a database that does not exist", args: []string{"-status", "-db", filepath.Join(w.dir, "typo.db")},
			oneLine: true, want: []string{`^sentinel: no daemon answers on \S+/run/control\.sock or \S+/typo\.db\.sock, and \S+/typo\.db does not exist: pass -db or -control-socket\n$`},
		},
		{
			name:    "daemon with its socket in a world-writable directory",
			args:    w.args("-control-socket", filepath.Join(shared, "control.sock"), "-db", filepath.Join(w.dir, "unsafe.db")),
			oneLine: true, want: []string{`^sentinel: control socket \S+/control\.sock: directory writable by other users: .*/run/sentinel`},
		},
		{
			name: "web config that does not parse", args: w.args("-web-config-file", badWeb, "-db", filepath.Join(w.dir, "web.db")),
			oneLine: true, want: []string{`^sentinel: -web-config-file \S+/bad-web\.yml: .*line 3: field basic_auth_user not found`},
		},
		{
			name: "web config with a password instead of its hash", args: w.args("-web-config-file", plainWeb, "-db", filepath.Join(w.dir, "web.db")),
			oneLine: true, want: []string{`^sentinel: -web-config-file \S+/plain-web\.yml: basic_auth_users: a password is not a bcrypt hash`},
		},
		{
			name: "web config that does not exist", args: append([]string{"-demo", "-listen", "127.0.0.1:0"}, "-web-config-file", filepath.Join(w.dir, "nope.yml")),
			oneLine: true, want: []string{`^sentinel: -web-config-file \S+/nope\.yml: .*no such file`},
		},
		{
			name: "status through a socket in a world-writable directory", args: w.args("-status", "-control-socket", planted),
			oneLine: true, want: []string{`^sentinel: control socket \S+/planted\.sock: directory writable by other users: .*/run/sentinel`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			environ := w.environ()
			for k, v := range tc.env {
				for i, kv := range environ {
					if strings.HasPrefix(kv, k+"=") {
						environ[i] = k + "=" + v
					}
				}
			}
			r := runEnv(t, environ, append(w.secrets(), wrongToken, plainPassword, plainPassword[:7]), tc.args...)
			switch {
			case tc.code == 0 && r.code == 0:
				t.Errorf("exit 0, want a failure:\n%s", r)
			case tc.code != 0 && r.code != tc.code:
				t.Errorf("exit %d, want %d:\n%s", r.code, tc.code, r)
			}
			for _, re := range tc.want {
				if !regexp.MustCompile(re).MatchString(r.stderr) {
					t.Errorf("stderr does not match %s:\n%s", re, r.stderr)
				}
			}
			if tc.oneLine && !oneLineError(r.stderr) {
				t.Errorf("want a one-line reason, got:\n%s", r.stderr)
			}
		})
	}
	t.Run("-h prints to stdout", func(t *testing.T) {
		r := runEnv(t, w.environ(), nil, "-h")
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("-h: %s", r)
		}
	})
	if _, err := os.Stat(filepath.Join(w.dir, "typo.db")); !os.IsNotExist(err) {
		t.Errorf("-status created a database: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "unsafe.db")); !os.IsNotExist(err) {
		t.Errorf("the daemon refused its socket's directory only after creating its database: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "web.db")); !os.IsNotExist(err) {
		t.Errorf("the daemon refused its web configuration only after creating its database: %v", err)
	}
}

// sharedDir returns a directory that every user can write to, removed when
// t ends.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPolicyCommands runs -check-policies and -test-policies on the shipped
// policies and their tests.
func TestPolicyCommands(t *testing.T) {
	t.Parallel()
	tests, err := filepath.Glob("../../policies/tests/*.yaml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no policy tests: %v", err)
	}
	env := []string{"PATH=" + os.Getenv("PATH")}

	r := runEnv(t, env, nil, "-check-policies", "-policies", "../../policies")
	if r.code != 0 || !regexp.MustCompile(`^\.\./\.\./policies: \d+ rules OK\n$`).MatchString(r.stdout) {
		t.Errorf("-check-policies: %s", r)
	}
	r = runEnv(t, env, nil, append([]string{"-test-policies", "-policies", "../../policies"}, tests...)...)
	if r.code != 0 {
		t.Errorf("-test-policies: %s", r)
	}

	// From any directory, without -policies: each file's policies: key,
	// relative to the file, names the policies it tests.
	var abs []string
	for _, f := range tests {
		abs = append(abs, mustAbs(t, f))
	}
	elsewhere := exec.Command(bin, append([]string{"-test-policies"}, abs...)...)
	elsewhere.Dir, elsewhere.Env = t.TempDir(), env
	if out, err := elsewhere.CombinedOutput(); err != nil {
		t.Errorf("-test-policies from another directory: %v\n%s", err, out)
	}

	// The compliance team adds a rule: the checks and tests still pass.
	team := t.TempDir()
	shipped, _ := filepath.Glob("../../policies/*.yaml")
	for _, f := range shipped {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(team, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	extra := "rules:\n  - name: no-service-warning\n    description: Many messages without a Messaging Service.\n" +
		"    signal: no_service_rate\n    window: 1h\n    min_volume: 50\n    trip: 50%\n    severity: warning\n    action: alert\n"
	if err := os.WriteFile(filepath.Join(team, "extra.yaml"), []byte(extra), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runEnv(t, env, nil, "-check-policies", "-policies", team); r.code != 0 {
		t.Errorf("-check-policies with an added rule: %s", r)
	}
	if r := runEnv(t, env, nil, append([]string{"-test-policies", "-policies", team}, tests...)...); r.code != 0 {
		t.Errorf("-test-policies with an added rule: %s", r)
	}

	// A failing test case fails the command.
	failing := filepath.Join(t.TempDir(), "failing.yaml")
	b, err := os.ReadFile("../../policies/tests/carrier-filtering.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "result: pending, value: 0.06", "result: firing, value: 0.06", 1))
	b = []byte(strings.Replace(string(b), "policies: ..", "policies: "+mustAbs(t, "../../policies"), 1))
	if err := os.WriteFile(failing, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runEnv(t, env, nil, "-test-policies", "-policies", "../../policies", failing)
	if r.code == 0 || !strings.Contains(r.stderr, "policy test cases failed") {
		t.Errorf("-test-policies with a failing case: %s", r)
	}
}

// oneLineError reports whether stderr, log records aside, is one line
// "sentinel: reason".
func oneLineError(stderr string) bool {
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "time=") {
			return false
		}
	}
	return strings.HasPrefix(lines[len(lines)-1], "sentinel: ")
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestDemo runs -demo until all three offenders are suspended, then stops
// it with Ctrl-C and reads its summary.
func TestDemo(t *testing.T) {
	t.Parallel()
	// A demo killed earlier left its directory behind: this one removes it.
	stale, err := os.MkdirTemp("", demoPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stale) })
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "pid"), []byte(strconv.Itoa(gone.Process.Pid)), 0o600)

	// The demo needs neither credentials nor Slack, nor the repository:
	// it runs from any directory, on the policies built into it, and its
	// alerts print in the terminal, without log lines between them.
	cmd := exec.Command(bin, "-demo", "-listen", "127.0.0.1:0")
	cmd.Dir = t.TempDir()
	p := startCmd(t, cmd, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, nil)
	for _, name := range []string{"sentinel-demo-filtered", "sentinel-demo-opt-out-storm", "sentinel-demo-runaway-spend"} {
		p.waitFor(t, regexp.MustCompile(`\[CRITICAL\] Suspended: `+name+` `), true, 90*time.Second)
	}
	// The printed status command works as pasted, while the demo runs.
	status := regexp.MustCompile(`status:\s+(.*)\n`).FindStringSubmatch(p.stdout.String())
	if status == nil {
		t.Fatalf("no status command in the banner:\n%s", p.stdout)
	}
	args := strings.Fields(status[1])
	if args[0] != bin {
		t.Errorf("status command runs %q, want this binary %q", args[0], bin)
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil || !strings.Contains(string(out), "suspended by sentinel") {
		t.Errorf("the banner's status command: %v\n%s", err, out)
	}
	// The fleet pushes its events (Event Streams, set up by
	// -events-setup's code) to the demo's own listener, which stores them.
	metricsAddr := regexp.MustCompile(`metrics:\s+http://(\S+)/metrics`).FindStringSubmatch(p.stdout.String())
	if metricsAddr == nil {
		t.Fatalf("no metrics address in the banner:\n%s", p.stdout)
	}
	_, metrics := get(t, "http://"+metricsAddr[1]+"/metrics")
	pushed := regexp.MustCompile(`(?m)^sentinel_events_stored_total\{result="new"\} ([1-9]\d*)$`).FindSubmatch(metrics)
	if pushed == nil || !strings.Contains(string(metrics), `sentinel_events_rejected_total{reason="unauthorized"} 0`) {
		t.Errorf("the demo stored no pushed events:\n%s", grepLines(string(metrics), "sentinel_events_"))
	}
	if code := p.signal(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("demo: exit %d after Ctrl-C, want 0:\n%s", code, p.stderr)
	}
	out := p.stdout.String()
	if !strings.Contains(out, "\n3 subaccounts suspended, ") {
		t.Errorf("demo summary lacks \"3 subaccounts suspended\":\n%s", out)
	}
	if strings.Contains(out, "level=") || strings.Contains(out, "time=") {
		t.Errorf("log lines among the demo's alerts:\n%s", out)
	}
	// Each suspension shows the buttons its Slack message would carry and
	// what a click would send; with nobody named, they are disabled.
	if !regexp.MustCompile(`(?m)^  button \[Reinstate…\] action_id=sentinel\.reinstate value=\{"v":1,"s":"AC[0-9a-f]{32}","r":"[a-z-]+","o":\d+\}$`).MatchString(out) ||
		!strings.Contains(out, "  :no_entry: Buttons disabled: nobody may decide from Slack until -slack-deciders") {
		t.Errorf("the demo's alerts do not show their buttons:\n%s", out)
	}
	if strings.Contains(out, "Rule firing: sentinel-demo-client") {
		t.Errorf("a healthy demo client tripped a filtering warning:\n%s", out)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale demo directory is still there: %v", err)
	}

	// -db and -control-socket do not apply to the demo: refused, exit 2.
	r := runEnv(t, []string{"PATH=" + os.Getenv("PATH")}, nil, "-demo", "-db", filepath.Join(t.TempDir(), "x.db"))
	if r.code != 2 || !strings.Contains(r.stderr, "-db and -control-socket do not apply") {
		t.Errorf("-demo -db: %s", r)
	}
}
