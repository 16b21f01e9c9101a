package actions_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

// racer changes the fake's account just before the status update reaches
// it, as Twilio or the console might between sentinel's read and its write.
type racer struct {
	actions.Twilio
	before func(sid string)
}

func (r racer) SetStatus(ctx context.Context, sid, status string) (twilioapi.Account, error) {
	r.before(sid)
	return r.Twilio.SetStatus(ctx, sid, status)
}

func TestTwilioRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    string
		prepare func(e *env)                  // before the first Judge
		race    func(e *env) func(sid string) // changes the fake right before the POST
		state   string
	}{
		{
			name:  "21478 suspended by Twilio",
			code:  "21478",
			race:  func(e *env) func(string) { return func(sid string) { e.fake.SuspendByTwilio(sid) } },
			state: actions.StateTwilioSuspended,
		},
		{
			name:  "21479 closed",
			code:  "21479",
			race:  func(e *env) func(string) { return func(sid string) { e.fake.SetStatus(sid, "closed") } },
			state: actions.StateAccountClosed,
		},
		{
			name:    "21476 parent suspended",
			code:    "21476",
			prepare: func(e *env) { e.fake.SetStatus(e.parent, "suspended") },
			state:   actions.StateClosed,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := envOptions{subs: 2}
			if tc.race != nil {
				o.twilio = func(e *env, tw actions.Twilio) actions.Twilio {
					return racer{Twilio: tw, before: tc.race(e)}
				}
			}
			e := newEnv(t, o)
			if tc.prepare != nil {
				tc.prepare(e)
			}
			sid := e.subs[0]
			e.send(sid, 100, 50)
			sum := e.judge()
			if diff := cmp.Diff([]string{sid}, sum.Refused); diff != "" {
				t.Errorf("refused (-want +got):\n%s", diff)
			}
			for range 2 {
				e.send(sid, 100, 50)
				e.judge()
			}
			if n := len(e.posts("suspended")); n != 1 {
				t.Fatalf("%d suspension POSTs, want exactly 1 (a refusal is not retried)", n)
			}
			if b := e.breaker(sid); b.State != tc.state {
				t.Errorf("breaker %s, want %s", b.State, tc.state)
			}
			out := e.audit(sid, actions.KindOutcome)
			if len(out) != 1 || out[0].Outcome != actions.OutcomeRefused || !strings.Contains(out[0].Detail, tc.code) {
				t.Errorf("outcomes = %+v, want one refused naming %s", out, tc.code)
			}
			if open, _ := e.st.OpenIntents(); len(open) != 0 {
				t.Errorf("open intents %+v", open)
			}
			blocked := e.notes.of(slack.KindBlocked)
			if len(blocked) != 1 || !strings.Contains(blocked[0].Action, tc.code) {
				t.Errorf("blocked events = %+v, want one naming %s", blocked, tc.code)
			}
			if got := value(e, "sentinel_twilio_refusals_total", "code="+tc.code); got != 1 {
				t.Errorf("refusals{code=%s} = %g, want 1", tc.code, got)
			}
		})
	}
}

func TestReinstateRefusedByTwilio(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	sid := e.subs[0]
	ctx := context.Background()
	if err := e.actor.Suspend(ctx, sid, "bob", "spam"); err != nil {
		t.Fatal(err)
	}
	e.fake.SuspendByTwilio(sid)
	err := e.actor.Reinstate(ctx, sid, "alice", "fixed")
	mustRefused(t, err)
	if !strings.Contains(err.Error(), "21478") {
		t.Errorf("error %q does not name 21478", err)
	}
	if b := e.breaker(sid); b.State != actions.StateTwilioSuspended {
		t.Errorf("breaker %s, want twilio_suspended", b.State)
	}
	// Refused at once the second time: no request.
	mustRefused(t, e.actor.Reinstate(ctx, sid, "alice", "fixed"))
	if n := len(e.posts("active")); n != 1 {
		t.Errorf("%d reinstatement POSTs, want 1", n)
	}
}

