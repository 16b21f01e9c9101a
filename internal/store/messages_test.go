package store

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/traffic"
)

var testBase = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func testAccount(n int) string { return fmt.Sprintf("AC%032x", n) }
func testSID(n int) string     { return fmt.Sprintf("SM%032x", n) }

// testMessage is an outbound message sent without a Messaging Service and
// still queued.
func testMessage(acct string, n int, at time.Time) traffic.Message {
	return traffic.Message{
		SID: testSID(n), AccountSID: acct, Direction: traffic.OutboundAPI,
		Status: "queued", Time: at,
	}
}

func mustPut(t testing.TB, s *Store, acct string, msgs ...traffic.Message) Ingest {
	t.Helper()
	in, err := s.PutMessages(acct, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// checkRecount asserts that the stored buckets of acct in [from, to) equal a
// recount of its raw messages.
func checkRecount(t testing.TB, s *Store, acct string, from, to time.Time) []traffic.Bucket {
	t.Helper()
	got, err := s.Buckets(acct, from, to)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.Recount(acct, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Buckets(%s, %v, %v) != Recount (-recount +buckets):\n%s", acct, from, to, diff)
	}
	return got
}

func TestPutMessages(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	m := testMessage(acct, 1, testBase.Add(90*time.Second))
	m2 := testMessage("", 2, testBase.Add(2*time.Minute))
	m2.MessagingService = true

	if got, want := mustPut(t, s, acct, m, m2), (Ingest{New: 2}); got != want {
		t.Errorf("first put = %+v, want %+v", got, want)
	}
	if got, want := mustPut(t, s, acct, m, m2), (Ingest{Unchanged: 2}); got != want {
		t.Errorf("same put = %+v, want %+v", got, want)
	}
	// The same instant in another zone is the same message.
	m.Time = m.Time.In(time.FixedZone("X", 3600))
	if got, want := mustPut(t, s, acct, m), (Ingest{Unchanged: 1}); got != want {
		t.Errorf("put in another zone = %+v, want %+v", got, want)
	}

	got, err := s.Message(acct, m.SID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Time.Location() != time.UTC || !got.Time.Equal(m.Time) {
		t.Errorf("Time = %v, want %v in UTC", got.Time, m.Time)
	}
	m2.AccountSID = acct
	if got, err := s.Message(acct, m2.SID); err != nil || got != m2 {
		t.Errorf("Message(%s) = %+v, %v, want %+v", m2.SID, got, err, m2)
	}
	if _, err := s.Message(acct, testSID(99)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Message(unknown) = %v, want ErrNotFound", err)
	}

	// It fails, sent later than created: it moves to the next bucket.
	m.Status, m.ErrorCode, m.Time = "failed", 30007, testBase.Add(6*time.Minute)
	if got, want := mustPut(t, s, acct, m), (Ingest{Changed: 1}); got != want {
		t.Errorf("changed put = %+v, want %+v", got, want)
	}
	got2 := checkRecount(t, s, acct, testBase, testBase.Add(time.Hour))
	want := []traffic.Bucket{
		{Start: testBase, Counts: traffic.Counts{Outbound: 1, Pending: 1}},
		{
			Start:   testBase.Add(5 * time.Minute),
			Counts:  traffic.Counts{Outbound: 1, Finished: 1, Failed: 1, NoService: 1, Errors: map[int]int64{30007: 1}},
			Samples: map[int][]string{30007: {m.SID}, traffic.SampleNoService: {m.SID}, traffic.SampleFailed: {m.SID}},
		},
	}
	if diff := cmp.Diff(want, got2); diff != "" {
		t.Errorf("buckets (-want +got):\n%s", diff)
	}
}

// A message is known by its account and SID (see the package doc): the
// same SID under another account is another message.
func TestMessageOfAccount(t *testing.T) {
	s := MustOpen(t)
	a1, a2 := testAccount(1), testAccount(2)
	m := testMessage(a1, 1, testBase)
	mustPut(t, s, a1, m)
	if _, err := s.Message(a2, m.SID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Message of another account = %v, want ErrNotFound", err)
	}
	if _, err := s.Message("AC/1", m.SID); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Message of an invalid account = %v, want an error other than ErrNotFound", err)
	}
	m2 := m
	m2.AccountSID, m2.Status = a2, "failed"
	if got, want := mustPut(t, s, a2, m2), (Ingest{New: 1}); got != want {
		t.Errorf("put under another account = %+v, want %+v", got, want)
	}
	for _, want := range []traffic.Message{m, m2} {
		if got, err := s.Message(want.AccountSID, want.SID); err != nil || got != want {
			t.Errorf("Message(%s, %s) = %+v, %v, want %+v", want.AccountSID, want.SID, got, err, want)
		}
		bs := checkRecount(t, s, want.AccountSID, testBase, testBase.Add(time.Hour))
		if len(bs) != 1 || bs[0].Outbound != 1 {
			t.Errorf("%s: buckets = %+v, want one message", want.AccountSID, bs)
		}
	}
}

func TestPutMessagesInvalid(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	mustPut(t, s, acct, testMessage(acct, 1, testBase))
	tests := []struct {
		name string
		acct string
		m    traffic.Message
	}{
		{"no sid", acct, traffic.Message{Time: testBase}},
		{"other account", acct, testMessage(testAccount(2), 2, testBase)},
		{"zero time", acct, testMessage(acct, 2, time.Time{})},
		{"time out of range", acct, testMessage(acct, 2, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC))},
		{"bad account", "AC/1", testMessage("", 2, testBase)},
		{"empty account", "", testMessage("", 2, testBase)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok := testMessage(acct, 3, testBase)
			if _, err := s.PutMessages(tt.acct, []traffic.Message{ok, tt.m}); err == nil {
				t.Fatal("PutMessages succeeded")
			}
			// The whole batch is rolled back.
			if _, err := s.Message(acct, ok.SID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Message(%s) after failed batch = %v, want ErrNotFound", ok.SID, err)
			}
		})
	}
	checkRecount(t, s, acct, testBase, testBase.Add(time.Hour))
}

