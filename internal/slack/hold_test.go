package slack

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// posterFunc is a Poster made of a function, for tests that need no HTTP.
type posterFunc func(ctx context.Context, m Message, thread string) (string, error)

func (f posterFunc) Post(ctx context.Context, m Message, thread string) (string, error) {
	return f(ctx, m, thread)
}

// details returns the Detail field of every request's blocks, in order.
func details(t *testing.T, reqs []request) []string {
	t.Helper()
	var out []string
	for _, r := range reqs {
		texts := blockTexts(t, r.Blocks)
		out = append(out, strings.TrimPrefix(texts[len(texts)-2], "*Detail*\n"))
	}
	return out
}

// One 404 from a revoked webhook used to hold the whole outbox for 30
// minutes. Slack refusing sentinel is probed with the oldest alert at least
// every MaxBackoff (5 minutes by default), the others wait behind it
// untouched, and the first accepted probe releases the queue at once.
func TestRefusalProbedWithinMinutes(t *testing.T) {
	f, c := newWebhook(t)
	ok := f.respond
	f.setRespond(func(int, request) (int, http.Header, string) { return http.StatusNotFound, nil, "no_service" })
	clk := newClock()
	d, ob, _, _ := newDispatcher(t, c, nil, clk, Options{})

	var want []string
	notify := func(i int) {
		ev := suspendedEvent()
		ev.Kind, ev.Detail = KindReminder, fmt.Sprintf("event %02d", i)
		want = append(want, ev.Detail)
		mustNotify(t, d, ev)
	}
	notify(0)
	mustFlush(t, d)
	for i := 1; i < 15; i++ {
		clk.Add(5 * time.Minute)
		notify(i)
		mustFlush(t, d)
		if n := len(f.requests()); n != i+1 {
			t.Fatalf("after %d refusals and 5 more minutes: %d requests, want %d (one probe)", i, n, i+1)
		}
	}
	for id := uint64(2); id <= 15; id++ {
		if it := ob.item(t, id); it.Attempts != 0 {
			t.Errorf("alert %d attempted while Slack refused: only the oldest probes", id)
		}
	}
	if got := details(t, f.requests()); !cmp.Equal(got, slicesRepeat("event 00", 15)) {
		t.Errorf("probes = %q, want the oldest alert every time", got)
	}

	f.setRespond(ok)
	clk.Add(5 * time.Minute)
	mustFlush(t, d)
	if diff := cmp.Diff(want, details(t, f.requests()[15:])); diff != "" {
		t.Errorf("delivered after Slack accepted the probe (-want +got):\n%s", diff)
	}
	if n := ob.len(); n != 0 {
		t.Errorf("outbox holds %d after recovery, want 0", n)
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// A message Slack rejects on its own (and as plain text) used to hold every
// later alert for 30 minutes per attempt. It waits minutes at most.
func TestRejectedHoldsQueueMinutes(t *testing.T) {
	f, c := newWebhook(t)
	f.setRespond(func(_ int, r request) (int, http.Header, string) {
		if strings.Contains(r.Text, "unpostable") {
			return http.StatusBadRequest, nil, "invalid_payload"
		}
		return http.StatusOK, nil, "ok"
	})
	clk := newClock()
	d, ob, _, _ := newDispatcher(t, c, nil, clk, Options{})
	bad, good := suspendedEvent(), suspendedEvent()
	bad.Detail, good.Detail, good.Kind = "unpostable", "later alert", KindReminder
	mustNotify(t, d, bad)
	mustFlush(t, d)
	mustNotify(t, d, good)
	clk.Add(5 * time.Minute)
	mustFlush(t, d)
	reqs := f.requests()
	if last := reqs[len(reqs)-1]; !strings.Contains(last.Text, "later alert") {
		t.Errorf("last of %d requests: %q; the later alert still waits 5 minutes after the rejection", len(reqs), last.Text)
	}
	if it := ob.item(t, 1); it.Attempts != 2 {
		t.Errorf("rejected alert attempted %d times, want 2", it.Attempts)
	}
}

// A restarted dispatcher must try the oldest alert as soon as the previous
// process said it may, whether that is the alert's own retry time (a
// rejected message) or the stored hold, not at the next poll 30s later.
func TestRunRetriesWhenDueAfterRestart(t *testing.T) {
	for _, tt := range []struct {
		name  string
		leave func(ob *memOutbox, holds *memHolds, id uint64, at time.Time) error
	}{
		{"alert deferred", func(ob *memOutbox, _ *memHolds, id uint64, at time.Time) error {
			return ob.Retry(id, at, "post webhook: slack answered 400 Bad Request")
		}},
		{"outbox held", func(_ *memOutbox, holds *memHolds, _ uint64, at time.Time) error {
			return holds.SetHold(Hold{Until: at, Cause: CauseUnavailable, Failures: 3, Config: "fp"})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ob, holds := newOutbox(), &memHolds{}
				b, err := Encode(suspendedEvent())
				if err != nil {
					t.Fatal(err)
				}
				// What the previous process left: an alert due again in 5s.
				now := time.Now()
				id, _ := ob.Enqueue(b, now.Add(-time.Minute))
				if err := tt.leave(ob, holds, id, now.Add(5*time.Second)); err != nil {
					t.Fatal(err)
				}
				var posts atomic.Int32
				p := posterFunc(func(context.Context, Message, string) (string, error) {
					posts.Add(1)
					return "", nil
				})
				logger, _ := newLogger()
				d, err := NewDispatcher(ob, p, nil, logger, Options{Holds: holds, Config: "fp"}) // polls every 30s
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- d.Run(ctx) }()

				time.Sleep(4 * time.Second)
				synctest.Wait()
				if n := posts.Load(); n != 0 {
					t.Errorf("%d posts before the alert was due", n)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				if n := posts.Load(); n != 1 {
					t.Errorf("%d posts when the alert became due, want 1", n)
				}
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
			})
		})
	}
}

