package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
)

func mustNotify(t *testing.T, d *Dispatcher, ev Event) {
	t.Helper()
	if err := d.Notify(context.Background(), ev); err != nil {
		t.Fatalf("Notify: %v", err)
	}
}

func mustFlush(t *testing.T, d *Dispatcher) {
	t.Helper()
	if err := d.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func TestWebhookDelivery(t *testing.T) {
	f, c := newWebhook(t)
	d, ob, reg, _ := newDispatcher(t, c, nil, newClock(), Options{})
	mustNotify(t, d, suspendedEvent())
	mustFlush(t, d)

	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("webhook got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Path != testWebhookPath || r.ThreadTS != "" {
		t.Errorf("posted to %s with thread_ts %q", r.Path, r.ThreadTS)
	}
	blocks := strings.Join(blockTexts(t, r.Blocks), "\n")
	for _, want := range []string{
		"Suspended: Acme Corp",
		"`AC0123456789abcdef0123456789abcdef`",
		"*Rule*\n`carrier-filtering`",
		"*Measured*\n30007 rate 12.5% against threshold 5%",
		"*Window*\n2026-11-26 21:40–22:40 UTC (1h)",
		"*Volume*\n25 of 200",
		"`SM00000000000000000000000000000001`",
		"*Done*\nsuspended",
		"*To reinstate*\n`sentinel -reinstate AC0123456789abcdef0123456789abcdef -reason \"...\"`",
		"incident AC0123456789abcdef0123456789abcdef/carrier-filtering opened 2026-11-26 22:40 UTC",
	} {
		if !strings.Contains(blocks, want) {
			t.Errorf("blocks lack %q:\n%s", want, blocks)
		}
	}
	if !strings.HasPrefix(r.Text, "[CRITICAL] Suspended: Acme Corp (AC0123456789abcdef0123456789abcdef)\n") {
		t.Errorf("fallback text = %q", r.Text)
	}
	if n := ob.len(); n != 0 {
		t.Errorf("outbox holds %d items after delivery", n)
	}
	if got := metric(t, reg, "sentinel_slack_messages_total", "sent"); got != 1 {
		t.Errorf("sent = %v, want 1", got)
	}
}

// A webhook cannot thread: each follow-up names its incident instead.
func TestWebhookFollowUpsNameIncident(t *testing.T) {
	f, c := newWebhook(t)
	d, _, _, _ := newDispatcher(t, c, newThreads(), newClock(), Options{})
	firing := suspendedEvent()
	firing.Kind, firing.Action = KindFiring, "alert only"
	reminder := suspendedEvent()
	reminder.Kind = KindReminder
	mustNotify(t, d, firing)
	mustNotify(t, d, reminder)
	mustFlush(t, d)
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	for _, r := range reqs {
		if r.ThreadTS != "" {
			t.Errorf("webhook message has thread_ts %q", r.ThreadTS)
		}
		if !strings.Contains(r.Text, "[incident AC0123456789abcdef0123456789abcdef/carrier-filtering opened 2026-11-26 22:40 UTC]") {
			t.Errorf("message does not name its incident: %q", r.Text)
		}
	}
}

func TestBotThreads(t *testing.T) {
	f, c := newBot(t)
	threads := newThreads()
	d, _, _, _ := newDispatcher(t, c, threads, newClock(), Options{})

	ev := func(kind string, opened time.Time) Event {
		e := suspendedEvent()
		e.Kind, e.Opened, e.Detail = kind, opened, kind+" "+opened.Format("15:04")
		return e
	}
	other := suspendedEvent()
	other.Kind, other.Rule, other.Detail = KindFiring, "opt-out", "other incident"
	later := t0.Add(10 * time.Hour)
	// All queued before the first delivery: follow-ups find the thread at
	// delivery time.
	for _, e := range []Event{
		ev(KindFiring, t0), ev(KindReminder, t0), other, ev(KindSuspended, t0), ev(KindResolved, t0),
		ev(KindFiring, later), ev(KindReminder, later),
	} {
		mustNotify(t, d, e)
	}
	mustFlush(t, d)

	type post struct {
		Detail, Channel, ThreadTS string
		Broadcast                 bool
	}
	var got []post
	for _, r := range f.requests() {
		if r.Token != testToken {
			t.Errorf("request token mismatch")
		}
		texts := blockTexts(t, r.Blocks)
		got = append(got, post{Detail: strings.TrimPrefix(texts[len(texts)-2], "*Detail*\n"), Channel: r.Channel, ThreadTS: r.ThreadTS, Broadcast: r.Broadcast})
	}
	want := []post{
		{"firing 22:40", "C0COMPLIANCE", "", false},
		{"reminder 22:40", "C0COMPLIANCE", "1700000000.000001", false},
		{"other incident", "C0COMPLIANCE", "", false},
		{"suspended 22:40", "C0COMPLIANCE", "1700000000.000001", true},
		{"resolved 22:40", "C0COMPLIANCE", "1700000000.000001", false},
		// The rule fires again later: a new incident, a new thread.
		{"firing 08:40", "C0COMPLIANCE", "", false},
		{"reminder 08:40", "C0COMPLIANCE", "1700000000.000006", false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("posts (-want +got):\n%s", diff)
	}
	if ts, _ := threads.Thread(other.Subaccount, "opt-out", t0); ts != "1700000000.000003" {
		t.Errorf("thread of the other incident = %q", ts)
	}
}

// orderThreads records how many alerts the outbox held each time a thread
// was recorded.
type orderThreads struct {
	*memThreads
	ob   *memOutbox
	held []int
}

func (th *orderThreads) SetThread(sub, rule string, opened time.Time, ts string) error {
	th.held = append(th.held, th.ob.len())
	return th.memThreads.SetThread(sub, rule, opened, ts)
}

// Between Slack's answer and the outbox forgetting the alert, a crash means
// a duplicate: nothing else is written in between. Recording the thread
// comes after; a crash there costs a thread, not a duplicate.
func TestDeliveredBeforeThreadRecorded(t *testing.T) {
	_, c := newBot(t)
	ob := newOutbox()
	th := &orderThreads{memThreads: newThreads(), ob: ob}
	logger, _ := newLogger()
	d, err := NewDispatcher(ob, c, th, logger, Options{Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	mustNotify(t, d, suspendedEvent())
	mustFlush(t, d)
	if diff := cmp.Diff([]int{0}, th.held); diff != "" {
		t.Errorf("outbox length when the thread was recorded (-want +got):\n%s", diff)
	}
	ev := suspendedEvent()
	if ts, _ := th.Thread(ev.Subaccount, ev.Rule, ev.Opened); ts != "1700000000.000001" {
		t.Errorf("thread = %q, want the opener's ts", ts)
	}
}

func TestRateLimitedRetryAfter(t *testing.T) {
	for _, mode := range []string{"webhook", "bot"} {
		t.Run(mode, func(t *testing.T) {
			f, c := newWebhook(t)
			if mode == "bot" {
				f, c = newBot(t)
			}
			ok := f.respond
			f.setRespond(func(n int, r request) (int, http.Header, string) {
				if n == 1 {
					return http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, "rate_limited"
				}
				return ok(n, r)
			})
			clk := newClock()
			holds := &memHolds{}
			d, ob, reg, _ := newDispatcher(t, c, newThreads(), clk, Options{Holds: holds})
			first, second := suspendedEvent(), suspendedEvent()
			first.Detail, second.Detail, second.Kind = "first", "second", KindReminder
			mustNotify(t, d, first)
			mustNotify(t, d, second)

			mustFlush(t, d)
			it := ob.item(t, 1)
			if want := clk.Now().Add(7 * time.Second); !holds.get().Until.Equal(want) || it.Attempts != 1 {
				t.Errorf("after 429: held until %v, attempts %d; want %v and 1", holds.get().Until, it.Attempts, want)
			}
			if !strings.Contains(it.LastError, "retry after 7s") {
				t.Errorf("LastError = %q", it.LastError)
			}
			if it := ob.item(t, 2); it.Attempts != 0 {
				t.Errorf("the second alert was attempted while rate limited (%d attempts)", it.Attempts)
			}
			clk.Add(6 * time.Second)
			mustFlush(t, d)
			if n := len(f.requests()); n != 1 {
				t.Fatalf("%d requests before Retry-After passed, want 1", n)
			}
			clk.Add(time.Second)
			mustFlush(t, d)
			reqs := f.requests()
			if len(reqs) != 3 || ob.len() != 0 {
				t.Fatalf("%d requests, %d left in outbox; want 3 and 0", len(reqs), ob.len())
			}
			if !strings.Contains(reqs[1].Text, "] Suspended") || !strings.Contains(reqs[2].Text, "] Still open") {
				t.Errorf("delivered out of order: %q then %q", reqs[1].Text, reqs[2].Text)
			}
			if mode == "bot" && reqs[2].ThreadTS != "1700000000.000002" {
				t.Errorf("follow-up thread_ts = %q, want the retried opener's ts", reqs[2].ThreadTS)
			}
			for name, want := range map[string]float64{"sent": 2, "failed": 1} {
				if got := metric(t, reg, "sentinel_slack_messages_total", name); got != want {
					t.Errorf("messages{%s} = %v, want %v", name, got, want)
				}
			}
			if got := metric(t, reg, "sentinel_slack_retries_total", ""); got != 1 {
				t.Errorf("retries = %v, want 1", got)
			}
		})
	}
}

// Slack unavailable or refusing sentinel: attempt n waits MinBackoff*2^(n-1),
// capped, jittered over its upper half.
func TestBackoffWithoutRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		cause  string
	}{
		{"rate limited", http.StatusTooManyRequests, CauseUnavailable},
		{"webhook revoked", http.StatusNotFound, CauseRefused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newWebhook(t)
			f.setRespond(func(int, request) (int, http.Header, string) { return tt.status, nil, "" })
			clk := newClock()
			holds := &memHolds{}
			d, ob, _, _ := newDispatcher(t, c, nil, clk, Options{MinBackoff: 2 * time.Second, MaxBackoff: 10 * time.Second, Holds: holds, Config: "fp"})
			mustNotify(t, d, suspendedEvent())
			for i, ceiling := range []time.Duration{2, 4, 8, 10, 10} {
				ceiling *= time.Second
				start := clk.Now()
				mustFlush(t, d)
				h := holds.get()
				wait := h.Until.Sub(start)
				if it := ob.item(t, 1); it.Attempts != i+1 || h.Failures != i+1 || wait < ceiling/2 || wait > ceiling {
					t.Errorf("attempt %d (hold says %d): waits %v, want within [%v, %v]", it.Attempts, h.Failures, wait, ceiling/2, ceiling)
				}
				if h.Cause != tt.cause || h.Config != "fp" {
					t.Errorf("hold = %+v, want cause %s under config fp", h, tt.cause)
				}
				clk.Add(wait - time.Nanosecond)
				mustFlush(t, d)
				if n := len(f.requests()); n != i+1 {
					t.Fatalf("%d requests before the hold ended, want %d", n, i+1)
				}
				clk.Add(time.Nanosecond)
			}
		})
	}
}

// TestOutageNothingLost: twenty alerts raised while Slack is unreachable are
// all delivered once it is back, exactly once each and in order.
func TestOutageNothingLost(t *testing.T) {
	tests := []struct {
		name   string
		bot    bool
		outage func(f *fakeSlack, ok func(int, request) (int, http.Header, string), down bool)
	}{
		{"webhook 500", false, serverErrors},
		{"webhook connection refused", false, refused},
		{"bot 503", true, serverErrors},
		{"bot connection refused", true, refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newWebhook(t)
			if tt.bot {
				f, c = newBot(t)
			}
			ok := f.respond
			clk := newClock()
			opt := Options{MinBackoff: time.Second, MaxBackoff: time.Minute}
			d, ob, reg, logs := newDispatcher(t, c, newThreads(), clk, opt)

			tt.outage(f, ok, true)
			var want []string
			for i := range 20 {
				ev := suspendedEvent()
				ev.Kind, ev.Detail = KindReminder, fmt.Sprintf("event %02d", i)
				want = append(want, ev.Detail)
				mustNotify(t, d, ev)
				if i%4 == 0 {
					mustFlush(t, d)
					clk.Add(opt.MaxBackoff)
				}
			}
			if n := ob.len(); n != 20 {
				t.Fatalf("outbox holds %d during the outage, want 20", n)
			}
			if got := metric(t, reg, "sentinel_slack_outbox_depth", ""); got != 20 {
				t.Errorf("outbox depth = %v, want 20", got)
			}
			if it := ob.item(t, 1); it.Attempts != 5 {
				t.Errorf("first alert attempted %d times, want 5", it.Attempts)
			}
			for id := uint64(2); id <= 20; id++ {
				if it := ob.item(t, id); it.Attempts != 0 {
					t.Errorf("alert %d attempted during the outage", id)
				}
			}
			noSecret(t, "LastError", ob.item(t, 1).LastError)

			tt.outage(f, ok, false)
			for i := 0; i < 10 && ob.len() > 0; i++ {
				clk.Add(opt.MaxBackoff)
				mustFlush(t, d)
			}
			var got []string
			for _, r := range f.requests() {
				texts := blockTexts(t, r.Blocks)
				got = append(got, strings.TrimPrefix(texts[len(texts)-2], "*Detail*\n"))
			}
			if tt.name == "webhook 500" || tt.name == "bot 503" {
				got = got[5:] // the five refused attempts of the first alert reached the server
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("delivered (-want +got):\n%s", diff)
			}
			if n := ob.len(); n != 0 {
				t.Errorf("outbox holds %d after recovery", n)
			}
			if got := metric(t, reg, "sentinel_slack_messages_total", "dead"); got != 0 {
				t.Errorf("dead = %v during a mere outage", got)
			}
			if got := metric(t, reg, "sentinel_slack_outbox_depth", ""); got != 0 {
				t.Errorf("outbox depth = %v after recovery", got)
			}
			log := logs.String()
			noSecret(t, "log", log)
			if n := strings.Count(log, "slack unavailable, alerts kept in the outbox"); n < 1 || n > 3 {
				t.Errorf("outage logged %d times over 5 failures in 5 minutes, want 1 to 3 (rate limited):\n%s", n, log)
			}
			if !strings.Contains(log, `"msg":"slack delivery recovered","failures":5`) {
				t.Errorf("recovery not logged:\n%s", log)
			}
		})
	}
}