// A full sample list that loses a SID is refilled with the next smallest.
func TestSamplesRefill(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	var msgs []traffic.Message
	for i := 1; i <= 6; i++ {
		m := testMessage(acct, i, testBase.Add(time.Duration(i)*time.Second))
		m.MessagingService = false
		msgs = append(msgs, m)
	}
	mustPut(t, s, acct, msgs...)
	bs := checkRecount(t, s, acct, testBase, testBase.Add(time.Hour))
	if got, want := bs[0].Samples[traffic.SampleNoService], []string{testSID(1), testSID(2), testSID(3)}; !cmp.Equal(got, want) {
		t.Fatalf("samples = %v, want %v", got, want)
	}
	// Two of the sampled messages turn out to have used a Messaging
	// Service after all, one moves away.
	msgs[0].MessagingService = true
	msgs[2].MessagingService = true
	msgs[1].Time = testBase.Add(20 * time.Minute)
	mustPut(t, s, acct, msgs[:3]...)
	bs = checkRecount(t, s, acct, testBase, testBase.Add(time.Hour))
	if got, want := bs[0].Samples[traffic.SampleNoService], []string{testSID(4), testSID(5), testSID(6)}; !cmp.Equal(got, want) {
		t.Errorf("samples after refill = %v, want %v", got, want)
	}
}

// randomMessage returns a message of acct with SID n in a random state
// within the first hour after testBase.
func randomMessage(rng *rand.Rand, acct string, n int) traffic.Message {
	m := traffic.Message{
		SID: testSID(n), AccountSID: acct,
		Time: testBase.Add(time.Duration(rng.Int64N(int64(time.Hour)))),
	}
	mutate(rng, &m)
	return m
}

var (
	randStatuses = []string{"queued", "sending", "sent", "delivered", "undelivered", "failed", "canceled", "received", "read"}
	randCodes    = []int{0, 0, 30003, 30007, 21610}
)

