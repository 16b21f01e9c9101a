package poller

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// probe is a job body that records its runs and holds each one until
// released.
type probe struct {
	mu             sync.Mutex
	runs, running  int
	maxRunning     int
	release        chan struct{}
	closeOnce      sync.Once
	ignoreCancel   bool // hold the run even after ctx is done
	returnedBefore bool // the last run returned
}

func newProbe() *probe { return &probe{release: make(chan struct{})} }

func (p *probe) run(ctx context.Context) {
	p.mu.Lock()
	p.runs++
	p.running++
	p.maxRunning = max(p.maxRunning, p.running)
	p.returnedBefore = false
	p.mu.Unlock()
	if p.ignoreCancel {
		<-p.release
	} else {
		select {
		case <-p.release:
		case <-ctx.Done():
		}
	}
	p.mu.Lock()
	p.running--
	p.returnedBefore = true
	p.mu.Unlock()
}

func (p *probe) stats() (runs, running, maxRunning int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs, p.running, p.maxRunning
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startScheduler runs a scheduler of one job in the current synctest bubble
// and returns its cancel func and result; cleanup cancels it, releases the
// probe and waits, so that a failed assertion leaves no goroutine behind.
func startScheduler(t *testing.T, pr *probe, spec string) (cancel func(), done <-chan error) {
	t.Helper()
	s, err := NewScheduler(discard(), Job{Name: "job", Spec: spec, Run: pr.run})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, finished := make(chan error, 1), make(chan struct{})
	go func() {
		ch <- s.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		pr.closeOnce.Do(func() { close(pr.release) })
		<-finished
	})
	return cancel, ch
}

// The scheduler runs in a synctest bubble: time is virtual, so "@every 1s"
// ticks arrive exactly when the test lets time pass, and synctest.Wait
// returns once every other goroutine is blocked.
func TestSchedulerNoOverlapOneFollowUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr := newProbe()
		cancel, done := startScheduler(t, pr, "@every 1s")

		synctest.Wait()
		pr.release <- struct{}{} // the run at start
		time.Sleep(time.Second)  // the first tick
		synctest.Wait()
		if runs, running, _ := pr.stats(); runs != 2 || running != 1 {
			t.Fatalf("after the first tick: %d runs, %d running; want 2, 1", runs, running)
		}
		// Five ticks arrive while that run holds.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if runs, _, _ := pr.stats(); runs != 2 {
			t.Fatalf("%d runs while one held, want 2 (no overlap)", runs)
		}
		pr.release <- struct{}{}
		synctest.Wait()
		if runs, running, _ := pr.stats(); runs != 3 || running != 1 {
			t.Fatalf("after the held run: %d runs, %d running; want exactly one follow-up", runs, running)
		}
		pr.release <- struct{}{} // end the follow-up before the next tick
		synctest.Wait()
		if runs, running, maxRunning := pr.stats(); runs != 3 || running != 0 || maxRunning != 1 {
			t.Errorf("after the follow-up: %d runs, %d running, at most %d at once; want 3, 0, 1", runs, running, maxRunning)
		}

		// The schedule goes on: the next tick starts one run.
		time.Sleep(time.Second)
		synctest.Wait()
		if runs, running, _ := pr.stats(); runs != 4 || running != 1 {
			t.Errorf("after the next tick: %d runs, %d running; want 4, 1", runs, running)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

func TestSchedulerWaitsForRunningJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr := newProbe()
		pr.ignoreCancel = true
		cancel, done := startScheduler(t, pr, "@every 1m")
		synctest.Wait()

		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Run returned %v while its job was still running", err)
		default:
		}
		pr.closeOnce.Do(func() { close(pr.release) })
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if !pr.returnedBefore || pr.runs != 1 {
			t.Errorf("runs %d, job returned %v; want 1 run that returned before Run", pr.runs, pr.returnedBefore)
		}
	})
}

// A tick that is queued when ctx ends does not start another run. select
// chooses at random between ready cases, so the scenario is repeated.
func TestSchedulerNoRunAfterCancel(t *testing.T) {
	for i := range 20 {
		synctest.Test(t, func(t *testing.T) {
			pr := newProbe()
			pr.ignoreCancel = true
			cancel, done := startScheduler(t, pr, "@every 1s")
			synctest.Wait()
			pr.release <- struct{}{} // the run at start
			time.Sleep(time.Second)  // a tick starts a run that holds
			synctest.Wait()
			time.Sleep(time.Second) // a tick while it holds: queued
			synctest.Wait()
			cancel()
			pr.closeOnce.Do(func() { close(pr.release) })
			<-done
			if runs, _, _ := pr.stats(); runs != 2 {
				t.Fatalf("attempt %d: %d runs, want 2: the queued tick must not run after cancel", i, runs)
			}
		})
	}
}

func TestSchedulerRunsJobsInOrderAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		job := func(name string) Job {
			return Job{Name: name, Spec: "@every 1h", Run: func(context.Context) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
			}}
		}
		s, err := NewScheduler(discard(), job("accounts"), job("messages"), job("usage"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		synctest.Wait()
		cancel()
		<-done
		if got := len(order); got != 3 || order[0] != "accounts" || order[1] != "messages" || order[2] != "usage" {
			t.Errorf("runs at start %v, want accounts, messages, usage", order)
		}
	})
}

func TestNewSchedulerRejects(t *testing.T) {
	noop := func(context.Context) {}
	for _, tc := range []struct {
		name string
		jobs []Job
	}{
		{"no jobs", nil},
		{"bad spec", []Job{{Name: "j", Spec: "every minute", Run: noop}}},
		{"bad descriptor", []Job{{Name: "j", Spec: "@every forever", Run: noop}}},
		{"seconds field", []Job{{Name: "j", Spec: "* * * * * *", Run: noop}}},
		{"no function", []Job{{Name: "j", Spec: "@every 1m"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewScheduler(discard(), tc.jobs...); err == nil {
				t.Errorf("NewScheduler(%+v) succeeded, want an error", tc.jobs)
			}
		})
	}
}

func TestInterval(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want time.Duration
	}{
		{"@every 1m", time.Minute},
		{"@every 90s", 90 * time.Second},
		{"@every 1500ms", time.Second}, // cron truncates @every to whole seconds
		{"* * * * *", time.Minute},
		{"*/5 * * * *", 5 * time.Minute},
		// Runs at :00, :07, ... :56, then :00: the shortest gap counts.
		{"*/7 * * * *", 4 * time.Minute},
		{"0 9,17 * * 1-5", 8 * time.Hour},
		{"@hourly", time.Hour},
		{"@daily", 24 * time.Hour},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := Interval(tc.spec)
			if err != nil || got != tc.want {
				t.Errorf("Interval(%q) = %v, %v; want %v", tc.spec, got, err, tc.want)
			}
		})
	}
	for _, spec := range []string{"every 1m", "0 0 30 2 *"} {
		if got, err := Interval(spec); err == nil {
			t.Errorf("Interval(%q) = %v, want an error", spec, got)
		}
	}
}

// TestSchedulerConcurrentFirstRun: a Concurrent job's first run (a usage
// backfill) does not hold up the other jobs' next runs, and a Deferred job
// does not run at start.
func TestSchedulerConcurrentFirstRun(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	runs := map[string]int{}
	count := func(name string) {
		mu.Lock()
		runs[name]++
		mu.Unlock()
	}
	s, err := NewScheduler(slog.New(slog.DiscardHandler),
		Job{Name: "messages", Spec: "@every 1s", Run: func(context.Context) { count("messages") }},
		Job{Name: "usage", Spec: "@every 1h", Concurrent: true, Run: func(ctx context.Context) {
			count("usage")
			select {
			case <-release:
			case <-ctx.Done():
			}
		}},
		Job{Name: "sweep", Spec: "@every 1h", Deferred: true, Run: func(context.Context) { count("sweep") }},
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		m, u := runs["messages"], runs["usage"]
		mu.Unlock()
		if m >= 2 && u == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs %v: the messages job did not run again while the usage job's first run was still going", runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	cancel()
	<-done
	if runs["sweep"] != 0 {
		t.Errorf("the deferred job ran %d times at start", runs["sweep"])
	}
}

// The schedule counts from start, not from the end of the first runs: a
// first pass over the message logs that takes 50s is followed by the next
// at one minute, so no log waits 1m50s for its second read.
func TestScheduleCountsFromStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var starts []time.Duration
		s, err := NewScheduler(discard(), Job{Name: "messages", Spec: "@every 1m", Run: func(ctx context.Context) {
			mu.Lock()
			starts = append(starts, time.Since(start))
			first := len(starts) == 1
			mu.Unlock()
			if first {
				time.Sleep(50 * time.Second)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(150 * time.Second)
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		want := []time.Duration{0, time.Minute, 2 * time.Minute}
		if len(starts) != len(want) {
			t.Fatalf("runs started at %v, want %v", starts, want)
		}
		for i := range want {
			if starts[i] != want[i] {
				t.Errorf("runs started at %v, want %v", starts, want)
				break
			}
		}
	})
}