func serverErrors(f *fakeSlack, ok func(int, request) (int, http.Header, string), down bool) {
	if down {
		f.setRespond(func(int, request) (int, http.Header, string) {
			return http.StatusInternalServerError, nil, "<html>oops</html>"
		})
		return
	}
	f.setRespond(ok)
}

func refused(f *fakeSlack, _ func(int, request) (int, http.Header, string), down bool) {
	f.setDown(down)
}

// Slack refusing sentinel (a revoked token) holds every alert, says so at
// error level (at most every ten minutes), shows in sentinel_slack_hold,
// and never dead-letters.
func TestConfigErrorHoldsAlerts(t *testing.T) {
	f, c := newBot(t)
	f.setRespond(slackError("invalid_auth"))
	clk := newClock()
	d, ob, reg, logs := newDispatcher(t, c, newThreads(), clk, Options{MaxAttempts: 3})
	mustNotify(t, d, suspendedEvent())
	mustNotify(t, d, suspendedEvent())
	for range 12 { // an hour
		mustFlush(t, d)
		mustFlush(t, d) // held: no request
		clk.Add(5 * time.Minute)
	}
	if n := len(f.requests()); n != 12 {
		t.Errorf("%d requests, want 12: one per MaxBackoff", n)
	}
	if it := ob.item(t, 1); it.Attempts != 12 || it.LastError != "post message: slack error invalid_auth" {
		t.Errorf("first alert: %d attempts, last error %q", it.Attempts, it.LastError)
	}
	if n := ob.len(); n != 2 {
		t.Errorf("outbox holds %d, want 2", n)
	}
	if got := metric(t, reg, "sentinel_slack_messages_total", "dead"); got != 0 {
		t.Errorf("dead = %v: a configuration error dead-lettered an alert", got)
	}
	for cause, want := range map[string]float64{CauseRefused: 1, CauseUnavailable: 0} {
		if got := metric(t, reg, "sentinel_slack_hold", cause); got != want {
			t.Errorf("hold{cause=%q} = %v while Slack refuses, want %v", cause, got, want)
		}
	}
	log := logs.String()
	if n := strings.Count(log, `"level":"ERROR","msg":"slack refuses sentinel's alerts: check the token, channel or webhook"`); n != 6 {
		t.Errorf("configuration error logged %d times at error level in an hour, want 6 (every ten minutes):\n%s", n, log)
	}
	noSecret(t, "log", log)
	var exposition bytes.Buffer
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		_ = expfmt.NewEncoder(&exposition, expfmt.NewFormat(expfmt.TypeTextPlain)).Encode(mf)
	}
	noSecret(t, "metrics", exposition.String())

	f.setRespond(func(n int, r request) (int, http.Header, string) {
		return http.StatusOK, nil, fmt.Sprintf(`{"ok":true,"ts":"1.%d"}`, n)
	})
	mustFlush(t, d)
	if n := ob.len(); n != 0 {
		t.Errorf("outbox holds %d after the token was fixed", n)
	}
	if got := metric(t, reg, "sentinel_slack_hold", CauseRefused); got != 0 {
		t.Errorf("hold{cause=refused} = %v after Slack accepted an alert, want 0", got)
	}
}

