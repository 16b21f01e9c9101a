package store

import (
	"testing"
	"time"

	"sentinel/internal/traffic"
)

func report(id string, m traffic.Message) Report { return Report{ID: id, Message: m} }

// Pushed reports land in the same model as polled reads: a report of a
// stored message changes its status only, never its time or price; a
// retried event counts once; an older report does not move a message back.
func TestPutReports(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	at := testBase.Add(time.Hour)
	put := func(rs ...Report) Ingest {
		t.Helper()
		ins, err := s.PutReports([]Reports{{acct, rs}}, at)
		if err != nil {
			t.Fatal(err)
		}
		checkRecount(t, s, acct, testBase.Add(-time.Hour), testBase.Add(2*time.Hour))
		return ins[0]
	}
	polled := testMessage(acct, 1, testBase)
	polled.Status, polled.PriceMicros, polled.Updated = "sent", 7900, testBase.Add(time.Second)
	mustPut(t, s, acct, polled)

	// A delivery, pushed: its event says 12 seconds later than date_sent,
	// which must not move the message to another bucket.
	delivered := traffic.Message{SID: polled.SID, AccountSID: acct, Direction: traffic.OutboundAPI, Status: "delivered",
		Time: testBase.Add(12 * time.Minute), Updated: testBase.Add(12 * time.Second)}
	if in := put(report("EV1", delivered)); in.Changed != 1 {
		t.Fatalf("first report: %+v, want one change", in)
	}
	m, err := s.Message(acct, polled.SID)
	if err != nil || m.Status != "delivered" || !m.Time.Equal(testBase) || m.PriceMicros != 7900 {
		t.Fatalf("after the report: %+v, %v; want delivered at its date_sent, price kept", m, err)
	}
	// The same event again, and an older one out of order.
	if in := put(report("EV1", delivered)); in.Duplicates != 1 || in.Changed+in.New != 0 {
		t.Errorf("retried event: %+v, want one duplicate", in)
	}
	sent := delivered
	sent.Status, sent.Updated = "sent", testBase.Add(2*time.Second)
	if in := put(report("EV0", sent)); in.Changed != 0 {
		t.Errorf("older report: %+v, want no change", in)
	}
	if m, _ := s.Message(acct, polled.SID); m.Status != "delivered" {
		t.Errorf("an older report moved the message back to %s", m.Status)
	}
	// A message no poll has read yet is stored as reported; a status
	// callback (no id) twice counts once.
	fresh := traffic.Message{SID: testSID(2), AccountSID: acct, Direction: traffic.OutboundAPI, Status: "failed", ErrorCode: 30007,
		Time: testBase.Add(20 * time.Minute)}
	if in := put(report("", fresh), report("", fresh)); in.New != 1 || in.Unchanged != 1 {
		t.Errorf("new message reported twice: %+v, want one new, one unchanged", in)
	}

	// A poll that reconciles: the second message was pushed, a third
	// never was; a fourth changed too recently to tell.
	missed := testMessage(acct, 3, testBase.Add(5*time.Minute))
	recent := testMessage(acct, 4, at.Add(-10*time.Second))
	fresh.PriceMicros = 7900
	in, err := s.ReconcileMessages(acct, []traffic.Message{fresh, missed, recent}, testBase, at.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if in.MissedNew != 1 || in.MissedStatus != 0 {
		t.Errorf("reconcile: %+v, want one message missed", in)
	}
	// Nothing counts as missed before push began, nor in a status no
	// event reports; a status an event does report, read but never
	// pushed, does.
	early := testMessage(acct, 5, testBase.Add(-time.Minute))
	sending := testMessage(acct, 6, testBase.Add(6*time.Minute))
	sending.Status = "sending"
	failed := fresh
	failed.Status, failed.ErrorCode = "undelivered", 30007
	failed.Updated = testBase.Add(21 * time.Minute)
	if in, err = s.ReconcileMessages(acct, []traffic.Message{early, sending, failed}, testBase, at.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if in.MissedNew != 0 || in.MissedStatus != 1 || in.New != 2 {
		t.Errorf("reconcile: %+v, want two new messages not missed, one status missed", in)
	}
	checkRecount(t, s, acct, testBase.Add(-time.Hour), testBase.Add(2*time.Hour))
}

// Event ids are forgotten after EventMemory, a whole hour at a time.
func TestPruneEvents(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	m := testMessage(acct, 1, testBase)
	if _, err := s.PutReports([]Reports{{acct, []Report{report("EV1", m)}}}, testBase); err != nil {
		t.Fatal(err)
	}
	dup := func(at time.Time) bool {
		t.Helper()
		ins, err := s.PutReports([]Reports{{acct, []Report{report("EV1", m)}}}, at)
		if err != nil {
			t.Fatal(err)
		}
		return ins[0].Duplicates == 1
	}
	if !dup(testBase.Add(EventMemory - time.Minute)) {
		t.Fatal("a retry within EventMemory was not a duplicate")
	}
	if n, err := s.PruneEvents(testBase.Add(EventMemory)); err != nil || n != 0 {
		t.Fatalf("PruneEvents within memory = %d, %v; want nothing dropped", n, err)
	}
	if n, err := s.PruneEvents(testBase.Add(EventMemory + 2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneEvents after memory = %d, %v; want one hour dropped", n, err)
	}
	if dup(testBase.Add(EventMemory + 2*time.Hour)) {
		t.Error("an id was remembered after it was pruned")
	}
}
