package backtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// The backtest at scale: 1,000 subaccounts with a week of history at
// about 500 messages an hour each, replayed through the shipped policies.
const (
	benchAccounts = 1000
	benchDays     = 7
	// benchDBVersion names the cached database: change it whenever
	// benchAccount or the store's schema changes (the database is opened
	// read-only, and a read-only open does not upgrade).
	benchDBVersion = "b3"
)

// benchNow is the end of the benchmark's period.
var benchNow = time.Date(2026, 3, 9, 10, 32, 0, 0, time.UTC)

// benchAccount returns account a of the synthetic fleet: nine days of
// five-minute buckets of about 42 messages (the period, the longest
// window before it and its first day's morning), mostly delivered, with
// 0.3% filtered (30007), 1.5% unreachable (30003), 1.5% inbound replies and
// 0.5% STOPs. A few misbehave for a while: every 97th is filtered at 8%
// for six hours of its fourth day, every 50th draws 4% opt-outs on its
// sixth, every 200th sends to unsubscribed numbers for an hour a day.
// Every account is judged from the start: known, covered, its usage read.
func benchAccount(a int) store.SyntheticAccount {
	sid := fmt.Sprintf("AC%032x", a)
	start := traffic.BucketStart(benchNow.Add(-(benchDays + 2) * 24 * time.Hour))
	rng := rand.New(rand.NewPCG(uint64(a), 7))
	var bs []traffic.Bucket
	for t := start; t.Before(benchNow); t = t.Add(traffic.BucketWidth) {
		day := int(benchNow.Sub(t) / (24 * time.Hour))
		filtered, optOut, unsub := 300, 500, 0
		if a%97 == 0 && day == 3 && t.Hour() >= 8 && t.Hour() < 14 {
			filtered = 8000
		}
		if a%50 == 0 && day == 1 {
			optOut = 4000
		}
		if a%200 == 3 && t.Hour() == 15 {
			unsub = 3000
		}
		b := traffic.Bucket{Start: t}
		n := 36 + rng.IntN(13)
		for range n {
			switch r := rng.IntN(100_000); {
			case r < optOut:
				b.Inbound++
				b.OptOuts++
				continue
			case r < optOut+1500:
				b.Inbound++
				continue
			}
			b.Outbound++
			b.Finished++
			code := 0
			switch r := rng.IntN(100_000); {
			case r < filtered:
				code = 30007
			case r < filtered+1500:
				code = 30003
			case r < filtered+1500+unsub:
				code = 21610
			}
			if code != 0 {
				b.Failed++
				if b.Errors == nil {
					b.Errors = map[int]int64{}
				}
				b.Errors[code]++
			}
		}
		bs = append(bs, b)
	}
	var usage []traffic.Usage
	for d := 9; d >= 0; d-- {
		day := benchNow.AddDate(0, 0, -d)
		usage = append(usage, traffic.Usage{Day: day.Format(time.DateOnly), TotalPrice: 90 + float64(a%7),
			AsOf: day.Truncate(24 * time.Hour).Add(25 * time.Hour), Currency: "USD"})
	}
	usage[len(usage)-1].AsOf = benchNow.Add(-3 * time.Minute)
	return store.SyntheticAccount{
		Account:   store.Account{SID: sid, FriendlyName: fmt.Sprintf("customer-%d", a), Status: "active", FirstSeen: start},
		Coverage:  traffic.Coverage{From: start, Until: benchNow.Add(-time.Minute)},
		Usage:     usage,
		UsagePoll: store.PollState{LastAttempt: benchNow.Add(-2 * time.Minute), LastSuccess: benchNow.Add(-2 * time.Minute)},
		Buckets:   bs,
	}
}

// benchDB returns the benchmark's database, opened read-only, built on
// first use in os.TempDir under a name that carries benchDBVersion.
func benchDB(b *testing.B) *store.Store {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("sentinel-bench-backtest-%s.db", benchDBVersion))
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		if err := store.WriteSynthetic(path, benchAccounts, benchAccount); err != nil {
			b.Fatal(err)
		}
		b.Logf("built %s in %v", path, time.Since(start).Round(time.Second))
	}
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// cpuTime returns the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkBacktest1000x7d is `sentinel -backtest -from -7d` with its
// default flags (one-minute steps, the default rails) over 1,000
// subaccounts with a week of history at about 500 messages an hour: read
// the history, replay 10,081 evaluations of every account through the
// shipped policies, report. Load and Replay are its two halves. The
// machine may be shared: cpu-s/op is the process's CPU time, garbage
// collection included; evals/op counts the evaluations the replay could
// not skip.
//
//	go test -run '^$' -bench Backtest1000x7d -benchmem -benchtime 1x -count 3 ./internal/backtest/
//
// The first run builds the database (about 80 MB, in seconds) in os.TempDir.
func BenchmarkBacktest1000x7d(b *testing.B) {
	st := benchDB(b)
	set, err := policy.Load("../../policies")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	to := benchNow
	from := to.Add(-benchDays * 24 * time.Hour)
	opts := Options{From: from, To: to, Rails: actions.DefaultRails()}
	report := func(b *testing.B, cpu0 int64) {
		b.ReportMetric(float64(cpuTime()-cpu0)/1e9/float64(b.N), "cpu-s/op")
	}
	b.Run("Total", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		var rep *Report
		for b.Loop() {
			h, err := Load(ctx, st, RequestFor(set, from, to))
			if err != nil {
				b.Fatal(err)
			}
			if rep, err = Run(ctx, h, set, opts); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
		if rep.Judged != benchAccounts || len(rep.Subaccounts) == 0 {
			b.Fatalf("judged %d subaccounts, %d fired", rep.Judged, len(rep.Subaccounts))
		}
		b.ReportMetric(float64(len(rep.Subaccounts)), "firing")
		b.ReportMetric(float64(rep.Summary.WouldSuspend), "suspensions")
	})
	b.Run("Load", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := Load(ctx, st, RequestFor(set, from, to)); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run("Replay", func(b *testing.B) {
		h, err := Load(ctx, st, RequestFor(set, from, to))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu0 := cpuTime()
		var evals int64
		for b.Loop() {
			r, err := newRun(ctx, h, set, opts)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.replay(); err != nil {
				b.Fatal(err)
			}
			evals = 0
			for _, a := range r.accts {
				evals += a.evals
			}
		}
		report(b, cpu0)
		b.ReportMetric(float64(evals), "evals/op")
	})
}
