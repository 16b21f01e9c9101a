package twilioapi

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a settable clock for the budget.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestBudget(t *testing.T, max int, share float64) (*budget, *fakeClock) {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	return newBudget(max, share, time.Second, clk.now, m), clk
}

// TestBudgetAIMD: a 429 halves the limit (once per interval however many
// arrive), successes grow it back by one per interval, never past the
// configured concurrency, never below one.
func TestBudgetAIMD(t *testing.T) {
	b, clk := newTestBudget(t, 8, 1)
	limit := func() int { b.mu.Lock(); defer b.mu.Unlock(); return b.effective() }
	// Slow start: one request out until the first answer, then one more
	// per good answer.
	for _, want := range []int{1, 2, 3} {
		if got := limit(); got != want {
			t.Fatalf("slow start: limit %d, want %d", got, want)
		}
		b.answered(200, -1)
	}
	for range 10 {
		b.answered(200, -1)
	}
	if got := limit(); got != 8 {
		t.Fatalf("after slow start the limit is %d, want 8", got)
	}
	b.answered(429, -1)
	b.answered(429, -1) // the same burst
	if got := limit(); got != 4 {
		t.Fatalf("after a burst of 429s the limit is %d, want 4", got)
	}
	for _, want := range []int{2, 1, 1} {
		clk.add(time.Second)
		b.answered(429, -1)
		if got := limit(); got != want {
			t.Fatalf("limit %d, want %d", got, want)
		}
	}
	for i := range 10 {
		clk.add(time.Second)
		b.answered(200, -1)
		if got, want := limit(), min(2+i, 8); got != want {
			t.Fatalf("after %d good intervals the limit is %d, want %d", i+1, got, want)
		}
	}
	if got := testutil.ToFloat64(b.m.throttled); got != 5 {
		t.Errorf("throttled metric = %v, want 5", got)
	}
}

// TestBudgetBoundsInFlight: however many callers, no more than the limit
// hold a place at once, and normal requests go before low-priority ones.
func TestBudgetBoundsInFlight(t *testing.T) {
	b, _ := newTestBudget(t, 2, 1)
	b.answered(200, -1) // out of slow start
	ctx := context.Background()
	for range 2 {
		if err := b.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	order := make(chan string, 4)
	var wg sync.WaitGroup
	start := func(name string, p Priority) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.acquire(WithPriority(ctx, p)); err != nil {
				t.Error(err)
				return
			}
			order <- name
			b.release()
		}()
	}
	start("low", PriorityLow)
	waitWaiters(t, b, 1)
	start("normal", PriorityNormal)
	waitWaiters(t, b, 2)
	b.release() // one place: the normal one goes first
	wg.Wait()
	if first := <-order; first != "normal" {
		t.Errorf("%s went first, want the normal-priority request", first)
	}
	b.release()

	// A cancelled wait gives nothing away.
	b2, _ := newTestBudget(t, 1, 1)
	b2.acquire(ctx)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b2.acquire(cctx); err == nil {
		t.Error("acquire on a cancelled context succeeded")
	}
	b2.release()
	if b2.inFlight != 0 {
		t.Errorf("in flight %d after all released", b2.inFlight)
	}
}

func waitWaiters(t *testing.T, b *budget, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b.mu.Lock()
		w := len(b.waiters[0]) + len(b.waiters[1])
		b.mu.Unlock()
		if w == n {
			return
		}
	}
	t.Fatalf("waiters did not reach %d", n)
}

// TestBudgetShare: with other traffic on the account, sentinel keeps its
// share of the account's requests in flight at most the configured
// fraction; with none, only its own limit applies.
func TestBudgetShare(t *testing.T) {
	b, _ := newTestBudget(t, 8, 0.25)
	limit := func() int { b.mu.Lock(); defer b.mu.Unlock(); return b.effective() }
	for range 10 {
		b.answered(200, -1) // out of slow start
	}
	b.acquire(context.Background()) // one of sentinel's in flight
	b.answered(200, 13)             // 12 others: 0.25/0.75*12 = 4
	if got := limit(); got != 4 {
		t.Errorf("limit with 12 others in flight = %d, want 4", got)
	}
	b.answered(200, 2) // 1 other: at least one
	if got := limit(); got != 1 {
		t.Errorf("limit with 1 other in flight = %d, want 1", got)
	}
	b.answered(200, 1) // only this one: no cap
	if got := limit(); got != 8 {
		t.Errorf("limit with no other traffic = %d, want 8", got)
	}
}
