package policy

import (
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/traffic"
)

const (
	sidA = "AC0123456789abcdef0123456789abcdef"
	sidB = "ACfedcba9876543210fedcba9876543210"
)

// mustSet parses one policy document into a Set.
func mustSet(tb testing.TB, doc string) *Set {
	tb.Helper()
	f, err := Parse("test.yaml", []byte(doc))
	if err != nil {
		tb.Fatalf("parse:\n%v", err)
	}
	s, err := NewSet(f)
	if err != nil {
		tb.Fatalf("new set:\n%v", err)
	}
	return s
}

// mustBuckets builds buckets from series relative to start.
func mustBuckets(tb testing.TB, start time.Time, ss ...series) []traffic.Bucket {
	tb.Helper()
	b, err := buildBuckets(start, ss)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func decisionFor(tb testing.TB, ds []Decision, rule string) Decision {
	tb.Helper()
	for _, d := range ds {
		if d.Rule == rule {
			return d
		}
	}
	tb.Fatalf("no decision for rule %q", rule)
	return Decision{}
}

const filteringDoc = `
lists:
  filtering: [30007]
rules:
  - name: filtering
    description: Filtered.
    signal: error_rate
    codes: $filtering
    window: 1h
    min_volume: 100
    trip: 5%
    resolve: 2.5%
    for: 2
    severity: critical
    action: suspend
`

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func hours(h float64) offset { return offset(time.Duration(h * float64(time.Hour))) }

// TestEvaluateSequence walks one account through pending, firing,
// hysteresis, resolution and the states in between.
func TestEvaluateSequence(t *testing.T) {
	set := mustSet(t, filteringDoc)
	// 100 finished per bucket; the filtered count changes by hour.
	b := mustBuckets(t, t0,
		series{From: hours(-1), To: hours(1), Finished: 100, Errors: map[int]int{30007: 6}}, // 6%
		series{From: hours(1), To: hours(2), Finished: 100, Errors: map[int]int{30007: 3}},  // 3%
		series{From: hours(2), To: hours(3), Finished: 100, Errors: map[int]int{30007: 2}},  // 2%
		series{From: hours(3), To: hours(4), Finished: 5},                                   // low volume
	)
	steps := []struct {
		at          time.Duration
		result      Result
		fired       bool
		consecutive int
		firing      bool
	}{
		{0, Pending, false, 1, false},
		{5 * time.Minute, Firing, true, 2, true},
		{10 * time.Minute, Firing, false, 3, true},
		{2 * time.Hour, Firing, false, 0, true},        // 3%: between resolve and trip
		{3 * time.Hour, Resolved, false, 0, false},     // 2%: below resolve
		{4 * time.Hour, Insufficient, false, 0, false}, // 60 finished
	}
	var state map[string]State
	for _, st := range steps {
		now := t0.Add(st.at)
		subj := Subject{Account: sidA, Buckets: b, Coverage: traffic.Coverage{From: t0.Add(-48 * time.Hour), Until: now}}
		var ds []Decision
		ds, state = set.Evaluate(subj, state, now)
		d := decisionFor(t, ds, "filtering")
		got := state["filtering"]
		if d.Result != st.result || d.Fired != st.fired || got.Consecutive != st.consecutive || got.Firing != st.firing {
			t.Errorf("at +%v: got result %s fired %t consecutive %d firing %t, want %s %t %d %t (value %g)",
				st.at, d.Result, d.Fired, got.Consecutive, got.Firing, st.result, st.fired, st.consecutive, st.firing, d.Evidence.Value)
		}
		if got.LastEval != now {
			t.Errorf("at +%v: LastEval = %v, want %v", st.at, got.LastEval, now)
		}
		if st.at == 5*time.Minute && got.Since != now {
			t.Errorf("at +%v: Since = %v, want %v", st.at, got.Since, now)
		}
	}
}

// Between scheduled evaluations (every minute here) evaluations on pushed
// evidence may trip a rule at once, but `for` counts at most one
// evaluation per scheduled interval, whichever comes first. The caller
// gives a scheduled evaluation the time of the one before it, and one on
// pushed evidence the earlier of the last scheduled evaluation and a whole
// interval ago.
func TestEvaluateAdvancesOncePerInterval(t *testing.T) {
	set := mustSet(t, filteringDoc) // for: 2
	b := mustBuckets(t, t0, series{From: hours(-1), To: hours(1), Finished: 100, Errors: map[int]int{30007: 6}})
	const s, noAfter = time.Second, time.Duration(-1)
	type step struct {
		at          time.Duration
		after       time.Duration // AdvanceAfter, from t0; none if noAfter
		result      Result
		consecutive int
	}
	run := func(name string, steps []step) {
		var state map[string]State
		for _, st := range steps {
			now := t0.Add(st.at)
			subj := Subject{Account: sidA, Buckets: b, Coverage: traffic.Coverage{From: t0.Add(-48 * time.Hour), Until: now}}
			if st.after != noAfter {
				subj.AdvanceAfter = t0.Add(st.after)
			}
			var ds []Decision
			ds, state = set.Evaluate(subj, state, now)
			if d, got := decisionFor(t, ds, "filtering"), state["filtering"]; d.Result != st.result || got.Consecutive != st.consecutive {
				t.Errorf("%s, at +%v: %s with %d in a row, want %s with %d", name, st.at, d.Result, got.Consecutive, st.result, st.consecutive)
			}
		}
	}
	run("scheduled first", []step{
		{0, noAfter, Pending, 1},      // scheduled, the first
		{10 * s, -50 * s, Pending, 1}, // pushed: counted a moment ago
		{20 * s, -40 * s, Pending, 1}, // pushed
		{60 * s, 0, Firing, 2},        // scheduled: counts
		{65 * s, 5 * s, Firing, 2},    // pushed: firing stays
	})
	// A push that counted first spends the interval: the scheduled
	// evaluation after it does not count again.
	run("pushed first", []step{
		{30 * s, -30 * s, Pending, 1}, // pushed, first over the threshold
		{60 * s, 0, Pending, 1},       // scheduled: already counted since 0
		{120 * s, 60 * s, Firing, 2},  // scheduled
	})
}

// TestEvaluateUnknownKeepsState: a coverage gap neither trips nor resolves,
// and breaks a streak: `for` counts consecutive judgements, as a missing
// series resets a Prometheus alert's `for`. A firing rule stays firing.
func TestEvaluateUnknownKeepsState(t *testing.T) {
	set := mustSet(t, filteringDoc)
	now := t0
	bad := mustBuckets(t, t0, series{From: hours(-2), To: hours(1), Finished: 100, Errors: map[int]int{30007: 50}})
	good := mustBuckets(t, t0, series{From: hours(-2), To: hours(1), Finished: 100})
	for _, tc := range []struct {
		name     string
		buckets  []traffic.Bucket
		coverage traffic.Coverage
		prev     State
	}{
		{"pending over trip, log stalled", bad, traffic.Coverage{From: t0.Add(-48 * time.Hour), Until: now.Add(-20 * time.Minute)}, State{Consecutive: 1, LastValue: 0.5, LastEval: now.Add(-5 * time.Minute)}},
		{"firing below resolve, log starts late", good, traffic.Coverage{From: t0.Add(-30 * time.Minute), Until: now}, State{Consecutive: 4, Firing: true, Since: now.Add(-time.Hour), LastValue: 0.5}},
		{"never polled", bad, traffic.Coverage{}, State{Consecutive: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := map[string]State{"filtering": tc.prev}
			ds, next := set.Evaluate(Subject{Account: sidA, Buckets: tc.buckets, Coverage: tc.coverage}, prev, now)
			d := decisionFor(t, ds, "filtering")
			if d.Result != Unknown || d.Fired || d.Evidence.Reason == "" {
				t.Errorf("got %s fired=%t reason %q, want unknown with a reason", d.Result, d.Fired, d.Evidence.Reason)
			}
			want := tc.prev
			want.Consecutive = 0
			if diff := cmp.Diff(want, next["filtering"]); diff != "" {
				t.Errorf("state on unknown (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEvaluateWithinStaleness: coverage ending within the staleness bound is
// not a gap.
func TestEvaluateWithinStaleness(t *testing.T) {
	set := mustSet(t, filteringDoc)
	b := mustBuckets(t, t0, series{From: hours(-2), To: hours(1), Finished: 100})
	cov := traffic.Coverage{From: t0.Add(-48 * time.Hour), Until: t0.Add(-14 * time.Minute)}
	ds, _ := set.Evaluate(Subject{Account: sidA, Buckets: b, Coverage: cov}, nil, t0)
	if d := decisionFor(t, ds, "filtering"); d.Result != OK {
		t.Errorf("got %s (%s), want ok: 14m behind is within the 15m default staleness", d.Result, d.Evidence.Reason)
	}
}

func TestEvaluateInFlightIsNotFinished(t *testing.T) {
	set := mustSet(t, filteringDoc)
	// 60 finished (12 filtered) and 1,200 queued in the hour.
	b := mustBuckets(t, t0, series{From: hours(-1), To: hours(1), Finished: 5, Errors: map[int]int{30007: 1}, InFlight: 100})
	ds, _ := set.Evaluate(Subject{Account: sidA, Buckets: b, Coverage: traffic.Coverage{From: t0.Add(-2 * time.Hour), Until: t0}}, nil, t0)
	d := decisionFor(t, ds, "filtering")
	if d.Result != Insufficient || d.Evidence.Denominator != 60 || d.Evidence.Numerator != 12 {
		t.Errorf("got %s %g/%g, want insufficient 12/60", d.Result, d.Evidence.Numerator, d.Evidence.Denominator)
	}
}

// TestEvaluateInsufficientKeepsFiring: too little traffic to judge breaks a
// pending streak but does not resolve.
func TestEvaluateInsufficientKeepsFiring(t *testing.T) {
	set := mustSet(t, filteringDoc)
	b := mustBuckets(t, t0, series{From: hours(-1), To: hours(1), Finished: 1})
	prev := map[string]State{"filtering": {Consecutive: 3, Firing: true, Since: t0.Add(-time.Hour)}}
	ds, next := set.Evaluate(Subject{Account: sidA, Buckets: b, Coverage: traffic.Coverage{From: t0.Add(-2 * time.Hour), Until: t0}}, prev, t0)
	if d := decisionFor(t, ds, "filtering"); d.Result != Insufficient {
		t.Fatalf("got %s, want insufficient", d.Result)
	}
	want := State{Consecutive: 0, Firing: true, Since: t0.Add(-time.Hour), LastEval: t0}
	if diff := cmp.Diff(want, next["filtering"]); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

// TestEvaluateWindowAlignment pins the documented caveat: a 1h window at
// 10:32 covers buckets 09:35..10:30, and the evidence carries those bounds
// and example SIDs of the right signal only.
func TestEvaluateWindowAlignment(t *testing.T) {
	set := mustSet(t, filteringDoc)
	b := mustBuckets(t, t0.Add(-2*time.Hour), series{From: 0, To: hours(3), Finished: 100, Errors: map[int]int{30007: 10, 30003: 10}})
	now := time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)
	ds, _ := set.Evaluate(Subject{Account: sidA, Buckets: b, Coverage: traffic.Coverage{From: t0.Add(-3 * time.Hour), Until: now}}, nil, now)
	d := decisionFor(t, ds, "filtering")
	ev := d.Evidence
	if want := time.Date(2026, 3, 2, 9, 35, 0, 0, time.UTC); !ev.From.Equal(want) || !ev.To.Equal(now) {
		t.Errorf("window [%v, %v), want [%v, %v)", ev.From, ev.To, want, now)
	}
	// 09:35..10:30 is 12 buckets.
	if ev.Numerator != 120 || ev.Denominator != 1200 || ev.Value != 0.1 || ev.Threshold != 0.05 || ev.ResolveAt != 0.025 || ev.MinVolume != 100 {
		t.Errorf("evidence %+v, want 120/1200 = 0.1 against 0.05/0.025, min 100", ev)
	}
	if len(ev.Examples) != MaxExamples {
		t.Fatalf("got %d examples, want %d", len(ev.Examples), MaxExamples)
	}
	for _, sid := range ev.Examples {
		m := sampleCode(b, sid)
		if m != 30007 {
			t.Errorf("example %s has code %d, want 30007", sid, m)
		}
	}
	if ev.Signal != "error_rate 30007" {
		t.Errorf("signal %q", ev.Signal)
	}
}

// sampleCode finds which sample key holds sid.
func sampleCode(b []traffic.Bucket, sid string) int {
	for _, bk := range b {
		for k, sids := range bk.Samples {
			for _, s := range sids {
				if s == sid {
					return k
				}
			}
		}
	}
	return 0
}

func TestEvaluateReinstatement(t *testing.T) {
	set := mustSet(t, filteringDoc)
	b := mustBuckets(t, t0, series{From: hours(-2), To: hours(2), Finished: 100, Errors: map[int]int{30007: 10}})
	reinstated := t0.Add(-32 * time.Minute) // 09:28: the window starts there
	prev := map[string]State{"filtering": {Consecutive: 5, Firing: true, Since: t0.Add(-time.Hour), LastEval: t0.Add(-35 * time.Minute)}}
	subj := Subject{Account: sidA, Buckets: b, Coverage: traffic.Coverage{From: t0.Add(-3 * time.Hour), Until: t0},
		ReinstatedAt: reinstated, Offences: 1}
	ds, next := set.Evaluate(subj, prev, t0)
	d := decisionFor(t, ds, "filtering")
	if !d.Evidence.From.Equal(reinstated) {
		t.Errorf("window starts %v, want %v (the reinstatement itself)", d.Evidence.From, reinstated)
	}
	// The bucket that holds the reinstatement (09:25) is not counted: only
	// the buckets from 09:30 are, 6 of them (no head bucket was given).
	if d.Evidence.Denominator != 600 {
		t.Errorf("denominator %g, want 600", d.Evidence.Denominator)
	}
	// The firing state predates the reinstatement: the rule starts afresh and,
	// on probation, fires again on its first evaluation over the threshold.
	if d.Result != Firing || !d.Fired || !d.Probation || d.Evidence.Threshold != 0.025 || d.Evidence.ResolveAt != 0.0125 {
		t.Errorf("got %s fired=%t probation=%t trip %g resolve %g, want a fresh firing on probation at 0.025/0.0125",
			d.Result, d.Fired, d.Probation, d.Evidence.Threshold, d.Evidence.ResolveAt)
	}
	if got := next["filtering"]; got.Consecutive != 1 || !got.Since.Equal(t0) {
		t.Errorf("state %+v, want Consecutive 1 since now", got)
	}
}

func TestProbationUntil(t *testing.T) {
	r := t0
	for _, tc := range []struct {
		offences int
		want     time.Duration
	}{
		{0, 24 * time.Hour},
		{1, 24 * time.Hour},
		{2, 48 * time.Hour},
		{3, 96 * time.Hour},
		{4, 168 * time.Hour}, // 192h capped at 7d
		{100, 168 * time.Hour},
	} {
		if got := ProbationUntil(DefaultSettings(), r, tc.offences); !got.Equal(r.Add(tc.want)) {
			t.Errorf("offences %d: got %v, want +%v", tc.offences, got.Sub(r), tc.want)
		}
	}
	if got := ProbationUntil(DefaultSettings(), time.Time{}, 3); !got.IsZero() {
		t.Errorf("never reinstated: got %v, want zero", got)
	}
}

const scopeDoc = `
lists:
  vip: [ACfedcba9876543210fedcba9876543210]
protected:
  names: ["house-*"]
rules:
  - name: filtering
    description: Filtered.
    signal: error_rate
    codes: [30007]
    window: 1h
    min_volume: 10
    trip: 5%
    severity: critical
    action: suspend
    scope:
      names: ["acme-*", "house-*"]
      accounts: [$vip]
      exclude_names: ["acme-test"]
    overrides:
      - accounts: [$vip]
        trip: 50%
  - name: filtering-dry
    description: Filtered, dry run.
    signal: error_rate
    codes: [30007]
    window: 1h
    trip: 5%
    severity: critical
    action: suspend
    mode: dry_run
  - name: parent-sending
    description: Parent sends.
    signal: parent_outbound
    window: 1h
    trip: 1
    severity: critical
    action: suspend
`

func TestEvaluateScopeProtectedDryRun(t *testing.T) {
	set := mustSet(t, scopeDoc)
	b := mustBuckets(t, t0, series{From: hours(-1), To: hours(1), Finished: 100, Errors: map[int]int{30007: 10}})
	cov := traffic.Coverage{From: t0.Add(-2 * time.Hour), Until: t0}
	for _, tc := range []struct {
		name, sid, friendly string
		parent              bool
		rule                string
		want                Result
		protected, suspend  bool
	}{
		{"name glob in scope", sidA, "acme-prod", false, "filtering", Firing, false, true},
		{"excluded by name", sidA, "acme-test", false, "filtering", Skipped, false, false},
		{"not in scope", sidA, "other", false, "filtering", Skipped, false, false},
		{"in scope by list, override raises trip", sidB, "other", false, "filtering", OK, false, false},
		{"protected only alerts", sidA, "house-main", false, "filtering", Firing, true, false},
		{"dry run never acts", sidA, "acme-prod", false, "filtering-dry", Firing, false, false},
		{"parent signal skipped for a subaccount", sidA, "acme-prod", false, "parent-sending", Skipped, false, false},
		{"parent judged but never suspended", sidA, "parent", true, "parent-sending", Firing, true, false},
		{"parent skips subaccount signals", sidA, "acme-prod", true, "filtering", Skipped, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds, _ := set.Evaluate(Subject{Account: tc.sid, Name: tc.friendly, Parent: tc.parent, Buckets: b, Coverage: cov}, nil, t0)
			d := decisionFor(t, ds, tc.rule)
			if d.Result != tc.want || d.Protected != tc.protected || d.Suspend() != tc.suspend {
				t.Errorf("got %s protected=%t suspend=%t (%s), want %s %t %t", d.Result, d.Protected, d.Suspend(), d.Evidence.Reason, tc.want, tc.protected, tc.suspend)
			}
			if d.Action != ActionSuspend {
				t.Errorf("action %q: a downgrade must leave the requested action visible", d.Action)
			}
			if d.Result == Skipped && d.Evidence.Reason == "" {
				t.Error("skipped without a reason")
			}
		})
	}
	if !set.Protected(sidA, "house-main") || set.Protected(sidA, "acme-prod") {
		t.Error("Protected() disagrees with the protected names")
	}
}

// TestEvaluateDoesNotMutatePrev: Evaluate is pure.
func TestEvaluateDoesNotMutatePrev(t *testing.T) {
	set := mustSet(t, filteringDoc)
	b := mustBuckets(t, t0, series{From: hours(-1), To: hours(1), Finished: 100, Errors: map[int]int{30007: 10}})
	prev := map[string]State{"filtering": {Consecutive: 1}, "deleted-rule": {Firing: true}}
	before := maps.Clone(prev)
	_, next := set.Evaluate(Subject{Account: sidA, Buckets: b, Coverage: traffic.Coverage{From: t0.Add(-2 * time.Hour), Until: t0}}, prev, t0)
	if diff := cmp.Diff(before, prev); diff != "" {
		t.Errorf("prev mutated:\n%s", diff)
	}
	if _, ok := next["deleted-rule"]; ok {
		t.Error("state of a rule no longer in the set was kept")
	}
	if next["filtering"].Consecutive != 2 {
		t.Errorf("Consecutive = %d, want 2", next["filtering"].Consecutive)
	}
}

func TestSetAccessors(t *testing.T) {
	set, err := Load("testdata/engine")
	if err != nil {
		t.Fatal(err)
	}
	if got := set.MaxWindow(); got != 24*time.Hour {
		t.Errorf("MaxWindow = %v, want 24h", got)
	}
	if got := set.UsageDays(); got != 8 {
		t.Errorf("UsageDays = %d, want 8", got)
	}
	if got := set.Settings(); got != DefaultSettings() {
		t.Errorf("Settings = %+v, want the defaults %+v", got, DefaultSettings())
	}
	// The pinned defaults.
	type pin struct {
		Signal              string
		Codes               []int
		Window              time.Duration
		MinVolume, Trip, Re float64
		For                 int
		Severity, Action    string
	}
	want := map[string]pin{
		"carrier-filtering":         {SignalErrorRate, []int{30007}, time.Hour, 100, 0.05, 0.025, 2, "critical", "suspend"},
		"carrier-filtering-warning": {SignalErrorRate, []int{30007}, time.Hour, 100, 0.01, 0.01, 1, "warning", "alert"},
		"opt-out-rate":              {SignalOptOutRate, nil, 24 * time.Hour, 200, 0.05, 0.025, 2, "critical", "suspend"},
		"opt-out-rate-warning":      {SignalOptOutRate, nil, 24 * time.Hour, 200, 0.02, 0.02, 1, "warning", "alert"},
		"unsubscribed-recipient":    {SignalErrorCount, []int{21610}, 24 * time.Hour, 0, 5, 5, 1, "critical", "alert"},
		"unregistered-sender":       {SignalErrorRate, []int{30032, 30034}, time.Hour, 20, 0.2, 0.2, 1, "warning", "alert"},
		"delivery-failure":          {SignalFailureRate, nil, time.Hour, 100, 0.25, 0.25, 2, "warning", "alert"},
		"spend-budget":              {SignalSpendBudget, nil, 0, 0, 1, 1, 1, "critical", "suspend"},
		"spend-spike":               {SignalSpendSpike, nil, 0, 25, 5, 5, 1, "warning", "alert"},
		"parent-account-sending":    {SignalParentOutbound, nil, time.Hour, 0, 1, 1, 1, "critical", "alert"},
	}
	got := map[string]pin{}
	for _, r := range set.Rules() {
		got[r.Name] = pin{r.Signal, r.Codes, r.Window, r.MinVolume, r.Trip, r.Resolve, r.For, r.Severity, r.Action}
		if r.Mode != ModeEnforce || r.Description == "" || r.Budget != 0 {
			t.Errorf("%s: mode %q, budget %g, description %q", r.Name, r.Mode, r.Budget, r.Description)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("shipped rules (-want +got):\n%s", diff)
	}
}
