package actions_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/actions"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
)

const nudgePolicy = `
rules:
  - name: filtered
    description: Carrier filtering (30007) over 5% of finished messages in the last hour
    signal: error_rate
    codes: [30007]
    window: 1h
    min_volume: 20
    trip: 5%
    resolve: 2.5%
    for: %FOR%
    severity: critical
    action: suspend
`

func nudgeEnv(t *testing.T, forN string, cfg actions.Config) *env {
	return newEnv(t, envOptions{subs: 4, cfg: cfg, policy: strings.ReplaceAll(nudgePolicy, "%FOR%", forN)})
}

func (e *env) nudge(sids ...string) actions.Summary {
	e.t.Helper()
	sum, err := e.actor.Nudge(context.Background(), sids)
	if err != nil {
		e.t.Fatalf("Nudge: %v", err)
	}
	return sum
}

func (e *env) ruleState(sid, rule string) store.RuleState {
	e.t.Helper()
	states, err := e.st.RuleStates(sid)
	if err != nil {
		e.t.Fatal(err)
	}
	return states[rule]
}

// Pushed evidence over a `for: 1` rule suspends at once, through the same
// pipeline; the others are counted in the fleet and not judged.
func TestNudgeSuspends(t *testing.T) {
	e := nudgeEnv(t, "1", actions.Config{})
	for _, sid := range e.subs {
		e.send(sid, 100, 0)
	}
	e.judge()
	bad := e.subs[1]
	e.clock.Advance(3 * time.Second)
	e.send(bad, 40, 40)
	sum := e.nudge(bad)
	if got := e.posts("suspended"); len(got) != 1 || got[0] != bad || len(sum.Suspended) != 1 {
		t.Fatalf("after a nudge: suspended %v (summary %+v), want %s", got, sum, bad)
	}
	if sum.Accounts != 1 {
		t.Errorf("a nudge of one account judged %d", sum.Accounts)
	}
	if len(e.notes.of(slack.KindSuspended)) != 1 {
		t.Errorf("suspension not told")
	}
}

// However many nudges arrive, a `for: 3` counts at most one evaluation per
// scheduled interval, so it still takes three intervals to fire.
func TestNudgeCountsOncePerInterval(t *testing.T) {
	e := nudgeEnv(t, "3", actions.Config{Interval: time.Minute})
	bad := e.subs[0]
	e.send(bad, 100, 30)
	e.judge() // count 1
	for range 10 {
		e.clock.Advance(5 * time.Second)
		e.send(bad, 5, 5)
		e.nudge(bad)
	}
	if s := e.ruleState(bad, "filtered"); s.Consecutive != 1 || s.Firing {
		t.Fatalf("after nudges within one interval: %+v, want count 1", s)
	}
	e.clock.Advance(15 * time.Second) // 65 s after the Judge
	e.nudge(bad)
	if s := e.ruleState(bad, "filtered"); s.Consecutive != 2 {
		t.Fatalf("a nudge an interval after the Judge: %+v, want count 2", s)
	}
	// The scheduled Judge right after does not count again.
	e.clock.Advance(time.Second)
	e.fresh()
	if _, err := e.actor.Judge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.ruleState(bad, "filtered"); s.Consecutive != 2 || len(e.posts("suspended")) != 0 {
		t.Fatalf("Judge after a counted nudge: %+v, %v; want count 2, nothing suspended", s, e.posts("suspended"))
	}
	e.judge()
	if s := e.ruleState(bad, "filtered"); !s.Firing || len(e.posts("suspended")) != 1 {
		t.Fatalf("third interval: %+v, %v; want firing and suspended", s, e.posts("suspended"))
	}
}

// A nudge never resolves, nor drops a count: only a complete poll can
// prove a window quiet.
func TestNudgeDoesNotResolve(t *testing.T) {
	e := nudgeEnv(t, "1", actions.Config{DryRun: true})
	bad := e.subs[2]
	e.send(bad, 100, 10)
	e.judge()
	if s := e.ruleState(bad, "filtered"); !s.Firing {
		t.Fatalf("not firing: %+v", s)
	}
	e.clock.Advance(10 * time.Second)
	e.send(bad, 2000, 0) // 10 of 2100: under resolve
	e.nudge(bad)
	if s := e.ruleState(bad, "filtered"); !s.Firing {
		t.Errorf("a nudge resolved the rule: %+v", s)
	}
	if n := len(e.notes.of(slack.KindResolved)); n != 0 {
		t.Errorf("a nudge told %d resolutions", n)
	}
	e.judge()
	if s := e.ruleState(bad, "filtered"); s.Firing || len(e.notes.of(slack.KindResolved)) != 1 {
		t.Errorf("the Judge after did not resolve: %+v", s)
	}
}

