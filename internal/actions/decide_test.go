package actions_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/slack"
)

const ana = "U0ANA (ana) via Slack"

// suspendedIncident suspends e.subs[0] through a cycle and returns the
// suspension's event, whose buttons name the incident.
func suspendedIncident(t *testing.T, e *env) slack.Event {
	t.Helper()
	sid := e.subs[0]
	e.send(sid, 100, 50)
	e.judge()
	evs := e.notes.of(slack.KindSuspended)
	if len(evs) != 1 || e.twilioStatus(sid) != "suspended" {
		t.Fatalf("suspension events %+v, Twilio status %s; want one suspension", evs, e.twilioStatus(sid))
	}
	return evs[0]
}

func decision(ev slack.Event, action, reason string) slack.Decision {
	return slack.Decision{Action: action, Subaccount: ev.Subaccount, Rule: ev.Rule, Opened: ev.Opened, By: ana, Reason: reason}
}

func TestDecideReinstate(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	ctx := context.Background()
	ev := suspendedIncident(t, e)
	sid := ev.Subaccount
	if ev.Offer != slack.OfferSuspended || ev.Rule != "filtered" || ev.Opened.IsZero() {
		t.Fatalf("suspension event offers %q for %s/%v; want the incident's Reinstate and Keep", ev.Offer, ev.Rule, ev.Opened)
	}

	p, err := e.actor.Preview(ctx, decision(ev, slack.DecideReinstate, ""))
	if err != nil || p.Refused != "" || !strings.Contains(p.Follows, "Probation follows until") {
		t.Fatalf("Preview = %+v, %v; want the probation that follows", p, err)
	}
	if out, err := e.actor.Decide(ctx, decision(ev, slack.DecideReinstate, " ")); err != nil || out.Refused != "a reason is required" {
		t.Fatalf("Decide without a reason = %+v, %v", out, err)
	}
	out, err := e.actor.Decide(ctx, decision(ev, slack.DecideReinstate, "list cleaned, reviewed"))
	if err != nil || out.Refused != "" || !strings.Contains(out.Done, "reinstated; on probation until") {
		t.Fatalf("Decide = %+v, %v", out, err)
	}
	if got := e.twilioStatus(sid); got != "active" {
		t.Errorf("Twilio status %s, want active", got)
	}
	if b := e.breaker(sid); b.State != actions.StateProbation {
		t.Errorf("breaker %s, want probation", b.State)
	}
	// The same write-ahead audit as the command line, naming the person.
	var intent, outcome bool
	for _, r := range e.audit(sid, "") {
		if r.Action == actions.ActionReinstate && r.Actor == ana && r.Reason == "list cleaned, reviewed" && r.Rule == "filtered" {
			intent = intent || r.Kind == actions.KindIntent
			outcome = outcome || (r.Kind == actions.KindOutcome && r.Outcome == actions.OutcomeOK)
		}
	}
	if !intent || !outcome {
		t.Errorf("audit lacks the reinstatement's intent (%v) or outcome (%v) by %s:\n%+v", intent, outcome, ana, e.audit(sid, ""))
	}
	// Told in the incident's thread.
	re := e.notes.of(slack.KindReinstated)
	if len(re) != 1 || re[0].Rule != "filtered" || !re[0].Opened.Equal(ev.Opened) || re[0].Actor != ana {
		t.Errorf("reinstated events %+v, want one in the incident's thread by %s", re, ana)
	}

	// A second click acts no more.
	for _, action := range []string{slack.DecideReinstate, slack.DecideKeep} {
		out, err = e.actor.Decide(ctx, decision(ev, action, "again"))
		if err != nil || !strings.Contains(out.Refused, "stale: the subaccount was already reinstated by "+ana) {
			t.Errorf("second %s = %+v, %v; want refused as already reinstated by %s", action, out, err, ana)
		}
	}
	if n := len(e.posts("active")); n != 1 {
		t.Errorf("%d reactivations sent to Twilio, want 1", n)
	}
	refusals := e.audit(sid, actions.KindRefusal)
	if len(refusals) != 3 || refusals[0].Detail != "a reason is required" || refusals[2].Actor != ana {
		t.Errorf("refusals in the audit log: %+v, want the reasonless click and both second clicks", refusals)
	}
}

