package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/exporter-toolkit/web"

	"sentinel/internal/store"
	"sentinel/internal/twiliofake"
)

// get fetches url and returns its status and body.
func get(t testing.TB, url string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, p *proc, addr string) {
	t.Helper()
	eventually(t, 30*time.Second, "/readyz 200", func() bool {
		select {
		case <-p.done:
			t.Fatalf("sentinel exited (%d):\n%s", p.code, p.stderr)
		default:
		}
		code, _ := get(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})
}

// daemonArgs are fast schedules for a daemon under test: the message cycle
// runs every second, so the second evaluation follows the first at once.
// The polls get longer than the half second such a schedule implies: the
// fake runs in the test process, under the race detector on a busy machine.
func daemonArgs(w *world, extra ...string) []string {
	return w.args(append([]string{
		"-messages-schedule", "@every 1s",
		"-accounts-schedule", "@every 1m",
		"-usage-schedule", "@every 1m",
		"-poll-deadline", "10s",
	}, extra...)...)
}

// TestDaemon runs the daemon in the background and drives it as an operator
// would: readiness, metrics, the CLI through the control socket, a second
// instance on the same database, and SIGTERM.
func TestDaemon(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, steady := w.fleet(t, 10, true)

	// Slack is down when the daemon starts: the alerts wait in the outbox.
	w.slack.setDown(true)
	d := w.start(t, daemonArgs(w)...)
	addr := d.addr(t)
	if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	waitReady(t, d, addr)
	eventually(t, 30*time.Second, "offender suspended by the daemon", func() bool {
		return statusOf(t, w.fake, offender)[offender] == "suspended"
	})
	eventually(t, 10*time.Second, "alerts waiting in the outbox", func() bool {
		_, body := get(t, "http://"+addr+"/metrics")
		m := regexp.MustCompile(`(?m)^sentinel_slack_outbox_depth (\d+)`).FindSubmatch(body)
		return m != nil && string(m[1]) != "0"
	})
	if got := w.slack.Posts(); len(got) != 0 {
		t.Errorf("Slack is down, yet it got %d posts", len(got))
	}
	w.slack.setDown(false)
	eventually(t, 30*time.Second, "Slack told of the suspension once back", func() bool {
		return len(w.slack.find(offender, "Suspended", bin+" -control-socket "+w.socket+" -reinstate "+offender)) > 0
	})

	t.Run("/metrics is promlint-clean and complete", func(t *testing.T) {
		var body []byte
		// The gauges follow the judged cycle after the suspension.
		eventually(t, 10*time.Second, "breaker gauge shows the open breaker", func() bool {
			var code int
			code, body = get(t, "http://"+addr+"/metrics")
			return code == http.StatusOK &&
				bytes.Contains(body, []byte(`sentinel_breaker_state{state="open",subaccount="`+offender+`"} 1`))
		})
		problems, err := promlint.New(bytes.NewReader(body)).Lint()
		if err != nil {
			t.Fatalf("lint: %v", err)
		}
		for _, p := range problems {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
		families := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllSubmatch(body, -1) {
			families[string(m[1])] = true
		}
		for _, name := range []string{
			"sentinel_build_info",
			"sentinel_poll_cycle_duration_seconds",
			"sentinel_messages_ingested_total",
			"sentinel_data_staleness_seconds",
			"sentinel_subaccount_data_age_seconds",
			"sentinel_poll_timeouts_total",
			"sentinel_twilio_requests_total",
			"sentinel_twilio_request_duration_seconds",
			"sentinel_suspensions_total",
			"sentinel_policy_evaluations_total",
			"sentinel_breaker_state",
			"sentinel_slack_messages_total",
			"sentinel_slack_outbox_depth",
			"sentinel_slack_hold",
			"sentinel_subaccount_outbound_messages_1h",
			"sentinel_subaccount_filtered_ratio",
			"sentinel_subaccount_opt_out_ratio",
			"sentinel_subaccount_spend_today_usd",
		} {
			if !families[name] {
				t.Errorf("/metrics has no %s", name)
			}
		}
		for _, series := range []string{
			`sentinel_suspensions_total{actor="sentinel",mode="enforce"} 1`,
			`sentinel_subaccount_outbound_messages_1h{subaccount="` + offender + `"}`,
			`sentinel_subaccount_filtered_ratio{subaccount="` + offender + `"}`,
		} {
			if !bytes.Contains(body, []byte(series)) {
				t.Errorf("/metrics has no %s", series)
			}
		}
	})

	t.Run("the CLI goes through the running daemon", func(t *testing.T) {
		checkRows(t, w.statusRows(t), map[string]want{offender: {"suspended", "open"}, steady[0]: {"active", "closed"}})

		r := w.run(t, w.args("-reinstate", offender, "-reason", "reviewed", "-by", "alice")...)
		if want := offender + " reinstated by alice (through the running daemon)\n"; r.code != 0 || r.stdout != want {
			t.Fatalf("-reinstate through the daemon: %s\nwant stdout %q", r, want)
		}
		r = w.run(t, w.args("-suspend", steady[0], "-reason", "looks odd", "-by", "bob")...)
		if want := steady[0] + " suspended by bob (through the running daemon)\n"; r.code != 0 || r.stdout != want {
			t.Fatalf("-suspend through the daemon: %s\nwant stdout %q", r, want)
		}
		// Again: nothing to do, and it says by whom, without claiming it
		// acted.
		r = w.run(t, w.args("-suspend", steady[0], "-reason", "still odd", "-by", "carol")...)
		if r.code != 0 || !strings.Contains(r.stdout, "already suspended") || !strings.Contains(r.stdout, "by bob") ||
			!strings.Contains(r.stdout, "looks odd") || strings.Contains(r.stdout, "suspended by carol") {
			t.Errorf("-suspend of a suspended subaccount: %s\nwant it to say it was already suspended by bob, and nothing done", r)
		}
		// The audit has the OS user the daemon saw beside the -by name.
		r = w.run(t, w.args("-history", offender)...)
		if want := "alice " + osUserOf(t); r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("-history: %s\nwant %q in it", r, want)
		}
		wantStatus := map[string]string{offender: "active", steady[0]: "suspended", steady[1]: "active"}
		if diff := cmp.Diff(wantStatus, statusOf(t, w.fake, offender, steady[0], steady[1])); diff != "" {
			t.Errorf("Twilio statuses (-want +got):\n%s", diff)
		}
		checkRows(t, w.statusRows(t), map[string]want{
			offender:  {"active", "probation"},
			steady[0]: {"suspended", "open"},
			steady[1]: {"active", "closed"},
		})
		eventually(t, 10*time.Second, "Slack told of the manual suspension", func() bool {
			return len(w.slack.find(steady[0], "looks odd")) > 0
		})
		// A refused action is an error, through the daemon as without it.
		r = w.run(t, w.args("-reinstate", steady[1], "-reason", "not suspended")...)
		if r.code == 0 {
			t.Errorf("-reinstate of an active subaccount succeeded: %s", r)
		}
	})

	t.Run("a second instance on the same database fails fast", func(t *testing.T) {
		start := time.Now()
		r := w.run(t, daemonArgs(w, "-control-socket", filepath.Join(w.dir, "second.sock"))...)
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("second instance took %v to give up", took)
		}
		if r.code == 0 {
			t.Fatalf("second instance exited 0: %s", r)
		}
		msg := strings.TrimSpace(r.stderr)
		if strings.Contains(msg, "\n") || !strings.Contains(msg, w.db) || !strings.Contains(msg, "locked by another process") {
			t.Errorf("second instance: want one line naming %s and saying it is locked, got:\n%s", w.db, r.stderr)
		}
	})

	t.Run("a second instance on the same socket fails before it creates its database", func(t *testing.T) {
		other := filepath.Join(w.dir, "other.db")
		r := w.run(t, daemonArgs(w, "-db", other)...)
		if want := "sentinel: control socket " + w.socket + ": another sentinel daemon answers on the control socket\n"; r.code != 1 || r.stderr != want {
			t.Errorf("second instance: %s\nwant exit 1 and stderr %q", r, want)
		}
		if _, err := os.Stat(other); !os.IsNotExist(err) {
			t.Errorf("the second instance left a database: %v", err)
		}
	})

	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0:\n%s", code, d.stderr)
	}
	if !strings.Contains(d.stderr.String(), `msg="sentinel stopped"`) {
		t.Errorf("no \"sentinel stopped\" in the log:\n%s", d.stderr)
	}
	if _, err := os.Stat(w.socket); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// slowTwilio puts a front server before the fake. Once armed, the next