// An account whose pushes are trusted may have polled coverage older than
// the staleness bound by its allowance: it is judged, not blind, and a
// suspension goes ahead on the evidence; an account without an allowance
// and coverage as old is blind.
func TestAllowance(t *testing.T) {
	var trusted string
	e := nudgeEnv(t, "1", actions.Config{MaxStaleness: 5 * time.Minute,
		Allowance: func(sid string) time.Duration {
			if sid == trusted {
				return 10 * time.Minute
			}
			return 0
		}})
	trusted = e.subs[0]
	e.send(e.subs[0], 100, 0)
	e.send(e.subs[1], 100, 0)
	e.judge()
	e.clock.Advance(8 * time.Minute) // coverage 8 minutes old
	e.send(trusted, 50, 50)
	sum, err := e.actor.Judge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := e.posts("suspended"); len(got) != 1 || got[0] != trusted {
		t.Errorf("suspended %v, want the trusted account on its pushed evidence", got)
	}
	for _, sid := range sum.Blind {
		if sid == trusted {
			t.Errorf("the trusted account is blind: %+v", sum)
		}
	}
	if len(sum.Blind) == 0 {
		t.Errorf("no account blind with coverage 8 minutes old: %+v", sum)
	}
}

// A nudge of an account whose polled coverage went stale since the last
// Judge tells no blind alert, and leaves the blind incident to the Judge:
// the next Judge tells it.
func TestNudgeLeavesBlindAlertToJudge(t *testing.T) {
	e := nudgeEnv(t, "1", actions.Config{MaxStaleness: 5 * time.Minute})
	bad := e.subs[0]
	e.send(bad, 100, 0)
	e.judge()
	covered := e.clock.Now()
	e.clock.Advance(6 * time.Minute)
	e.fresh()
	// Its polls failed since: coverage 6 minutes old, the others' fresh.
	if err := e.st.SetCoverage(bad, traffic.Coverage{From: start.Add(-48 * time.Hour), Until: covered}); err != nil {
		t.Fatal(err)
	}
	e.send(bad, 50, 50)
	e.nudge(bad)
	if n := len(e.notes.of(slack.KindBlind)); n != 0 {
		t.Fatalf("a nudge told %d blind alerts", n)
	}
	e.clock.Advance(time.Second)
	sum, err := e.actor.Judge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var told bool
	for _, ev := range e.notes.of(slack.KindBlind) {
		told = told || ev.Subaccount == bad
	}
	if !told {
		t.Errorf("the Judge after the nudge told no blind alert for %s (blind %v)", bad, sum.Blind)
	}
	if got := e.posts("suspended"); len(got) != 0 {
		t.Errorf("suspended %v on stale data", got)
	}
}

// A sentinel just started has run no scheduled Judge yet, while pushed
// events arrive from the start: a nudge that counted just before the first
// Judge keeps that Judge from counting again within the interval.
func TestFirstJudgeCountsOncePerInterval(t *testing.T) {
	e := nudgeEnv(t, "2", actions.Config{Interval: time.Minute})
	bad := e.subs[0]
	e.send(bad, 100, 30)
	e.clock.Advance(time.Second)
	e.fresh()
	e.nudge(bad) // count 1, before any scheduled Judge
	if s := e.ruleState(bad, "filtered"); s.Consecutive != 1 {
		t.Fatalf("after the nudge: %+v, want count 1", s)
	}
	e.clock.Advance(10 * time.Second)
	e.fresh()
	if _, err := e.actor.Judge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.ruleState(bad, "filtered"); s.Consecutive != 1 || s.Firing || len(e.posts("suspended")) != 0 {
		t.Errorf("the first Judge 10 s after a counted nudge: %+v, suspended %v; want count 1, nothing suspended",
			s, e.posts("suspended"))
	}
}

