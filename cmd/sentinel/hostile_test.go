package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/twiliofake"
)

// The hostile-customer scenarios: what a subaccount's owner (who holds its
// credentials) or a person in the Twilio console can do around sentinel,
// each run through the built binary against the fake.

// conversation appends, to sid's log, one delivered outbound message to
// each of n numbers over the last hours, and returns the numbers.
func conversation(t *testing.T, fake *twiliofake.Server, sid string, n int, hours int) []string {
	t.Helper()
	now := time.Now().UTC()
	nums := make([]string, n)
	msgs := make([]twiliofake.Message, n)
	for i := range n {
		nums[i] = fmt.Sprintf("+1202555%04d", i)
		at := now.Add(-time.Duration(hours) * time.Hour).Add(time.Duration(i) * time.Duration(hours) * time.Hour / time.Duration(n))
		msgs[i] = twiliofake.Message{AccountSID: sid, From: "+15550001000", To: nums[i], Status: "delivered",
			DateSent: at, MessagingServiceSID: "MG" + sid[2:], Body: "Your order has shipped"}
	}
	if _, err := fake.AppendMessages(msgs...); err != nil {
		t.Fatal(err)
	}
	return nums
}

// stops appends a STOP from each of froms, a minute apart, ending now.
func stops(t *testing.T, fake *twiliofake.Server, sid string, froms ...string) []string {
	t.Helper()
	now := time.Now().UTC().Add(-time.Minute)
	var msgs []twiliofake.Message
	for i, from := range froms {
		at := now.Add(-time.Duration(len(froms)-i) * time.Minute)
		msgs = append(msgs, twiliofake.Message{AccountSID: sid, Direction: "inbound", From: from, To: "+15550001000",
			Body: "STOP", DateSent: at})
	}
	sids, err := fake.AppendMessages(msgs...)
	if err != nil {
		t.Fatal(err)
	}
	return sids
}

func (w *world) once(t *testing.T, extra ...string) result {
	t.Helper()
	r := w.run(t, w.args(append([]string{"-once"}, extra...)...)...)
	if r.code != 0 {
		t.Fatalf("-once: %s", r)
	}
	return r
}

// One recipient texting STOP twenty times, and a stranger twenty more, is
// not an opt-out storm: 300 messages sent, one opt-out that counts.
func TestHostileRepeatedStops(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	_, steady := w.fleet(t, 3, false)
	a, err := w.fake.AddSubaccount(twiliofake.Account{FriendlyName: "clean-client"})
	if err != nil {
		t.Fatal(err)
	}
	nums := conversation(t, w.fake, a.SID, 300, 20)
	var froms []string
	for range 20 {
		froms = append(froms, nums[7], "+19995550123")
	}
	stops(t, w.fake, a.SID, froms...)
	w.once(t)
	w.once(t)
	if got := statusOf(t, w.fake, a.SID)[a.SID]; got != "active" {
		t.Fatalf("a clean subaccount is %s after one number's repeated STOPs", got)
	}
	if got := statusPosts(w.fake, "suspended"); len(got) != 0 {
		t.Errorf("suspensions: %v", got)
	}
	rows := w.statusRows(t)
	r := rows[a.SID]
	var optOut *actions.RuleView
	for i := range r.Rules {
		if r.Rules[i].Rule == "opt-out-rate" {
			optOut = &r.Rules[i]
		}
	}
	if optOut == nil || optOut.Numerator != 1 || optOut.Denominator != 300 || r.IgnoredOptOuts24h != 39 {
		t.Errorf("-status: opt-out-rate %+v, ignored STOPs %d; want 1 of 300 and 39 ignored", optOut, r.IgnoredOptOuts24h)
	}
	_ = steady
}

// A real opt-out storm is suspended even when the owner redacts every
// STOP's body between two polls.
func TestHostileRedactedStops(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 3, false)
	a, err := w.fake.AddSubaccount(twiliofake.Account{FriendlyName: "list-buyer"})
	if err != nil {
		t.Fatal(err)
	}
	nums := conversation(t, w.fake, a.SID, 300, 20)
	sids := stops(t, w.fake, a.SID, nums[:30]...) // 10% of the list
	w.once(t)                                     // opt-out-rate is pending (for: 2)
	if got := statusPosts(w.fake, "suspended"); len(got) != 0 {
		t.Fatalf("suspended after one cycle: %v", got)
	}
	for _, sid := range sids {
		if err := w.fake.UpdateMessage(sid, func(m *twiliofake.Message) { m.Body = "" }); err != nil {
			t.Fatal(err)
		}
	}
	w.once(t)
	if got := statusOf(t, w.fake, a.SID)[a.SID]; got != "suspended" {
		t.Fatalf("after the STOPs were redacted the storm is %s, want suspended", got)
	}
}