// A message Slack rejects goes out as plain text rather than not at all.
func TestRejectedSentAsText(t *testing.T) {
	f, c := newBot(t)
	ok := f.respond
	f.setRespond(func(n int, r request) (int, http.Header, string) {
		if r.Blocks != "" {
			return slackError("invalid_blocks")(n, r)
		}
		return ok(n, r)
	})
	threads := newThreads()
	d, ob, reg, _ := newDispatcher(t, c, threads, newClock(), Options{})
	mustNotify(t, d, suspendedEvent())
	mustFlush(t, d)
	reqs := f.requests()
	if len(reqs) != 2 || reqs[1].Blocks != "" || !strings.HasPrefix(reqs[1].Text, "[CRITICAL] Suspended: Acme Corp") {
		t.Fatalf("requests = %+v, want blocks then plain text", reqs)
	}
	if ob.len() != 0 || metric(t, reg, "sentinel_slack_messages_total", "sent") != 1 {
		t.Error("the plain-text fallback was not counted as delivered")
	}
	ev := suspendedEvent()
	if ts, _ := threads.Thread(ev.Subaccount, ev.Rule, ev.Opened); ts != "1700000000.000002" {
		t.Errorf("thread = %q, want the plain-text message's ts", ts)
	}

	// A follow-up sent as plain text goes to the channel, and the incident
	// keeps its thread.
	ev.Kind = KindReminder
	mustNotify(t, d, ev)
	mustFlush(t, d)
	reqs = f.requests()
	if len(reqs) != 4 || reqs[2].ThreadTS != "1700000000.000002" || reqs[3].ThreadTS != "" || reqs[3].Blocks != "" {
		t.Errorf("follow-up requests = %+v, want blocks in the thread, then plain text in the channel", reqs[2:])
	}
	if ts, _ := threads.Thread(ev.Subaccount, ev.Rule, ev.Opened); ts != "1700000000.000002" {
		t.Errorf("thread = %q after a plain-text follow-up, want it unchanged", ts)
	}
}

