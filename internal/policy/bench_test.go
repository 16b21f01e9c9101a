package policy

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"sentinel/internal/traffic"
)

// BenchmarkEvaluate10k evaluates every shipped rule for 10,000 subaccounts,
// each with 24h of 5-minute buckets at about 500 messages an hour; one op is
// one full cycle. Accounts share 64 generated traffic profiles to keep the
// benchmark's own memory small (Evaluate only reads buckets); reading them
// from the store is benchmarked in internal/store.
//
//	go test -run '^$' -bench Evaluate10k -benchmem ./internal/policy/
func BenchmarkEvaluate10k(b *testing.B) {
	set, err := Load("testdata/engine")
	if err != nil {
		b.Fatal(err)
	}
	const accounts, profiles = 10_000, 64
	now := time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	history := make([][]traffic.Bucket, profiles)
	for p := range history {
		history[p] = benchBuckets(rng, now, 25*time.Hour)
	}
	usage := []traffic.Usage{}
	for d := 7; d >= 0; d-- {
		usage = append(usage, traffic.Usage{Day: now.AddDate(0, 0, -d).Format(time.DateOnly), TotalPrice: 3 + float64(d)})
	}
	subjects := make([]Subject, accounts)
	for i := range subjects {
		subjects[i] = Subject{
			Account:   fmt.Sprintf("AC%032x", i),
			Name:      fmt.Sprintf("customer-%d", i),
			Buckets:   history[i%profiles],
			Coverage:  traffic.Coverage{From: now.Add(-48 * time.Hour), Until: now.Add(-time.Minute)},
			Usage:     usage,
			UsageAsOf: now.Add(-5 * time.Minute),
		}
		if i%100 == 0 {
			subjects[i].ReinstatedAt, subjects[i].Offences = now.Add(-3*time.Hour), 1
		}
	}
	states := make([]map[string]State, accounts)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		for i := range subjects {
			_, states[i] = set.Evaluate(subjects[i], states[i], now)
		}
	}
	// CPU time as well as wall time: on a shared machine wall time measures
	// the neighbours too.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/accounts, "ns/account")
}

// benchBuckets builds span of buckets ending at now with ~42 messages each:
// mostly delivered, some 30003/30005/30007 errors, a few opt-outs.
func benchBuckets(rng *rand.Rand, now time.Time, span time.Duration) []traffic.Bucket {
	var out []traffic.Bucket
	seq := 0
	sid := func() string { seq++; return fmt.Sprintf("SM%032x", seq) }
	for t := traffic.BucketStart(now.Add(-span)); !t.After(now); t = t.Add(traffic.BucketWidth) {
		n := int64(36 + rng.IntN(12))
		inFlight := int64(rng.IntN(3))
		b := traffic.Bucket{Start: t, Samples: map[int][]string{}}
		b.Outbound, b.Finished = n, n-inFlight
		b.Errors = map[int]int64{}
		for _, code := range []int{30003, 30005, 30007, 30008} {
			if k := int64(rng.IntN(3)); k > 0 {
				b.Errors[code] = k
				b.Failed += k
				b.Samples[code] = []string{sid()}
			}
		}
		if rng.IntN(4) == 0 {
			b.Inbound, b.OptOuts = 2, 1
			b.Samples[traffic.SampleOptOut] = []string{sid()}
		}
		b.Samples[traffic.SampleFailed] = []string{sid()}
		out = append(out, b)
	}
	return out
}

// cpuTime returns the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
