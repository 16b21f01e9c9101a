package actions_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/actions"
	"sentinel/internal/slack"
)

func TestJudgeSuspendsOffenderOnce(t *testing.T) {
	e := newEnv(t, envOptions{subs: 5})
	for i, sid := range e.subs {
		filtered := 0
		if i == 2 {
			filtered = 30 // 30% filtered
		}
		e.send(sid, 100, filtered)
	}
	bad := e.subs[2]

	for range 3 {
		e.judge()
	}

	if diff := cmp.Diff([]string{bad}, e.posts("suspended")); diff != "" {
		t.Fatalf("POST Status=suspended (-want +got):\n%s", diff)
	}
	for _, sid := range e.subs {
		want := "active"
		if sid == bad {
			want = "suspended"
		}
		if got := e.twilioStatus(sid); got != want {
			t.Errorf("twilio status of %s = %s, want %s", sid, got, want)
		}
	}
	if b := e.breaker(bad); b.State != actions.StateOpen || b.Offences != 1 {
		t.Errorf("breaker = %+v, want open with 1 offence", b)
	}
	acct, err := e.st.Account(bad)
	if err != nil || acct.Status != "suspended" {
		t.Errorf("store account = %+v, %v; want suspended", acct, err)
	}

	// Write-ahead: the intent precedes the outcome, which names it.
	intents, outcomes := e.audit(bad, actions.KindIntent), e.audit(bad, actions.KindOutcome)
	if len(intents) != 1 || len(outcomes) != 1 {
		t.Fatalf("intents %d, outcomes %d; want 1 and 1", len(intents), len(outcomes))
	}
	if in, out := intents[0], outcomes[0]; out.IntentID != in.ID || out.Outcome != actions.OutcomeOK ||
		in.Rule != "filtered" || in.Actor != actions.ActorSentinel || !strings.Contains(in.Detail, "30007") {
		t.Errorf("intent %+v\noutcome %+v", in, out)
	}
	if open, _ := e.st.OpenIntents(); len(open) != 0 {
		t.Errorf("open intents %+v, want none", open)
	}

	sus := e.notes.of(slack.KindSuspended)
	if len(sus) != 1 {
		t.Fatalf("suspended events %d, want 1", len(sus))
	}
	wantHint := fmt.Sprintf(`sentinel -reinstate %s -reason "<why>"`, bad)
	if ev := sus[0]; ev.Subaccount != bad || ev.Reinstate != wantHint || ev.Rule != "filtered" ||
		ev.Value != 0.3 || ev.Threshold != 0.05 || ev.Unit != slack.UnitRatio || ev.Opened.IsZero() {
		t.Errorf("suspended event = %+v", ev)
	}
	if n := len(e.notes.of(slack.KindFiring)); n != 1 {
		t.Errorf("firing events %d, want 1", n)
	}
	inc, err := e.st.Incident(bad, "filtered")
	if err != nil || inc.State != "suspended" {
		t.Errorf("incident = %+v, %v; want suspended", inc, err)
	}
	if got := value(e, "sentinel_suspensions_total", "mode=enforce", "actor=sentinel"); got != 1 {
		t.Errorf("sentinel_suspensions_total{enforce,sentinel} = %g, want 1", got)
	}
}

func TestDryRun(t *testing.T) {
	dryRule := strings.Replace(basePolicy, "action: suspend", "action: suspend\n    mode: dry_run", 1)
	for _, tc := range []struct {
		name   string
		cfg    actions.Config
		policy string
	}{
		{"global", actions.Config{DryRun: true}, basePolicy},
		{"rule mode", actions.Config{}, dryRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{subs: 3, cfg: tc.cfg, policy: tc.policy})
			e.send(e.subs[0], 100, 40)
			e.send(e.subs[1], 100, 0)
			for range 3 {
				sum := e.judge()
				if len(sum.Suspended) != 0 {
					t.Errorf("summary suspended %v in dry-run", sum.Suspended)
				}
			}
			if n := e.allPosts(); n != 0 {
				t.Fatalf("%d POSTs to Twilio in dry-run, want none", n)
			}
			if b := e.breaker(e.subs[0]); b.State != actions.StateClosed {
				t.Errorf("breaker %s, want closed", b.State)
			}
			decs := e.audit(e.subs[0], actions.KindDecision)
			if len(decs) != 1 || !decs[0].DryRun || decs[0].Outcome != actions.OutcomeDryRun || decs[0].Action != actions.ActionSuspend {
				t.Errorf("dry-run decisions = %+v, want one DryRun suspend", decs)
			}
			if n := len(e.audit(e.subs[0], actions.KindIntent)); n != 0 {
				t.Errorf("%d intents in dry-run", n)
			}
			would := e.notes.of(slack.KindWouldSuspend)
			if len(would) != 1 || would[0].Subaccount != e.subs[0] || !strings.Contains(would[0].Action, "would suspend") {
				t.Errorf("would-suspend events = %+v, want one for %s", would, e.subs[0])
			}
			if n := len(e.notes.of(slack.KindSuspended)); n != 0 {
				t.Errorf("%d suspended events in dry-run", n)
			}
			if got := value(e, "sentinel_suspensions_total", "mode=dry_run", "actor=sentinel"); got != 1 {
				t.Errorf("sentinel_suspensions_total{dry_run,sentinel} = %g, want 1", got)
			}
		})
	}
}