func TestRejectedDeadLettered(t *testing.T) {
	f, c := newWebhook(t)
	f.setRespond(func(int, request) (int, http.Header, string) { return http.StatusBadRequest, nil, "invalid_payload" })
	clk := newClock()
	d, ob, reg, logs := newDispatcher(t, c, nil, clk, Options{MaxAttempts: 3})
	mustNotify(t, d, suspendedEvent())
	for range 2 {
		mustFlush(t, d)
		if ob.len() != 1 {
			t.Fatal("dead-lettered before MaxAttempts")
		}
		clk.Add(5 * time.Minute)
	}
	mustFlush(t, d)
	if n := ob.len(); n != 0 {
		t.Fatalf("outbox holds %d after MaxAttempts rejections", n)
	}
	if got := metric(t, reg, "sentinel_slack_messages_total", "dead"); got != 1 {
		t.Errorf("dead = %v, want 1", got)
	}
	log := logs.String()
	if !strings.Contains(log, `"level":"ERROR","msg":"slack alert dead-lettered after repeated rejection","subaccount":"AC0123456789abcdef0123456789abcdef","rule":"carrier-filtering"`) ||
		!strings.Contains(log, `sentinel -reinstate AC0123456789abcdef0123456789abcdef`) {
		t.Errorf("dead letter not logged at error level with its text:\n%s", log)
	}
	noSecret(t, "log", log)
}

