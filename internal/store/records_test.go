package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// zone is a non-UTC location: what goes in there must come back in UTC.
var zone = time.FixedZone("UTC+2", 2*3600)

func TestSyncAccounts(t *testing.T) {
	s := MustOpen(t)
	parent, a, b := testAccount(0), testAccount(1), testAccount(2)
	t0, t1, t2 := testBase.In(zone), testBase.Add(time.Hour), testBase.Add(2*time.Hour)

	got, err := s.SyncAccounts([]Account{
		{SID: b, FriendlyName: "B", Status: "active"},
		{SID: parent, FriendlyName: "Parent", Status: "active", Parent: true},
		{SID: a, FriendlyName: "A", Status: "active", FirstSeen: t2}, // ignored
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []AccountChange{
		{SID: parent, To: "active", At: testBase},
		{SID: a, To: "active", At: testBase},
		{SID: b, To: "active", At: testBase},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first sync (-want +got):\n%s", diff)
	}

	// a is suspended in Twilio, b vanished, the parent is listed without
	// the flag, a new account appears.
	got, err = s.SyncAccounts([]Account{
		{SID: parent, FriendlyName: "Parent", Status: "active"},
		{SID: a, FriendlyName: "A renamed", Status: "suspended"},
		{SID: testAccount(3), FriendlyName: "C", Status: "active"},
	}, t1)
	if err != nil {
		t.Fatal(err)
	}
	want = []AccountChange{
		{SID: a, From: "active", To: "suspended", At: t1},
		{SID: testAccount(3), To: "active", At: t1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("second sync (-want +got):\n%s", diff)
	}

	// Sentinel reinstates a itself: the next sync reports nothing.
	if err := s.SetAccountStatus(a, "active", t2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SyncAccounts([]Account{{SID: a, FriendlyName: "A renamed", Status: "active"}}, t2.Add(time.Minute)); err != nil || len(got) != 0 {
		t.Errorf("sync after SetAccountStatus = %v, %v, want no changes", got, err)
	}
	if err := s.SetAccountStatus(testAccount(9), "active", t2); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetAccountStatus(unknown) = %v, want ErrNotFound", err)
	}

	accts, err := s.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	wantAccts := []Account{
		{SID: parent, FriendlyName: "Parent", Status: "active", Parent: true, FirstSeen: testBase, StatusSince: testBase},
		{SID: a, FriendlyName: "A renamed", Status: "active", FirstSeen: testBase, StatusSince: t2},
		{SID: b, FriendlyName: "B", Status: "active", FirstSeen: testBase, StatusSince: testBase},
		{SID: testAccount(3), FriendlyName: "C", Status: "active", FirstSeen: t1, StatusSince: t1},
	}
	if diff := cmp.Diff(wantAccts, accts); diff != "" {
		t.Errorf("Accounts (-want +got):\n%s", diff)
	}
	for _, acct := range accts {
		if acct.FirstSeen.Location() != time.UTC {
			t.Errorf("%s: FirstSeen in %v, want UTC", acct.SID, acct.FirstSeen.Location())
		}
	}
	if got, err := s.Account(a); err != nil || got != wantAccts[1] {
		t.Errorf("Account(%s) = %+v, %v", a, got, err)
	}
	if _, err := s.Account(testAccount(9)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Account(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.SyncAccounts([]Account{{SID: "bad/sid"}}, t2); err == nil {
		t.Error("SyncAccounts accepted a SID with a slash")
	}
}

func TestCoverage(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	if got, err := s.Coverage(acct); err != nil || got != (traffic.Coverage{}) {
		t.Errorf("Coverage before any = %+v, %v, want zero", got, err)
	}
	c := traffic.Coverage{From: testBase.In(zone), Until: testBase.Add(time.Hour + time.Nanosecond)}
	if err := s.SetCoverage(acct, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.Coverage(acct)
	if err != nil {
		t.Fatal(err)
	}
	if !got.From.Equal(c.From) || !got.Until.Equal(c.Until) || got.From.Location() != time.UTC {
		t.Errorf("Coverage = %+v, want %+v in UTC", got, c)
	}
}

func TestRecordPoll(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	t0, t1, t2 := testBase, testBase.Add(time.Minute), testBase.Add(2*time.Minute)
	steps := []struct {
		at   time.Time
		err  error
		want PollState
	}{
		{t0, nil, PollState{LastAttempt: t0, LastSuccess: t0}},
		{t1, errors.New("twilio 503"), PollState{LastAttempt: t1, LastSuccess: t0, Failures: 1, LastError: "twilio 503"}},
		{t2, errors.New(strings.Repeat("é", 200)), PollState{LastAttempt: t2, LastSuccess: t0, Failures: 2, LastError: strings.Repeat("é", 128)}},
		{t2.Add(time.Minute), nil, PollState{LastAttempt: t2.Add(time.Minute), LastSuccess: t2.Add(time.Minute)}},
	}
	for i, st := range steps {
		if err := s.RecordPoll(acct, "messages", st.at, st.err); err != nil {
			t.Fatal(err)
		}
		got, err := s.PollState(acct, "messages")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
	}
	if got, err := s.PollState(acct, "usage"); err != nil || got != (PollState{}) {
		t.Errorf("other stream = %+v, %v, want zero", got, err)
	}
	if err := s.RecordPoll("", "accounts", t0, nil); err != nil {
		t.Errorf("RecordPoll without account: %v", err)
	}
	if err := s.RecordPoll(acct, "", t0, nil); err == nil {
		t.Error("RecordPoll accepted an empty stream")
	}
}

func TestUsage(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	day := func(d string, price float64) traffic.Usage {
		return traffic.Usage{Day: d, TotalPrice: price, SMS: 10, MMS: 1, AsOf: testBase}
	}
	if err := s.PutUsage(acct, []traffic.Usage{day("2026-03-01", 1), day("2026-03-02", 2), day("2026-03-03", 3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUsage(acct, []traffic.Usage{day("2026-03-02", 2.5)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUsage(testAccount(2), []traffic.Usage{day("2026-03-02", 9)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Usage(acct, "2026-03-02", "2026-03-03")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]traffic.Usage{day("2026-03-02", 2.5), day("2026-03-03", 3)}, got); diff != "" {
		t.Errorf("Usage (-want +got):\n%s", diff)
	}
	if err := s.PutUsage(acct, []traffic.Usage{day("03/02/2026", 1)}); err == nil {
		t.Error("PutUsage accepted a malformed day")
	}
}

func TestRuleStates(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	if got, err := s.RuleStates(acct); err != nil || len(got) != 0 || got == nil {
		t.Errorf("RuleStates before any = %#v, %v, want an empty map", got, err)
	}
	states := map[string]RuleState{
		"error-rate": {Consecutive: 3, Firing: true, Since: testBase, LastValue: 0.125, LastEval: testBase.Add(time.Minute)},
		"opt-outs":   {Consecutive: 1, LastValue: 2, LastEval: testBase.Add(time.Minute)},
	}
	if err := s.PutRuleStates(acct, states); err != nil {
		t.Fatal(err)
	}
	got, err := s.RuleStates(acct)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(states, got); diff != "" {
		t.Errorf("RuleStates (-want +got):\n%s", diff)
	}
	// Put replaces: a rule left out loses its state.
	delete(states, "opt-outs")
	if err := s.PutRuleStates(acct, states); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RuleStates(acct); len(got) != 1 {
		t.Errorf("after replace: %v", got)
	}
	if err := s.PutRuleStates(acct, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RuleStates(acct); len(got) != 0 {
		t.Errorf("after clearing: %v", got)
	}
}

func TestBreakerTransition(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	if got, err := s.Breaker(acct); err != nil || got != (Breaker{State: "closed"}) {
		t.Errorf("Breaker before any = %+v, %v", got, err)
	}
	b := Breaker{State: "open", Since: testBase, Offences: 1, ProbationUntil: testBase.Add(24 * time.Hour)}
	rec := AuditRecord{At: testBase.In(zone), Kind: "transition", Action: "suspend", Rule: "error-rate", Actor: "sentinel", Reason: "closed → open"}
	if err := s.Transition(acct, b, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Breaker(acct); err != nil || got != b {
		t.Errorf("Breaker = %+v, %v, want %+v", got, err, b)
	}
	recs, err := s.Audit(acct, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec.ID, rec.Subaccount, rec.At = 1, acct, testBase
	if diff := cmp.Diff([]AuditRecord{rec}, recs); diff != "" {
		t.Errorf("audit after Transition (-want +got):\n%s", diff)
	}
	// A failed Transition stores neither part.
	if err := s.Transition(acct, Breaker{State: "closed"}, AuditRecord{Subaccount: testAccount(2)}); err == nil {
		t.Fatal("Transition with another account's record succeeded")
	}
	if got, _ := s.Breaker(acct); got != b {
		t.Errorf("breaker changed by a failed Transition: %+v", got)
	}
}

func TestAudit(t *testing.T) {
	s := MustOpen(t)
	a, b := testAccount(1), testAccount(2)
	var ids []uint64
	for i, r := range []AuditRecord{
		{Subaccount: a, Kind: "intent", Action: "suspend"},
		{Subaccount: b, Kind: "intent", Action: "suspend", DryRun: true},
		{Subaccount: a, Kind: "decision"},
		{Subaccount: a, Kind: "outcome", Outcome: "ok", IntentID: 1},
		{Kind: "refusal", Detail: "blast radius"},
		{Subaccount: b, Kind: "intent", Action: "reinstate"},
	} {
		r.At = testBase.Add(time.Duration(i) * time.Minute)
		id, err := s.AppendAudit(r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if diff := cmp.Diff([]uint64{1, 2, 3, 4, 5, 6}, ids); diff != "" {
		t.Errorf("IDs (-want +got):\n%s", diff)
	}
	idsOf := func(recs []AuditRecord) []uint64 {
		var out []uint64
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		acct  string
		limit int
		want  []uint64
	}{
		{"", 0, []uint64{6, 5, 4, 3, 2, 1}},
		{"", 2, []uint64{6, 5}},
		{a, 0, []uint64{4, 3, 1}},
		{a, 2, []uint64{4, 3}},
		{b, -1, []uint64{6, 2}},
		{testAccount(3), 0, nil},
	}
	for _, tt := range tests {
		got, err := s.Audit(tt.acct, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, idsOf(got)); diff != "" {
			t.Errorf("Audit(%q, %d) (-want +got):\n%s", tt.acct, tt.limit, diff)
		}
	}
	open, err := s.OpenIntents()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{2, 6}, idsOf(open)); diff != "" {
		t.Errorf("OpenIntents (-want +got):\n%s", diff)
	}
	if !open[0].DryRun || open[0].Subaccount != b || !open[0].At.Equal(testBase.Add(time.Minute)) {
		t.Errorf("open intent = %+v", open[0])
	}
	if _, err := s.AppendAudit(AuditRecord{Kind: "outcome", IntentID: 6, Outcome: "error"}); err != nil {
		t.Fatal(err)
	}
	if open, _ := s.OpenIntents(); len(open) != 1 || open[0].ID != 2 {
		t.Errorf("OpenIntents after closing 6 = %v", idsOf(open))
	}
}

func TestIncidents(t *testing.T) {
	s := MustOpen(t)
	a, b := testAccount(1), testAccount(2)
	incs := []Incident{
		{Subaccount: a, Rule: "error-rate", Opened: testBase, State: "firing", Thread: "1700000000.000100"},
		{Subaccount: a, Rule: "opt-outs", Opened: testBase.Add(2 * time.Hour), State: "suspended"},
		{Subaccount: b, Rule: "error-rate", Opened: testBase.Add(time.Hour), State: "resolved", Resolved: testBase.Add(90 * time.Minute)},
	}
	for _, inc := range incs {
		if err := s.PutIncident(inc); err != nil {
			t.Fatal(err)
		}
	}
	incs[0].State, incs[0].LastNotified = "suspended", testBase.Add(time.Minute)
	if err := s.PutIncident(incs[0]); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Incident(a, "error-rate"); err != nil || !cmp.Equal(got, incs[0]) {
		t.Errorf("Incident = %+v, %v, want %+v", got, err, incs[0])
	}
	if _, err := s.Incident(a, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Incident(unknown) = %v, want ErrNotFound", err)
	}
	got, err := s.Incidents("")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Incident{incs[1], incs[2], incs[0]}, got); diff != "" {
		t.Errorf("Incidents(all) (-want +got):\n%s", diff)
	}
	got, err = s.Incidents(a)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Incident{incs[1], incs[0]}, got); diff != "" {
		t.Errorf("Incidents(a) (-want +got):\n%s", diff)
	}
	if err := s.PutIncident(Incident{Subaccount: a}); err == nil {
		t.Error("PutIncident without a rule succeeded")
	}
}

func TestOutbox(t *testing.T) {
	s := MustOpen(t)
	t0 := testBase
	for i, p := range []string{"one", "two", "three"} {
		id, err := s.Enqueue([]byte(p), t0.Add(time.Duration(i)*time.Minute))
		if err != nil || id != uint64(i+1) {
			t.Fatalf("Enqueue = %d, %v", id, err)
		}
	}
	due := func(at time.Time, limit int) []string {
		t.Helper()
		items, err := s.Due(at, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range items {
			out = append(out, string(it.Payload))
		}
		return out
	}
	if diff := cmp.Diff([]string{"one", "two"}, due(t0.Add(time.Minute), 0)); diff != "" {
		t.Errorf("Due (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"one"}, due(t0.Add(time.Hour), 1)); diff != "" {
		t.Errorf("Due with limit (-want +got):\n%s", diff)
	}
	if err := s.Retry(1, t0.Add(10*time.Minute), "slack 500"); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(1, t0.Add(20*time.Minute), "slack 502"); err != nil {
		t.Fatal(err)
	}
	// The head waits for its retry, and nothing overtakes it.
	if got := due(t0.Add(5*time.Minute), 0); len(got) != 0 {
		t.Errorf("Due while the head waits = %q, want nothing", got)
	}
	if diff := cmp.Diff([]string{"one", "two", "three"}, due(t0.Add(20*time.Minute), 0)); diff != "" {
		t.Errorf("Due once the head's retry is due (-want +got):\n%s", diff)
	}
	items, err := s.Due(t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := OutboxItem{ID: 1, Created: t0, NotBefore: t0.Add(20 * time.Minute), Attempts: 2, Payload: []byte("one"), LastError: "slack 502"}
	if diff := cmp.Diff(want, items[0]); diff != "" {
		t.Errorf("retried item (-want +got):\n%s", diff)
	}
	if err := s.Delivered(2); err != nil {
		t.Fatal(err)
	}
	if err := s.Delivered(2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delivered = %v, want ErrNotFound", err)
	}
	if err := s.Retry(2, t0, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Retry(delivered) = %v, want ErrNotFound", err)
	}
	if n, err := s.OutboxLen(); err != nil || n != 2 {
		t.Errorf("OutboxLen = %d, %v, want 2", n, err)
	}
}

func TestThread(t *testing.T) {
	s := MustOpen(t)
	sid := "AC" + strings.Repeat("1", 32)
	opened := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	if got, err := s.Thread(sid, "r", opened); err != nil || got != "" {
		t.Fatalf("Thread of no incident = %q, %v; want \"\", nil", got, err)
	}
	if err := s.PutIncident(Incident{Subaccount: sid, Rule: "r", Opened: opened, State: "firing"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetThread(sid, "r", opened.Add(time.Hour), "999.1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Thread(sid, "r", opened); got != "" {
		t.Errorf("SetThread for another incident's opening wrote %q", got)
	}
	if err := s.SetThread(sid, "r", opened, "123.4"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Thread(sid, "r", opened); got != "123.4" {
		t.Errorf("Thread = %q, want 123.4", got)
	}
	if got, _ := s.Thread(sid, "r", opened.Add(time.Minute)); got != "" {
		t.Errorf("Thread for a later opening = %q, want \"\"", got)
	}
	inc, err := s.Incident(sid, "r")
	if err != nil || inc.State != "firing" {
		t.Errorf("SetThread changed the incident: %+v, %v", inc, err)
	}
}

// TestDecide: a decision and its audit record are written together, only
// for the incident they name, and survive later writes of the incident.
// An incident nobody decided on keeps the layout older releases read.
func TestDecide(t *testing.T) {
	s := MustOpen(t)
	sid := testAccount(1)
	opened := testBase
	inc := Incident{Subaccount: sid, Rule: "r", Opened: opened, LastNotified: opened, State: "suspended", Thread: "1.2"}
	if err := s.PutIncident(inc); err != nil {
		t.Fatal(err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bkIncidents)).Get(incidentKey(sid, "r"))
		e := enc{}
		e.byte(recordV1)
		e.str(inc.Subaccount)
		e.str(inc.Rule)
		e.time(inc.Opened)
		e.time(inc.LastNotified)
		e.str(inc.State)
		e.str(inc.Thread)
		e.time(inc.Resolved)
		if !bytes.Equal(v, e.b) {
			t.Errorf("an undecided incident is stored as %x, want the first release's layout %x", v, e.b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	dec := Decision{What: "kept_suspended", By: "U1 (ana) via Slack", At: opened.Add(time.Hour), Reason: "fraud confirmed"}
	rec := AuditRecord{At: opened.Add(time.Hour), Kind: "decision", Action: "keep_suspended", Rule: "r", Actor: dec.By, Reason: dec.Reason, Outcome: "ok"}
	if err := s.Decide(sid, "r", opened.Add(time.Second), dec, rec); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Decide on another opening = %v, want ErrNotFound", err)
	}
	if recs, _ := s.Audit(sid, 0); len(recs) != 0 {
		t.Fatalf("a refused Decide wrote %d audit records", len(recs))
	}
	if err := s.Decide(sid, "r", opened, dec, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Incident(sid, "r")
	want := inc
	want.Decision = dec
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("Incident after Decide = %+v, %v, want %+v", got, err, want)
	}
	recs, err := s.Audit(sid, 0)
	if err != nil || len(recs) != 1 || recs[0].Action != "keep_suspended" || recs[0].Actor != dec.By {
		t.Errorf("audit after Decide = %+v, %v", recs, err)
	}
	// A later write of the incident (a reminder, a transition) keeps it.
	got.LastNotified = opened.Add(4 * time.Hour)
	if err := s.PutIncident(got); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Incident(sid, "r"); again.Decision != dec {
		t.Errorf("decision after PutIncident = %+v, want %+v", again.Decision, dec)
	}
	if err := s.SetThread(sid, "r", opened, "9.9"); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Incident(sid, "r"); again.Decision != dec || again.Thread != "9.9" {
		t.Errorf("after SetThread = %+v", again)
	}
}
