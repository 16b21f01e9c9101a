package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twilio/twilio-go/client"

	"sentinel/internal/ingest"
	"sentinel/internal/twiliofake"
)

// Basic credentials of the sink in these tests; the password has
// characters that user info must escape.
const (
	pushUser     = "twilio"
	pushPassword = "s3cret/push+pass:word!"
)

// pushWorld is a world whose sentinel runs -events-setup against the fake,
// for -events-url url.
type pushWorld struct {
	*world
	url     string
	subs    []twiliofake.Account
	environ []string
}

func newPushWorld(t *testing.T, opts twiliofake.Options, eventsURL string) *pushWorld {
	t.Helper()
	w := &pushWorld{world: newWorld(t, opts), url: eventsURL}
	for _, a := range []twiliofake.Account{
		{FriendlyName: "shop"}, {FriendlyName: "clinic"},
		{FriendlyName: "paused", Status: twiliofake.StatusSuspended},
		{FriendlyName: "gone", Status: twiliofake.StatusClosed},
	} {
		got, err := w.fake.AddSubaccount(a)
		if err != nil {
			t.Fatal(err)
		}
		w.subs = append(w.subs, got)
	}
	w.environ = append(w.world.environ(), "SENTINEL_EVENTS_USERNAME="+pushUser, "SENTINEL_EVENTS_PASSWORD="+pushPassword)
	return w
}

// secrets are the parent's token, every subaccount's, and the sink's
// password, as written and as user info writes it.
func (w *pushWorld) secrets() []string {
	out := append(w.world.secrets(), pushPassword, url.PathEscape(pushPassword), url.QueryEscape(pushPassword))
	for _, a := range w.subs {
		out = append(out, a.Token)
	}
	return out
}

func (w *pushWorld) setup(t *testing.T, extra ...string) result {
	t.Helper()
	args := append([]string{"-twilio-api-url", w.fake.URL(), "-events-setup", "-events-url", w.url}, extra...)
	return runEnv(t, w.environ, w.secrets(), args...)
}

// lines are a result's stdout, one per change.
func (r result) lines() []string {
	return strings.Split(strings.TrimSpace(r.stdout), "\n")
}

// wantLines checks that r succeeded and printed lines matching res, in
// order.
func wantLines(t *testing.T, r result, res ...string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("-events-setup failed:\n%s", r)
	}
	got := r.lines()
	if len(got) != len(res) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(res), r)
	}
	for i, re := range res {
		if !regexp.MustCompile(re).MatchString(got[i]) {
			t.Errorf("line %d %q does not match %q", i+1, got[i], re)
		}
	}
}

