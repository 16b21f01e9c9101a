package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sentinel/internal/traffic"
)

// coarsen does what store.HourBuckets does to five-minute buckets: of those
// that start in [from, to), it merges each hour that lies wholly in the range
// and has no cut strictly inside into one bucket of Width time.Hour, with the
// MaxSamples smallest SIDs per sample key.
func coarsen(buckets []traffic.Bucket, from, to time.Time, cuts []time.Time) []traffic.Bucket {
	var out []traffic.Bucket
	for i := 0; i < len(buckets); {
		h := buckets[i].Start.Truncate(time.Hour)
		j := i
		for j < len(buckets) && buckets[j].Start.Before(h.Add(time.Hour)) {
			j++
		}
		whole := !h.Before(from) && !h.Add(time.Hour).After(to)
		for _, c := range cuts {
			whole = whole && !(c.After(h) && c.Before(h.Add(time.Hour)))
		}
		if !whole {
			for _, b := range buckets[i:j] {
				if !b.Start.Before(from) && b.Start.Before(to) {
					out = append(out, b)
				}
			}
			i = j
			continue
		}
		m := traffic.Bucket{Start: h, Width: time.Hour, Samples: map[int][]string{}}
		for _, b := range buckets[i:j] {
			m.Counts.Add(b.Counts)
			for k, sids := range b.Samples {
				m.Samples[k] = append(m.Samples[k], sids...)
			}
		}
		for k, sids := range m.Samples {
			slices.Sort(sids)
			m.Samples[k] = sids[:min(len(sids), traffic.MaxSamples)]
		}
		out = append(out, m)
		i = j
	}
	return out
}

// coarseHistory is benchBuckets with some 21610s and, for odd profiles, an
// opt-out wave, so that every message rule has something to judge.
func coarseHistory(rng *rand.Rand, now time.Time, profile int) []traffic.Bucket {
	b := benchBuckets(rng, now, 26*time.Hour)
	for i := range b {
		if i%17 == 0 {
			b[i].Errors[21610] = 1
			b[i].Finished++
			b[i].Samples[21610] = []string{b[i].Samples[traffic.SampleFailed][0] + "u"}
		}
		if profile%2 == 1 {
			b[i].Inbound += 3
			b[i].OptOuts += 3
			b[i].Samples[traffic.SampleOptOut] = append(b[i].Samples[traffic.SampleOptOut], b[i].Samples[traffic.SampleFailed][0]+"o")
		}
	}
	return b
}

// TestEvaluateHourBuckets checks that Evaluate judges buckets read at the
// resolution Cuts allows exactly as it judges five-minute buckets: same
// results, states and evidence, with examples that are samples from the
// window whenever the five-minute buckets have any.
func TestEvaluateHourBuckets(t *testing.T) {
	set, err := Load("testdata/engine")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	nows := []time.Duration{32 * time.Minute, 0, 57 * time.Minute, 63 * time.Minute, 5 * time.Minute}
	reinstated := []time.Duration{0, -(3*time.Hour - 2*time.Minute), -30 * time.Minute, -(25 * time.Hour)}
	rng := rand.New(rand.NewPCG(3, 4))
	coarser, judged := 0, map[Result]int{}
	for profile := range 4 {
		for _, dn := range nows {
			now := base.Add(dn)
			fine := coarseHistory(rng, now, profile)
			for _, dr := range reinstated {
				subj := Subject{Account: sidA, Coverage: traffic.Coverage{From: now.Add(-48 * time.Hour), Until: now}}
				if dr != 0 {
					subj.ReinstatedAt, subj.Offences = now.Add(dr), 1
				}
				var fs, cs map[string]State
				for step := range 3 {
					at := now.Add(time.Duration(step) * time.Second)
					// The cuts, and so the read, depend on the time of
					// the evaluation.
					coarse := coarsen(fine, traffic.WindowStart(at, set.MaxWindow()), at, set.Cuts(at, subj.ReinstatedAt))
					if len(coarse) < len(fine)/4 {
						coarser++
					}
					subj.Buckets = fine
					fd, fnext := set.Evaluate(subj, fs, at)
					subj.Buckets = coarse
					cd, cnext := set.Evaluate(subj, cs, at)
					// As ScanHourBuckets reads: no samples, and
					// examples of the five-minute buckets on demand.
					subj.Buckets = stripSamples(coarse)
					subj.Examples = func(from, to time.Time, n int, keys ...int) []string {
						return traffic.Examples(fine, from, to, n, keys...)
					}
					sd, snext := set.Evaluate(subj, cs, at)
					subj.Examples = nil
					if diff := cmp.Diff(fd, sd); diff != "" {
						t.Fatalf("now %v reinstated %v: decisions (-fine +hours with examples on demand):\n%s", at, subj.ReinstatedAt, diff)
					}
					if diff := cmp.Diff(cnext, snext); diff != "" {
						t.Fatalf("now %v: states (-hours +hours with examples on demand):\n%s", at, diff)
					}
					if diff := cmp.Diff(fd, cd, cmpopts.IgnoreFields(Evidence{}, "Examples")); diff != "" {
						t.Fatalf("now %v reinstated %v: decisions (-fine +hours):\n%s", at, subj.ReinstatedAt, diff)
					}
					if diff := cmp.Diff(fnext, cnext); diff != "" {
						t.Fatalf("now %v: states (-fine +hours):\n%s", at, diff)
					}
					for i := range fd {
						judged[fd[i].Result]++
						fx, cx := fd[i].Evidence.Examples, cd[i].Evidence.Examples
						if (len(fx) == 0) != (len(cx) == 0) {
							t.Fatalf("now %v rule %s: examples %v from five-minute buckets, %v from hours", at, fd[i].Rule, fx, cx)
						}
						for _, sid := range cx {
							if !inWindow(fine, sid, fd[i].Evidence.From, fd[i].Evidence.To) {
								t.Errorf("now %v rule %s: example %s is not a sample in [%v, %v)", at, fd[i].Rule, sid, fd[i].Evidence.From, fd[i].Evidence.To)
							}
						}
					}
					fs, cs = fnext, cnext
				}
			}
		}
	}
	if coarser == 0 || judged[Firing] == 0 || judged[Pending] == 0 || judged[OK] == 0 {
		t.Errorf("the cases do not cover enough: %d coarse reads, results %v", coarser, judged)
	}
}

