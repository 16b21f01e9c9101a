package policy

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

const ruleA = `
rules:
  - name: a
    description: A.
    signal: error_count
    codes: [21610]
    window: 1h
    trip: 1
    severity: info
    action: alert
`

const ruleB = `
rules:
  - name: b
    description: B.
    signal: error_count
    codes: [21610]
    window: 2h
    trip: 1
    severity: info
    action: alert
`

func writeFile(tb testing.TB, path, data string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		tb.Fatal(err)
	}
}

type reloadResult struct {
	set *Set
	err error
}

func newTestReloader(t *testing.T, dir string, interval time.Duration, trigger chan struct{}) (*Reloader, *prometheus.Registry, chan reloadResult) {
	t.Helper()
	reg := prometheus.NewRegistry()
	results := make(chan reloadResult, 10)
	clock := time.Unix(1_700_000_000, 0)
	r, err := NewReloader(ReloaderConfig{
		Dir: dir, Interval: interval, Trigger: trigger, Registerer: reg, NoWatch: true,
		OnReload: func(s *Set, err error) { results <- reloadResult{s, err} },
		Now:      func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, reg, results
}

// runReloader runs r until the test ends, and checks that Run returns.
func runReloader(t *testing.T, r *Reloader) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	})
}

// TestReloaderWatches: a change is picked up from the file notification
// within the settle time, with no poll at all; a rejected change is logged
// once, however many notifications the editor's save makes.
func TestReloaderWatches(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), ruleA)
	var logs lockedLog
	results := make(chan reloadResult, 10)
	r, err := NewReloader(ReloaderConfig{
		Dir: dir, Interval: -1, Settle: 50 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		OnReload: func(s *Set, err error) { results <- reloadResult{s, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	runReloader(t, r)
	time.Sleep(100 * time.Millisecond) // the watch is set up in Run

	writeFile(t, filepath.Join(dir, "b.yaml"), ruleB)
	select {
	case res := <-results:
		if res.err != nil || len(res.set.Rules()) != 2 {
			t.Fatalf("reload = %v, %v; want the set of 2", res.set, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a changed file was not picked up from its notification")
	}

	for range 3 { // an editor writing in several steps
		writeFile(t, filepath.Join(dir, "b.yaml"), "rules: [oops")
	}
	select {
	case res := <-results:
		if res.err == nil {
			t.Fatal("invalid policies accepted")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an invalid change was not seen")
	}
	select {
	case res := <-results:
		t.Fatalf("one change reloaded twice: %v", res.err)
	case <-time.After(300 * time.Millisecond):
	}
	if n := strings.Count(logs.String(), "policy reload rejected"); n != 1 {
		t.Errorf("the rejection was logged %d times, want once:\n%s", n, logs.String())
	}
}

// lockedLog collects log output written from other goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestReloaderTrigger(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, runs after runReloader's cleanup
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), ruleA)
	trigger := make(chan struct{})
	r, reg, results := newTestReloader(t, dir, -1, trigger)
	first := r.Current()
	if got := len(first.Rules()); got != 1 {
		t.Fatalf("initial set has %d rules, want 1", got)
	}
	runReloader(t, r)

	// An invalid change is rejected and the old set stays.
	writeFile(t, filepath.Join(dir, "b.yaml"), "rules: [oops")
	trigger <- struct{}{}
	if res := <-results; res.err == nil || res.set != nil {
		t.Fatalf("invalid policies: got set %v err %v, want an error", res.set, res.err)
	}
	if r.Current() != first {
		t.Error("an invalid reload replaced the current set")
	}
	if got := metric(t, reg, "sentinel_policy_reload_total", "error"); got != 1 {
		t.Errorf("reload_total{result=error} = %g, want 1", got)
	}

	// A valid change replaces it.
	writeFile(t, filepath.Join(dir, "b.yaml"), ruleB)
	trigger <- struct{}{}
	res := <-results
	if res.err != nil {
		t.Fatal(res.err)
	}
	if r.Current() != res.set || len(res.set.Rules()) != 2 || res.set.MaxWindow() != 2*time.Hour {
		t.Errorf("after a valid reload Current has %d rules, max window %v; want the new set of 2, 2h",
			len(r.Current().Rules()), r.Current().MaxWindow())
	}
	if got := metric(t, reg, "sentinel_policy_reload_total", "ok"); got != 2 {
		t.Errorf("reload_total{result=ok} = %g, want 2 (start and reload)", got)
	}
	if got := metric(t, reg, "sentinel_policy_last_reload_success_timestamp_seconds", ""); got != 1_700_000_000 {
		t.Errorf("last success = %g, want the injected clock", got)
	}
}

func TestReloaderPollsForChanges(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, runs after runReloader's cleanup
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), ruleA)
	r, _, results := newTestReloader(t, dir, time.Millisecond, nil)
	runReloader(t, r)
	writeFile(t, filepath.Join(dir, "b.yaml"), ruleB)
	// The poll sees the change; no timing is asserted, only that it comes.
	if res := <-results; res.err != nil || len(res.set.Rules()) != 2 {
		t.Fatalf("polled reload: got %v, %v", res.set, res.err)
	}
}

// TestReloaderSkipsUnchanged: polling reloads only when content changed, and
// a rejected change is not retried until the files change again.
func TestReloaderSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), ruleA)
	r, _, _ := newTestReloader(t, dir, -1, nil)
	if r.reload(false) {
		t.Error("reloaded an unchanged directory")
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), ruleA+"# a comment\n")
	if !r.reload(false) {
		t.Error("did not reload a changed file")
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), "rules: {")
	if !r.reload(false) || r.reload(false) {
		t.Error("want one attempt per change, even a rejected one")
	}
	if !r.reload(true) {
		t.Error("a trigger must reload even when unchanged")
	}
}

func TestNewReloaderRejectsInvalid(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "rules: {")
	if _, err := NewReloader(ReloaderConfig{Dir: dir}); err == nil {
		t.Fatal("NewReloader accepted invalid policies")
	}
}

// metric returns the value of a gathered counter or gauge, selected by its
// result label when result is not empty.
func metric(tb testing.TB, reg *prometheus.Registry, name, result string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != result) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	tb.Fatalf("metric %s{result=%q} not registered", name, result)
	return 0
}
