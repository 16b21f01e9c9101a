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
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twiliofake"
)

// sendAt stores n finished outbound messages of sid at exactly at,
// filtered of them undelivered with 30007.
func (e *env) sendAt(sid string, at time.Time, n, filtered int) {
	e.t.Helper()
	msgs := make([]traffic.Message, 0, n)
	for i := range n {
		e.seq++
		m := traffic.Message{SID: fmt.Sprintf("SM%032x", e.seq), AccountSID: sid, Direction: traffic.OutboundAPI,
			Status: "delivered", Time: at, MessagingService: true}
		if i < filtered {
			m.Status, m.ErrorCode = "undelivered", 30007
		}
		msgs = append(msgs, m)
	}
	if _, err := e.st.PutMessages(sid, msgs); err != nil {
		e.t.Fatal(err)
	}
}

// spend records sid's spend today as read now.
func (e *env) spend(sid string, usd float64) {
	e.t.Helper()
	now := e.clock.Now()
	if err := e.fake.SetUsage(sid, now.Format(time.DateOnly), "totalprice", twiliofake.UsageRecord{Price: usd}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.PutUsage(sid, []traffic.Usage{{Day: now.Format(time.DateOnly), TotalPrice: usd, AsOf: now, Currency: "USD"}}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.RecordPoll(sid, "usage", now, nil); err != nil {
		e.t.Fatal(err)
	}
}

// TestConsoleReactivationIsAReinstatement: a person suspends a subaccount
// in the Twilio console, reviews it and reactivates it there. sentinel
// must not suspend it again on the evidence the person reviewed, must
// judge what it sends after the reactivation (dated by Twilio, not by the
// sync that notices it), and must not count the pause as an offence.
func TestConsoleReactivationIsAReinstatement(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3})
	sid := e.subs[0]
	e.send(sid, 100, 3) // 3%: under the trip
	e.judge()

	// The bad traffic that made the person look, then the console pause.
	e.send(sid, 100, 40)
	if err := e.fake.SetStatus(sid, "suspended"); err != nil {
		t.Fatal(err)
	}
	e.syncAccounts()
	e.judge()
	if b := e.breaker(sid); b.State != actions.StateExternalSuspended {
		t.Fatalf("breaker after a console suspension = %s, want %s", b.State, actions.StateExternalSuspended)
	}

	// Reviewed and reactivated in the console; sentinel's account sync
	// sees it five minutes later.
	e.clock.Advance(10 * time.Minute)
	reactivated := e.clock.Now().Truncate(time.Second)
	if err := e.fake.SetStatus(sid, "active"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Minute)
	e.syncAccounts()
	e.judge()
	if n := len(e.posts("suspended")); n != 0 {
		t.Fatalf("re-suspended on the reviewed evidence: %d POSTs", n)
	}
	b := e.breaker(sid)
	if b.State != actions.StateProbation || !b.ReinstatedAt.Equal(reactivated) || b.Offences != 0 {
		t.Fatalf("breaker = %+v, want probation from %v (Twilio's date_updated), no offence", b, reactivated)
	}
	if want := reactivated.Add(24 * time.Hour); !b.ProbationUntil.Equal(want) {
		t.Errorf("probation until %v, want %v: a person's pause does not lengthen it", b.ProbationUntil, want)
	}
	if got := e.notes.of(slack.KindReinstated); len(got) == 0 || got[len(got)-1].Actor != actions.ActorOutside {
		t.Errorf("reinstated events = %+v, want one by %q", got, actions.ActorOutside)
	}

	// Sent between the reactivation and the sync: judged, on probation.
	e.sendAt(sid, reactivated.Add(time.Minute), 40, 4) // 10% of 40
	e.judge()
	if diff := cmp.Diff([]string{sid}, e.posts("suspended")); diff != "" {
		t.Errorf("suspensions after bad traffic since the reactivation (-want +got):\n%s", diff)
	}
}