func TestDecideStale(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	ctx := context.Background()
	ev := suspendedIncident(t, e)

	older := ev
	older.Opened = ev.Opened.Add(-time.Hour)
	out, err := e.actor.Decide(ctx, decision(older, slack.DecideReinstate, "why"))
	if err != nil || !strings.Contains(out.Refused, "stale: this message is about an earlier incident") {
		t.Errorf("Decide on an earlier incident = %+v, %v", out, err)
	}
	other := ev
	other.Rule = "opt-outs"
	if out, _ = e.actor.Decide(ctx, decision(other, slack.DecideKeep, "why")); !strings.Contains(out.Refused, "stale: no incident of opt-outs") {
		t.Errorf("Decide on no incident = %+v", out)
	}
	if n := len(e.posts("active")); n != 0 {
		t.Errorf("%d reactivations for stale buttons", n)
	}

	// Reinstated from the command line: the button is stale.
	if err := e.actor.Reinstate(ctx, ev.Subaccount, "bob", "by hand"); err != nil {
		t.Fatal(err)
	}
	out, err = e.actor.Decide(ctx, decision(ev, slack.DecideReinstate, "why"))
	if err != nil || !strings.Contains(out.Refused, "already reinstated by bob at ") {
		t.Errorf("Decide after -reinstate = %+v, %v", out, err)
	}
	p, err := e.actor.Preview(ctx, decision(ev, slack.DecideReinstate, ""))
	if err != nil || !strings.Contains(p.Refused, "already reinstated by bob") {
		t.Errorf("Preview after -reinstate = %+v, %v", p, err)
	}
}

func TestDecideKeep(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	ctx := context.Background()
	ev := suspendedIncident(t, e)
	out, err := e.actor.Decide(ctx, decision(ev, slack.DecideKeep, "fraud confirmed by the client"))
	if err != nil || !strings.HasPrefix(out.Done, "kept suspended") {
		t.Fatalf("Decide keep = %+v, %v", out, err)
	}
	inc, err := e.st.Incident(ev.Subaccount, ev.Rule)
	if err != nil || inc.Decision.What != "kept_suspended" || inc.Decision.By != ana || inc.Decision.Reason != "fraud confirmed by the client" {
		t.Errorf("incident after keep = %+v, %v", inc, err)
	}
	kept := e.notes.of(slack.KindKeptSuspended)
	if len(kept) != 1 || !kept[0].Opened.Equal(ev.Opened) || kept[0].Actor != ana {
		t.Errorf("kept events %+v, want one in the incident's thread", kept)
	}
	for _, action := range []string{slack.DecideKeep, slack.DecideReinstate} {
		out, err := e.actor.Decide(ctx, decision(ev, action, "again"))
		if err != nil || !strings.Contains(out.Refused, "already decided: kept suspended by "+ana) {
			t.Errorf("%s after keep = %+v, %v", action, out, err)
		}
	}
	if e.twilioStatus(ev.Subaccount) != "suspended" || len(e.posts("active")) != 0 {
		t.Error("keeping it suspended changed it in Twilio")
	}
	var recs int
	for _, r := range e.audit(ev.Subaccount, actions.KindDecision) {
		if r.Action == actions.ActionKeep && r.Actor == ana {
			recs++
		}
	}
	if recs != 1 {
		t.Errorf("%d keep decisions in the audit log, want 1", recs)
	}
}

