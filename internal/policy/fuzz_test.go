package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sentinel/internal/traffic"
)

// FuzzParse feeds arbitrary bytes to the parser: it must never panic, must
// report problems as a *LoadError naming the file, and whatever it accepts
// must combine into a Set that evaluates.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/engine/*.yaml", "testdata/invalid/*.yaml", "testdata/invalid/*/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(scopeDoc))
	f.Add([]byte("rules: [&a {name: x}, *a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("got %T %v, want a *LoadError with problems", err, err)
			}
			for _, p := range le.Problems {
				if p.File != "fuzz.yaml" || p.Msg == "" {
					t.Fatalf("problem without file or message: %+v", p)
				}
			}
			return
		}
		set, err := NewSet(file)
		if err != nil {
			return
		}
		now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		subj := Subject{Account: sidA, Name: "acme", Coverage: traffic.Coverage{From: now.Add(-48 * time.Hour), Until: now},
			Buckets: []traffic.Bucket{{Start: now.Add(-time.Hour), Counts: traffic.Counts{Outbound: 10, Finished: 10, Errors: map[int]int64{30007: 1}}}},
			Usage:   []traffic.Usage{{Day: "2026-03-02", TotalPrice: 10}}, UsageAsOf: now}
		ds, states := set.Evaluate(subj, nil, now)
		if len(ds) != len(set.Rules()) || len(states) > len(ds) {
			t.Fatalf("%d decisions and %d states for %d rules", len(ds), len(states), len(set.Rules()))
		}
	})
}