func TestReinstateProbation(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3})
	ctx := context.Background()
	sid := e.subs[1]
	e.send(sid, 100, 30)
	e.judge()
	if diff := cmp.Diff([]string{sid}, e.posts("suspended")); diff != "" {
		t.Fatalf("suspensions (-want +got):\n%s", diff)
	}

	// Not suspended: refused.
	mustRefused(t, e.actor.Reinstate(ctx, e.subs[0], "alice", "nothing to do"))

	e.clock.Advance(10 * time.Minute)
	reinstatedAt := e.clock.Now()
	if err := e.actor.Reinstate(ctx, sid, "alice", "customer removed the purchased list"); err != nil {
		t.Fatalf("Reinstate: %v", err)
	}
	if diff := cmp.Diff([]string{sid}, e.posts("active")); diff != "" {
		t.Fatalf("reinstatement POSTs (-want +got):\n%s", diff)
	}
	b := e.breaker(sid)
	want := store.Breaker{State: actions.StateProbation, Since: reinstatedAt, ReinstatedAt: reinstatedAt,
		Offences: 1, ProbationUntil: reinstatedAt.Add(24 * time.Hour),
		SpendDay: reinstatedAt.Format(time.DateOnly)} // and no spend yet
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("breaker (-want +got):\n%s", diff)
	}
	if states, _ := e.st.RuleStates(sid); len(states) != 0 {
		t.Errorf("rule states not reset: %+v", states)
	}
	if inc, _ := e.st.Incident(sid, "filtered"); inc.State != "reinstated" {
		t.Errorf("incident %+v, want reinstated", inc)
	}
	evs := e.notes.of(slack.KindReinstated)
	if len(evs) != 1 || evs[0].Actor != "alice" || evs[0].Reason != "customer removed the purchased list" {
		t.Errorf("reinstated events = %+v", evs)
	}
	if got := value(e, "sentinel_reinstatements_total"); got != 1 {
		t.Errorf("reinstatements = %g, want 1", got)
	}
	if got := value(e, "sentinel_breaker_state", "subaccount="+sid, "state=probation"); got != 1 {
		t.Errorf("breaker gauge = %g, want 1", got)
	}

	// The old traffic is still in the hour's window but before the
	// reinstatement: it must not trip the account again.
	for range 3 {
		e.judge()
	}
	if n := len(e.posts("suspended")); n != 1 {
		t.Fatalf("re-tripped by old traffic: %d suspensions", n)
	}

	// New traffic at 4% filtered: under the normal 5%, over the probation
	// threshold (5% * 0.5): suspended again.
	e.clock.Advance(20 * time.Minute)
	e.send(sid, 100, 4)
	e.judge()
	if diff := cmp.Diff([]string{sid, sid}, e.posts("suspended")); diff != "" {
		t.Fatalf("suspensions (-want +got):\n%s", diff)
	}
	if b := e.breaker(sid); b.State != actions.StateOpen || b.Offences != 2 || !b.ReinstatedAt.Equal(reinstatedAt) {
		t.Errorf("breaker %+v, want open, 2 offences, reinstated at %v", b, reinstatedAt)
	}
	out := e.audit(sid, actions.KindOutcome)
	if last := out[len(out)-1]; !strings.Contains(last.Detail, "probation") {
		t.Errorf("second suspension's evidence %q does not say probation", last.Detail)
	}
	// The second probation is twice as long.
	e.clock.Advance(time.Hour)
	if err := e.actor.Reinstate(ctx, sid, "alice", "second chance"); err != nil {
		t.Fatal(err)
	}
	if b := e.breaker(sid); b.ProbationUntil.Sub(b.ReinstatedAt) != 48*time.Hour {
		t.Errorf("second probation %v, want 48h", b.ProbationUntil.Sub(b.ReinstatedAt))
	}
	// Probation ends: closed again.
	e.clock.Advance(49 * time.Hour)
	e.judge()
	if b := e.breaker(sid); b.State != actions.StateClosed {
		t.Errorf("breaker after probation %s, want closed", b.State)
	}
}