// TestDecideAckSilencesReminders: an acknowledged alert is not reminded of
// while its severity stays the same; a new severity lapses the
// acknowledgement at once, and a new incident starts unacknowledged.
func TestDecideAckSilencesReminders(t *testing.T) {
	e := newEnv(t, envOptions{subs: 1})
	ctx := context.Background()
	sid := e.subs[0]
	e.optOuts(sid, 100, 20)
	e.judge()
	fired := e.notes.of(slack.KindFiring)
	if len(fired) != 1 || fired[0].Offer != slack.OfferAlert {
		t.Fatalf("firing events %+v, want one offering Acknowledge", fired)
	}
	ev := fired[0]
	out, err := e.actor.Decide(ctx, decision(ev, slack.DecideAck, ""))
	if err != nil || !strings.HasPrefix(out.Done, "acknowledged") {
		t.Fatalf("Decide ack = %+v, %v", out, err)
	}
	if out, _ := e.actor.Decide(ctx, decision(ev, slack.DecideAck, "")); !strings.Contains(out.Refused, "already acknowledged by "+ana) {
		t.Errorf("second ack = %+v", out)
	}

	for range 3 {
		e.clock.Advance(4 * time.Hour)
		e.optOuts(sid, 100, 20)
		e.judge()
	}
	if rem := e.notes.of(slack.KindReminder); len(rem) != 0 {
		t.Fatalf("%d reminders of an acknowledged alert", len(rem))
	}

	e.loadPolicy(strings.Replace(basePolicy, "severity: warning", "severity: critical", 1))
	e.optOuts(sid, 100, 20)
	e.judge()
	rem := e.notes.of(slack.KindReminder)
	if len(rem) != 1 || rem[0].Severity != slack.SeverityCritical || rem[0].Offer != slack.OfferAlert {
		t.Fatalf("reminders after the severity changed: %+v, want one, critical, offering Acknowledge", rem)
	}
	e.clock.Advance(4 * time.Hour)
	e.optOuts(sid, 100, 20)
	e.judge()
	if n := len(e.notes.of(slack.KindReminder)); n != 2 {
		t.Errorf("%d reminders after the acknowledgement lapsed and 4h passed, want 2", n)
	}
}

// TestDecideDryRun: with -dry-run a would-suspend message's buttons record
// the decision and send nothing to Twilio.
func TestDecideDryRun(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2, cfg: actions.Config{DryRun: true}})
	ctx := context.Background()
	sid := e.subs[0]
	e.send(sid, 100, 50)
	e.judge()
	would := e.notes.of(slack.KindWouldSuspend)
	if len(would) != 1 || would[0].Offer != slack.OfferWouldSuspend {
		t.Fatalf("would-suspend events %+v, want one offering dry-run buttons", would)
	}
	d := decision(would[0], slack.DecideReinstate, "looks fine to me")
	d.DryRun = true
	p, err := e.actor.Preview(ctx, d)
	if err != nil || !strings.HasPrefix(p.Follows, "Dry-run: ") {
		t.Errorf("Preview = %+v, %v", p, err)
	}
	out, err := e.actor.Decide(ctx, d)
	if err != nil || !strings.HasPrefix(out.Done, "would reinstate (dry-run)") {
		t.Fatalf("Decide = %+v, %v", out, err)
	}
	if n := e.allPosts(); n != 0 {
		t.Errorf("%d POSTs to Twilio in dry-run", n)
	}
	if len(e.notes.of(slack.KindWouldReinstate)) != 1 {
		t.Error("no would-reinstate event in the thread")
	}
	if out, _ := e.actor.Decide(ctx, d); !strings.Contains(out.Refused, "would be reinstated (dry-run) by "+ana) {
		t.Errorf("second click = %+v", out)
	}
	// The rule keeps firing; the decided incident is not reminded of.
	e.clock.Advance(4 * time.Hour)
	e.send(sid, 100, 50)
	e.judge()
	if n := len(e.notes.of(slack.KindReminder)); n != 0 {
		t.Errorf("%d reminders after the decision", n)
	}
}

