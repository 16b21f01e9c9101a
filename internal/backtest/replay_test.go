package backtest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// fleetSpec describes one account of a hand-built history: its counts in
// the five-minute bucket that starts at a time, and its breaker changes.
type fleetSpec struct {
	name    string
	counts  func(at time.Time) traffic.Counts
	changes []actions.Change
	usage   []traffic.Usage
}

// buildHistory makes the History Load would read of a fleet whose message
// logs are complete from 26 hours before t0 up to end, known since then.
func buildHistory(t *testing.T, set *policy.Set, end time.Time, specs ...fleetSpec) *History {
	t.Helper()
	start := t0.Add(-26 * time.Hour)
	h := &History{Start: start, Slots: int(end.Sub(start) / traffic.BucketWidth), Codes: Codes(set), Loaded: end}
	f := h.fields()
	for i, sp := range specs {
		a := Account{
			Info:     store.Account{SID: fmt.Sprintf("AC%032x", 0xc000+i), FriendlyName: sp.name, Status: "active", FirstSeen: start},
			Breaker:  store.Breaker{State: actions.StateClosed},
			Coverage: traffic.Coverage{From: start, Until: end},
			Changes:  sp.changes,
			Usage:    sp.usage,
			Counts:   make([]int64, h.Slots*f),
		}
		for s := range h.Slots {
			if sp.counts != nil {
				c := sp.counts(start.Add(time.Duration(s) * traffic.BucketWidth))
				fill(a.Counts[s*f:(s+1)*f], &c, h.Codes)
			}
		}
		h.Accounts = append(h.Accounts, a)
	}
	return h
}

// steady is 100 finished messages a bucket, share of them filtered
// (30007).
func steady(share float64) func(time.Time) traffic.Counts {
	return func(time.Time) traffic.Counts {
		n := int64(share*100 + 0.5)
		return traffic.Counts{Outbound: 100, Finished: 100, Failed: n, Errors: map[int]int64{30007: n}}
	}
}

// filteredFrom is steady(0) before at and steady(share) from it.
func filteredFrom(at time.Time, share float64) func(time.Time) traffic.Counts {
	return func(b time.Time) traffic.Counts {
		if b.Before(at) {
			return steady(0)(b)
		}
		return steady(share)(b)
	}
}