// writes are the requests that change something.
func writes(fake *twiliofake.Server) []string {
	var out []string
	for _, r := range fake.Requests() {
		if r.Method != http.MethodGet {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

// checkSink checks that account has exactly one sink, sentinel's, and one
// subscription of it to every message type; it returns them.
func checkSink(t *testing.T, fake *twiliofake.Server, account, dest string, subaccounts bool) (twiliofake.Sink, twiliofake.Subscription) {
	t.Helper()
	sinks, subs := fake.Sinks(account), fake.Subscriptions(account)
	if len(sinks) != 1 || len(subs) != 1 {
		t.Fatalf("%s has %d sinks and %d subscriptions, want one of each", account, len(sinks), len(subs))
	}
	sk, sub := sinks[0], subs[0]
	if sk.Destination != dest || sk.Method != "POST" || !sk.BatchEvents || sk.Type != "webhook" {
		t.Errorf("%s's sink: %s %s batched %v, want POST to %s, batched", account, sk.Method, redacted(sk.Destination), sk.BatchEvents, redacted(dest))
	}
	var types []string
	for typ := range sub.Types {
		types = append(types, typ)
	}
	sort.Strings(types)
	if diff := cmp.Diff(twiliofake.MessagingEventTypes(), types); diff != "" || sub.SinkSID != sk.SID || sub.Subaccounts != subaccounts {
		t.Errorf("%s's subscription of %s (sink %s), subaccounts %v, want %v; types (-want +got):\n%s", account, sub.SinkSID, sk.SID, sub.Subaccounts, subaccounts, diff)
	}
	return sk, sub
}

func pushDestination(base string) string {
	u, _ := url.Parse(base + "/twilio/events")
	u.User = url.UserPassword(pushUser, pushPassword)
	return u.String()
}

func TestEventsSetup(t *testing.T) {
	t.Parallel()
	w := newPushWorld(t, twiliofake.Options{}, "https://sentinel.example.com")
	parent := w.fake.ParentSID()
	dest := pushDestination(w.url)

	// A dry run on a fresh account says what it would do and does nothing.
	wantLines(t, w.setup(t, "-dry-run"),
		`^would create a sink for the parent `+parent+`: POST https://\*\*\*@sentinel\.example\.com/twilio/events, batched$`,
		`^would subscribe it to 7 event types, with every subaccount's events if Twilio allows$`,
		`^would set up a sink and subscription for each active subaccount, if Twilio does not let`)
	if got := writes(w.fake); len(got) != 0 {
		t.Errorf("the dry run changed something: %v", got)
	}

	wantLines(t, w.setup(t),
		`^created sink DG[0-9a-f]{32} for the parent `+parent+`: POST https://\*\*\*@sentinel\.example\.com/twilio/events, batched$`,
		`^created subscription DF[0-9a-f]{32} of sink DG[0-9a-f]{32} for the parent `+parent+`: 7 event types, with every subaccount's events$`)
	checkSink(t, w.fake, parent, dest, true)
	for _, a := range w.subs {
		if n := len(w.fake.Sinks(a.SID)); n != 0 {
			t.Errorf("subaccount %s got %d sinks: the parent's subscription receives its events", a.SID, n)
		}
	}

	// Again: nothing to change, and nothing changed.
	w.fake.Reset()
	if r := w.setup(t); r.code != 0 || strings.TrimSpace(r.stdout) != "nothing to change" {
		t.Errorf("second run:\n%s", r)
	}
	if got := writes(w.fake); len(got) != 0 {
		t.Errorf("the second run changed something: %v", got)
	}
}

// TestEventsSetupRepairs tampers with what -events-setup made, as the
// console could, and checks that a dry run says so and a run repairs it.
func TestEventsSetupRepairs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   twiliofake.Options
		tamper func(t *testing.T, w *pushWorld, sk twiliofake.Sink, sub twiliofake.Subscription)
		want   []string // the lines of the repairing run, after the dry run's
	}{
		{"method", twiliofake.Options{}, func(t *testing.T, w *pushWorld, sk twiliofake.Sink, _ twiliofake.Subscription) {
			if err := w.fake.EditSink(sk.SID, func(s *twiliofake.Sink) { s.Method = "GET" }); err != nil {
				t.Fatal(err)
			}
		}, []string{`^created sink DG`, `^created subscription DF`, `^replaced sink DG[0-9a-f]{32} of the parent AC[0-9a-f]{32} \(method GET, want POST\)$`}},
		{"password", twiliofake.Options{}, func(t *testing.T, w *pushWorld, sk twiliofake.Sink, _ twiliofake.Subscription) {
			if err := w.fake.EditSink(sk.SID, func(s *twiliofake.Sink) { s.Destination = pushDestinationAs(w.url, "old-password-1234") }); err != nil {
				t.Fatal(err)
			}
		}, []string{`^created sink DG`, `^created subscription DF`, `^replaced sink DG[0-9a-f]{32} of the parent AC[0-9a-f]{32} \(other Basic credentials\)$`}},
		{"password, where Twilio hides it", twiliofake.Options{RedactSinkCredentials: true}, func(t *testing.T, w *pushWorld, sk twiliofake.Sink, _ twiliofake.Subscription) {
			// Only the description's fingerprint can tell: a sink made
			// with other credentials has another.
			if err := w.fake.EditSink(sk.SID, func(s *twiliofake.Sink) {
				s.Destination = pushDestinationAs(w.url, "old-password-1234")
				s.Description = "sentinel push ingest (credentials 0123456789abcdef)"
			}); err != nil {
				t.Fatal(err)
			}
		}, []string{`^created sink DG`, `^created subscription DF`, `^replaced sink DG[0-9a-f]{32} of the parent AC[0-9a-f]{32} \(other Basic credentials\)$`}},
		{"batching and types", twiliofake.Options{}, func(t *testing.T, w *pushWorld, sk twiliofake.Sink, sub twiliofake.Subscription) {
			for _, typ := range []string{"com.twilio.messaging.message.failed", "com.twilio.messaging.inbound-message.received"} {
				req, _ := http.NewRequest(http.MethodDelete, "https://events.twilio.com/v1/Subscriptions/"+sub.SID+"/SubscribedEvents/"+typ, nil)
				req.SetBasicAuth(w.fake.ParentSID(), w.fake.ParentToken())
				resp, err := (&http.Client{Transport: w.fake.Transport()}).Do(req)
				if err != nil || resp.StatusCode != http.StatusNoContent {
					t.Fatalf("delete %s: %v %v", typ, resp, err)
				}
				resp.Body.Close()
			}
		}, []string{`^added 2 event types to subscription DF[0-9a-f]{32} of the parent AC[0-9a-f]{32}: com\.twilio\.messaging\.message\.failed, com\.twilio\.messaging\.inbound-message\.received$`}},
		{"a duplicate", twiliofake.Options{}, func(t *testing.T, w *pushWorld, _ twiliofake.Sink, _ twiliofake.Subscription) {
			// A create whose answer was lost, say.
			if _, err := w.fake.AddSink(w.fake.ParentSID(), twiliofake.Sink{Destination: pushDestination(w.url), BatchEvents: true,
				Created: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, []string{`^deleted sink DG[0-9a-f]{32} of the parent AC[0-9a-f]{32}: a duplicate of DG[0-9a-f]{32}$`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newPushWorld(t, tc.opts, "https://sentinel.example.com")
			if r := w.setup(t); r.code != 0 {
				t.Fatalf("setting up:\n%s", r)
			}
			parent := w.fake.ParentSID()
			sk, sub := checkSink(t, w.fake, parent, pushDestination(w.url), true)
			if tc.opts.RedactSinkCredentials {
				// The fingerprint keeps a rerun quiet where Twilio hides the
				// credentials.
				if r := w.setup(t); strings.TrimSpace(r.stdout) != "nothing to change" {
					t.Fatalf("rerun with hidden credentials:\n%s", r)
				}
			}
			tc.tamper(t, w, sk, sub)
			before := w.fake.Sinks("")

			w.fake.Reset()
			dry := w.setup(t, "-dry-run")
			if got := writes(w.fake); len(got) != 0 {
				t.Errorf("the dry run changed something: %v", got)
			}
			if dry.code != 0 || len(dry.lines()) == 0 || !strings.HasPrefix(dry.lines()[0], "would ") {
				t.Errorf("dry run:\n%s", dry)
			}
			if diff := cmp.Diff(before, w.fake.Sinks("")); diff != "" {
				t.Errorf("sinks after the dry run (-before +after):\n%s", diff)
			}

			wantLines(t, w.setup(t), tc.want...)
			checkSink(t, w.fake, parent, pushDestination(w.url), true)
			if r := w.setup(t); strings.TrimSpace(r.stdout) != "nothing to change" {
				t.Errorf("after the repair:\n%s", r)
			}
		})
	}
}

func pushDestinationAs(base, password string) string {
	u, _ := url.Parse(base + "/twilio/events")
	u.User = url.UserPassword(pushUser, password)
	return u.String()
}

// TestEventsSetupPerSubaccount: where the parent's subscription cannot
// receive the subaccounts' events, each active subaccount gets its own sink
// and subscription, made with its own credentials.
func TestEventsSetupPerSubaccount(t *testing.T) {
	t.Parallel()
	for _, mode := range []twiliofake.SubaccountEvents{twiliofake.SubaccountEventsIgnored, twiliofake.SubaccountEventsRefused} {
		t.Run(map[twiliofake.SubaccountEvents]string{twiliofake.SubaccountEventsIgnored: "ignored", twiliofake.SubaccountEventsRefused: "refused"}[mode], func(t *testing.T) {
			t.Parallel()
			w := newPushWorld(t, twiliofake.Options{SubaccountEvents: mode}, "https://sentinel.example.com/base/")
			parent := w.fake.ParentSID()
			active := []string{w.subs[0].SID, w.subs[1].SID}
			sort.Strings(active)
			r := w.setup(t)
			wantLines(t, r,
				`^created sink DG[0-9a-f]{32} for the parent `+parent+`: POST https://\*\*\*@sentinel\.example\.com/base/twilio/events, batched$`,
				`^created subscription DF[0-9a-f]{32} of sink DG[0-9a-f]{32} for the parent `+parent+`: 7 event types, its own events only`,
				`^created sink DG[0-9a-f]{32} for subaccount `+active[0]+`: POST https://\*\*\*@`,
				`^created subscription DF[0-9a-f]{32} of sink DG[0-9a-f]{32} for subaccount `+active[0]+`: 7 event types$`,
				`^created sink DG[0-9a-f]{32} for subaccount `+active[1]+`: POST https://\*\*\*@`,
				`^created subscription DF[0-9a-f]{32} of sink DG[0-9a-f]{32} for subaccount `+active[1]+`: 7 event types$`)
			dest := pushDestination("https://sentinel.example.com/base")
			checkSink(t, w.fake, parent, dest, false)
			// Each subaccount's sink carries credentials of its own: its
			// owner can read them, and they vouch for its events alone.
			for _, sid := range active {
				u, _ := url.Parse("https://sentinel.example.com/base/twilio/events")
				u.User = url.UserPassword(sid, ingest.SubaccountPassword(pushPassword, sid))
				checkSink(t, w.fake, sid, u.String(), false)
			}
			if !strings.Contains(r.stderr, w.subs[2].SID+" is suspended") {
				t.Errorf("no word of the suspended subaccount:\n%s", r)
			}
			for _, a := range w.subs[2:] {
				if n := len(w.fake.Sinks(a.SID)); n != 0 {
					t.Errorf("%s %s got %d sinks", a.Status, a.SID, n)
				}
			}
			// The subaccounts' sinks were made with their own credentials.
			users := map[string]bool{}
			for _, req := range w.fake.Requests() {
				if req.Method == http.MethodPost && req.Path == "/v1/Sinks" {
					users[req.User] = true
				}
			}
			if diff := cmp.Diff(map[string]bool{parent: true, active[0]: true, active[1]: true}, users); diff != "" {
				t.Errorf("who created sinks (-want +got):\n%s", diff)
			}

			w.fake.Reset()
			if r := w.setup(t); strings.TrimSpace(r.stdout) != "nothing to change" {
				t.Errorf("second run:\n%s", r)
			}
			if got := writes(w.fake); len(got) != 0 {
				t.Errorf("the second run changed something: %v", got)
			}

			// A subaccount's sink gone: only it is set up again.
			sk := w.fake.Sinks(active[1])[0]
			if err := w.fake.EditSink(sk.SID, func(s *twiliofake.Sink) { s.BatchEvents = false }); err != nil {
				t.Fatal(err)
			}
			wantLines(t, w.setup(t),
				`^created sink DG[0-9a-f]{32} for subaccount `+active[1],
				`^created subscription DF`,
				`^replaced sink `+sk.SID+` of subaccount `+active[1]+` \(events not batched\)$`)
		})
	}
}

// TestEventsSetupFails checks that a failure exits non-zero with one line
// that names what failed, and shows no secret.
func TestEventsSetupFails(t *testing.T) {
	t.Parallel()
	w := newPushWorld(t, twiliofake.Options{}, "https://sentinel.example.com")
	w.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultServerError, Method: http.MethodPost, Path: "/v1/Sinks"})
	r := w.setup(t)
	if r.code != 1 || !oneLineError(r.stderr) || !strings.Contains(r.stderr, "create sink for "+w.fake.ParentSID()) {
		t.Errorf("want exit 1 and one line naming the sink's creation:\n%s", r)
	}
	if n := len(w.fake.Sinks("")); n != 0 {
		t.Errorf("%d sinks after a failed create: a 5xx must not be retried", n)
	}

	// Without the parent's credentials it is a usage error.
	env := slices.DeleteFunc(slices.Clone(w.environ), func(v string) bool { return strings.HasPrefix(v, "TWILIO_AUTH_TOKEN=") })
	r = runEnv(t, env, w.secrets(), "-twilio-api-url", w.fake.URL(), "-events-setup", "-events-url", w.url)
	if r.code != 2 || !strings.Contains(r.stderr, "TWILIO_AUTH_TOKEN") {
		t.Errorf("without the token:\n%s", r)
	}
}

// TestEventsSetupDelivers sets up push to a real listener and checks that
// what the fake then sends arrives with the credentials -events-setup put
// in the sink and a signature the parent's token validates.
func TestEventsSetupDelivers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	listener := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
	}))
	t.Cleanup(listener.Close)
	w := newPushWorld(t, twiliofake.Options{}, listener.URL)
	if r := w.setup(t); r.code != 0 {
		t.Fatalf("setup:\n%s", r)
	}
	if _, err := w.fake.AppendMessages(twiliofake.Message{AccountSID: w.subs[0].SID, Status: "failed", ErrorCode: 30007}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.fake.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	r := got[0]
	user, pass, ok := r.BasicAuth()
	if !ok || user != pushUser || pass != pushPassword || r.URL.Path != "/twilio/events" {
		t.Errorf("%s with Basic %v, want /twilio/events with SENTINEL_EVENTS_USERNAME and _PASSWORD", r.URL.Path, ok)
	}
	rv := client.NewRequestValidator(w.fake.ParentToken())
	if !rv.ValidateBody(listener.URL+r.URL.RequestURI(), bodies[0], r.Header.Get("X-Twilio-Signature")) {
		t.Error("the signature does not validate with the parent's token")
	}
	if !strings.Contains(string(bodies[0]), `"errorCode":30007`) {
		t.Errorf("body %s, want the failure's error code", bodies[0])
	}
}