func TestOutsideReactivation(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	sid := e.subs[0]
	e.send(sid, 100, 30)
	e.judge()
	if e.breaker(sid).State != actions.StateOpen {
		t.Fatal("not suspended")
	}
	// Someone reactivates it in the console; the poller syncs it.
	e.fake.SetStatus(sid, "active")
	e.syncAccounts()
	e.judge()
	b := e.breaker(sid)
	if b.State != actions.StateProbation || b.ReinstatedAt.IsZero() {
		t.Fatalf("breaker %+v, want probation", b)
	}
	trs := e.audit(sid, actions.KindTransition)
	if last := trs[len(trs)-1]; last.Actor != actions.ActorOutside {
		t.Errorf("transition actor %q, want %q", last.Actor, actions.ActorOutside)
	}
	evs := e.notes.of(slack.KindReinstated)
	if len(evs) != 1 || evs[0].Actor != actions.ActorOutside {
		t.Errorf("reinstated events = %+v", evs)
	}
	if n := len(e.posts("suspended")); n != 1 {
		t.Errorf("%d suspensions, want 1 (old traffic must not trip it again)", n)
	}
}

func TestStaleDataNoSuspension(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	sid := e.subs[0]
	e.send(sid, 100, 50)
	// The log is known complete only until 12 minutes ago: the policy
	// alone (staleness 15m) would still fire, but sentinel (max staleness
	// 10m) judges the data too stale to count: its rules are unknown, it
	// does not act, and it says it is blind.
	for range 3 {
		e.clock.Advance(time.Minute)
		e.coverUntil(start.Add(-12 * time.Minute).Add(e.clock.Now().Sub(start)))
		if _, err := e.actor.Judge(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs on stale data, want none", n)
	}
	// Every account's log is stale here: sentinel says it is blind to
	// each, once.
	blind := e.notes.of(slack.KindBlind)
	var blindTo []string
	for _, ev := range blind {
		blindTo = append(blindTo, ev.Subaccount)
	}
	if len(blind) != 3 || !slices.Contains(blindTo, sid) {
		t.Fatalf("blind alerts for %v, want one for each of the 3 accounts, %s among them", blindTo, sid)
	}
	if rows, err := e.actor.Status(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		for _, r := range rows {
			for _, rv := range r.Rules {
				if r.SID == sid && rv.Signal != "spend_budget" && rv.Signal != "spend_spike" && rv.Result != string(policy.Unknown) {
					t.Errorf("%s on stale data: %s, want unknown", rv.Rule, rv.Result)
				}
			}
		}
	}
	// Fresh data again: suspended.
	e.judge()
	if diff := cmp.Diff([]string{sid}, e.posts("suspended")); diff != "" {
		t.Errorf("after fresh data (-want +got):\n%s", diff)
	}
}

func TestReconcile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		twilio    string // the status Twilio ended with
		outcome   string
		breaker   string
		postsNext int // suspension POSTs by the next Judge
	}{
		{"took effect", "suspended", actions.OutcomeOK, actions.StateOpen, 0},
		{"never sent", "active", actions.OutcomeAbandoned, actions.StateClosed, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{subs: 2})
			sid := e.subs[0]
			e.send(sid, 100, 40)
			// "Crash": the intent is on disk, the outcome never written.
			id, err := e.st.AppendAudit(store.AuditRecord{
				At: e.clock.Now(), Subaccount: sid, Kind: actions.KindIntent, Action: actions.ActionSuspend,
				Rule: "filtered", Actor: actions.ActorSentinel, Reason: "test", Detail: "error_rate 30007 0.4",
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.twilio == "suspended" {
				e.fake.SetStatus(sid, "suspended")
			}

			// Restart: a new Actor on the same store.
			a, err := actions.New(actions.Config{}, e.st, e.tw, e.set.Load, e.notes, nil, nil, e.clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Reconcile(context.Background()); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if open, _ := e.st.OpenIntents(); len(open) != 0 {
				t.Fatalf("open intents after Reconcile: %+v", open)
			}
			out := e.audit(sid, actions.KindOutcome)
			if len(out) != 1 || out[0].IntentID != id || out[0].Outcome != tc.outcome {
				t.Fatalf("outcomes = %+v, want one %s for intent %d", out, tc.outcome, id)
			}
			if b := e.breaker(sid); b.State != tc.breaker {
				t.Errorf("breaker %s, want %s", b.State, tc.breaker)
			}
			// Reconciling again changes nothing.
			if err := a.Reconcile(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(e.audit(sid, actions.KindOutcome)); n != 1 {
				t.Errorf("%d outcomes after a second Reconcile, want 1", n)
			}

			e.clock.Advance(time.Minute)
			e.fresh()
			if _, err := a.Judge(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(e.posts("suspended")); n != tc.postsNext {
				t.Errorf("%d suspension POSTs after restart, want %d", n, tc.postsNext)
			}
			if got := e.twilioStatus(sid); got != "suspended" {
				t.Errorf("twilio status %s, want suspended", got)
			}
		})
	}
}

// lossy sends the status update, then loses the response and every
// connection after it, as a network partition right after the POST would.
type lossy struct {
	actions.Twilio
	e *env
}

func (l lossy) SetStatus(ctx context.Context, sid, status string) (twilioapi.Account, error) {
	if _, err := l.Twilio.SetStatus(ctx, sid, status); err != nil {
		return twilioapi.Account{}, err
	}
	l.e.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDrop})
	return twilioapi.Account{}, errors.New("read tcp: connection reset by peer")
}

