package main

import (
	"strings"
	"testing"
	"time"

	"sentinel/internal/twiliofake"
)

// While Twilio throttles sentinel (429s, its request budget halved), the
// rails hold: a subaccount whose log cannot be read is not judged on what
// was stored before, however bad that looks. Its rule is unknown, the run
// of consecutive evaluations starts again, and it is suspended only after
// enough fresh evaluations once Twilio answers again.
func TestThrottledNoActionOnStaleData(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 5, true)
	args := func(extra ...string) []string {
		return w.args(append([]string{"-once", "-max-staleness", "2s"}, extra...)...)
	}
	once := func(what string) result {
		t.Helper()
		r := w.run(t, args()...)
		if r.code != 0 {
			t.Fatalf("%s: %s", what, r)
		}
		return r
	}
	suspended := func() bool { return statusOf(t, w.fake, offender)[offender] == "suspended" }

	once("first run") // carrier-filtering fires once; it needs two
	if suspended() {
		t.Fatal("suspended after one evaluation (for: 2)")
	}

	// Every request for the offender's log is throttled, and a fifth of
	// everyone else's.
	path := "/2010-04-01/Accounts/" + offender + "/Messages.json"
	all := w.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultTooManyRequests, Path: path})
	some := w.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultTooManyRequests, Rate: 0.2, Seed: 3})
	time.Sleep(3 * time.Second) // what was read is now older than -max-staleness
	r := w.run(t, args()...)
	if suspended() || len(statusPosts(w.fake, "suspended")) > 0 {
		t.Fatalf("suspended on data older than -max-staleness while throttled:\n%s", r)
	}
	if n := w.fake.Stats().ByStatus[429]; n < 6 {
		t.Errorf("%d 429s answered; the test wants the offender's retries throttled", n)
	}
	if !strings.Contains(r.stderr+r.stdout, "not suspending on stale data") && len(w.slack.find(offender, "stale data")) == 0 {
		t.Errorf("nothing told that %s is not judged on stale data:\n%s\nSlack: %q", offender, r, w.slack.Posts())
	}
	for _, rv := range w.statusRows(t, "-max-staleness", "2s")[offender].Rules {
		if rv.Rule == "carrier-filtering" && rv.Result != "unknown" {
			t.Errorf("-status: %s of the unread offender is %s, want unknown", rv.Rule, rv.Result)
		}
	}

	// Twilio answers again: the run of evaluations starts afresh.
	w.fake.RemoveFault(all)
	w.fake.RemoveFault(some)
	once("first fresh run")
	if suspended() {
		t.Fatal("suspended on the first fresh evaluation: the stale one counted")
	}
	once("second fresh run")
	if !suspended() {
		t.Fatal("not suspended after two fresh evaluations")
	}
}