func TestBlastRadiusFraction(t *testing.T) {
	// 20 subaccounts, 8 (40%) trip at once: at most max(1, floor(0.1*20)) = 2
	// may be suspended, the strongest evidence first.
	e := newEnv(t, envOptions{subs: 20, cfg: actions.Config{MaxPerHour: 100}})
	for i, sid := range e.subs {
		filtered := 0
		if i%5 < 2 { // 0,1,5,6,10,11,15,16
			filtered = 10 + i
		}
		e.send(sid, 100, filtered)
	}
	sum := e.judge()
	want := []string{e.subs[16], e.subs[15]} // strongest: 26% and 25%
	if diff := cmp.Diff(want, e.posts("suspended")); diff != "" {
		t.Fatalf("suspensions (-want +got):\n%s", diff)
	}
	if !sum.Systemic || len(sum.Blocked) != 6 {
		t.Errorf("summary = %+v, want systemic with 6 blocked", sum)
	}
	sys := e.notes.of(slack.KindSystemic)
	if len(sys) != 1 || sys[0].Severity != slack.SeverityCritical {
		t.Fatalf("systemic alerts = %+v, want exactly one critical", sys)
	}
	if n := len(e.notes.of(slack.KindBlocked)); n != 6 {
		t.Errorf("blocked events %d, want 6", n)
	}
	blocked := 0
	for _, r := range e.audit("", actions.KindRefusal) {
		if strings.HasPrefix(r.Detail, "rail=fraction:") && r.Outcome == actions.OutcomeBlocked {
			blocked++
		}
	}
	if blocked != 6 {
		t.Errorf("fraction refusals in the audit log %d, want 6", blocked)
	}
	if got := value(e, "sentinel_actions_blocked_total", "rail="+actions.RailFraction); got != 6 {
		t.Errorf("blocked{fraction} = %g, want 6", got)
	}

	// The next cycles change nothing: no new suspension, no new alert.
	for range 2 {
		e.judge()
	}
	if n := len(e.posts("suspended")); n != 2 {
		t.Errorf("suspensions after more cycles %d, want 2", n)
	}
	if n := len(e.notes.of(slack.KindSystemic)); n != 1 {
		t.Errorf("systemic alerts after more cycles %d, want 1", n)
	}
}

func TestBlastRadiusPerHour(t *testing.T) {
	e := newEnv(t, envOptions{subs: 50, cfg: actions.Config{MaxPerHour: 3}})
	for i := range 4 {
		e.send(e.subs[i], 100, 20+i)
	}
	sum := e.judge()
	if diff := cmp.Diff([]string{e.subs[3], e.subs[2], e.subs[1]}, e.posts("suspended")); diff != "" {
		t.Fatalf("suspensions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{e.subs[0]}, sum.Blocked); diff != "" {
		t.Errorf("blocked (-want +got):\n%s", diff)
	}
	if n := len(e.notes.of(slack.KindSystemic)); n != 1 {
		t.Errorf("systemic alerts %d, want 1", n)
	}
	if got := value(e, "sentinel_actions_blocked_total", "rail="+actions.RailPerHour); got != 1 {
		t.Errorf("blocked{per_hour} = %g, want 1", got)
	}

	// Still inside the hour: nothing more.
	e.clock.Advance(30 * time.Minute)
	e.send(e.subs[0], 100, 20)
	e.judge()
	if n := len(e.posts("suspended")); n != 3 {
		t.Fatalf("suspensions within the hour %d, want 3", n)
	}

	// The hour rolls over: the fourth is suspended on its (still bad) traffic.
	e.clock.Advance(30 * time.Minute)
	e.send(e.subs[0], 100, 20)
	e.judge()
	if diff := cmp.Diff([]string{e.subs[3], e.subs[2], e.subs[1], e.subs[0]}, e.posts("suspended")); diff != "" {
		t.Fatalf("suspensions after the hour (-want +got):\n%s", diff)
	}
}

func TestNeverParent(t *testing.T) {
	parentRule := basePolicy + `
  - name: parent-sends
    description: The parent account sends messages itself
    signal: parent_outbound
    window: 1h
    trip: 1
    severity: critical
    action: suspend
`
	e := newEnv(t, envOptions{subs: 2, policy: parentRule})
	e.send(e.parent, 100, 50)
	e.judge()
	e.judge()
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs, want none", n)
	}
	refusals := e.audit(e.parent, actions.KindRefusal)
	if len(refusals) != 1 || !strings.HasPrefix(refusals[0].Detail, "rail=parent:") {
		t.Errorf("parent refusals = %+v, want one rail=parent", refusals)
	}
	if n := len(e.notes.of(slack.KindFiring)); n != 1 {
		t.Errorf("firing alerts %d, want 1 (the parent still alerts)", n)
	}
	if got := value(e, "sentinel_actions_blocked_total", "rail="+actions.RailParent); got != 1 {
		t.Errorf("blocked{parent} = %g, want 1", got)
	}

	ctx := context.Background()
	mustRefused(t, e.actor.Suspend(ctx, e.parent, "mallory", "because"))
	mustRefused(t, e.actor.Reinstate(ctx, e.parent, "mallory", "because"))
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs after manual attempts, want none", n)
	}
}