func TestRefusedIsAudited(t *testing.T) {
	e := newEnv(t, envOptions{subs: 1})
	ev := slack.Event{Subaccount: e.subs[0], Rule: "filtered", Opened: start}
	d := decision(ev, slack.DecideReinstate, "")
	d.By = "U0EVE (eve) via Slack"
	if err := e.actor.Refused(context.Background(), d, "not a decider (-slack-deciders)"); err != nil {
		t.Fatal(err)
	}
	recs := e.audit(e.subs[0], actions.KindRefusal)
	if len(recs) != 1 || recs[0].Actor != d.By || recs[0].Detail != "not a decider (-slack-deciders)" || recs[0].Outcome != actions.OutcomeRefused {
		t.Errorf("refusals = %+v", recs)
	}
}

// TestDryRunDecisionDoesNotBindSuspension: a decision on a rule's
// would-suspend message (the rule in dry_run) is about a suspension that
// did not happen. When the rule leaves dry_run and the same incident
// suspends the subaccount for real, that decision neither leaves the real
// suspension decided nor refuses its Reinstate as already decided.
func TestDryRunDecisionDoesNotBindSuspension(t *testing.T) {
	for _, action := range []string{slack.DecideReinstate, slack.DecideKeep} {
		t.Run(action, func(t *testing.T) {
			dry := strings.Replace(basePolicy, "    action: suspend\n", "    action: suspend\n    mode: dry_run\n", 1)
			e := newEnv(t, envOptions{subs: 2, policy: dry})
			ctx := context.Background()
			sid := e.subs[0]
			e.send(sid, 100, 50)
			e.judge()
			would := e.notes.of(slack.KindWouldSuspend)
			if len(would) != 1 || would[0].Offer != slack.OfferWouldSuspend {
				t.Fatalf("would-suspend events %+v, want one offering dry-run buttons", would)
			}
			d := decision(would[0], action, "fine for a test")
			d.DryRun = true
			if out, err := e.actor.Decide(ctx, d); err != nil || out.Refused != "" {
				t.Fatalf("dry-run %s = %+v, %v", action, out, err)
			}

			e.loadPolicy(basePolicy)
			e.clock.Advance(time.Minute)
			e.send(sid, 100, 50)
			e.judge()
			sus := e.notes.of(slack.KindSuspended)
			if len(sus) != 1 || e.twilioStatus(sid) != "suspended" {
				t.Fatalf("suspension events %+v, Twilio status %s; want one suspension", sus, e.twilioStatus(sid))
			}
			if inc, err := e.st.Incident(sid, "filtered"); err != nil || inc.Decision.What != "" {
				t.Errorf("incident after the real suspension = %+v, %v; want it undecided", inc, err)
			}
			out, err := e.actor.Decide(ctx, decision(sus[0], slack.DecideReinstate, "reviewed"))
			if err != nil || out.Refused != "" || e.twilioStatus(sid) != "active" {
				t.Errorf("Reinstate of the real suspension = %+v, %v, Twilio %s; want reinstated", out, err, e.twilioStatus(sid))
			}
		})
	}
}

// TestDryRunReinstateDoesNotBindRealOne: sentinel restarted with -dry-run
// over a real suspension records a Reinstate click as would-reinstate;
// once it runs for real again, that record does not refuse the real
// reinstatement as already decided.
func TestDryRunReinstateDoesNotBindRealOne(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	ctx := context.Background()
	ev := suspendedIncident(t, e)
	d := decision(ev, slack.DecideReinstate, "trying it out")
	d.DryRun = true
	if out, err := e.actor.Decide(ctx, d); err != nil || !strings.HasPrefix(out.Done, "would reinstate (dry-run)") {
		t.Fatalf("dry-run Reinstate = %+v, %v", out, err)
	}
	out, err := e.actor.Decide(ctx, decision(ev, slack.DecideReinstate, "reviewed"))
	if err != nil || out.Refused != "" || e.twilioStatus(ev.Subaccount) != "active" {
		t.Errorf("real Reinstate = %+v, %v, Twilio %s; want reinstated", out, err, e.twilioStatus(ev.Subaccount))
	}
}