// A person suspends a subaccount in the console, reviews it and
// reactivates it there: sentinel does not suspend it again on what the
// person reviewed, and treats the reactivation as a reinstatement.
func TestHostileConsoleReactivation(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 5, true)
	w.once(t) // carrier-filtering is pending
	if err := w.fake.SetStatus(offender, "suspended"); err != nil {
		t.Fatal(err)
	}
	w.once(t)
	checkRows(t, w.statusRows(t), map[string]want{offender: {"suspended", "external_suspended"}})
	if err := w.fake.SetStatus(offender, "active"); err != nil {
		t.Fatal(err)
	}
	w.once(t)
	w.once(t)
	if got := statusPosts(w.fake, "suspended"); len(got) != 0 {
		t.Fatalf("re-suspended on reviewed evidence: %v", got)
	}
	checkRows(t, w.statusRows(t), map[string]want{offender: {"active", "probation"}})
	if len(w.slack.find(offender, "Reinstated", "reactivated outside sentinel")) == 0 {
		t.Errorf("no Slack message about the console reactivation; posts:\n%s", strings.Join(w.slack.Posts(), "\n"))
	}
}

// A subaccount suspended for its spend and reinstated the same day is
// judged on what it spends after the reinstatement, against half its
// budget, rather than not at all until midnight.
func TestHostileSameDaySpend(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 3, false)
	a, err := w.fake.AddSubaccount(twiliofake.Account{FriendlyName: "sentinel-demo-spender"}) // a $50 budget
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	spend := func(usd float64) {
		if err := w.fake.SetUsage(a.SID, today, twiliofake.CategoryTotalPrice, twiliofake.UsageRecord{Price: usd}); err != nil {
			t.Fatal(err)
		}
	}
	spend(60)
	w.once(t)
	if got := statusOf(t, w.fake, a.SID)[a.SID]; got != "suspended" {
		t.Fatalf("over budget: %s, want suspended", got)
	}
	if r := w.run(t, w.args("-reinstate", a.SID, "-reason", "budget reviewed", "-by", "ana")...); r.code != 0 {
		t.Fatalf("-reinstate: %s", r)
	}
	spend(70) // $10 since: under half the budget
	w.once(t)
	if got := statusOf(t, w.fake, a.SID)[a.SID]; got != "active" {
		t.Fatalf("$10 after the reinstatement: %s, want active", got)
	}
	spend(90) // $30 since: over half of $50
	w.once(t)
	if got := statusOf(t, w.fake, a.SID)[a.SID]; got != "suspended" {
		t.Fatalf("$30 after a same-day reinstatement: %s, want suspended", got)
	}
}

// In a fleet of ten, a person's -suspend does not use up the one
// suspension the 10% rail allows sentinel, nor raise a systemic alert.
func TestHostileManualSuspension(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, steady := w.fleet(t, 9, true)
	w.once(t) // the account list is read; carrier-filtering is pending
	if r := w.run(t, w.args("-suspend", steady[0], "-reason", "chargeback", "-by", "ana")...); r.code != 0 {
		t.Fatalf("-suspend: %s", r)
	}
	w.once(t)
	if got := statusOf(t, w.fake, offender)[offender]; got != "suspended" {
		t.Fatalf("the offender is %s: a manual suspension used up the blast radius", got)
	}
	if len(w.slack.find("systemic")) != 0 || len(w.slack.find("Systemic")) != 0 {
		t.Errorf("a systemic alert; posts:\n%s", strings.Join(w.slack.Posts(), "\n"))
	}
}

// -log-level debug says what an operator looks for: each poll's pages and
// watermarks, each decision with its numbers, each Slack attempt.
func TestDebugLog(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 2, true)
	r := w.once(t, "-log-level", "debug")
	for _, want := range []string{
		`msg="messages polled"`, "pages=", "coverage_until=",
		`msg="usage polled"`,
		"msg=decision ", "rule=carrier-filtering-warning", "denominator=", "trip=",
		`msg="slack delivery attempt"`, `msg="slack delivered"`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("debug log lacks %q:\n%s", want, r.stderr)
		}
	}
}