func loadSet(t *testing.T) *policy.Set {
	t.Helper()
	set, err := policy.Load("testdata/replay")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// trace keeps a replay's decisions by account, rule and time.
type trace struct{ *decisions }

func (tr trace) at(sid, rule string, at time.Time) (decisionVal, bool) {
	v, ok := tr.m[decisionKey{sid, rule, at.UnixNano()}]
	return v, ok
}

// TestReplaySemantics: how the replay's own suspensions and the audit
// log's changes combine (see the package doc).
func TestReplaySemantics(t *testing.T) {
	set := loadSet(t)
	rails := actions.Rails{MaxPerHour: 10, MaxFraction: 1, MaxStaleness: 10 * time.Minute}
	end := t0.Add(4 * time.Hour)
	from := t0
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	sid := func(i int) string { return fmt.Sprintf("AC%032x", 0xc000+i) }

	h := buildHistory(t, set, end,
		// 0: sentinel suspended it at 60m and a person reinstated it at
		// 90m; the backtest's policies do not suspend it (clean traffic):
		// neither happened, no probation.
		fleetSpec{name: "clean", counts: steady(0), changes: []actions.Change{
			{At: at(60), From: actions.StateClosed, To: actions.StateOpen, Actor: actions.ActorSentinel, Rule: "filtered"},
			{At: at(90), From: actions.StateOpen, To: actions.StateProbation, Actor: "alice", ReinstatedAt: at(90)},
		}},
		// 1: filtered from 30m, never suspended in reality: the backtest
		// suspends it and it stays suspended to the end.
		fleetSpec{name: "offender", counts: filteredFrom(at(30), 0.3)},
		// 2: suspended by a person at 20m, reinstated at 100m30s: copied;
		// judged again from the reinstatement, on probation.
		fleetSpec{name: "paused", counts: steady(0), changes: []actions.Change{
			{At: at(20), From: actions.StateClosed, To: actions.StateOpen, Actor: "bob"},
			{At: at(100).Add(30 * time.Second), From: actions.StateOpen, To: actions.StateProbation, Actor: "bob", ReinstatedAt: at(100).Add(30 * time.Second)},
		}},
		// 3: suspended by sentinel before the period: suspended at its
		// start, and its offence counts.
		fleetSpec{name: "before", counts: steady(0), changes: []actions.Change{
			{At: at(-30), From: actions.StateClosed, To: actions.StateOpen, Actor: actions.ActorSentinel, Rule: "filtered"},
		}},
		// 4: filtered from 30m like 1, and sentinel suspended it later
		// than the backtest would: both suspend it; the real reinstatement
		// at 150m ends the backtest's suspension too.
		fleetSpec{name: "late", counts: filteredFrom(at(30), 0.3), changes: []actions.Change{
			{At: at(45), From: actions.StateClosed, To: actions.StateOpen, Actor: actions.ActorSentinel, Rule: "filtered"},
			{At: at(150), From: actions.StateOpen, To: actions.StateProbation, Actor: "carol", ReinstatedAt: at(150)},
		}},
	)
	got := trace{newDecisions()}
	rep, err := Run(context.Background(), h, set, Options{From: from, To: end, Rails: rails, Trace: got.put})
	if err != nil {
		t.Fatal(err)
	}

	if d, ok := got.at(sid(0), "filtered", at(120)); !ok || d.Probation {
		t.Errorf("clean at 120m: %+v, %t; want judged, not on probation (the reinstatement ended a suspension the backtest did not make)", d, ok)
	}
	var suspendedAt time.Time
	for _, s := range rep.Subaccounts {
		if s.SID == sid(1) {
			suspendedAt = *s.Rules[0].WouldSuspendAt
		}
	}
	// At 10:36 the window (09:40-10:35) holds two filtered buckets of 12:
	// 5%, pending; at 10:37 it fires (for: 2).
	if want := at(37); !suspendedAt.Equal(want) {
		t.Errorf("offender suspended at %v, want %v", suspendedAt, want)
	}
	if _, ok := got.at(sid(1), "filtered", at(200)); ok {
		t.Error("offender judged after the backtest suspended it")
	}
	if _, ok := got.at(sid(2), "filtered", at(60)); ok {
		t.Error("paused judged while a person had it suspended")
	}
	if d, ok := got.at(sid(2), "filtered", at(101)); !ok || !d.Probation {
		t.Errorf("paused after its reinstatement: %+v, %t; want judged on probation", d, ok)
	}
	if _, ok := got.at(sid(3), "filtered", at(0)); ok {
		t.Error("before judged at the start: sentinel had suspended it")
	}
	if d, ok := got.at(sid(4), "filtered", at(151)); !ok || !d.Probation {
		t.Errorf("late after the real reinstatement: %+v, %t; want judged on probation", d, ok)
	}
	wantSummary := Summary{WouldSuspend: 3, Alerts: rep.Summary.Alerts, ActuallySuspended: 2,
		OnlyBacktest: []string{sid(1)}, Both: []string{sid(4)}, OnlyActual: []string{sid(0)}}
	if diff := cmp.Diff(wantSummary, rep.Summary); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

// TestRailsInReplay: the per-hour cap counts sentinel's suspensions of
// the hour before the period, and the fraction counts what the backtest
// holds suspended.
func TestRailsInReplay(t *testing.T) {
	set := loadSet(t)
	end := t0.Add(2 * time.Hour)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	var specs []fleetSpec
	for i := range 4 {
		specs = append(specs, fleetSpec{name: fmt.Sprintf("bad-%d", i), counts: filteredFrom(at(10), 0.1+0.05*float64(i))})
	}
	// Two suspensions by sentinel in the hour before the period.
	specs = append(specs, fleetSpec{name: "earlier", counts: steady(0), changes: []actions.Change{
		{At: at(-50), From: actions.StateClosed, To: actions.StateOpen, Actor: actions.ActorSentinel, Rule: "filtered"},
		{At: at(-40), From: actions.StateOpen, To: actions.StateProbation, Actor: "alice", ReinstatedAt: at(-40)},
		{At: at(-20), From: actions.StateProbation, To: actions.StateOpen, Actor: actions.ActorSentinel, Rule: "filtered"},
	}})
	for i := range 5 {
		specs = append(specs, fleetSpec{name: fmt.Sprintf("ok-%d", i), counts: steady(0)})
	}
	h := buildHistory(t, set, end, specs...)
	rep, err := Run(context.Background(), h, set, Options{From: t0, To: end,
		Rails: actions.Rails{MaxPerHour: 3, MaxFraction: 0.3, MaxStaleness: 10 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	outcome := map[string][]string{}
	for _, s := range rep.Subaccounts {
		for _, rr := range s.Rules {
			if rr.Rule != "filtered" {
				continue
			}
			for _, at := range rr.SuspendedAt {
				outcome[s.Name] = append(outcome[s.Name], "suspend "+at.Format("15:04"))
			}
			for _, b := range rr.Blocked {
				outcome[s.Name] = append(outcome[s.Name], b.Rail+" "+b.At.Format("15:04"))
			}
		}
	}
	// Filtered from 10:10, a 25% or 20% share reaches 5% of the hour at
	// 10:21 and fires at 10:22; 15% at 10:27; 10% at 10:37. At 10:22 the
	// hour holds one earlier suspension (09:40): both go. At 10:27 and
	// 10:37 the hour is full. At 10:41 09:40 has left it, but 3 of 10
	// active subaccounts (30%) are held suspended: the fraction blocks.
	want := map[string][]string{
		"bad-3": {"suspend 10:22"},
		"bad-2": {"suspend 10:22"},
		"bad-1": {"per_hour 10:27", "fraction 10:41"},
		"bad-0": {"per_hour 10:37", "fraction 10:41"},
	}
	if diff := cmp.Diff(want, outcome); diff != "" {
		t.Errorf("filtered outcomes (-want +got):\n%s", diff)
	}
}

// TestSpendSpread: a day's spend known only as read later is spread over
// its outbound messages up to the read; read before the step, it is taken
// as it is.
func TestSpendSpread(t *testing.T) {
	set := loadSet(t)
	end := t0.Add(2 * time.Hour)
	day := t0.Format(time.DateOnly)
	mid := t0.Truncate(24 * time.Hour)
	counts := func(at time.Time) traffic.Counts {
		// Messages only from 08:00 to 09:00 and from 11:00.
		if (!at.Before(mid.Add(8*time.Hour)) && at.Before(mid.Add(9*time.Hour))) || !at.Before(mid.Add(11*time.Hour)) {
			return steady(0)(at)
		}
		return traffic.Counts{}
	}
	h := buildHistory(t, set, end,
		fleetSpec{name: "read-later", counts: counts, usage: []traffic.Usage{{Day: day, TotalPrice: 40, AsOf: mid.Add(11*time.Hour + 30*time.Minute)}}},
		fleetSpec{name: "read-before", counts: counts, usage: []traffic.Usage{{Day: day, TotalPrice: 40, AsOf: mid.Add(9*time.Hour + 30*time.Minute)}}},
	)
	for i := range h.Accounts {
		h.Accounts[i].UsagePolled = end
	}
	got := trace{newDecisions()}
	if _, err := Run(context.Background(), h, set, Options{From: t0, To: end, Rails: actions.DefaultRails(), Trace: got.put}); err != nil {
		t.Fatal(err)
	}
	// 10:00: read-later's spend is that of 12 of its 18 buckets of
	// messages until 11:30, against a $20 budget; read-before's is all
	// of its $40.
	for _, c := range []struct {
		sid  string
		at   time.Time
		want float64
	}{
		{fmt.Sprintf("AC%032x", 0xc000), t0, 40.0 * 12 / 18 / 20},
		{fmt.Sprintf("AC%032x", 0xc000), t0.Add(90 * time.Minute), 40.0 / 20},
		{fmt.Sprintf("AC%032x", 0xc001), t0, 40.0 / 20},
	} {
		d, ok := got.at(c.sid, "budget", c.at)
		if !ok || d.Value < c.want-1e-9 || d.Value > c.want+1e-9 {
			t.Errorf("%s budget at %v = %+v, %t; want value %g", c.sid, c.at, d, ok, c.want)
		}
	}
}

// TestRunBadInput: what Run refuses, and why.
func TestRunBadInput(t *testing.T) {
	set := loadSet(t)
	h := buildHistory(t, set, t0.Add(time.Hour), fleetSpec{name: "a", counts: steady(0)})
	for _, c := range []struct {
		name string
		h    *History
		opts Options
		want string
	}{
		{"from after to", h, Options{From: t0.Add(time.Hour), To: t0}, "not before its end"},
		{"empty period", h, Options{From: t0, To: t0}, "not before its end"},
		{"too many steps", h, Options{From: t0.Add(-400 * 24 * time.Hour), To: t0, Step: time.Minute}, "more than"},
		{"times out of order", h, Options{Times: []time.Time{t0.Add(time.Minute), t0}}, "out of order"},
		{"other codes", &History{Codes: []int{30003}}, Options{From: t0, To: t0.Add(time.Hour)}, "does not count error"},
	} {
		if _, err := Run(context.Background(), c.h, set, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

// TestReportJSON: the report's JSON is the documented interface.
func TestReportJSON(t *testing.T) {
	set := loadSet(t)
	end := t0.Add(time.Hour)
	h := buildHistory(t, set, end, fleetSpec{name: "offender", counts: filteredFrom(t0.Add(10*time.Minute), 0.3)},
		fleetSpec{name: "quiet", counts: steady(0)})
	rep, err := Run(context.Background(), h, set, Options{From: t0, To: end, Rails: actions.DefaultRails()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		From, To    time.Time
		Subaccounts []struct {
			SID, Name string
			Rules     []struct {
				Rule           string
				FiredAt        []time.Time `json:"fired_at"`
				WouldSuspendAt *time.Time  `json:"would_suspend_at"`
				Peak           struct {
					Value, Threshold float64
					At               time.Time
				}
			}
		}
		Summary struct {
			WouldSuspend      *int `json:"would_suspend"`
			Alerts            *int `json:"alerts"`
			ActuallySuspended *int `json:"actually_suspended"`
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !got.From.Equal(t0) || !got.To.Equal(end) || len(got.Subaccounts) != 1 || got.Subaccounts[0].Name != "offender" {
		t.Fatalf("JSON %s", b)
	}
	rules := map[string]bool{}
	for _, r := range got.Subaccounts[0].Rules {
		rules[r.Rule] = true
		if len(r.FiredAt) == 0 || r.Peak.Value < r.Peak.Threshold || r.Peak.At.IsZero() {
			t.Errorf("rule %+v: want firings and a peak at or over its threshold", r)
		}
		if (r.Rule == "filtered") != (r.WouldSuspendAt != nil) {
			t.Errorf("%s: would_suspend_at %v", r.Rule, r.WouldSuspendAt)
		}
	}
	if !rules["filtered"] || !rules["filtered-warning"] {
		t.Errorf("rules that fired: %v", rules)
	}
	s := got.Summary
	if s.WouldSuspend == nil || *s.WouldSuspend != 1 || s.Alerts == nil || *s.Alerts != 2 || s.ActuallySuspended == nil || *s.ActuallySuspended != 0 {
		t.Errorf("summary in %s", b)
	}
	// An alert rule's would-be suspension is null, and lists are lists.
	for _, key := range []string{`"would_suspend_at":null`, `"only_actual":[]`, `"actual":[]`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
}