// request for path is delayed by delay in the fake (an injected FaultDelay,
// which gives up when the client does), and the returned channel is closed
// as it starts waiting, so that a test knows a cycle is in flight.
func slowTwilio(t *testing.T, w *world, path string, delay time.Duration) (arm func(), inflight <-chan struct{}) {
	t.Helper()
	var armed atomic.Bool
	started := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path && armed.CompareAndSwap(true, false) {
			w.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDelay, Path: path, Delay: delay, Times: 1})
			close(started)
		}
		w.fake.ServeHTTP(rw, r)
	}))
	t.Cleanup(front.Close)
	w.url = front.URL
	return func() { armed.Store(true) }, started
}

// TestSIGTERMDuringCycle checks that SIGTERM lets a running cycle finish
// within -shutdown-grace, and aborts one that takes longer, and that the
// process exits 0 either way with its database intact.
func TestSIGTERMDuringCycle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grace string
		delay time.Duration
		// finished: the delayed request was answered (200), not abandoned
		// (499).
		finished bool
	}{
		{name: "cycle finishes within the grace", grace: "20s", delay: 2 * time.Second, finished: true},
		{name: "cycle outlives the grace", grace: "300ms", delay: time.Minute, finished: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, twiliofake.Options{})
			_, steady := w.fleet(t, 3, false)
			path := "/2010-04-01/Accounts/" + steady[1] + "/Messages.json"
			arm, inflight := slowTwilio(t, w, path, tc.delay)

			d := w.start(t, daemonArgs(w, "-shutdown-grace", tc.grace)...)
			waitReady(t, d, d.addr(t))
			// The next cycle's read of one message log answers slowly: send
			// the signal while it waits.
			arm()
			select {
			case <-inflight:
			case <-time.After(30 * time.Second):
				t.Fatal("no message cycle reached the slow request")
			}
			signalled := time.Now()
			code := d.signal(t, syscall.SIGTERM, 15*time.Second)
			took := time.Since(signalled)
			if code != 0 {
				t.Errorf("exit %d after SIGTERM, want 0:\n%s", code, d.stderr)
			}
			if !strings.Contains(d.stderr.String(), `msg="sentinel stopped"`) {
				t.Errorf("no \"sentinel stopped\" in the log:\n%s", d.stderr)
			}
			if aborted := strings.Contains(d.stderr.String(), "shutdown grace is over"); aborted == tc.finished {
				t.Errorf("cycle aborted: %v, want %v:\n%s", aborted, !tc.finished, d.stderr)
			}
			if tc.finished && took < tc.delay/2 {
				t.Errorf("exited %v after SIGTERM: did not wait for the running cycle", took)
			}
			var got []int
			for _, r := range w.fake.Requests() {
				if r.Path == path && r.Fault == twiliofake.FaultDelay {
					got = append(got, r.Status)
				}
			}
			want := []int{499}
			if tc.finished {
				want = []int{http.StatusOK}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("statuses of the delayed request (-want +got):\n%s", diff)
			}
			if tc.finished && strings.Contains(d.stderr.String(), "level=ERROR") {
				t.Errorf("errors logged by a cycle that had time to finish:\n%s", d.stderr)
			}

			st, err := store.Open(w.db, store.Options{})
			if err != nil {
				t.Fatalf("database after SIGTERM: %v", err)
			}
			defer st.Close()
			accts, err := st.Accounts()
			if err != nil || len(accts) != 4 {
				t.Errorf("database after SIGTERM: %d accounts, %v; want 4 (3 and the parent)", len(accts), err)
			}
		})
	}
}