// TestNoBlindMinutesAfterReinstatement: windows start at the reinstatement
// itself, not at the next bucket: a burst one second after it counts.
func TestNoBlindMinutesAfterReinstatement(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3})
	ctx := context.Background()
	sid := e.subs[0]
	e.send(sid, 100, 30)
	e.judge()
	if n := len(e.posts("suspended")); n != 1 {
		t.Fatalf("%d suspensions, want 1", n)
	}
	e.clock.Advance(10*time.Minute + 23*time.Second) // off a bucket boundary
	if err := e.actor.Reinstate(ctx, sid, "alice", "reviewed"); err != nil {
		t.Fatal(err)
	}
	at := e.breaker(sid).ReinstatedAt
	if traffic.BucketStart(at).Equal(at) {
		t.Fatalf("reinstated at %v, want a time inside a bucket", at)
	}
	e.sendAt(sid, at.Add(time.Second), 30, 3) // 10%, all in the bucket's tail
	e.clock.Advance(30 * time.Second)
	e.fresh()
	if _, err := e.actor.Judge(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.posts("suspended")); n != 2 {
		t.Fatalf("%d suspensions, want 2: the burst after the reinstatement was not counted", n)
	}
	ev := e.notes.of(slack.KindSuspended)
	if last := ev[len(ev)-1]; !last.From.Equal(at) || last.Denominator != 30 {
		t.Errorf("second suspension judged [%v, ...) over %g messages, want from %v over 30", last.From, last.Denominator, at)
	}
}

// TestSpendAfterSameDayReinstatement: spend rules judge what is spent
// after a reinstatement, from a snapshot of the day's spend taken then,
// against half the budget on probation; not nothing until midnight.
func TestSpendAfterSameDayReinstatement(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3, policy: basePolicy + budgetRule})
	ctx := context.Background()
	sid := e.subs[0]
	e.spend(sid, 12) // over the $10 budget
	e.judge()
	if n := len(e.posts("suspended")); n != 1 {
		t.Fatalf("%d suspensions, want 1", n)
	}
	e.clock.Advance(10 * time.Minute)
	if err := e.actor.Reinstate(ctx, sid, "alice", "budget raised by the client"); err != nil {
		t.Fatal(err)
	}
	if b := e.breaker(sid); b.SpendBase != 12 || b.SpendDay != e.clock.Now().Format(time.DateOnly) {
		t.Fatalf("spend snapshot %s $%g, want today $12", b.SpendDay, b.SpendBase)
	}
	e.clock.Advance(time.Minute)
	e.spend(sid, 14) // $2 since: under half the budget
	e.judge()
	if n := len(e.posts("suspended")); n != 1 {
		t.Fatalf("suspended again on $2 since the reinstatement")
	}
	e.spend(sid, 17.5) // $5.50 since: over half the budget
	e.judge()
	if n := len(e.posts("suspended")); n != 2 {
		t.Fatalf("%d suspensions, want 2: spend after the reinstatement was not judged", n)
	}
	days, err := e.st.AllSpendDays("2000-01-01", "2100-01-01")
	if err != nil || !days[sid][e.clock.Now().Format(time.DateOnly)] {
		t.Errorf("spend days = %v, %v; want today marked for %s", days, err, sid)
	}
}

// TestManualSuspensionSpendsNoBudget: in a fleet of ten, the 10% rail
// allows one suspension by sentinel. A person's suspension must neither
// use it up nor raise a systemic alert.
func TestManualSuspensionSpendsNoBudget(t *testing.T) {
	e := newEnv(t, envOptions{subs: 10})
	ctx := context.Background()
	if err := e.actor.Suspend(ctx, e.subs[9], "alice", "chargeback"); err != nil {
		t.Fatal(err)
	}
	e.syncAccounts()
	e.send(e.subs[0], 100, 30)
	sum := e.judge()
	if diff := cmp.Diff([]string{e.subs[9], e.subs[0]}, e.posts("suspended")); diff != "" {
		t.Errorf("suspensions (-want +got):\n%s", diff)
	}
	if sum.Systemic || len(e.notes.of(slack.KindSystemic)) != 0 {
		t.Errorf("a systemic alert for one automatic suspension beside a manual one")
	}
	if b := e.breaker(e.subs[9]); !b.Manual || b.Offences != 0 {
		t.Errorf("manual suspension's breaker = %+v, want Manual and no offence", b)
	}
}

