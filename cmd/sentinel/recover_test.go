package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/store"
	"sentinel/internal/twiliofake"
)

// TestRecoverBeforeServing kills the daemon while its suspension of an
// offender is in flight (Twilio applied it; sentinel never heard back),
// restarts it, and races a person's -reinstate against the restart. The
// suspension must be recorded as what it was, sentinel's own and done, and
// the reinstatement must follow it; never "abandoned", never "suspended
// outside sentinel".
func TestRecoverBeforeServing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, steady := w.fleet(t, 5, true)
	suspendPath := "/2010-04-01/Accounts/" + offender + ".json"
	slowPath := "/2010-04-01/Accounts/" + steady[2] + "/Messages.json"

	var (
		mu       sync.Mutex
		hold     = true // hold the suspension's response
		posted   = make(chan struct{})
		release  = make(chan struct{})
		slowOnce sync.Once
	)
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := hold && r.Method == http.MethodPost && r.URL.Path == suspendPath
		if h {
			hold = false
		}
		mu.Unlock()
		if !h {
			if r.URL.Path == slowPath && r.Method == http.MethodGet {
				// After the restart, the first cycle reads one log slowly:
				// a wide window for the CLI to race the cycle's judging.
				slowOnce.Do(func() {
					w.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDelay, Path: slowPath, Delay: 3 * time.Second, Times: 1})
				})
			}
			w.fake.ServeHTTP(rw, r)
			return
		}
		// Twilio applies the suspension; the answer never reaches sentinel.
		w.fake.ServeHTTP(httptest.NewRecorder(), r)
		close(posted)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(front.Close)
	w.url = front.URL

	d := w.start(t, daemonArgs(w)...)
	select {
	case <-posted:
	case <-time.After(60 * time.Second):
		t.Fatalf("no suspension was sent:\n%s", d.stderr)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.wait(t, 10*time.Second)
	close(release)
	if got := statusOf(t, w.fake, offender)[offender]; got != "suspended" {
		t.Fatalf("Twilio shows the offender %s, want suspended (the test's premise)", got)
	}
	st, err := store.Open(w.db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	open, err := st.OpenIntents()
	st.Close()
	if err != nil || len(open) != 1 || open[0].Action != actions.ActionSuspend {
		t.Fatalf("open intents after SIGKILL = %+v, %v; want the suspension (the test's premise)", open, err)
	}

	// Restart and race the person's reinstatement against it.
	d2 := w.start(t, daemonArgs(w)...)
	var r result
	deadline := time.Now().Add(60 * time.Second)
	for {
		r = w.run(t, w.args("-reinstate", offender, "-reason", "reviewed the list", "-by", "ana")...)
		if r.code == 0 || time.Now().After(deadline) {
			break
		}
		// Until the daemon serves, the CLI finds the database locked
		// or the daemon not yet answering; anything else is an answer.
		if !strings.Contains(r.stderr, "locked") && !strings.Contains(r.stderr, "no daemon") &&
			!strings.Contains(r.stderr, "connect") && !strings.Contains(r.stderr, "not suspended") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.code != 0 {
		t.Fatalf("-reinstate after the restart: %s\ndaemon:\n%s", r, d2.stderr)
	}
	if code := d2.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d:\n%s", code, d2.stderr)
	}

	st, err = store.Open(w.db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Audit(offender, 0)
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		if rec.Kind == actions.KindOutcome || rec.Kind == actions.KindTransition {
			trail = append(trail, rec.Kind+" "+rec.Action+" "+rec.Outcome+" "+rec.Actor+" "+rec.Reason)
		}
		switch {
		case rec.Outcome == actions.OutcomeAbandoned:
			t.Errorf("the suspension that took effect was recorded abandoned: %+v", rec)
		case strings.Contains(rec.Reason, "suspended outside sentinel"):
			t.Errorf("sentinel's own suspension recorded as someone else's: %+v", rec)
		}
	}
	b, err := st.Breaker(offender)
	if err != nil || b.State != actions.StateProbation || b.Offences != 1 {
		t.Errorf("breaker = %+v, %v; want probation after one offence\naudit:\n%s", b, err, strings.Join(trail, "\n"))
	}
	if posts := w.slack.find(offender, "outside sentinel"); len(posts) != 0 {
		t.Errorf("Slack was told of a suspension outside sentinel:\n%s", strings.Join(posts, "\n"))
	}
}
