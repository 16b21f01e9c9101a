package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sentinel/internal/twiliofake"
)

// bin is the sentinel binary built once by TestMain. The end-to-end tests
// run it as a separate process, as an operator or systemd would.
var bin string

// binUnitSocket is bin's unitSocket: a path in TestMain's directory, so
// that no command of a test ever reaches a daemon the host runs, and a
// test can play the unit's daemon. Only tests that do not run in parallel
// put a daemon there (see TestDiscovery): every command without
// -control-socket tries it first.
var binUnitSocket string

// binVCS is false when TestMain had to build bin with -buildvcs=false.
var binVCS bool

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sentinel-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Other users run it too (TestControlGroup, TestReadOnlyDatabase).
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin = filepath.Join(dir, "sentinel")
	// Like /run: others may look, only its owner may write.
	binUnitSocket = filepath.Join(dir, "run", "control.sock")
	if err := os.Mkdir(filepath.Dir(binUnitSocket), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Built without -race even when the tests run with it: the binary is
	// another process, and the race detector would only slow it down
	// (the in-process tests of every package run under -race). Built with
	// the VCS information that make build gives it, even where GOFLAGS
	// says -buildvcs=false; if git cannot say (a clone owned by another
	// user, say), without it: TestVersion then skips.
	for _, vcs := range []string{"-buildvcs=auto", "-buildvcs=false"} {
		build := exec.Command("go", "build", vcs, "-ldflags", "-X main.unitSocket="+binUnitSocket, "-o", bin, ".")
		var out bytes.Buffer
		build.Stdout, build.Stderr = &out, &out
		err := build.Run()
		if err == nil {
			binVCS = vcs == "-buildvcs=auto"
			break
		}
		fmt.Fprintf(os.Stderr, "build sentinel %s: %v\n%s", vcs, err, &out)
		if vcs == "-buildvcs=false" {
			return 1
		}
	}
	return m.Run()
}

// world is one installation: a Twilio fake hosted in the test process, a
// Slack webhook that records what it receives, and a directory for the
// database and the control socket.
type world struct {
	fake   *twiliofake.Server
	slack  *slackRecorder
	dir    string
	db     string
	socket string
	// webhook is SLACK_WEBHOOK_URL; its path is as secret as the token.
	webhook string
	// url, if set, is where sentinel finds Twilio instead of fake.URL().
	url string
}

// newWorld starts the fake and the Slack recorder and stops them when t
// ends.
func newWorld(t testing.TB, opts twiliofake.Options) *world {
	t.Helper()
	fake := twiliofake.New(opts)
	fake.Start()
	t.Cleanup(fake.Close)
	rec := newSlackRecorder(t)
	// A short directory: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &world{
		fake:    fake,
		slack:   rec,
		dir:     dir,
		db:      filepath.Join(dir, "sentinel.db"),
		socket:  filepath.Join(dir, "control.sock"),
		webhook: rec.srv.URL + "/services/T0SECRET/B0SECRET/xoxsecretwebhookpath",
	}
}

// fleet gives the fake n steady subaccounts with a day of clean traffic and,
// if offender, one more whose carriers filter (30007) a third of its
// messages in the last hour. It returns the offender's SID ("" without one)
// and the steady SIDs.
func (w *world) fleet(t *testing.T, n int, offender bool) (string, []string) {
	t.Helper()
	now := time.Now().UTC()
	var steady []string
	for i := range n {
		a, err := w.fake.AddSubaccount(twiliofake.Account{FriendlyName: fmt.Sprintf("client-%02d", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		steady = append(steady, a.SID)
		if _, err := w.fake.Generate(twiliofake.Traffic{
			AccountSID: a.SID, N: 480, From: now.Add(-24 * time.Hour), To: now.Add(-time.Minute),
			Seed: uint64(i + 1), Inbound: 0.02,
		}); err != nil {
			t.Fatal(err)
		}
	}
	if !offender {
		return "", steady
	}
	a, err := w.fake.AddSubaccount(twiliofake.Account{FriendlyName: "acme-blaster"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []twiliofake.Traffic{
		{AccountSID: a.SID, N: 480, From: now.Add(-24 * time.Hour), To: now.Add(-time.Hour), Seed: 100},
		{AccountSID: a.SID, N: 300, From: now.Add(-time.Hour), To: now.Add(-time.Minute), Seed: 101,
			Failed: 0.3, ErrorCodes: []int{30007}},
	} {
		if _, err := w.fake.Generate(tr); err != nil {
			t.Fatal(err)
		}
	}
	return a.SID, steady
}

// args are the flags every run shares: the fake, the temp database and
// socket, the shipped policies and a port of the kernel's choosing.
func (w *world) args(extra ...string) []string {
	url := w.url
	if url == "" {
		url = w.fake.URL()
	}
	return append([]string{
		"-twilio-api-url", url,
		"-db", w.db,
		"-control-socket", w.socket,
		"-policies", "../../policies",
		"-listen", "127.0.0.1:0",
	}, extra...)
}

// environ is the process environment: the parent's credentials and the
// webhook, and nothing else of the test's environment that could matter.
func (w *world) environ() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + w.dir,
		"USER=tester",
		"TWILIO_ACCOUNT_SID=" + w.fake.ParentSID(),
		"TWILIO_AUTH_TOKEN=" + w.fake.ParentToken(),
		"SLACK_WEBHOOK_URL=" + w.webhook,
	}
}

// secrets are the strings no output of sentinel may contain.
func (w *world) secrets() []string {
	return []string{w.fake.ParentToken(), w.webhook, "T0SECRET/B0SECRET", "xoxsecretwebhookpath"}
}

// result is what a finished process left.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs sentinel with w's environment and args to completion (at most a
// minute) and checks that its output carries no secret.
func (w *world) run(t *testing.T, args ...string) result {
	t.Helper()
	return runEnv(t, w.environ(), w.secrets(), args...)
}

// runEnv runs sentinel with env and args and checks that no secret appears
// in its output.
func runEnv(t *testing.T, env, secrets []string, args ...string) result {
	t.Helper()
	return runCmd(t, exec.Command(bin, args...), env, secrets)
}

// runCmd runs cmd, as the test prepared it (its directory, its user), with
// env to completion, at most a minute, and checks that no secret appears
// in its output.
func runCmd(t *testing.T, cmd *exec.Cmd, env, secrets []string) result {
	t.Helper()
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	late := !timer.Stop()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	if late {
		t.Fatalf("%v did not finish within a minute:\n%s", cmd.Args, r)
	}
	checkSecrets(t, secrets, r.stdout, r.stderr)
	return r
}

// checkSecrets fails t if any output contains a secret.
func checkSecrets(t testing.TB, secrets []string, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		for _, s := range secrets {
			if s != "" && strings.Contains(out, s) {
				t.Errorf("output contains the secret %q:\n%s", s, out)
			}
		}
	}
}

// proc is a sentinel process running in the background.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	code           int
	secrets        []string
}

// start starts sentinel in the background with w's environment.
func (w *world) start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startEnv(t, w.environ(), w.secrets(), args...)
}