// mutate changes some of m's fields at random, the way later polls see a
// message change: status, error, time (forward only, as when date_sent
// replaces date_created), price and the rest.
func mutate(rng *rand.Rand, m *traffic.Message) {
	switch rng.IntN(10) {
	case 0:
		m.Direction = traffic.Inbound
	case 1:
		m.Direction = traffic.OutboundReply
	default:
		m.Direction = traffic.OutboundAPI
	}
	m.Status = randStatuses[rng.IntN(len(randStatuses))]
	m.ErrorCode = randCodes[rng.IntN(len(randCodes))]
	if rng.IntN(3) == 0 {
		m.Time = m.Time.Add(time.Duration(rng.Int64N(int64(15 * time.Minute))))
	}
	m.PriceMicros = rng.Int64N(3) * 7900
	// When it last changed: unknown, or any second around its time, so
	// that reads and reports arrive out of order.
	m.Updated = time.Time{}
	if rng.IntN(4) > 0 {
		m.Updated = testBase.Add(time.Duration(rng.Int64N(2*3600)) * time.Second)
	}
	m.MessagingService = rng.IntN(3) == 0
	m.Keyword = traffic.Keyword(rng.IntN(3))
	// A few numbers, so that opt-outs repeat and answer outbound messages.
	m.Peer = uint64(rng.IntN(4))
}

// model is what the store should hold: the latest version of every message
// not pruned, and the horizon below which unknown messages are ignored.
type model struct {
	msgs    map[string]traffic.Message
	horizon time.Time
	ids     map[string]bool // event ids seen
}

func (md *model) put(msgs []traffic.Message) Ingest {
	return md.putAs(msgs, false)
}

// putReports is put for PutReports.
func (md *model) putReports(rs []Report) Ingest {
	var in Ingest
	var msgs []traffic.Message
	for _, r := range rs {
		if r.ID != "" {
			if md.ids[r.ID] {
				in.Duplicates++
				continue
			}
			md.ids[r.ID] = true
		}
		msgs = append(msgs, r.Message)
	}
	got := md.putAs(msgs, true)
	got.Duplicates = in.Duplicates
	return got
}

// putAs applies msgs, as reports (a stored message takes only what a
// report may change) or as read from the log.
func (md *model) putAs(msgs []traffic.Message, reports bool) Ingest {
	var in Ingest
	for _, m := range msgs {
		m.Time = m.Time.UTC()
		old, ok := md.msgs[m.SID]
		if ok && reports {
			r := m
			m = old
			m.Status, m.ErrorCode, m.Updated = r.Status, r.ErrorCode, r.Updated
			if m.Peer == 0 {
				m.Peer = r.Peer
			}
			m.MessagingService = m.MessagingService || r.MessagingService
			if m.Keyword == traffic.NoKeyword {
				m.Keyword = r.Keyword
			}
		}
		if ok {
			m = traffic.Merge(old, m)
		}
		switch {
		case ok && old == m:
			in.Unchanged++
			continue
		case ok:
			in.Changed++
		case m.Time.Before(md.horizon):
			in.Unchanged++
			continue
		default:
			in.New++
		}
		md.msgs[m.SID] = m
	}
	return in
}

func (md *model) prune(before time.Time) int {
	n := 0
	for sid, m := range md.msgs {
		if m.Time.Before(before) {
			delete(md.msgs, sid)
			n++
		}
	}
	md.horizon = before
	return n
}