// TestSystemicCountsSubaccounts: two rules firing for one subaccount are one
// subaccount in the systemic alert.
func TestSystemicCountsSubaccounts(t *testing.T) {
	pol := basePolicy + `
  - name: filtered-too
    description: The same, again
    signal: error_rate
    codes: [30007]
    window: 1h
    min_volume: 20
    trip: 5%
    severity: critical
    action: suspend
`
	e := newEnv(t, envOptions{subs: 10, policy: pol})
	e.send(e.subs[0], 100, 30)
	e.send(e.subs[1], 100, 30)
	e.judge()
	sys := e.notes.of(slack.KindSystemic)
	if len(sys) != 1 {
		t.Fatalf("systemic alerts %d, want 1", len(sys))
	}
	if want := "2 subaccounts tripped"; !strings.Contains(sys[0].Detail, want) {
		t.Errorf("systemic detail %q, want %q", sys[0].Detail, want)
	}
}

// TestBlindOnStaleData: an account whose data stays stale is reported
// blind once, whether or not a rule was near its threshold; many at once
// are one alert.
func TestBlindOnStaleData(t *testing.T) {
	e := newEnv(t, envOptions{subs: 30})
	e.judge()
	e.clock.Advance(20 * time.Minute) // everyone's first sight is past the bound
	e.fresh()
	// One quiet subaccount's log stops being read.
	stale := e.subs[3]
	stopped := e.clock.Now()
	for range 3 {
		e.clock.Advance(6 * time.Minute)
		e.fresh()
		if err := e.st.SetCoverage(stale, traffic.Coverage{From: start.Add(-48 * time.Hour), Until: stopped}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.actor.Judge(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	blind := e.notes.of(slack.KindBlind)
	if len(blind) != 1 || blind[0].Subaccount != stale {
		t.Fatalf("blind alerts = %+v, want one for %s", blind, stale)
	}
	if got := value(e, "sentinel_blind_subaccounts"); got != 1 {
		t.Errorf("sentinel_blind_subaccounts = %g, want 1", got)
	}

	// Everyone's log stalls: one alert for the fleet, not thirty.
	stopped = e.clock.Now()
	e.clock.Advance(15 * time.Minute)
	e.coverUntil(stopped)
	if _, err := e.actor.Judge(context.Background()); err != nil {
		t.Fatal(err)
	}
	blind = e.notes.of(slack.KindBlind)[1:]
	if len(blind) != 1 || blind[0].Subaccount != "" || blind[0].Severity != slack.SeverityCritical {
		t.Fatalf("blind alerts for a fleet-wide stall = %d (%+v), want one fleet alert", len(blind), blind)
	}
}

// TestManualActionReconcilesFirst: a person's action on a subaccount whose
// last action was left open by a crash first finds out what came of it,
// and refuses to act while Twilio cannot say.
func TestManualActionReconcilesFirst(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3})
	ctx := context.Background()
	sid := e.subs[0]
	// A crash after sentinel's suspension reached Twilio: the intent is on
	// disk, Twilio shows it done, nothing else was recorded.
	if _, err := e.st.AppendAudit(storeIntent(sid, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if err := e.fake.SetStatus(sid, "suspended"); err != nil {
		t.Fatal(err)
	}
	e.syncAccounts()

	e.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDrop, Times: 50})
	err := e.actor.Reinstate(ctx, sid, "ana", "reviewed")
	if !errors.Is(err, actions.ErrUnreconciled) {
		t.Fatalf("Reinstate while Twilio cannot be asked = %v, want ErrUnreconciled", err)
	}
	e.fake.ClearFaults()

	if err := e.actor.Reinstate(ctx, sid, "ana", "reviewed"); err != nil {
		t.Fatalf("Reinstate: %v", err)
	}
	var outcomes []string
	for _, r := range e.audit(sid, actions.KindOutcome) {
		outcomes = append(outcomes, r.Action+" "+r.Outcome)
	}
	if diff := cmp.Diff([]string{"suspend ok", "reinstate ok"}, outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if b := e.breaker(sid); b.State != actions.StateProbation || b.Offences != 1 {
		t.Errorf("breaker = %+v, want probation after sentinel's one offence", b)
	}
}

func storeIntent(sid string, at time.Time) store.AuditRecord {
	return store.AuditRecord{At: at, Subaccount: sid, Kind: actions.KindIntent, Action: actions.ActionSuspend,
		Rule: "filtered", Actor: actions.ActorSentinel, Reason: "filtered"}
}