// A corrupt outbox item is dead-lettered with a clear error; it neither
// crashes the dispatcher nor blocks the alerts behind it.
func TestCorruptPayloadDeadLettered(t *testing.T) {
	f, c := newWebhook(t)
	d, ob, reg, logs := newDispatcher(t, c, nil, newClock(), Options{})
	for _, p := range []string{`{"v":1,"event":{"kind":"firi`, `{"v":9,"event":{"kind":"firing"}}`, "\x00\xff"} {
		if _, err := ob.Enqueue([]byte(p), t0); err != nil {
			t.Fatal(err)
		}
	}
	mustNotify(t, d, suspendedEvent())
	mustFlush(t, d)
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests, want 1: the good alert", n)
	}
	if n := ob.len(); n != 0 {
		t.Errorf("outbox holds %d", n)
	}
	if got := metric(t, reg, "sentinel_slack_messages_total", "dead"); got != 3 {
		t.Errorf("dead = %v, want 3", got)
	}
	log := logs.String()
	for _, want := range []string{
		`"level":"ERROR","msg":"slack alert unreadable, dead-lettered","id":1`,
		`"err":"bad outbox payload: unexpected end of JSON input"`,
		`"err":"bad outbox payload: version 9, want 1"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// Shutting down mid-post is not Slack's fault: the alert stays due with no
// attempt counted.
func TestFlushCanceled(t *testing.T) {
	_, c := newWebhook(t)
	d, ob, reg, _ := newDispatcher(t, c, nil, newClock(), Options{})
	mustNotify(t, d, suspendedEvent())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if it := ob.item(t, 1); it.Attempts != 0 || metric(t, reg, "sentinel_slack_messages_total", "failed") != 0 {
		t.Errorf("canceled flush counted an attempt: %+v", it)
	}
}

// signalOutbox reports each Delivered.
type signalOutbox struct {
	*memOutbox
	delivered chan uint64
}

func (o signalOutbox) Delivered(id uint64) error {
	err := o.memOutbox.Delivered(id)
	o.delivered <- id
	return err
}

// Run delivers at once on Notify, long before its poll interval.
func TestRunWakesOnNotify(t *testing.T) {
	f, c := newWebhook(t)
	ob := signalOutbox{newOutbox(), make(chan uint64, 10)}
	logger, _ := newLogger()
	d, err := NewDispatcher(ob, c, nil, logger, Options{Poll: time.Hour, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	for i := range 3 {
		ev := suspendedEvent()
		ev.Detail = fmt.Sprintf("event %d", i)
		mustNotify(t, d, ev)
		select {
		case id := <-ob.delivered:
			if want := uint64(i + 1); id != want {
				t.Errorf("delivered item %d, want %d", id, want)
			}
		case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
			t.Fatalf("event %d not delivered: Notify did not wake Run", i)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil on cancel", err)
	}
	reqs := f.requests()
	if len(reqs) != 3 || !strings.Contains(reqs[2].Text, "event 2") {
		t.Errorf("requests = %+v", reqs)
	}
}

func TestNotifyRefusesInvalid(t *testing.T) {
	_, c := newWebhook(t)
	d, ob, _, _ := newDispatcher(t, c, nil, newClock(), Options{})
	err := d.Notify(context.Background(), Event{Kind: "exploded"})
	if err == nil || err.Error() != `notify exploded: event kind "exploded" unknown` {
		t.Errorf("Notify = %v", err)
	}
	if ob.len() != 0 {
		t.Error("an invalid event was queued")
	}
}

type failingOutbox struct{ *memOutbox }

func (failingOutbox) Due(time.Time, int) ([]OutboxItem, error) {
	return nil, errors.New("disk on fire")
}

func TestOutboxErrorReturned(t *testing.T) {
	_, c := newWebhook(t)
	logger, _ := newLogger()
	d, err := NewDispatcher(failingOutbox{newOutbox()}, c, nil, logger, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(context.Background()); err == nil || err.Error() != "due: disk on fire" {
		t.Errorf("Flush = %v, want due: disk on fire", err)
	}
}

func TestNewDispatcherOptions(t *testing.T) {
	logger, _ := newLogger()
	for name, opt := range map[string]Options{
		"negative poll":        {Poll: -1},
		"max below min":        {MinBackoff: time.Minute, MaxBackoff: time.Second},
		"negative batch":       {Batch: -1},
		"negative attempts":    {MaxAttempts: -2},
		"negative retry-after": {MaxRetryAfter: -time.Second},
	} {
		if _, err := NewDispatcher(newOutbox(), &Client{}, nil, logger, opt); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := NewDispatcher(nil, &Client{}, nil, logger, Options{}); err == nil {
		t.Error("nil outbox accepted")
	}
	reg := prometheus.NewPedanticRegistry()
	if _, err := NewDispatcher(newOutbox(), &Client{}, nil, logger, Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDispatcher(newOutbox(), &Client{}, nil, logger, Options{Registerer: reg}); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) != 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if diff := cmp.Diff([]string{"sentinel_slack_hold", "sentinel_slack_messages_total", "sentinel_slack_outbox_depth", "sentinel_slack_retries_total"}, names); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

// A restarted process with the same Slack configuration keeps the previous
// one's hold: a new alert waits behind an older one whose retry is not yet
// due, and the hold still ends within MaxBackoff.
func TestOrderAcrossRestart(t *testing.T) {
	f, c := newWebhook(t)
	ok := f.respond
	clk := newClock()
	holds := &memHolds{}
	opt := Options{MinBackoff: time.Minute, MaxBackoff: time.Minute, Holds: holds, Config: "same"}
	d, ob, _, _ := newDispatcher(t, c, newThreads(), clk, opt)
	f.setRespond(func(int, request) (int, http.Header, string) { return http.StatusServiceUnavailable, nil, "down" })
	first := suspendedEvent()
	first.Detail = "first"
	mustNotify(t, d, first)
	mustFlush(t, d)
	if n := len(f.requests()); n != 1 {
		t.Fatalf("%d requests during the outage, want 1", n)
	}

	f.setRespond(ok)
	logger, _ := newLogger()
	opt.Now = clk.Now
	restarted, err := NewDispatcher(ob, c, newThreads(), logger, opt)
	if err != nil {
		t.Fatal(err)
	}
	second := suspendedEvent()
	second.Detail = "second"
	mustNotify(t, restarted, second)
	mustFlush(t, restarted)
	if n := len(f.requests()); n != 1 {
		t.Fatalf("the new alert overtook the one waiting for its retry: %d requests, want 1", n)
	}

	clk.Add(2 * time.Minute)
	mustFlush(t, restarted)
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests after the retry was due, want 3", len(reqs))
	}
	if !strings.Contains(reqs[1].Text, "first") || !strings.Contains(reqs[2].Text, "second") {
		t.Errorf("delivered out of order:\n%s\n---\n%s", reqs[1].Text, reqs[2].Text)
	}
	if n := ob.len(); n != 0 {
		t.Errorf("outbox holds %d, want 0", n)
	}
}