// fetchCounter counts the account reads a lossy Twilio is asked for.
type fetchCounter struct {
	lossy
	n *atomic.Int64
}

func (f fetchCounter) FetchAccount(ctx context.Context, sid string) (twilioapi.Account, error) {
	f.n.Add(1)
	return f.lossy.FetchAccount(ctx, sid)
}

// An action whose outcome is unknown (Twilio unreachable) is reconciled by
// the scheduled Judge, once a cycle. Nudges, which run as fast as events
// arrive, do not ask Twilio about it again each time: during an outage that
// multiplied the requests of the account's budget.
func TestNudgeLeavesOpenIntentsToJudge(t *testing.T) {
	var fetches atomic.Int64
	e := newEnv(t, envOptions{subs: 2, policy: strings.ReplaceAll(nudgePolicy, "%FOR%", "1"),
		twilio: func(e *env, tw actions.Twilio) actions.Twilio { return fetchCounter{lossy{tw, e}, &fetches} }})
	e.send(e.subs[0], 100, 40)
	e.clock.Advance(time.Minute)
	e.fresh()
	if _, err := e.actor.Judge(context.Background()); err == nil {
		t.Fatal("Judge: no error, want the outcome unknown")
	}
	if open, _ := e.st.OpenIntents(); len(open) != 1 {
		t.Fatalf("open intents %d, want 1", len(open))
	}
	before := fetches.Load()
	for range 10 {
		e.clock.Advance(time.Second)
		e.send(e.subs[1], 5, 0)
		e.actor.Nudge(context.Background(), []string{e.subs[1]}) // the open intent is an error of each
	}
	if n := fetches.Load() - before; n != 0 {
		t.Errorf("10 nudges of another account read Twilio %d times for the open intent", n)
	}
}

// failingFetch is a Twilio whose account reads fail, counted.
type failingFetch struct {
	actions.Twilio
	n *atomic.Int64
}

func (f failingFetch) FetchAccount(ctx context.Context, sid string) (twilioapi.Account, error) {
	f.n.Add(1)
	return twilioapi.Account{}, errors.New("read tcp: connection reset by peer")
}

// A subaccount whose status in the store contradicts its breaker (a person
// suspended it in the console) is confirmed with Twilio by the scheduled
// Judge. Nudges of other accounts count it in the fleet as stored and do
// not ask Twilio each time: while Twilio does not answer, that multiplied
// the requests of the budget the polls share.
func TestNudgeDoesNotSyncOtherAccounts(t *testing.T) {
	var fetches atomic.Int64
	e := newEnv(t, envOptions{subs: 2, policy: strings.ReplaceAll(nudgePolicy, "%FOR%", "1"),
		twilio: func(e *env, tw actions.Twilio) actions.Twilio { return failingFetch{tw, &fetches} }})
	e.judge()
	if err := e.st.SetAccountStatus(e.subs[0], "suspended", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		e.clock.Advance(time.Second)
		e.send(e.subs[1], 5, 0)
		e.nudge(e.subs[1])
	}
	if n := fetches.Load(); n != 0 {
		t.Errorf("10 nudges of another account read Twilio %d times for the contradiction", n)
	}
}

// A daemon restarted seconds after its last scheduled Judge counted a rule
// must not count it again at its first Judge: a `for: 2` would fire on two
// evaluations seconds apart.
func TestRestartCountsOncePerInterval(t *testing.T) {
	e := nudgeEnv(t, "2", actions.Config{Interval: time.Minute})
	bad := e.subs[0]
	e.send(bad, 100, 30)
	e.judge() // count 1
	e.clock.Advance(10 * time.Second)
	e.fresh()
	restarted, err := actions.New(actions.Config{Interval: time.Minute}, e.st, e.tw, e.set.Load, e.notes,
		prometheus.NewRegistry(), nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Judge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.ruleState(bad, "filtered"); s.Consecutive != 1 || len(e.posts("suspended")) != 0 {
		t.Errorf("the first Judge 10 s after a restart: %+v, suspended %v; want count 1", s, e.posts("suspended"))
	}
}
