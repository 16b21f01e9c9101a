package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/policy"
	"sentinel/internal/traffic"
)

// The evaluator's cycle at scale: 10,000 subaccounts, each with 24 hours of
// aggregates at about 500 messages an hour, judged by the shipped policies.
const (
	judgeAccounts = 10_000
	// judgeDBVersion names the cached database: change it whenever
	// judgeHour or the stored layout changes.
	judgeDBVersion = "g2"
)

// judgeNow is the time of the benchmark's evaluation.
var judgeNow = time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)

// judgeReinstated returns when account a was reinstated: every hundredth
// account three hours before now, so that its windows start at the
// reinstatement and its reads are cut there too.
func judgeReinstated(a int) time.Time {
	if a%100 == 7 {
		return judgeNow.Add(-3*time.Hour + 2*time.Minute)
	}
	return time.Time{}
}

// judgeHour returns the slots of account a's hour that starts at hour, made
// the way PutMessages would make them from about 500 messages: outbound
// messages, a fifth of the accounts without a Messaging Service; 1% filtered
// (30007), 1.5% unreachable (30003), 0.3% 30005, the odd 30034 and, for a
// tenth of the accounts, 21610; 1.5% inbound replies and 0.5% STOPs;
// messages of the last ten minutes partly still in flight. A few accounts
// misbehave: every 97th is filtered at 8%, every 50th draws 4% opt-outs,
// every 200th sends 30% from an unregistered number. Message SIDs grow in
// order of generation, so a sample list is the first MaxSamples messages
// with that key, as the store's smallest-SID rule would keep.
func judgeHour(a int, hour time.Time) *[slotsPerHour]traffic.Bucket {
	rng := rand.New(rand.NewPCG(uint64(a), uint64(hour.Unix())))
	// Rates per 100,000 messages.
	filtered, optOut, unregistered, unsubscribed := 1000, 500, 50, 0
	if a%97 == 0 {
		filtered = 8000
	}
	if a%50 == 0 {
		optOut = 4000
	}
	if a%200 == 3 {
		unregistered = 30000
	}
	if a%10 == 0 {
		unsubscribed = 50
	}
	noService := a%5 == 0
	var slots [slotsPerHour]traffic.Bucket
	for i := range slots {
		b := &slots[i]
		b.Start = hour.Add(time.Duration(i) * traffic.BucketWidth)
		if !b.Start.Before(judgeNow) {
			continue
		}
		recent := judgeNow.Sub(b.Start) <= 10*time.Minute
		sample := func(k, j int) {
			if len(b.Samples[k]) < traffic.MaxSamples {
				if b.Samples == nil {
					b.Samples = map[int][]string{}
				}
				b.Samples[k] = append(b.Samples[k], fmt.Sprintf("SM%08x%08x%04x%012x", a, hour.Unix()/3600, i, j))
			}
		}
		fail := func(code, j int) {
			b.Failed++
			if b.Errors == nil {
				b.Errors = map[int]int64{}
			}
			b.Errors[code]++
			sample(code, j)
			sample(traffic.SampleFailed, j)
		}
		n := 36 + rng.IntN(13)
		for j := range n {
			switch r := rng.IntN(100_000); {
			case r < optOut:
				b.Inbound++
				b.OptOuts++
				sample(traffic.SampleOptOut, j)
				continue
			case r < optOut+1500:
				b.Inbound++
				continue
			}
			b.Outbound++
			if noService {
				b.NoService++
				sample(traffic.SampleNoService, j)
			}
			if recent && rng.IntN(10) == 0 {
				continue // still queued
			}
			b.Finished++
			switch r := rng.IntN(100_000); {
			case r < filtered:
				fail(30007, j)
			case r < filtered+1500:
				fail(30003, j)
			case r < filtered+1800:
				fail(30005, j)
			case r < filtered+1800+unregistered:
				fail(30034, j)
			case r < filtered+1800+unregistered+unsubscribed:
				fail(21610, j)
			}
		}
	}
	return &slots
}

