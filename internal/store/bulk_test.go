package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// TestAllRecords: every bulk read returns, for every account, what the
// account's own read returns, and leaves out the accounts without a record.
func TestAllRecords(t *testing.T) {
	s := MustOpen(t)
	// "AC1" is a prefix of "AC10": the separator must keep them apart.
	accts := []string{"AC1", "AC10", testAccount(3), testAccount(4)}
	quiet := testAccount(5) // has no records at all
	day := func(d int) string { return testBase.AddDate(0, 0, d).Format(time.DateOnly) }
	for i, sid := range accts {
		br := Breaker{State: "probation", Since: testBase.In(zone), ReinstatedAt: testBase, Offences: i, ProbationUntil: testBase.Add(24 * time.Hour)}
		if err := s.Transition(sid, br, AuditRecord{At: testBase, Kind: "transition"}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCoverage(sid, traffic.Coverage{From: testBase, Until: testBase.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		var usage []traffic.Usage
		for d := -9; d <= 1; d++ { // from before to after the range read below
			usage = append(usage, traffic.Usage{Day: day(d), TotalPrice: float64(10*i + d), SMS: int64(d + 10), AsOf: testBase})
		}
		if err := s.PutUsage(sid, usage); err != nil {
			t.Fatal(err)
		}
		for _, stream := range []string{"messages", "usage"} {
			if err := s.RecordPoll(sid, stream, testBase.Add(time.Duration(i)*time.Second), nil); err != nil {
				t.Fatal(err)
			}
		}
		states := map[string]RuleState{"r": {Consecutive: i, LastEval: testBase}}
		if err := s.PutRuleStates(sid, states); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordPoll("", "accounts", testBase, nil); err != nil {
		t.Fatal(err)
	}
	// Usage of quiet only outside the range: it must be absent.
	if err := s.PutUsage(quiet, []traffic.Usage{{Day: day(-30), TotalPrice: 1}}); err != nil {
		t.Fatal(err)
	}

	breakers, err := s.AllBreakers()
	if err != nil {
		t.Fatal(err)
	}
	coverage, err := s.AllCoverage()
	if err != nil {
		t.Fatal(err)
	}
	usage, err := s.AllUsage(day(-7), day(0))
	if err != nil {
		t.Fatal(err)
	}
	polls, err := s.AllPollStates("usage")
	if err != nil {
		t.Fatal(err)
	}
	states, err := s.AllRuleStates()
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"breakers": len(breakers), "coverage": len(coverage), "usage": len(usage),
		"polls": len(polls), "rule states": len(states)} {
		if n != len(accts) {
			t.Errorf("%s of %d accounts, want %d", name, n, len(accts))
		}
	}
	for _, sid := range append(accts, quiet) {
		want := struct {
			Breaker  Breaker
			Coverage traffic.Coverage
			Usage    []traffic.Usage
			Poll     PollState
			States   map[string]RuleState
		}{}
		var err error
		if want.Breaker, err = s.Breaker(sid); err != nil {
			t.Fatal(err)
		}
		if want.Coverage, err = s.Coverage(sid); err != nil {
			t.Fatal(err)
		}
		if want.Usage, err = s.Usage(sid, day(-7), day(0)); err != nil {
			t.Fatal(err)
		}
		if want.Poll, err = s.PollState(sid, "usage"); err != nil {
			t.Fatal(err)
		}
		if want.States, err = s.RuleStates(sid); err != nil {
			t.Fatal(err)
		}
		got := want
		got.Breaker, got.Coverage, got.Usage, got.Poll, got.States = breakers[sid], coverage[sid], usage[sid], polls[sid], states[sid]
		if sid == quiet {
			// Absent from the maps; the single reads give the defaults.
			got.Breaker = Breaker{State: "closed"}
			if len(want.States) == 0 && got.States == nil {
				got.States = want.States
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: bulk differs from single reads (-single +bulk):\n%s", sid, diff)
		}
	}
	if n := len(usage[accts[0]]); n != 8 {
		t.Errorf("usage days of %s = %d, want 8 (the range, inclusive)", accts[0], n)
	}
}

func TestPutRuleStatesBatch(t *testing.T) {
	s := MustOpen(t)
	a, b, c := testAccount(1), testAccount(2), testAccount(3)
	old := map[string]RuleState{"old": {Consecutive: 1}}
	for _, sid := range []string{a, b, c} {
		if err := s.PutRuleStates(sid, old); err != nil {
			t.Fatal(err)
		}
	}
	next := map[string]RuleState{"new": {Consecutive: 2, Firing: true, Since: testBase.In(zone), LastValue: 0.5, LastEval: testBase}}
	if err := s.PutRuleStatesBatch(map[string]map[string]RuleState{a: next, b: {}}); err != nil {
		t.Fatal(err)
	}
	// a is replaced, b deleted by its empty map, c not in the batch left alone.
	for sid, want := range map[string]map[string]RuleState{
		a: {"new": {Consecutive: 2, Firing: true, Since: testBase, LastValue: 0.5, LastEval: testBase}},
		b: {},
		c: old,
	} {
		got, err := s.RuleStates(sid)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", sid, diff)
		}
	}
	// One invalid SID: nothing is written.
	if err := s.PutRuleStatesBatch(map[string]map[string]RuleState{c: next, "AC/1": next}); err == nil {
		t.Error("PutRuleStatesBatch accepted an invalid SID")
	}
	if got, _ := s.RuleStates(c); !cmp.Equal(got, old) {
		t.Errorf("after a refused batch, %s = %v, want %v", c, got, old)
	}
	if err := s.PutRuleStatesBatch(nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}

// TestAllRecordsCorrupt: a record that does not decode fails the bulk read
// with its bucket and key, never a panic.
func TestAllRecordsCorrupt(t *testing.T) {
	for _, tc := range []struct {
		bucket, key string
		read        func(s *Store) error
	}{
		{bkBreaker, "AC1", func(s *Store) error { _, err := s.AllBreakers(); return err }},
		{bkCoverage, "AC1", func(s *Store) error { _, err := s.AllCoverage(); return err }},
		{bkRuleState, "AC1", func(s *Store) error { _, err := s.AllRuleStates(); return err }},
		{bkPolls, "AC1/usage", func(s *Store) error { _, err := s.AllPollStates("usage"); return err }},
		{bkUsage, "AC1/2026-03-01", func(s *Store) error { _, err := s.AllUsage("2026-02-01", "2026-03-31"); return err }},
	} {
		t.Run(tc.bucket, func(t *testing.T) {
			s := MustOpen(t)
			err := s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte(tc.bucket)).Put([]byte(tc.key), []byte{recordV1, 0xff})
			})
			if err != nil {
				t.Fatal(err)
			}
			err = tc.read(s)
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("bulk read = %v, want a decoding error", err)
			}
			if want := fmt.Sprintf("%s %q", tc.bucket, tc.key); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		})
	}
}

