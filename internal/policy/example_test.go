package policy_test

import (
	"fmt"
	"time"

	"sentinel/internal/policy"
	"sentinel/internal/traffic"
)

// A policy that suspends an account when carriers filter 5% of its finished
// messages over an hour, judged once at least 100 have finished.
func Example() {
	file, err := policy.Parse("filtering.yaml", []byte(`
lists:
  carrier_filtering: [30007]   # filtered by a carrier or by Twilio
rules:
  - name: carrier-filtering
    description: Carriers filter 5% of this account's messages.
    signal: error_rate
    codes: $carrier_filtering
    window: 1h
    min_volume: 100
    trip: 5%
    resolve: 2.5%
    for: 1
    severity: critical
    action: suspend
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	set, err := policy.NewSet(file)
	if err != nil {
		fmt.Println(err)
		return
	}

	// An hour of traffic: 20 finished messages per 5 minutes, 2 of them filtered.
	now := time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)
	var buckets []traffic.Bucket
	for t := now.Add(-2 * time.Hour).Truncate(traffic.BucketWidth); t.Before(now); t = t.Add(traffic.BucketWidth) {
		buckets = append(buckets, traffic.Bucket{
			Start:  t,
			Counts: traffic.Counts{Outbound: 20, Finished: 20, Failed: 2, Errors: map[int]int64{30007: 2}},
		})
	}
	subj := policy.Subject{
		Account:  "AC0123456789abcdef0123456789abcdef",
		Name:     "acme-marketing",
		Buckets:  buckets,
		Coverage: traffic.Coverage{From: now.Add(-3 * time.Hour), Until: now},
	}
	decisions, _ := set.Evaluate(subj, nil, now)
	for _, d := range decisions {
		e := d.Evidence
		fmt.Printf("%s: %s fired=%t suspend=%t\n", d.Rule, d.Result, d.Fired, d.Suspend())
		fmt.Printf("%s: %g/%g = %g >= %g over %s..%s\n", e.Signal, e.Numerator, e.Denominator, e.Value, e.Threshold,
			e.From.Format("15:04"), e.To.Format("15:04"))
	}
	// Output:
	// carrier-filtering: firing fired=true suspend=true
	// error_rate 30007: 24/240 = 0.1 >= 0.05 over 09:35..10:32
}