// judgeDB returns the benchmark's database, built on first use and kept in
// os.TempDir under a name that carries judgeDBVersion and the hour record
// version, so later runs open it in a moment.
func judgeDB(b *testing.B) *Store {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("sentinel-bench-judge-%s-h%d.db", judgeDBVersion, hourV2))
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		if err := buildJudgeDB(path); err != nil {
			b.Fatal(err)
		}
		b.Logf("built %s in %v", path, time.Since(start).Round(time.Second))
	}
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// buildJudgeDB writes the accounts, coverage and aggregates of every
// account to a new database at path, generating hours on every CPU.
func buildJudgeDB(path string) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	s, err := Open(tmp, Options{})
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer s.Close()
	accts := make([]Account, judgeAccounts)
	for a := range accts {
		accts[a] = Account{SID: testAccount(a), FriendlyName: fmt.Sprintf("customer-%d", a), Status: "active"}
	}
	if _, err := s.SyncAccounts(accts, judgeNow.Add(-30*24*time.Hour)); err != nil {
		return err
	}
	first := traffic.WindowStart(judgeNow, 24*time.Hour).Truncate(time.Hour)
	var hours []time.Time
	for h := first; h.Before(judgeNow); h = h.Add(time.Hour) {
		hours = append(hours, h)
	}
	cov := traffic.Coverage{From: judgeNow.Add(-7 * 24 * time.Hour), Until: judgeNow.Add(-2 * time.Minute)}
	const chunk = 1000
	for lo := 0; lo < judgeAccounts; lo += chunk {
		hi := min(lo+chunk, judgeAccounts)
		vals := make([][][]byte, hi-lo)
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Go(func() {
				for a := lo + w; a < hi; a += workers {
					for _, h := range hours {
						vals[a-lo] = append(vals[a-lo], encodeHour(judgeHour(a, h)))
					}
				}
			})
		}
		wg.Wait()
		err := s.db.Update(func(tx *bolt.Tx) error {
			aggs := tx.Bucket([]byte(bkAggregates))
			aggs.FillPercent = 0.9 // keys are written in order
			for a := lo; a < hi; a++ {
				for i, h := range hours {
					if err := aggs.Put(hourKey(testAccount(a), h), vals[a-lo][i]); err != nil {
						return err
					}
				}
				if err := putRec(tx, bkCoverage, []byte(testAccount(a)), cov, encodeCoverage); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cpuTime returns the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkJudgeRead10k measures one evaluation cycle over 10,000
// subaccounts: read every account's buckets for the policies' longest
// window at the resolution policy.Set.Cuts allows (ScanHourBuckets), and
// evaluate every shipped rule for it, examples included. Read and Evaluate
// are its two halves alone (Evaluate from buckets in memory, with hour
// samples); FiveMinute is the read at full resolution (ScanBuckets), for
// comparison; Coverage is the per-account read of one small record, what
// each further per-account transaction of a cycle costs. The machine may be
// shared: cpu-ns/op is the process's CPU time, garbage collection included.
// The store is read once before timing, as a daemon's previous cycle would
// have, so that the first iteration does not fault in the mapped file.
//
//	go test -run '^$' -bench JudgeRead10k -benchmem -benchtime 5x -count 3 ./internal/store/
//
// The first run builds the database (about 600 MB) in os.TempDir.
func BenchmarkJudgeRead10k(b *testing.B) {
	s := judgeDB(b)
	set, err := policy.Load("../../policies")
	if err != nil {
		b.Fatal(err)
	}
	now := judgeNow
	from := traffic.WindowStart(now, set.MaxWindow())
	cov := traffic.Coverage{From: now.Add(-7 * 24 * time.Hour), Until: now.Add(-2 * time.Minute)}
	var usage []traffic.Usage
	for d := 7; d >= 0; d-- {
		usage = append(usage, traffic.Usage{Day: now.AddDate(0, 0, -d).Format(time.DateOnly), TotalPrice: 3 + float64(d)})
	}
	index := make(map[string]int, judgeAccounts)
	for a := range judgeAccounts {
		index[testAccount(a)] = a
	}
	subject := func(sid string, buckets []traffic.Bucket) policy.Subject {
		a := index[sid]
		subj := policy.Subject{
			Account: sid, Name: fmt.Sprintf("customer-%d", a), Buckets: buckets, Coverage: cov,
			Usage: usage, UsageAsOf: now.Add(-5 * time.Minute), ReinstatedAt: judgeReinstated(a),
		}
		if !subj.ReinstatedAt.IsZero() {
			subj.Offences = 1
		}
		return subj
	}
	cuts := func(sid string) []time.Time { return set.Cuts(now, judgeReinstated(index[sid])) }
	report := func(b *testing.B, cpu0 int64) {
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*judgeAccounts), "ns/account")
	}
	// Results are counted over the whole cycle so that the figures below
	// can be checked against the data's design.
	type tally struct{ accounts, buckets, firing, pending, examples int }

	// A daemon keeps the file mapped from cycle to cycle: fault its pages
	// in once, as the previous cycle would have, so that the first
	// iteration does not pay for them.
	if err := s.ScanHourBuckets(from, now, cuts, func(string, []traffic.Bucket, traffic.ExampleFunc) error { return nil }); err != nil {
		b.Fatal(err)
	}

	states := make([]map[string]policy.State, judgeAccounts)
	b.Run("Cycle", func(b *testing.B) {
		b.ReportAllocs()
		var t tally
		cpu0 := cpuTime()
		for b.Loop() {
			t = tally{}
			err := s.ScanHourBuckets(from, now, cuts, func(sid string, bs []traffic.Bucket, examples traffic.ExampleFunc) error {
				a := index[sid]
				subj := subject(sid, bs)
				subj.Examples = examples
				ds, next := set.Evaluate(subj, states[a], now)
				states[a] = next
				t.accounts++
				t.buckets += len(bs)
				for _, d := range ds {
					switch d.Result {
					case policy.Firing:
						t.firing++
					case policy.Pending:
						t.pending++
					}
					if d.Result == policy.Firing || d.Result == policy.Pending {
						if len(d.Evidence.Examples) == 0 {
							return fmt.Errorf("%s %s: %s without examples", sid, d.Rule, d.Result)
						}
						t.examples++
					}
				}
				return nil
			})
			if err != nil || t.accounts != judgeAccounts {
				b.Fatalf("cycle judged %d accounts: %v", t.accounts, err)
			}
		}
		report(b, cpu0)
		b.ReportMetric(float64(t.buckets)/judgeAccounts, "buckets/account")
		b.ReportMetric(float64(t.firing+t.pending), "alarms")
	})

	b.Run("Read", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			n := 0
			err := s.ScanHourBuckets(from, now, cuts, func(string, []traffic.Bucket, traffic.ExampleFunc) error { n++; return nil })
			if err != nil || n != judgeAccounts {
				b.Fatalf("read %d accounts: %v", n, err)
			}
		}
		report(b, cpu0)
	})

	b.Run("Evaluate", func(b *testing.B) {
		// Buckets held for every account would make the garbage collector
		// mark 10,000 accounts' worth of maps, which a cycle never holds:
		// account a is judged on account a%200's buckets, which has the
		// same cuts (the same reinstatement) and all but the filtering
		// profile of a.
		const profiles = 200
		held := make([][]traffic.Bucket, profiles)
		for a := range held {
			sid := testAccount(a)
			bs, err := s.HourBuckets(sid, from, now, cuts(sid))
			if err != nil {
				b.Fatal(err)
			}
			held[a] = bs
		}
		subjects := make([]policy.Subject, 0, judgeAccounts)
		for a := range judgeAccounts {
			subjects = append(subjects, subject(testAccount(a), held[a%profiles]))
		}
		states := make([]map[string]policy.State, judgeAccounts)
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			for a := range subjects {
				_, states[a] = set.Evaluate(subjects[a], states[a], now)
			}
		}
		report(b, cpu0)
	})

	b.Run("FiveMinute", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			n := 0
			err := s.ScanBuckets(from, now, func(string, []traffic.Bucket) error { n++; return nil })
			if err != nil || n != judgeAccounts {
				b.Fatalf("read %d accounts: %v", n, err)
			}
		}
		report(b, cpu0)
	})

	b.Run("Coverage", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			for a := range judgeAccounts {
				if c, err := s.Coverage(testAccount(a)); err != nil || !c.Until.Equal(cov.Until) {
					b.Fatalf("Coverage = %v, %v", c, err)
				}
			}
		}
		report(b, cpu0)
	})
}