// A hold earned by one Slack configuration does not outlive it: restarted
// with another webhook, the dispatcher tries the held alerts at once. With
// the same configuration it keeps the hold and shows it from its first pass.
func TestHoldLiftedByNewConfig(t *testing.T) {
	f, c := newWebhook(t)
	ok := f.respond
	f.setRespond(func(int, request) (int, http.Header, string) { return http.StatusNotFound, nil, "no_service" })
	clk := newClock()
	holds := &memHolds{}
	old := Config{WebhookURL: "https://hooks.slack.com" + testWebhookPath}
	opt := Options{Holds: holds, Config: old.Fingerprint(), MinBackoff: 4 * time.Minute, MaxBackoff: 4 * time.Minute}
	d, ob, _, _ := newDispatcher(t, c, nil, clk, opt)
	for range 3 {
		mustNotify(t, d, suspendedEvent())
	}
	mustFlush(t, d)
	h := holds.get()
	if h.Cause != CauseRefused || h.Failures != 1 || h.Config != old.Fingerprint() || !h.Until.After(clk.Now()) {
		t.Fatalf("stored hold = %+v, want a refusal under the old configuration", h)
	}
	noSecret(t, "stored hold", fmt.Sprintf("%+v", h))
	f.setRespond(ok)

	restart := func(cfg Config) (*Dispatcher, *prometheus.Registry, *syncBuffer) {
		t.Helper()
		logger, logs := newLogger()
		reg := prometheus.NewPedanticRegistry()
		o := opt
		o.Now, o.Registerer, o.Config = clk.Now, reg, cfg.Fingerprint()
		d, err := NewDispatcher(ob, c, nil, logger, o)
		if err != nil {
			t.Fatal(err)
		}
		return d, reg, logs
	}

	same, reg, _ := restart(old)
	mustFlush(t, same)
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests after a restart with the same webhook, want 1: the hold stands", n)
	}
	if got := metric(t, reg, "sentinel_slack_hold", CauseRefused); got != 1 {
		t.Errorf("hold{cause=refused} = %v after a restart with the same webhook, want 1", got)
	}

	renewed := Config{WebhookURL: "https://hooks.slack.com/services/T0001/B0003/SECRETNEWKEY"}
	d, reg, logs := restart(renewed)
	mustFlush(t, d)
	if n := len(f.requests()); n != 4 {
		t.Errorf("%d requests after a restart with a new webhook, want 4: the three held alerts at once", n)
	}
	if n := ob.len(); n != 0 {
		t.Errorf("outbox holds %d, want 0", n)
	}
	if h := holds.get(); h != (Hold{}) {
		t.Errorf("stored hold after the new webhook delivered = %+v, want none", h)
	}
	if got := metric(t, reg, "sentinel_slack_hold", CauseRefused); got != 0 {
		t.Errorf("hold{cause=refused} = %v, want 0", got)
	}
	log := logs.String()
	if !strings.Contains(log, `"msg":"slack configuration changed: held alerts are retried at once","cause":"refused","failures":1`) {
		t.Errorf("the lifted hold is not logged:\n%s", log)
	}
	noSecret(t, "log", log)
}

// A stored hold reaching further than any wait the dispatcher sets (the
// clock went back, or an older build wrote it) is cut to that wait.
func TestStoredHoldCapped(t *testing.T) {
	_, c := newWebhook(t)
	clk := newClock()
	holds := &memHolds{h: Hold{Until: clk.Now().Add(48 * time.Hour), Cause: CauseRefused, Failures: 9, Config: "fp"}}
	d, _, _, _ := newDispatcher(t, c, nil, clk, Options{Holds: holds, Config: "fp", MaxBackoff: time.Minute, MaxRetryAfter: 10 * time.Minute})
	mustFlush(t, d)
	if got, want := d.nextWait(), 10*time.Minute; got > want {
		t.Errorf("next attempt in %v, want at most %v", got, want)
	}
}

// The hold is a metric from the start: 0, not "No data".
func TestHoldMetricFromStart(t *testing.T) {
	_, c := newWebhook(t)
	_, _, reg, _ := newDispatcher(t, c, nil, newClock(), Options{})
	for _, cause := range []string{"refused", "unavailable"} {
		if got := metric(t, reg, "sentinel_slack_hold", cause); got != 0 {
			t.Errorf("hold{cause=%q} = %v before any delivery, want 0", cause, got)
		}
	}
}