// TestEventsSetupFeedsTheDaemon is push from end to end: -events-setup
// points the fake's Event Streams at a daemon's -events-listen (behind a
// proxy, as in production, whose URL is -events-url), and the events the
// fake then delivers (batched, some twice, out of order, signed) suspend an
// offender under a `for: 1` rule with no poll in between.
func TestEventsSetupFeedsTheDaemon(t *testing.T) {
	t.Parallel()
	t.Run("the parent's subscription", func(t *testing.T) {
		t.Parallel()
		feedTheDaemon(t, twiliofake.SubaccountEventsOn)
	})
	t.Run("each subaccount's own", func(t *testing.T) {
		// Each subaccount's sink carries credentials of its own and is
		// signed with its token (?); what a subaccount vouches for alone
		// moves only messages sentinel knows along, so the offender's
		// messages are read by the first poll, and their receipts pushed.
		t.Parallel()
		feedTheDaemon(t, twiliofake.SubaccountEventsIgnored)
	})
}

func feedTheDaemon(t *testing.T, mode twiliofake.SubaccountEvents) {
	w := newWorld(t, twiliofake.Options{SubaccountEvents: mode, Delivery: twiliofake.DeliveryOptions{DuplicateEvery: 5, Reorder: true}})
	_, steady := w.fleet(t, 3, false)
	offender := steady[0]
	// With a sink per subaccount, the offender's messages are sent (and
	// read by the first poll) before their receipts come.
	perSubaccount := mode == twiliofake.SubaccountEventsIgnored
	now := time.Now().UTC()
	var msgs []twiliofake.Message
	for i := range 30 {
		at := now.Add(-time.Duration(30-i) * time.Second)
		msgs = append(msgs, twiliofake.Message{AccountSID: offender, From: "+15550001000", To: fmt.Sprintf("+1202555%04d", i),
			Status: "undelivered", ErrorCode: 30007, DateCreated: at.Add(-time.Second), DateSent: at, DateUpdated: at.Add(2 * time.Second)})
		if perSubaccount {
			msgs[i].Status, msgs[i].ErrorCode, msgs[i].DateUpdated = "sent", 0, at
		}
	}
	var sent []string
	if perSubaccount {
		var err error
		if sent, err = w.fake.AppendMessages(msgs...); err != nil {
			t.Fatal(err)
		}
	}
	policies := t.TempDir()
	if err := os.WriteFile(filepath.Join(policies, "push.yaml"), []byte(forOnePolicy), 0o600); err != nil {
		t.Fatal(err)
	}

	// The proxy in front of the daemon's events listener, which is known
	// only once the daemon runs.
	var target atomic.Pointer[url.URL]
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		if u := target.Load(); u != nil {
			r.SetURL(u)
		}
	}})
	t.Cleanup(proxy.Close)

	env := append(w.environ(), "SENTINEL_EVENTS_USERNAME="+pushUser, "SENTINEL_EVENTS_PASSWORD="+pushPassword)
	secrets := append(w.secrets(), pushPassword, url.PathEscape(pushPassword))
	d := startEnv(t, env, secrets, w.args("-policies", policies, "-messages-schedule", "@every 10m",
		"-events-listen", "127.0.0.1:0", "-events-url", proxy.URL)...)
	addr := d.addr(t)
	events, err := url.Parse("http://" + d.waitFor(t, eventsListenRe, false, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	target.Store(events)
	waitReady(t, d, addr)

	r := runEnv(t, env, secrets, "-twilio-api-url", w.fake.URL(), "-events-setup", "-events-url", proxy.URL)
	if r.code != 0 {
		t.Fatalf("-events-setup:\n%s", r)
	}

	var others []twiliofake.Message
	for _, sid := range steady[1:] {
		others = append(others, twiliofake.Message{AccountSID: sid, Status: "delivered", DateSent: now.Add(-time.Second)})
	}
	start := time.Now()
	if perSubaccount {
		for _, sid := range sent {
			if err := w.fake.UpdateMessage(sid, func(m *twiliofake.Message) {
				m.Status, m.ErrorCode, m.DateUpdated = "undelivered", 30007, time.Now().UTC()
			}); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		others = append(msgs, others...)
	}
	if _, err := w.fake.AppendMessages(others...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the offender's suspension", func() bool {
		return slices.Contains(statusPosts(w.fake, "suspended"), offender)
	})
	t.Logf("suspended %v after the messages", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.fake.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
	// Each offender's message is three events new (queued, sent, its
	// receipt), one (the receipt) when only its status changed.
	wantEvents := 3 * 30
	if perSubaccount {
		wantEvents = 30
	}
	if st := w.fake.DeliveryStats(); st.Failed != 0 || st.Retries != 0 || st.Delivered < wantEvents {
		t.Errorf("deliveries %+v, want every event accepted at once", st)
	}
	if got := statusPosts(w.fake, "suspended"); !slices.Equal(got, []string{offender}) {
		t.Errorf("suspended %v, want only %s", got, offender)
	}
	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`sentinel_events_rejected_total{reason="bad_signature"} 0`,
		`sentinel_events_rejected_total{reason="unauthorized"} 0`,
		`sentinel_events_rejected_total{reason="malformed"} 0`,
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(string(metrics), "sentinel_events_rejected"))
		}
	}
	n := -1
	if m := regexp.MustCompile(`sentinel_events_received_total\{source="event_streams"\} (\d+)\n`).FindSubmatch(metrics); m != nil {
		n, _ = strconv.Atoi(string(m[1]))
	}
	if n < wantEvents {
		t.Errorf("the daemon did not count the pushed events:\n%s", grepLines(string(metrics), "sentinel_events_received"))
	}
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.stderr)
	}
}
