package actions_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/actions"
	"sentinel/internal/traffic"
	"sentinel/internal/twiliofake"
)

func TestRails(t *testing.T) {
	r := actions.DefaultRails()
	if r != (actions.Rails{MaxPerHour: 3, MaxFraction: 0.10, MaxStaleness: 10 * time.Minute}) {
		t.Fatalf("DefaultRails = %+v, want the documented defaults", r)
	}
	for _, c := range []struct {
		name               string
		hour, open, active int
		rail               string
	}{
		{"room", 0, 0, 30, ""},
		{"per-hour cap", 3, 0, 30, actions.RailPerHour},
		{"per-hour cap first", 3, 3, 30, actions.RailPerHour},
		{"10% of 30 is 3", 2, 3, 30, actions.RailFraction},
		{"at least one", 0, 0, 5, ""},
		{"one of five", 1, 1, 5, actions.RailFraction},
		{"10% of 29 is 2", 0, 1, 29, ""},
		{"rounded down", 0, 2, 29, actions.RailFraction},
	} {
		rail, why := r.Blast(c.hour, c.open, c.active)
		if rail != c.rail || (rail == "") != (why == "") {
			t.Errorf("%s: Blast(%d, %d, %d) = %q, %q; want rail %q", c.name, c.hour, c.open, c.active, rail, why, c.rail)
		}
	}
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	if r.Stale(traffic.Coverage{Until: now.Add(-10 * time.Minute)}, now) || !r.Stale(traffic.Coverage{Until: now.Add(-11 * time.Minute)}, now) {
		t.Error("Stale does not draw the line at MaxStaleness")
	}
}

func TestInFleet(t *testing.T) {
	for _, c := range []struct {
		name                 string
		parent               bool
		status, state        string
		manual               bool
		wantActive, wantOpen bool
	}{
		{"active", false, "active", actions.StateClosed, false, true, false},
		{"probation", false, "active", actions.StateProbation, false, true, false},
		{"suspended by sentinel", false, "suspended", actions.StateOpen, false, true, true},
		{"suspended by a person", false, "suspended", actions.StateOpen, true, false, false},
		{"suspended outside", false, "suspended", actions.StateExternalSuspended, false, false, false},
		{"closed", false, "closed", actions.StateAccountClosed, false, false, false},
		{"parent", true, "active", actions.StateClosed, false, false, false},
	} {
		active, open := actions.InFleet(c.parent, c.status, c.state, c.manual)
		if active != c.wantActive || open != c.wantOpen {
			t.Errorf("%s: InFleet = %t, %t; want %t, %t", c.name, active, open, c.wantActive, c.wantOpen)
		}
	}
}

// TestChanges: the audit log of a subaccount that sentinel suspended, a
// person reinstated, the console suspended and reactivated, and Twilio
// suspended, read back as its breaker changes, with the reinstatements
// dated as the breaker dates them.
func TestChanges(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3})
	sid := e.subs[0]
	if err := e.fake.SetUsage(sid, e.clock.Now().Format(time.DateOnly), "totalprice", twiliofake.UsageRecord{Price: 12.34}); err != nil {
		t.Fatal(err)
	}
	e.send(sid, 100, 40)
	e.judge()
	if b := e.breaker(sid); b.State != actions.StateOpen {
		t.Fatalf("breaker = %s, want open", b.State)
	}
	e.clock.Advance(time.Minute)
	if err := e.actor.Reinstate(context.Background(), sid, "alice", "reviewed"); err != nil {
		t.Fatal(err)
	}
	byPerson := e.breaker(sid).ReinstatedAt

	e.clock.Advance(time.Hour)
	if err := e.fake.SetStatus(sid, "suspended"); err != nil {
		t.Fatal(err)
	}
	e.syncAccounts()
	e.judge()
	e.clock.Advance(10 * time.Minute)
	if err := e.fake.SetStatus(sid, "active"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Minute)
	e.syncAccounts()
	e.judge()
	outside := e.breaker(sid).ReinstatedAt

	recs, err := e.st.Audit(sid, 0)
	if err != nil {
		t.Fatal(err)
	}
	type change struct {
		From, To, Actor, Rule string
		Suspension, Offence   bool
		Reinstatement         bool
		ReinstatedAt          time.Time
		SpendDay              string
		SpendBase             float64
	}
	var got []change
	for _, c := range actions.Changes(recs) {
		got = append(got, change{c.From, c.To, c.Actor, c.Rule, c.Suspension(), c.Offence(), c.Reinstatement(), c.ReinstatedAt,
			c.SpendDay, c.SpendBase})
	}
	// Each reinstatement notes the day's spend, as Twilio reports it.
	day := e.clock.Now().Format(time.DateOnly)
	b := e.breaker(sid)
	if b.SpendDay != day {
		t.Fatalf("breaker's spend note %q %g, want today's", b.SpendDay, b.SpendBase)
	}
	want := []change{
		{actions.StateClosed, actions.StateOpen, actions.ActorSentinel, "filtered", true, true, false, time.Time{}, "", 0},
		{actions.StateOpen, actions.StateProbation, "alice", "", false, false, true, byPerson, day, b.SpendBase},
		{actions.StateProbation, actions.StateExternalSuspended, actions.ActorOutside, "", true, false, false, time.Time{}, "", 0},
		{actions.StateExternalSuspended, actions.StateProbation, actions.ActorOutside, "", false, false, true, outside, day, b.SpendBase},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Changes (-want +got):\n%s", diff)
	}
	if byPerson.IsZero() || outside.IsZero() || !outside.After(byPerson) {
		t.Errorf("reinstatements at %v and %v", byPerson, outside)
	}
}

// TestStatusOf: one account's status line is its line among every
// account's; an account the store does not know is ErrUnknownAccount.
func TestStatusOf(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3})
	sid := e.subs[1]
	e.send(sid, 100, 3)
	e.judge()
	now := e.clock.Now()
	rows, err := actions.StatusRows(context.Background(), e.st, e.set.Load(), now, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var want actions.StatusRow
	for _, r := range rows {
		if r.SID == sid {
			want = r
		}
	}
	got, err := actions.StatusOf(context.Background(), e.st, e.set.Load(), sid, now, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rules) == 0 {
		t.Fatalf("StatusOf judged no rule: %+v", got)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("StatusOf (-StatusRows' row +got):\n%s", diff)
	}
	if _, err := actions.StatusOf(context.Background(), e.st, e.set.Load(), "AC"+strings.Repeat("f", 32), now, 10*time.Minute); !errors.Is(err, actions.ErrUnknownAccount) {
		t.Errorf("StatusOf an unknown SID: %v, want ErrUnknownAccount", err)
	}
}
