package actions_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
)

// Judge's cycle at the project's target scale: 10,000 subaccounts (and the
// parent), each with 24 hours of aggregates at about 500 messages an hour,
// judged by the shipped policies.
const (
	fleetAccounts = 10_000
	// fleetVersion names the cached database: change it whenever
	// fleetAccount changes.
	fleetVersion = "f3"
)

// fleetNow is when the fleet's history ends and the first cycle runs.
var fleetNow = time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)

func fleetSID(a int) string { return fmt.Sprintf("AC%032x", 0xf000000+a) }

// fleetAccount returns account a of a quiet fleet: nobody trips a
// suspension rule, so Twilio is never called, but some accounts alert:
// every 97th is filtered at 3% (carrier-filtering-warning), every 50th
// draws 3% opt-outs (opt-out-rate-warning), every 200th sends 30% from an
// unregistered number (unregistered-sender, and delivery-failure from its
// second cycle), every 300th sends some 18 messages a day to unsubscribed
// recipients (21610). Every 1000th has sent nothing for two days: it has
// no buckets in range. Otherwise 0.3% of the
// finished messages are filtered (30007), 1.5% unreachable (30003), 0.3%
// 30005; 1.5% of the traffic is inbound replies, 0.5% STOPs; a fifth of
// the accounts send without a Messaging Service; messages of the last ten
// minutes are partly still in flight. Spend is a flat $3 a day. The message
// log is covered until half an hour past fleetNow, so that the clock can
// run on a minute per cycle without the coverage going stale.
func fleetAccount(a int) store.SyntheticAccount {
	sid := fleetSID(a)
	acct := store.SyntheticAccount{
		Account:   store.Account{SID: sid, FriendlyName: fmt.Sprintf("customer-%d", a), Status: "active", FirstSeen: fleetNow.AddDate(0, -1, 0)},
		Coverage:  traffic.Coverage{From: fleetNow.AddDate(0, 0, -7), Until: fleetNow.Add(30 * time.Minute)},
		UsagePoll: store.PollState{LastAttempt: fleetNow.Add(-5 * time.Minute), LastSuccess: fleetNow.Add(-5 * time.Minute)},
	}
	for d := 7; d >= 0; d-- {
		acct.Usage = append(acct.Usage, traffic.Usage{Day: fleetNow.AddDate(0, 0, -d).Format(time.DateOnly),
			TotalPrice: 3, SMS: 12000, AsOf: fleetNow.Add(-5 * time.Minute)})
	}
	if a == fleetAccounts { // the parent: sends nothing itself
		acct.Account.Parent = true
		return acct
	}
	if a%1000 == 999 {
		return acct
	}
	// Rates per 100,000 messages.
	filtered, optOut, unregistered, unsubscribed := 300, 500, 50, 0
	if a%97 == 0 {
		filtered = 3000
	}
	if a%50 == 0 {
		optOut = 3000
	}
	if a%200 == 3 {
		unregistered = 30000
	}
	if a%300 == 0 {
		unsubscribed = 150
	}
	noService := a%5 == 0
	first := traffic.WindowStart(fleetNow, 24*time.Hour).Truncate(time.Hour)
	for h, hour := 0, first; hour.Before(fleetNow); h, hour = h+1, hour.Add(time.Hour) {
		rng := rand.New(rand.NewPCG(uint64(a), uint64(hour.Unix())))
		for i := range int(time.Hour / traffic.BucketWidth) {
			b := traffic.Bucket{Start: hour.Add(time.Duration(i) * traffic.BucketWidth)}
			if !b.Start.Before(fleetNow) {
				break
			}
			recent := fleetNow.Sub(b.Start) <= 10*time.Minute
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
			for j := range 36 + rng.IntN(13) {
				m := float64(a*100_000 + h*1000 + i*60 + j) // the message's own number
				switch r := weyl(m, math.Phi); {
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
				switch r := weyl(m, math.Sqrt2); {
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
			acct.Buckets = append(acct.Buckets, b)
		}
	}
	return acct
}

// weyl returns the fractional part of m*x scaled to [0, 100000): for
// irrational x, consecutive m spread evenly, so that a rate holds in every
// window, not only on average. Random draws would put some accounts near
// a threshold over it in one cycle and under it in the next.
func weyl(m, x float64) int {
	_, f := math.Modf(m * x)
	return int(f * 100_000)
}

// fleetDB returns a store holding the fleet, in a file of the benchmark's
// own: Judge writes. The fleet is built once (about a minute) into
// os.TempDir under a name that carries fleetVersion, and copied from there.
func fleetDB(b *testing.B) *store.Store {
	b.Helper()
	cached := filepath.Join(os.TempDir(), "sentinel-bench-actions-fleet-"+fleetVersion+".db")
	if _, err := os.Stat(cached); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		if err := store.WriteSynthetic(cached, fleetAccounts+1, fleetAccount); err != nil {
			b.Fatal(err)
		}
		b.Logf("built %s in %v", cached, time.Since(start).Round(time.Second))
	}
	path := filepath.Join(b.TempDir(), "sentinel.db")
	if err := copyFile(path, cached); err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	// A daemon keeps the file mapped from cycle to cycle: fault it in, as
	// the poller's writes would have.
	err = st.ScanHourBuckets(fleetNow.Add(-25*time.Hour), fleetNow, nil,
		func(string, []traffic.Bucket, traffic.ExampleFunc) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// quietTwilio stands in for Twilio, which a quiet fleet never needs.
type quietTwilio struct{ calls atomic.Int64 }

func (q *quietTwilio) FetchAccount(context.Context, string) (twilioapi.Account, error) {
	q.calls.Add(1)
	return twilioapi.Account{}, errors.New("twilio called for a quiet fleet")
}

func (q *quietTwilio) SetStatus(context.Context, string, string) (twilioapi.Account, error) {
	q.calls.Add(1)
	return twilioapi.Account{}, errors.New("twilio called for a quiet fleet")
}

func (q *quietTwilio) UsageToday(context.Context, string) (traffic.Usage, error) {
	q.calls.Add(1)
	return traffic.Usage{}, errors.New("twilio called for a quiet fleet")
}

// countNotifier counts notifications, by kind and rule, and delivers none.
type countNotifier struct {
	mu   sync.Mutex
	n    int
	seen map[string]int
}

func (c *countNotifier) Notify(_ context.Context, ev slack.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	c.n++
	c.seen[ev.Kind+"/"+ev.Rule]++
	return nil
}

// reset returns the counts so far and starts again from zero.
func (c *countNotifier) reset() (int, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, seen := c.n, c.seen
	c.n, c.seen = 0, nil
	return n, seen
}

// cpuTime returns the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// fleetActor returns an Actor over a fresh copy of the fleet, and its
// clock, which starts at fleetNow.
func fleetActor(b *testing.B, set *policy.Set) (*actions.Actor, *clock, *countNotifier) {
	b.Helper()
	st := fleetDB(b)
	tw, notes, clk := &quietTwilio{}, &countNotifier{}, &clock{t: fleetNow}
	a, err := actions.New(actions.Config{}, st, tw, func() *policy.Set { return set }, notes,
		prometheus.NewRegistry(), nil, clk.Now)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if n := tw.calls.Load(); n != 0 {
			b.Errorf("%d calls to Twilio for a quiet fleet", n)
		}
	})
	return a, clk, notes
}

// BenchmarkJudge10k measures actions.(*Actor).Judge, the daemon's cycle,
// over 10,000 subaccounts and the parent with 24 hours of history at about
// 500 messages an hour, judged by the shipped policies, with the clock a
// minute on per cycle. Steady is a cycle after two untimed ones, when no
// rule changes its result any more: the daemon's every minute. First is
// the first cycle on the fleet, which stores every account's rule states
// and opens the fleet's incidents (one write and one notification each).
// The machine may be shared: cpu-ns/op is the process's CPU time, garbage
// collection included.
//
//	go test -run '^$' -bench Judge10k -benchmem -benchtime 3x -count 3 ./internal/actions/
//
// The first run builds the fleet (about 650 MB) in os.TempDir; every run
// copies it.
func BenchmarkJudge10k(b *testing.B) {
	set, err := policy.Load("../../policies")
	if err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B, sum actions.Summary, err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
		if sum.Accounts != fleetAccounts+1 || len(sum.Suspended)+len(sum.WouldSuspend)+len(sum.Blocked)+len(sum.Blind) != 0 {
			b.Fatalf("summary %+v, want %d accounts judged and nothing done", sum, fleetAccounts+1)
		}
	}

	b.Run("Steady", func(b *testing.B) {
		a, clk, notes := fleetActor(b, set)
		// Two cycles before timing: the first stores every account's
		// rule states and opens the fleet's incidents, the second fires
		// the rules that need two evaluations in a row (the unregistered
		// senders' delivery-failure).
		sum, err := a.Judge(context.Background())
		check(b, sum, err)
		clk.Advance(time.Minute)
		sum, err = a.Judge(context.Background())
		check(b, sum, err)
		notes.reset()
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			clk.Advance(time.Minute)
			sum, err = a.Judge(context.Background())
			check(b, sum, err)
		}
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(sum.Firing), "firing")
		if n, seen := notes.reset(); n != 0 {
			b.Errorf("%d notifications in steady cycles, want none: %v", n, seen)
		}
	})

	b.Run("First", func(b *testing.B) {
		b.ReportAllocs()
		var cpu int64
		var notified int
		for range b.N {
			b.StopTimer()
			a, _, notes := fleetActor(b, set)
			b.StartTimer()
			cpu0 := cpuTime()
			sum, err := a.Judge(context.Background())
			cpu += cpuTime() - cpu0
			check(b, sum, err)
			notified, _ = notes.reset()
		}
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(notified), "notifications")
	})
}