// TestUnknownOutcome: the POST reaches Twilio but its response is lost and
// the status cannot be read either: the intent stays open, and the next
// cycle reconciles it before judging. Nothing is sent twice.
func TestUnknownOutcome(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2, twilio: func(e *env, tw actions.Twilio) actions.Twilio { return lossy{tw, e} }})
	sid := e.subs[0]
	e.send(sid, 100, 40)
	e.clock.Advance(time.Minute)
	e.fresh()
	_, err := e.actor.Judge(context.Background())
	if err == nil || !strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("Judge error = %v, want outcome unknown", err)
	}
	if open, _ := e.st.OpenIntents(); len(open) != 1 {
		t.Fatalf("open intents %d, want 1", len(open))
	}
	if b := e.breaker(sid); b.State != actions.StateClosed {
		t.Errorf("breaker %s before reconciliation, want closed", b.State)
	}
	e.fake.ClearFaults()
	e.judge()
	if open, _ := e.st.OpenIntents(); len(open) != 0 {
		t.Fatalf("open intents after the next cycle: %d", len(open))
	}
	if b := e.breaker(sid); b.State != actions.StateOpen || b.Offences != 1 {
		t.Errorf("breaker %+v, want open with 1 offence", b)
	}
	if n := len(e.posts("suspended")); n != 1 {
		t.Errorf("%d suspension POSTs, want 1", n)
	}
	if n := len(e.notes.of(slack.KindSuspended)); n != 1 {
		t.Errorf("%d suspended events, want 1", n)
	}
}

func TestMetricsLint(t *testing.T) {
	for _, noLabel := range []bool{false, true} {
		e := newEnv(t, envOptions{subs: 2, cfg: actions.Config{NoSubaccountLabel: noLabel}})
		e.send(e.subs[0], 100, 40)
		e.judge()
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		probs, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range probs {
			t.Errorf("promlint (no subaccount label %v): %s: %s", noLabel, p.Metric, p.Text)
		}
		if noLabel {
			if got := value(e, "sentinel_breaker_state", "state=open"); got != 1 {
				t.Errorf("breaker_state{state=open} = %g, want 1", got)
			}
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t, envOptions{subs: 1})
	for _, cfg := range []actions.Config{{MaxPerHour: -1}, {MaxFraction: 1.5}, {MaxStaleness: -time.Second}} {
		if _, err := actions.New(cfg, e.st, e.tw, e.set.Load, e.notes, nil, nil, nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	a, err := actions.New(actions.Config{}, e.st, e.tw, func() *policySet { return nil }, e.notes, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Judge(context.Background()); !errors.Is(err, actions.ErrNoPolicy) {
		t.Errorf("Judge without policy: %v, want ErrNoPolicy", err)
	}
}
