package actions_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/slack"
	"sentinel/internal/traffic"
)

// optOuts stores n outbound messages and `stops` inbound STOPs of sid.
func (e *env) optOuts(sid string, n, stops int) {
	e.t.Helper()
	e.send(sid, n, 0)
	now := e.clock.Now()
	var msgs []traffic.Message
	for i := range stops {
		e.seq++
		msgs = append(msgs, traffic.Message{SID: fmt.Sprintf("SM%032x", e.seq), AccountSID: sid, Direction: traffic.Inbound,
			Status: "received", Time: now.Add(-time.Duration(i%20) * time.Minute).Add(-time.Second), Keyword: traffic.OptOut})
	}
	if _, err := e.st.PutMessages(sid, msgs); err != nil {
		e.t.Fatal(err)
	}
}

func TestIncidentReminderAndResolve(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	sid := e.subs[0]
	e.optOuts(sid, 100, 20) // 20% opt-outs: the alert-only rule fires
	e.judge()
	e.judge()
	if n := len(e.notes.of(slack.KindFiring)); n != 1 {
		t.Fatalf("firing events %d, want 1", n)
	}
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs for an alert-only rule", n)
	}
	// Four hours later, still bad: one reminder.
	e.clock.Advance(4 * time.Hour)
	e.optOuts(sid, 100, 20)
	e.judge()
	e.judge()
	rem := e.notes.of(slack.KindReminder)
	if len(rem) != 1 || rem[0].Rule != "opt-outs" || rem[0].Opened.IsZero() {
		t.Fatalf("reminders = %+v, want one for opt-outs", rem)
	}
	// Clean traffic: resolved, once.
	e.clock.Advance(2 * time.Hour)
	e.optOuts(sid, 100, 0)
	e.judge()
	e.judge()
	res := e.notes.of(slack.KindResolved)
	if len(res) != 1 || res[0].Rule != "opt-outs" || !res[0].Opened.Equal(rem[0].Opened) {
		t.Fatalf("resolved events = %+v, want one for the same incident", res)
	}
	inc, err := e.st.Incident(sid, "opt-outs")
	if err != nil || inc.State != "resolved" {
		t.Errorf("incident = %+v, %v; want resolved", inc, err)
	}
	if got := value(e, "sentinel_policy_evaluations_total", "rule=opt-outs", "result=firing"); got < 4 {
		t.Errorf("evaluations{opt-outs,firing} = %g, want at least 4", got)
	}
}

// TestBlindWhenUnknown: a suspension rule that was on its way to firing
// becomes unknown because the log stopped being read: sentinel says it is
// blind, once, and suspends nothing.
func TestBlindWhenUnknown(t *testing.T) {
	e := newEnv(t, envOptions{subs: 1, policy: strings.Replace(basePolicy, "trip: 5%", "trip: 5%\n    for: 3", 1)})
	sid := e.subs[0]
	e.send(sid, 100, 50)
	e.judge() // pending 1/3
	stopped := e.clock.Now()
	for range 5 {
		e.clock.Advance(10 * time.Minute)
		e.coverUntil(stopped)
		if _, err := e.actor.Judge(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.allPosts(); n != 0 {
		t.Fatalf("%d POSTs while blind", n)
	}
	var blind []slack.Event
	for _, ev := range e.notes.of(slack.KindBlind) {
		if ev.Subaccount == sid {
			blind = append(blind, ev)
		}
	}
	if len(blind) != 1 || !strings.Contains(blind[0].Detail, "filtered") {
		t.Fatalf("blind alerts = %+v, want one naming the rule", blind)
	}
}

// TestRefusalRetriedAfterReminder: 21476 (the parent is suspended) is not
// retried every cycle, but is once a reminder period has passed.
func TestRefusalRetriedAfterReminder(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2})
	sid := e.subs[0]
	e.fake.SetStatus(e.parent, "suspended")
	e.send(sid, 100, 50)
	e.judge()
	e.judge()
	if n := len(e.posts("suspended")); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}
	e.fake.SetStatus(e.parent, "active")
	e.clock.Advance(4 * time.Hour)
	e.send(sid, 100, 50)
	e.judge()
	if n := len(e.posts("suspended")); n != 2 {
		t.Fatalf("%d POSTs after the reminder period, want 2", n)
	}
	if b := e.breaker(sid); b.State != actions.StateOpen {
		t.Errorf("breaker %s, want open", b.State)
	}
}
