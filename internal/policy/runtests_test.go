package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestRunTestsReportsFailures(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rules.yaml"), filteringDoc)
	if err := os.Mkdir(filepath.Join(dir, "tests"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := filepath.Join(dir, "tests", "t.yaml")
	writeFile(t, tests, `
start: 2026-03-02T00:00:00Z
tests:
  - name: passes
    traffic: [{from: -1h, to: 1h, finished: 100, errors: {30007: 10}}]
    evals:
      - {at: 0h, expect: [{rule: filtering, result: pending}]}
  - name: wrong expectation
    traffic: [{from: -1h, to: 1h, finished: 100, errors: {30007: 10}}]
    every: 5m
    evals:
      - at: 10m
        expect: [{rule: filtering, result: pending}]
        firing: []
`)
	var out strings.Builder
	failed, err := RunTests(&out, "", tests)
	if err != nil {
		t.Fatal(err)
	}
	want := `PASS TESTS: passes
FAIL TESTS: wrong expectation
    at 10m, filtering:
      - result=pending fired=false
      + result=firing fired=true
        (error_rate 30007: 120/1200 = 0.1, trip 0.05, resolve 0.025, window 03-01T23:10..03-02T00:10)
    at 10m, firing rules:
      - []
      + [filtering]
policy tests: 1 passed, 1 failed
`
	// every: 5m evaluates at 5m too (pending), so at 10m the rule fires.
	got := strings.ReplaceAll(out.String(), tests, "TESTS")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if failed != 1 {
		t.Errorf("failed = %d, want 1", failed)
	}
}

func TestRunTestsBadFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rules.yaml"), filteringDoc)
	tests := filepath.Join(dir, "tests")
	if err := os.Mkdir(tests, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"unknown-key.yaml":  "start: 2026-03-02T00:00:00Z\ntests: [{name: x, evals: [{at: 0h}]}]\nfoo: 1\n",
		"unaligned.yaml":    "start: 2026-03-02T00:01:00Z\ntests: [{name: x, evals: [{at: 0h}]}]\n",
		"no-policies.yaml":  "policies: nowhere\nstart: 2026-03-02T00:00:00Z\ntests: [{name: x, evals: [{at: 0h}]}]\n",
		"unknown-rule.yaml": "start: 2026-03-02T00:00:00Z\ntests: [{name: x, evals: [{at: 0h, expect: [{rule: nope, result: ok}]}]}]\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(tests, name)
			writeFile(t, p, body)
			var out strings.Builder
			failed, err := RunTests(&out, "", p)
			if name == "unknown-rule.yaml" {
				if failed != 1 || !strings.Contains(out.String(), `no rule named "nope"`) {
					t.Errorf("failed %d, output %q: want the case failed naming the rule", failed, out.String())
				}
				return
			}
			if err == nil {
				t.Errorf("RunTests(%s) = %d, nil; want an error", name, failed)
			}
		})
	}
}

func TestOffsetString(t *testing.T) {
	for in, want := range map[string]string{"0": "0s", "10m": "10m", "1h": "1h", "1h5m": "1h5m", "-30m": "-30m", "1d2h": "26h", "90s": "1m30s"} {
		var o offset
		if err := o.UnmarshalYAML(&yaml.Node{Value: in}); err != nil {
			t.Fatal(err)
		}
		if got := o.String(); got != want {
			t.Errorf("offset %q prints %q, want %q", in, got, want)
		}
	}
}