// TestPolicyReloadRejected changes the policies under a running daemon: an
// invalid set is rejected (logged, counted, told to Slack) and the previous
// one keeps running; a valid one is taken on SIGHUP.
func TestPolicyReloadRejected(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 3, false)
	dir := filepath.Join(w.dir, "policies")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Glob("../../policies/*.yaml")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("shipped policies: %v %v", shipped, err)
	}
	for _, f := range shipped {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := w.start(t, daemonArgs(w, "-policies", dir)...)
	addr := d.addr(t)
	waitReady(t, d, addr)
	reloads := func(result string) string {
		_, body := get(t, "http://"+addr+"/metrics")
		m := regexp.MustCompile(`(?m)^sentinel_policy_reload_total\{result="` + result + `"\} (\S+)`).FindSubmatch(body)
		if m == nil {
			return "0"
		}
		return string(m[1])
	}
	okBefore := reloads("ok")

	// No SIGHUP: the file notification is enough, within seconds.
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("rules:\n  - name: x\n    trip: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the rejection told to Slack", func() bool {
		return len(w.slack.find("broken.yaml")) > 0
	})
	if got := reloads("error"); got == "0" {
		t.Errorf("sentinel_policy_reload_total{result=\"error\"} = %s after a rejected reload", got)
	}
	if n := strings.Count(d.stderr.String(), "policy reload rejected"); n != 1 {
		t.Errorf("the rejection is logged %d times, want once:\n%s", n, d.stderr)
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a rejected reload: %d %s", code, body)
	}

	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the valid set reloaded", func() bool {
		return reloads("ok") != okBefore
	})
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0:\n%s", code, d.stderr)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key to
// dir/tls/sentinel.crt and dir/tls/sentinel.key, the paths the shipped
// web-config.yml names, and returns a pool that trusts it.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sentinel test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"sentinel.crt": {Type: "CERTIFICATE", Bytes: der},
		"sentinel.key": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, "tls", name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestMetricsWebConfig protects the metrics listener with TLS and basic