func TestWriteSynthetic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "synthetic.db")
	hour := testBase
	gen := func(i int) SyntheticAccount {
		a := SyntheticAccount{
			Account:   Account{SID: testAccount(i), FriendlyName: fmt.Sprintf("c%d", i), Status: "active", Parent: i == 0},
			Coverage:  traffic.Coverage{From: testBase, Until: testBase.Add(2 * time.Hour)},
			Usage:     []traffic.Usage{{Day: "2026-03-01", TotalPrice: float64(i)}},
			UsagePoll: PollState{LastSuccess: testBase},
		}
		for j := range i % 4 { // account 0 has no buckets
			a.Buckets = append(a.Buckets, traffic.Bucket{
				Start:   hour.Add(time.Duration(13*j) * traffic.BucketWidth), // across three hours
				Counts:  traffic.Counts{Outbound: int64(i), Finished: int64(i), Failed: 1, Errors: map[int]int64{30007: 1}},
				Samples: map[int][]string{30007: {testSID(100*i + j)}, traffic.SampleFailed: {testSID(100*i + j)}},
			})
		}
		return a
	}
	const n = 2*syntheticChunk + 3
	if err := WriteSynthetic(path, n, gen); err != nil {
		t.Fatal(err)
	}
	if err := WriteSynthetic(path, n, gen); err == nil {
		t.Error("WriteSynthetic over an existing file succeeded")
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	s := mustOpenPath(t, path)
	accts, err := s.Accounts()
	if err != nil || len(accts) != n || !accts[0].Parent {
		t.Fatalf("Accounts = %d accounts (first %+v), %v; want %d, the first the parent", len(accts), accts[0], err, n)
	}
	for _, i := range []int{0, 1, 3, syntheticChunk + 2, n - 1} {
		want := gen(i)
		sid := want.Account.SID
		got := SyntheticAccount{Account: want.Account}
		if got.Coverage, err = s.Coverage(sid); err != nil {
			t.Fatal(err)
		}
		if got.Usage, err = s.Usage(sid, "2026-03-01", "2026-03-01"); err != nil {
			t.Fatal(err)
		}
		if got.UsagePoll, err = s.PollState(sid, "usage"); err != nil {
			t.Fatal(err)
		}
		if got.Buckets, err = s.Buckets(sid, hour, hour.Add(3*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("account %d (-generated +stored):\n%s", i, diff)
		}
	}
	bad := func(int) SyntheticAccount {
		return SyntheticAccount{Account: Account{SID: "AC1"}, Buckets: []traffic.Bucket{{Start: hour.Add(time.Minute)}}}
	}
	if err := WriteSynthetic(filepath.Join(t.TempDir(), "bad.db"), 1, bad); err == nil {
		t.Error("WriteSynthetic accepted a bucket that does not start on a bucket boundary")
	}
}
