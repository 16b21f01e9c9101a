package policy

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// testFileWork estimates what RunTests does for tf: messages built into
// buckets, plus bucket visits of the evaluations. Offsets can be anything
// a duration holds, so the arithmetic is in floats.
func testFileWork(tf *testFile) float64 {
	var work float64
	pos := func(n int) float64 { return math.Max(float64(n), 0) }
	for _, tc := range tf.Tests {
		var buckets float64
		for _, sr := range tc.Traffic {
			n := (float64(sr.To)-float64(sr.From))/float64(traffic.BucketWidth) + 1
			if n <= 0 {
				continue
			}
			msgs := pos(sr.Finished) + pos(sr.Failed) + pos(sr.InFlight) + pos(sr.OptOuts) + pos(sr.Inbound) + pos(sr.NoService)
			for _, e := range sr.Errors {
				msgs += math.Abs(float64(e))
			}
			buckets += n
			work += n * (msgs + 1)
		}
		evals := float64(len(tc.Evals))
		if tc.Every > 0 {
			for _, ev := range tc.Evals {
				evals += math.Max(float64(ev.At)/float64(tc.Every), 0)
			}
		}
		work += evals * (buckets + float64(len(tc.Usage)) + float64(len(tc.Subject.OffenceDays)) + 1)
	}
	return work
}

// FuzzTestFile feeds arbitrary bytes to RunTests as a policy test file, run
// against the repository's policies. A file either loads, and then each of
// its cases is run and reported PASS or FAIL and counted, or it does not,
// and the error names the file and no case runs. Files that would build
// more traffic or evaluate more often than a fuzzing iteration can afford
// are only loaded.
func FuzzTestFile(f *testing.F) {
	const policies = "../../policies"
	files, _ := filepath.Glob(filepath.Join(policies, "tests", "*.yaml"))
	if len(files) == 0 {
		f.Fatal("no policy test files to seed from")
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "start: 2026-03-02T00:00:00Z\n", "start: 2026-03-02T00:01:00Z\ntests: [{name: x, evals: [{at: 0h}]}]\n",
		"start: 2026-03-02T00:00:00Z\ntests: [{name: x, evals: [{at: 0h}]}]\nfoo: 1\n",
		"start: 2026-03-02T00:00:00Z\ntests: [{name: x, evals: [{at: 0h, expect: [{rule: nope, result: ok}]}]}]\n",
		"start: 2026-03-02T00:00:00Z\ntests: [{name: x, traffic: [{from: 1h, to: -1h, finished: 1}], evals: [{at: 0h}]}]\n",
		"start: 2026-03-02T00:00:00Z\ntests: [{name: x, traffic: [{from: 0h, to: 1h, finished: -3, no_service: 2, errors: {30007: -1}}], evals: [{at: 1h}]}]\n",
		"start: 2026-03-02T00:00:00Z\ntests: [{name: x, usage_as_of: sometime, evals: [{at: 0h}, {at: 0h}]}]\n",
		// An every close to the largest offset: stepping past the last
		// evaluation must not overflow and start again from below.
		"start: 2026-03-02T00:00:00Z\ntests: [{name: x, every: 2000000h, evals: [{at: 2562047h}]}]\n",
		"start: 2026-03-02T00:00:00Z\ntests: [{name: x, subject: {offence_days: [-100000, 100000]}, usage: [{day: 100000, spend: 1e308}], evals: [{at: -1d}]}]\n",
	} {
		f.Add([]byte(s))
	}
	file := filepath.Join(f.TempDir(), "fuzz.yaml")
	summary := regexp.MustCompile(`(?m)^policy tests: ([0-9]+) passed, ([0-9]+) failed\n\z`)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tf, err := readTestFile(file)
		if err != nil {
			if !strings.Contains(err.Error(), file) {
				t.Fatalf("error does not name the file: %v", err)
			}
			var out strings.Builder
			failed, err := RunTests(&out, policies, file)
			if failed != 0 || err == nil || !strings.Contains(err.Error(), file) || out.String() != "policy tests: 0 passed, 0 failed\n" {
				t.Fatalf("RunTests of a file that does not load: %d failed, %v, output %q", failed, err, out.String())
			}
			return
		}
		if len(tf.Tests) == 0 || tf.Start.Location() != time.UTC || !tf.Start.Equal(traffic.BucketStart(tf.Start)) {
			t.Fatalf("loaded %d tests from %v", len(tf.Tests), tf.Start)
		}
		if testFileWork(tf) > 2e5 {
			return
		}
		var out strings.Builder
		failed, err := RunTests(&out, policies, file)
		if err != nil {
			t.Fatalf("RunTests of a file that loads: %v", err)
		}
		m := summary.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no summary at the end of:\n%s", out.String())
		}
		passed, _ := strconv.Atoi(m[1])
		if n, _ := strconv.Atoi(m[2]); n != failed || passed+failed != len(tf.Tests) {
			t.Fatalf("summary %q, returned %d failed, for %d tests", m[0], failed, len(tf.Tests))
		}
	})
}
