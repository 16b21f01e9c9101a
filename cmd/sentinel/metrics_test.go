package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"sentinel/internal/twiliofake"
)

// TestMetricsAtStart scrapes a daemon that has just become ready, without
// Slack and without a single failure: the build, every subaccount's name,
// and, at 0, every counter that would otherwise first appear with a
// failure, a safety rail or a Slack message. Dashboards then show 0
// rather than no data, and increase() in the alerting rules counts the
// first event.
func TestMetricsAtStart(t *testing.T) {
	t.Parallel()
	r := runEnv(t, []string{"PATH=" + os.Getenv("PATH")}, nil, "-version")
	m := regexp.MustCompile(`^sentinel (\S+) \(revision (\S+?)[,;]`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("-version: %s", r)
	}
	wantVersion, wantRevision := m[1], strings.TrimSuffix(m[2], "unknown")

	for _, noLabel := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-subaccount-label=%v", noLabel), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, twiliofake.Options{})
			_, steady := w.fleet(t, 2, false)
			parent := w.fake.ParentSID()
			args := daemonArgs(w)
			if noLabel {
				args = append(args, "-no-subaccount-label")
			}
			var env []string
			for _, kv := range w.environ() {
				if !strings.HasPrefix(kv, "SLACK_") {
					env = append(env, kv)
				}
			}
			d := startEnv(t, env, w.secrets(), args...)
			addr := d.addr(t)
			waitReady(t, d, addr)
			// The subaccount gauges follow the first judged cycle.
			var body []byte
			eventually(t, 10*time.Second, "subaccount gauges", func() bool {
				var code int
				code, body = get(t, "http://"+addr+"/metrics")
				return code == http.StatusOK && bytes.Contains(body, []byte("\nsentinel_subaccount_outbound_messages_1h"))
			})
			problems, err := promlint.New(bytes.NewReader(body)).Lint()
			if err != nil {
				t.Fatalf("lint: %v", err)
			}
			for _, p := range problems {
				t.Errorf("promlint: %s: %s", p.Metric, p.Text)
			}

			build := regexp.MustCompile(`(?m)^sentinel_build_info\{goversion="go[^"]+",revision="([^"]*)",version="([^"]*)"\} 1$`).FindSubmatch(body)
			if build == nil {
				t.Errorf("/metrics has no sentinel_build_info with goversion, revision and version:\n%s", grep(body, "sentinel_build_info"))
			} else if string(build[1]) != wantRevision || string(build[2]) != wantVersion {
				t.Errorf("sentinel_build_info revision %q version %q, want %q and %q as -version says",
					build[1], build[2], wantRevision, wantVersion)
			}

			want := []string{
				`sentinel_suspensions_total{actor="sentinel",mode="enforce"} 0`,
				`sentinel_actions_blocked_total{rail="per_hour"} 0`,
				`sentinel_actions_blocked_total{rail="stale"} 0`,
				`sentinel_twilio_refusals_total{code="21478"} 0`,
				`sentinel_twilio_retries_total{endpoint="messages"} 0`,
				`sentinel_twilio_retries_total{endpoint="account_update"} 0`,
				`sentinel_policy_reload_total{result="error"} 0`,
				`sentinel_slack_outbox_depth 0`,
				`sentinel_slack_messages_total{result="failed"} 0`,
				`sentinel_slack_messages_total{result="dead"} 0`,
				`sentinel_slack_retries_total 0`,
			}
			if noLabel {
				want = append(want,
					`sentinel_poll_failures_total{stream="accounts"} 0`,
					`sentinel_poll_failures_total{stream="messages"} 0`,
					`sentinel_poll_failures_total{stream="usage"} 0`,
				)
				if bytes.Contains(body, []byte("sentinel_subaccount_info")) {
					t.Errorf("sentinel_subaccount_info with -no-subaccount-label:\n%s", grep(body, "sentinel_subaccount_info"))
				}
			} else {
				want = append(want, `sentinel_poll_failures_total{stream="accounts",subaccount="`+parent+`"} 0`)
				for i, sid := range steady {
					want = append(want,
						fmt.Sprintf(`sentinel_subaccount_info{name="client-%02d",subaccount="%s"} 1`, i+1, sid),
						`sentinel_poll_failures_total{stream="messages",subaccount="`+sid+`"} 0`,
					)
				}
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(string(body), "\n") {
				lines[l] = true
			}
			for _, l := range want {
				if !lines[l] {
					name, _, _ := strings.Cut(l, "{")
					name, _, _ = strings.Cut(name, " ")
					t.Errorf("/metrics lacks %s; it has:\n%s", l, grep(body, name))
				}
			}
		})
	}
}

// grep returns the lines of body that start with prefix.
func grep(body []byte, prefix string) string {
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