func TestProtected(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	e.loadPolicy(basePolicy + fmt.Sprintf("protected:\n  accounts: [%s]\n", e.subs[0]))
	e.send(e.subs[0], 100, 50)
	e.judge()
	e.judge()
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs for a protected account, want none", n)
	}
	if b := e.breaker(e.subs[0]); b.State != actions.StateProtected {
		t.Errorf("breaker %s, want protected", b.State)
	}
	if n := len(e.notes.of(slack.KindFiring)); n != 1 {
		t.Errorf("firing alerts %d, want 1", n)
	}
	if got := value(e, "sentinel_actions_blocked_total", "rail="+actions.RailProtected); got != 1 {
		t.Errorf("blocked{protected} = %g, want 1", got)
	}

	// Hot reload without the protection: the next cycle suspends.
	e.loadPolicy(basePolicy)
	e.send(e.subs[0], 100, 50)
	e.judge()
	if diff := cmp.Diff([]string{e.subs[0]}, e.posts("suspended")); diff != "" {
		t.Errorf("after unprotecting (-want +got):\n%s", diff)
	}
}

func TestClosedNeverTouched(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2, closed: []int{0}})
	closed := e.subs[0]
	e.send(closed, 100, 50)
	e.judge()
	e.judge()
	ctx := context.Background()
	mustRefused(t, e.actor.Suspend(ctx, closed, "bob", "spam"))
	mustRefused(t, e.actor.Reinstate(ctx, closed, "bob", "fixed"))
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs for a closed account, want none", n)
	}
	if b := e.breaker(closed); b.State != actions.StateAccountClosed {
		t.Errorf("breaker %s, want account_closed", b.State)
	}
}

func TestAlreadySuspended(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	sid := e.subs[0]
	// Suspended in the console; the store has not seen it yet.
	if err := e.fake.SetStatus(sid, "suspended"); err != nil {
		t.Fatal(err)
	}
	e.send(sid, 100, 50)
	e.judge()
	e.judge()
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs for an already suspended account, want none", n)
	}
	if b := e.breaker(sid); b.State != actions.StateExternalSuspended {
		t.Errorf("breaker %s, want external_suspended", b.State)
	}
	// A manual suspension of an account already suspended does nothing,
	// and says so: by whom.
	if err := e.actor.Suspend(context.Background(), sid, "bob", "spam"); !errors.Is(err, actions.ErrUnchanged) ||
		!strings.Contains(err.Error(), "outside sentinel") {
		t.Fatalf("Suspend = %v, want ErrUnchanged saying it was suspended outside sentinel", err)
	}
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs after a manual suspend, want none", n)
	}
}

func TestManualSuspend(t *testing.T) {
	// Not subject to the blast radius: a person decided.
	e := newEnv(t, envOptions{subs: 3, cfg: actions.Config{MaxPerHour: 1}})
	ctx := context.Background()
	for _, sid := range e.subs[:2] {
		if err := e.actor.Suspend(ctx, sid, "bob", "fraud report #12"); err != nil {
			t.Fatalf("Suspend %s: %v", sid, err)
		}
	}
	if err := e.actor.Suspend(ctx, e.subs[0], "bob", "again"); !errors.Is(err, actions.ErrUnchanged) ||
		!strings.Contains(err.Error(), "by bob at ") || !strings.Contains(err.Error(), "fraud report #12") {
		t.Fatalf("second Suspend = %v, want ErrUnchanged naming bob, when and why", err)
	}
	if diff := cmp.Diff(e.subs[:2], e.posts("suspended")); diff != "" {
		t.Fatalf("suspensions (-want +got):\n%s", diff)
	}
	out := e.audit(e.subs[0], actions.KindOutcome)
	if len(out) != 1 || out[0].Actor != "bob" || out[0].Reason != "fraud report #12" || out[0].Outcome != actions.OutcomeOK {
		t.Errorf("outcomes = %+v", out)
	}
	evs := e.notes.of(slack.KindManualSuspended)
	if len(evs) != 2 || evs[0].Actor != "bob" || evs[0].Reinstate == "" {
		t.Errorf("manual suspended events = %+v", evs)
	}
	if got := value(e, "sentinel_suspensions_total", "mode=enforce", "actor=manual"); got != 2 {
		t.Errorf("suspensions{enforce,manual} = %g, want 2", got)
	}
	if err := e.actor.Suspend(ctx, "AC"+strings.Repeat("9", 32), "bob", "x"); err == nil {
		t.Error("Suspend of an unknown account succeeded")
	}
	if err := e.actor.Suspend(ctx, e.subs[2], "bob", ""); err == nil {
		t.Error("Suspend without a reason succeeded")
	}
}