// TestAggregatesMatchRecount applies random sequences of new messages and
// changes to status, error code and time, read from the log or pushed (with
// repeated event ids and out of order), checking after each batch that the
// incrementally maintained buckets equal a recount, and that they still do
// over the retained range after Prune and after late updates of pruned
// messages.
func TestAggregatesMatchRecount(t *testing.T) {
	accounts := []string{testAccount(1), testAccount(2)}
	const pool = 80 // SIDs per account: several per bucket, so sample lists fill up
	end := testBase.Add(3 * time.Hour)
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			s := MustOpen(t)
			md := &model{msgs: map[string]traffic.Message{}, ids: map[string]bool{}}
			// Every SID ever used, with its last version, pruned or not.
			seen := map[string]traffic.Message{}
			// Until the prune, a known message may also be replaced by a
			// random one, which can move it back in time.
			forwardOnly := false
			round := func() {
				ai := rng.IntN(len(accounts))
				acct := accounts[ai]
				var batch []traffic.Message
				for range 1 + rng.IntN(40) {
					n := ai*pool + rng.IntN(pool)
					m, ok := seen[testSID(n)]
					if ok && (forwardOnly || rng.IntN(4) > 0) {
						if rng.IntN(2) == 0 {
							mutate(rng, &m)
						}
					} else {
						m = randomMessage(rng, acct, n)
					}
					if rng.IntN(4) == 0 {
						m.AccountSID = ""
					}
					batch = append(batch, m)
					m.AccountSID = acct
					seen[m.SID] = m
				}
				if rng.IntN(3) == 0 {
					// Pushed instead: reports with event ids from a small
					// pool, so that retries repeat them.
					rs := make([]Report, len(batch))
					for i, m := range batch {
						rs[i] = Report{Message: m}
						if rng.IntN(4) > 0 {
							rs[i].ID = fmt.Sprintf("EV%d", rng.IntN(200))
						}
						rs[i].Message.AccountSID = acct
					}
					ins, err := s.PutReports([]Reports{{acct, rs}}, testBase)
					if err != nil {
						t.Fatal(err)
					}
					got := ins[0]
					got.OptOuts, got.Repeated, got.Unsolicited, got.Reclassified = 0, 0, 0, 0
					if want := md.putReports(rs); got != want {
						t.Fatalf("PutReports = %+v, want %+v", got, want)
					}
					for _, r := range rs {
						if m, ok := md.msgs[r.Message.SID]; ok {
							seen[m.SID] = m
						}
					}
					return
				}
				got := mustPut(t, s, acct, batch...)
				for i := range batch {
					batch[i].AccountSID = acct
				}
				got.OptOuts, got.Repeated, got.Unsolicited, got.Reclassified = 0, 0, 0, 0
				if want := md.put(batch); got != want {
					t.Fatalf("PutMessages = %+v, want %+v", got, want)
				}
			}
			check := func(from time.Time) {
				for _, acct := range accounts {
					checkRecount(t, s, acct, from, end)
					// Unaligned bounds select the same buckets from both.
					checkRecount(t, s, acct, from.Add(time.Duration(rng.Int64N(int64(time.Hour)))), end.Add(-time.Duration(rng.Int64N(int64(time.Hour)))))
					// The hour read merges exactly what Recount counts.
					checkHours(t, s, acct, from, end, randomCuts(rng, from, end))
					lo := traffic.BucketStart(from.Add(time.Duration(rng.Int64N(int64(time.Hour)))))
					hi := end.Add(-time.Duration(rng.Int64N(int64(time.Hour))))
					checkHours(t, s, acct, lo, hi, randomCuts(rng, lo, hi))
				}
				checkScanHours(t, s, from, end, randomCuts(rng, from, end))
				for sid, want := range md.msgs {
					got, err := s.Message(want.AccountSID, sid)
					// Whether an opt-out counts is the store's to
					// decide (TestOptOutConsent); the rest is the model's.
					want.Ignored = got.Ignored
					if err != nil || got != want {
						t.Fatalf("Message(%s) = %+v, %v, want %+v", sid, got, err, want)
					}
				}
			}

			for range 25 {
				round()
				check(testBase)
			}

			cut, aggCut := testBase.Add(30*time.Minute), testBase.Add(10*time.Minute)
			kept := map[string][]traffic.Bucket{}
			for _, acct := range accounts {
				kept[acct] = checkRecount(t, s, acct, aggCut, cut)
			}
			n, err := s.Prune(cut, aggCut)
			if err != nil {
				t.Fatal(err)
			}
			if want := md.prune(cut); n != want {
				t.Errorf("Prune deleted %d messages, want %d", n, want)
			}
			for _, acct := range accounts {
				if got, err := s.Buckets(acct, testBase, aggCut); err != nil || len(got) != 0 {
					t.Errorf("buckets before aggBefore = %v, %v, want none", got, err)
				}
				got, err := s.Buckets(acct, aggCut, cut)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(kept[acct], got); diff != "" {
					t.Errorf("aggregates between aggBefore and before changed (-before +after):\n%s", diff)
				}
			}
			check(cut)
			forwardOnly = true

			// Late updates of pruned messages must not be counted twice:
			// times only move forward, so nothing may change below the cut.
			for range 15 {
				round()
				check(cut)
			}
			for _, acct := range accounts {
				got, err := s.Buckets(acct, aggCut, cut)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(kept[acct], got); diff != "" {
					t.Errorf("aggregates below the prune horizon changed (-before +after):\n%s", diff)
				}
			}
		})
	}
}