// auth through -web-config-file, as an operator would with the shipped
// example, and scrapes it as Prometheus would.
func TestMetricsWebConfig(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 2, false)
	const password = "scrape-s3cret-pw"
	// bcrypt of password, at the lowest cost to keep the test fast.
	const hash = "$2a$04$qXKmtfB2r3W0a78U.ymRMOvl1mxNzMtaXbcroTljL0jiMd3yyEvEq"
	pool := writeCert(t, w.dir)
	config := filepath.Join(w.dir, "web-config.yml")
	if err := os.WriteFile(config, []byte(`
tls_server_config:
  cert_file: tls/sentinel.crt
  key_file: tls/sentinel.key
basic_auth_users:
  prometheus: `+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	d := startEnv(t, w.environ(), append(w.secrets(), password), daemonArgs(w, "-web-config-file", config)...)
	addr := d.addr(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	scrape := func(path, user, pass string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	for _, tc := range []struct {
		name, path, user, pass string
		code                   int
	}{
		{"no credentials", "/metrics", "", "", http.StatusUnauthorized},
		{"wrong password", "/metrics", "prometheus", "guess", http.StatusUnauthorized},
		{"unknown user", "/metrics", "eve", password, http.StatusUnauthorized},
		{"the password", "/metrics", "prometheus", password, http.StatusOK},
		{"health without credentials", "/healthz", "", "", http.StatusUnauthorized},
		{"health with the password", "/healthz", "prometheus", password, http.StatusOK},
		// A dependency registers /debug/ handlers on net/http's default
		// mux; the listener must serve sentinel's own handler only.
		{"no debug pages", "/debug/requests", "prometheus", password, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := scrape(tc.path, tc.user, tc.pass)
			if code != tc.code {
				t.Errorf("GET %s as %q: %d, want %d:\n%.200s", tc.path, tc.user, code, tc.code, body)
			}
			if tc.path == "/metrics" && code == http.StatusOK && !strings.Contains(body, "sentinel_build_info") {
				t.Errorf("/metrics has no sentinel_build_info:\n%.500s", body)
			}
		})
	}
	// Plain HTTP gets no metrics.
	if code, body := get(t, "http://"+addr+"/metrics"); code == http.StatusOK {
		t.Errorf("plain HTTP /metrics: %d, want a refusal:\n%.200s", code, body)
	}
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0:\n%s", code, d.stderr)
	}
}

// TestShippedWebConfig checks that deploy/web-config.yml is one sentinel
// accepts, given the certificate it names.
func TestShippedWebConfig(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("../../deploy/web-config.yml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "web-config.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkWebConfig(path); err == nil || !strings.Contains(err.Error(), "tls/sentinel.crt") {
		t.Errorf("without its certificate: %v, want an error naming tls/sentinel.crt", err)
	}
	writeCert(t, dir)
	if err := checkWebConfig(path); err != nil {
		t.Errorf("the shipped example: %v", err)
	}
}

// TestScrubWebConfigErrors checks that the exporter toolkit's errors about
// a web configuration file, at start-up or logged later, quote none of a
// password pasted where its hash belongs.
func TestScrubWebConfigErrors(t *testing.T) {
	const password = "hunter2-plain"
	dir := t.TempDir()
	var log bytes.Buffer
	logger := slog.New(scrubHandler{slog.NewTextHandler(&log, nil)}).With("component", "web")
	for _, text := range []string{
		"basic_auth_users:\n  prometheus: " + password + "\n", // bcrypt: "hashedSecret[0] is 'h'"
		"basic_auth_users: " + password + "\n",                // yaml: "cannot unmarshal !!str `hunter2...`"
	} {
		path := filepath.Join(dir, "web-config.yml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		verr := web.Validate(path)
		if verr == nil {
			t.Fatalf("%q validated", text)
		}
		err := checkWebConfig(path)
		logger.Error("Unable to parse configuration", "err", verr.Error())
		for _, out := range []string{err.Error(), log.String()} {
			if strings.Contains(out, password[:4]) || strings.Contains(out, "'h'") || strings.Contains(out, "\n"+"  ") {
				t.Errorf("%q: scrubbed output still quotes the password or spans lines:\n%s", text, out)
			}
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%v does not name %s", err, path)
		}
	}
	if !strings.Contains(log.String(), "component=web") {
		t.Errorf("the handler lost the logger's attributes:\n%s", log.String())
	}
}

// TestDaemonChecksBeforeItCreates: a daemon whose policies do not load, or
// whose -listen or -events-listen address is taken, exits before it
// creates its database.
func TestDaemonChecksBeforeItCreates(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 1, false)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	missing := filepath.Join(w.dir, "no-policies")
	const eventsPassword = "events-password-0123456789"
	events := []string{"SENTINEL_EVENTS_USERNAME=twilio", "SENTINEL_EVENTS_PASSWORD=" + eventsPassword}
	for _, tc := range []struct {
		name string
		args []string
		env  []string // added to w's
		want string
	}{
		{name: "invalid policies", args: []string{"-policies", badPolicies(t)},
			want: `(?s)^sentinel: policies in \S+ are invalid:\n.*broken\.yaml:7: rules\[0\]\.trip`},
		{name: "no policy directory", args: []string{"-policies", missing},
			want: `^sentinel: policies in ` + regexp.QuoteMeta(missing) + ` are invalid:\n.*no-policies`},
		{name: "-once with invalid policies", args: []string{"-once", "-policies", badPolicies(t)},
			want: `(?s)^sentinel: policies in \S+ are invalid:\n.*broken\.yaml:7: rules\[0\]\.trip`},
		{name: "-listen taken", args: []string{"-listen", taken.Addr().String()},
			want: `^sentinel: -listen ` + regexp.QuoteMeta(taken.Addr().String()) + `: listen tcp \S+: bind: address already in use\n$`},
		{name: "-events-listen taken", args: []string{"-events-listen", taken.Addr().String(), "-events-url", "https://sentinel.example.com"}, env: events,
			want: `^sentinel: -events-listen ` + regexp.QuoteMeta(taken.Addr().String()) + `: listen tcp \S+: bind: address already in use\n$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "sentinel.db")
			r := runEnv(t, append(w.environ(), tc.env...), append(w.secrets(), eventsPassword),
				w.args(append([]string{"-db", db, "-control-socket", db + ".sock"}, tc.args...)...)...)
			if r.code != 1 || !regexp.MustCompile(tc.want).MatchString(r.stderr) {
				t.Errorf("%s\nwant exit 1 and stderr matching %s", r, tc.want)
			}
			if entries, _ := os.ReadDir(filepath.Dir(db)); len(entries) > 0 {
				t.Errorf("the daemon left %v behind", entries)
			}
		})
	}
}