// startEnv starts sentinel in the background. It is killed when t ends if
// it is still running, and its output then must not contain secrets.
func startEnv(t testing.TB, env, secrets []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(bin, args...), env, secrets)
}

// startCmd is startEnv for a command the test prepared (its directory).
func startCmd(t testing.TB, cmd *exec.Cmd, env, secrets []string) *proc {
	t.Helper()
	p := &proc{
		cmd:     cmd,
		stdout:  &syncBuffer{},
		stderr:  &syncBuffer{},
		done:    make(chan struct{}),
		secrets: secrets,
	}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		err := p.cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			p.code = exit.ExitCode()
		default:
			p.code = -1
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		checkSecrets(t, p.secrets, p.stdout.String(), p.stderr.String())
	})
	return p
}

// waitFor waits until re matches the process's stderr (or stdout, if
// stdout is set) and returns the first submatch, or the whole match.
func (p *proc) waitFor(t testing.TB, re *regexp.Regexp, stdout bool, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := p.stderr.String()
		if stdout {
			out = p.stdout.String()
		}
		if m := re.FindStringSubmatch(out); m != nil {
			return m[len(m)-1]
		}
		select {
		case <-p.done:
			t.Fatalf("sentinel exited (%d) before %q appeared:\nstdout:\n%s\nstderr:\n%s", p.code, re, p.stdout, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not appear within %v:\nstdout:\n%s\nstderr:\n%s", re, timeout, p.stdout, p.stderr)
		}
	}
}

// listenRe finds the metrics address in the start-up log line.
var listenRe = regexp.MustCompile(`msg="sentinel started".* listen=(\S+)`)

// addr waits for the daemon's start-up line and returns its HTTP address.
func (p *proc) addr(t testing.TB) string {
	t.Helper()
	return p.waitFor(t, listenRe, false, 30*time.Second)
}

// signal sends sig and waits at most timeout for the process to exit,
// returning its exit code.
func (p *proc) signal(t testing.TB, sig os.Signal, timeout time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	return p.wait(t, timeout)
}

// wait waits at most timeout for the process to exit.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump in stderr
		<-p.done
		t.Fatalf("sentinel did not exit within %v:\nstdout:\n%s\nstderr:\n%s", timeout, p.stdout, p.stderr)
		return 0
	}
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// slackRecorder is an incoming webhook that records every post.
type slackRecorder struct {
	srv     *httptest.Server
	mu      sync.Mutex
	posts   []string
	down    bool            // answer 503 to every post
	revoked map[string]bool // paths answered 404 no_service, as Slack does for a removed webhook
}

// revoke makes the webhook at url answer 404 from now on.
func (r *slackRecorder) revoke(url string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[strings.TrimPrefix(url, r.srv.URL)] = true
}

// setDown makes the webhook unavailable (503) or available again.
func (r *slackRecorder) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func newSlackRecorder(t testing.TB) *slackRecorder {
	t.Helper()
	r := &slackRecorder{revoked: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil || req.Method != http.MethodPost || !strings.HasPrefix(req.URL.Path, "/services/") {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.down {
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return
		}
		if r.revoked[req.URL.Path] {
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		r.posts = append(r.posts, string(body))
		io.WriteString(w, "ok")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// Posts returns the bodies received so far, oldest first.
func (r *slackRecorder) Posts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.posts...)
}

// find returns the posts that contain every one of subs.
func (r *slackRecorder) find(subs ...string) []string {
	var found []string
	for _, p := range r.Posts() {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(p, s)
		}
		if ok {
			found = append(found, p)
		}
	}
	return found
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// osUserOf is how the audit names the user running the tests (and the
// sentinel processes they start): "(uid 1000 alice)".
func osUserOf(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("(uid %s %s)", u.Uid, u.Username)
}