func TestPrune(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	old := testMessage(acct, 1, testBase.Add(time.Minute))
	kept := testMessage(acct, 2, testBase.Add(2*time.Hour))
	mustPut(t, s, acct, old, kept)
	if _, err := s.Prune(testBase, testBase.Add(time.Minute)); err == nil {
		t.Error("Prune with aggBefore after before succeeded")
	}
	n, err := s.Prune(testBase.Add(time.Hour), time.Time{})
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v, want 1", n, err)
	}
	if _, err := s.Message(acct, old.SID); !errors.Is(err, ErrNotFound) {
		t.Errorf("pruned message: %v, want ErrNotFound", err)
	}
	if got, err := s.Message(acct, kept.SID); err != nil || got != kept {
		t.Errorf("kept message = %+v, %v, want %+v", got, err, kept)
	}
	// A late update of the pruned message is ignored; its bucket stays.
	old.Status = "delivered"
	if got, want := mustPut(t, s, acct, old), (Ingest{Unchanged: 1}); got != want {
		t.Errorf("late update = %+v, want %+v", got, want)
	}
	bs, err := s.Buckets(acct, testBase, testBase.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Outbound != 1 || bs[0].Finished != 0 {
		t.Errorf("buckets after late update = %+v", bs)
	}
	// An older Prune does not lower the horizon.
	if _, err := s.Prune(testBase, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, want := mustPut(t, s, acct, old), (Ingest{Unchanged: 1}); got != want {
		t.Errorf("late update after older prune = %+v, want %+v", got, want)
	}
	// Aggregates go when asked, partial hours included.
	if _, err := s.Prune(testBase.Add(2*time.Hour+5*time.Minute), testBase.Add(2*time.Hour+5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if bs, err := s.Buckets(acct, testBase, testBase.Add(3*time.Hour)); err != nil || len(bs) != 0 {
		t.Errorf("buckets after pruning all = %+v, %v", bs, err)
	}
}

// TestPruneChunks deletes more than one transaction's worth.
func TestPruneChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	s := MustOpen(t)
	accts := []string{testAccount(1), testAccount(2)}
	n := 0
	for _, acct := range accts {
		var msgs []traffic.Message
		for i := range pruneChunk * 3 / 4 {
			n++
			msgs = append(msgs, testMessage(acct, n, testBase.Add(time.Duration(i)*time.Second)))
		}
		mustPut(t, s, acct, msgs...)
	}
	got, err := s.Prune(testBase.Add(24*time.Hour), testBase.Add(24*time.Hour))
	if err != nil || got != n {
		t.Fatalf("Prune = %d, %v, want %d", got, err, n)
	}
	if err := s.ScanBuckets(testBase, testBase.Add(48*time.Hour), func(acct string, _ []traffic.Bucket) error {
		return fmt.Errorf("%s has buckets left", acct)
	}); err != nil {
		t.Error(err)
	}
}

func TestScanBuckets(t *testing.T) {
	s := MustOpen(t)
	// "AC1" is a prefix of "AC10": the separator must keep them apart.
	accts := []string{testAccount(3), testAccount(4), "AC1", "AC10"} // in SID order
	for i, acct := range accts {
		var msgs []traffic.Message
		for j := range 10 * (i + 1) {
			msgs = append(msgs, testMessage(acct, 100*i+j, testBase.Add(time.Duration(j)*7*time.Minute)))
		}
		mustPut(t, s, acct, msgs...)
	}
	from, to := testBase.Add(20*time.Minute), testBase.Add(3*time.Hour)
	var got []string
	err := s.ScanBuckets(from, to, func(acct string, bs []traffic.Bucket) error {
		got = append(got, acct)
		want, err := s.Buckets(acct, from, to)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, bs); diff != "" {
			t.Errorf("ScanBuckets %s != Buckets (-Buckets +Scan):\n%s", acct, diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(accts, got); diff != "" {
		t.Errorf("accounts scanned (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	if err := s.ScanBuckets(from, to, func(string, []traffic.Bucket) error { return stop }); err != stop {
		t.Errorf("ScanBuckets = %v, want fn's error", err)
	}
}

// crashEnv tells TestHelperWriter which database to write to, and from
// which batch.
const crashEnv = "SENTINEL_STORE_CRASH_WRITER"

const crashBatch = 40

func crashSID(batch, i int) string { return fmt.Sprintf("SM%024x%08x", batch, i) }

// crashMessages returns batch b: crashBatch new queued messages and the
// final state of batch b-1's messages, so that a batch that is only half
// written would show both in new messages and in changed ones.
func crashMessages(acct string, b int) []traffic.Message {
	var msgs []traffic.Message
	for i := range crashBatch {
		msgs = append(msgs, crashNew(acct, b, i))
		if b > 0 {
			msgs = append(msgs, crashFinal(acct, b-1, i))
		}
	}
	return msgs
}

func crashNew(acct string, b, i int) traffic.Message {
	return traffic.Message{
		SID: crashSID(b, i), AccountSID: acct, Direction: traffic.OutboundAPI, Status: "queued",
		Time: testBase.Add(time.Duration(b)*20*time.Second + time.Duration(i)*time.Millisecond),
	}
}

func crashFinal(acct string, b, i int) traffic.Message {
	m := traffic.Message{
		SID: crashSID(b, i), AccountSID: acct, Direction: traffic.OutboundAPI, Status: "delivered",
		Time: testBase.Add(time.Duration(b)*20*time.Second + 3*time.Minute + time.Duration(i)*time.Millisecond),
	}
	if i%3 == 0 {
		m.Status, m.ErrorCode = "undelivered", 30003+i%2*4
	}
	return m
}

// TestHelperWriter is the child process of TestCrashConsistency: it writes
// batches until it is killed, printing each batch number once committed.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("child process of TestCrashConsistency")
	}
	path, first, _ := strings.Cut(path, "|")
	b, err := strconv.Atoi(first)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	acct := testAccount(1)
	for end := b + 10000; b < end; b++ {
		if _, err := s.PutMessages(acct, crashMessages(acct, b)); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(os.Stdout, "committed %d\n", b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashConsistency SIGKILLs a writer in the middle of its writes and
// checks that every batch it reported committed is there in full, that no
// batch is there in part, and that the aggregates still equal a recount.
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	path := t.TempDir() + "/sentinel.db"
	acct := testAccount(1)
	next := 0 // the first batch not in the store
	for round := range 3 {
		reported := runCrashWriter(t, path, next, 10+round*7)
		if len(reported) == 0 {
			t.Fatal("the writer reported nothing")
		}
		s := mustOpenPath(t, path)
		// Batches 0..b-1 are in the store, in full.
		b := 0
		for ; ; b++ {
			n := 0
			for i := range crashBatch {
				m, err := s.Message(acct, crashSID(b, i))
				switch {
				case errors.Is(err, ErrNotFound):
					continue
				case err != nil:
					t.Fatal(err)
				}
				n++
				// Batch b+1 carries batch b's final state: both or neither.
				want := crashFinal(acct, b, i)
				if _, err := s.Message(acct, crashSID(b+1, 0)); errors.Is(err, ErrNotFound) {
					want = crashNew(acct, b, i)
				}
				if diff := cmp.Diff(want, m); diff != "" {
					t.Fatalf("round %d: message %d of batch %d (-want +got):\n%s", round, i, b, diff)
				}
			}
			if n == 0 {
				break
			}
			if n != crashBatch {
				t.Fatalf("round %d: batch %d is partial: %d of %d messages", round, b, n, crashBatch)
			}
		}
		for _, r := range reported {
			if r >= b {
				t.Fatalf("round %d: batch %d reported committed but missing (store holds %d..%d)", round, r, next, b-1)
			}
		}
		if last := reported[len(reported)-1]; b > last+2 {
			t.Fatalf("round %d: store holds batches up to %d, writer reported up to %d", round, b-1, last)
		}
		for _, b2 := range []int{b, b + 1} {
			if _, err := s.Message(acct, crashSID(b2, 0)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("round %d: batch %d present after a gap", round, b2)
			}
		}
		checkRecount(t, s, acct, testBase, testBase.Add(24*time.Hour))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: writer reported %d batches, store holds %d..%d", round, len(reported), next, b-1)
		next = b
	}
}

// runCrashWriter starts TestHelperWriter on path from batch first, kills it
// once it has reported n commits and returns every batch it reported.
func runCrashWriter(t *testing.T, path string, first, n int) []int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path+"|"+strconv.Itoa(first))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reported []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "committed ")
		if !ok {
			continue
		}
		b, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("writer printed %q", sc.Text())
		}
		reported = append(reported, b)
		if len(reported) == 2 {
			// The writer holds the lock: another Open fails, promptly.
			if _, err := Open(path, Options{LockTimeout: 10 * time.Millisecond}); !errors.Is(err, ErrLocked) {
				t.Errorf("Open while the writer runs = %v, want ErrLocked", err)
			}
		}
		if len(reported) == n {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// Killed is the expected end; exiting on its own is not.
	if err := cmd.Wait(); err == nil {
		t.Fatal("the writer exited before it was killed")
	}
	return reported
}

// TestConcurrentUse runs writers and readers at once; -race checks the rest.
func TestConcurrentUse(t *testing.T) {
	s := MustOpen(t)
	accts := []string{testAccount(1), testAccount(2)}
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for ai, acct := range accts {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(ai), 1))
			for range 20 {
				var batch []traffic.Message
				for range 20 {
					batch = append(batch, randomMessage(rng, acct, ai*1000+rng.IntN(60)))
				}
				if _, err := s.PutMessages(acct, batch); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			err := s.ScanBuckets(testBase, testBase.Add(2*time.Hour), func(string, []traffic.Bucket) error { return nil })
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			if _, err := s.AppendAudit(AuditRecord{Kind: "decision"}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, acct := range accts {
		checkRecount(t, s, acct, testBase, testBase.Add(2*time.Hour))
	}
}

// OldestPending names the oldest message that can still change, not the
// start of its bucket: a busy log would otherwise be re-read up to five
// minutes further back than needed on every poll.
func TestOldestPendingIsExact(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	var msgs []traffic.Message
	for i := range 40 {
		m := testMessage(acct, i, testBase.Add(time.Duration(i)*15*time.Second))
		m.Status = "delivered"
		msgs = append(msgs, m)
	}
	msgs[30].Status = "sent"   // 7m30s
	msgs[36].Status = "queued" // 9m
	msgs[3].Status = "sent"    // 45s, before the range asked for below
	mustPut(t, s, acct, msgs...)
	for _, tc := range []struct {
		from time.Time
		want time.Time
	}{
		{testBase.Add(time.Minute), testBase.Add(7*time.Minute + 30*time.Second)},
		{testBase.Add(8 * time.Minute), testBase.Add(9 * time.Minute)},
		{testBase, testBase.Add(45 * time.Second)},
	} {
		at, found, err := s.OldestPending(acct, tc.from, testBase.Add(time.Hour))
		if err != nil || !found || !at.Equal(tc.want) {
			t.Errorf("OldestPending from %v = %v, %v, %v; want %v", tc.from, at, found, err, tc.want)
		}
	}
	if _, found, err := s.OldestPending(acct, testBase.Add(9*time.Minute+time.Second), testBase.Add(time.Hour)); found || err != nil {
		t.Errorf("OldestPending after the last pending message: found %v, %v", found, err)
	}
}