func stripSamples(buckets []traffic.Bucket) []traffic.Bucket {
	out := slices.Clone(buckets)
	for i := range out {
		out[i].Samples = nil
	}
	return out
}

// inWindow reports whether sid is a sample of a bucket that starts in
// [from, to).
func inWindow(buckets []traffic.Bucket, sid string, from, to time.Time) bool {
	for _, b := range buckets {
		if b.Start.Before(from) || !b.Start.Before(to) {
			continue
		}
		for _, sids := range b.Samples {
			if slices.Contains(sids, sid) {
				return true
			}
		}
	}
	return false
}

// TestEvaluateStraddlingBucket checks that a window whose start or end
// falls inside a wide bucket is Unknown rather than summed inexactly.
func TestEvaluateStraddlingBucket(t *testing.T) {
	set, err := Load("testdata/engine")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)
	fine := coarseHistory(rand.New(rand.NewPCG(5, 6)), now, 0)
	from := traffic.WindowStart(now, set.MaxWindow())
	subj := Subject{Account: sidA, Coverage: traffic.Coverage{From: now.Add(-48 * time.Hour), Until: now}}
	windowOf := map[string]time.Duration{}
	for _, r := range set.Rules() {
		windowOf[r.Name] = r.Window
	}

	// Split at the 24h window's start and at now only: the hour
	// 09:00-10:00 straddles the 1h window's start (09:35).
	subj.Buckets = coarsen(fine, from, now, []time.Time{from, now})
	ds, _ := set.Evaluate(subj, nil, now)
	subj.Buckets = fine
	want, _ := set.Evaluate(subj, nil, now)
	for i, d := range ds {
		if d.Result == Skipped {
			continue
		}
		switch windowOf[d.Rule] {
		case time.Hour:
			if d.Result != Unknown || !strings.Contains(d.Evidence.Reason, "straddles") {
				t.Errorf("%s: %s (%s), want unknown: a bucket straddles the window", d.Rule, d.Result, d.Evidence.Reason)
			}
		case 24 * time.Hour:
			if diff := cmp.Diff(want[i], d, cmpopts.IgnoreFields(Evidence{}, "Examples")); diff != "" {
				t.Errorf("%s over 24h (-fine +hours):\n%s", d.Rule, diff)
			}
		}
	}

	// A bucket that runs past now straddles the end of every window.
	subj.Buckets = coarsen(fine, from, now.Add(time.Hour), []time.Time{from, traffic.WindowStart(now, time.Hour)})
	ds, _ = set.Evaluate(subj, nil, now)
	for _, d := range ds {
		if windowOf[d.Rule] > 0 && d.Result != Skipped && d.Result != Unknown {
			t.Errorf("%s: %s, want unknown: the last bucket runs past now", d.Rule, d.Result)
		}
	}
}

func TestCuts(t *testing.T) {
	set := mustSet(t, filteringDoc+`
  - name: day
    description: Filtered over a day.
    signal: error_rate
    codes: [30007]
    window: 24h
    trip: 5%
    severity: warning
    action: alert
`)
	now := time.Date(2026, 3, 2, 10, 32, 10, 0, time.UTC)
	at := func(d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, time.UTC) }
	tests := []struct {
		name       string
		reinstated time.Time
		want       []time.Time
	}{
		{"never reinstated", time.Time{}, []time.Time{at(2, 9, 35), at(1, 10, 35), now}},
		{"reinstated inside the day", at(2, 7, 31), []time.Time{at(2, 9, 35), at(2, 7, 31), now}},
		{"reinstated inside the hour", at(2, 10, 0), []time.Time{at(2, 10, 0), at(2, 10, 0), now}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, set.Cuts(now, tc.reinstated)); diff != "" {
				t.Errorf("Cuts (-want +got):\n%s", diff)
			}
		})
	}
}
