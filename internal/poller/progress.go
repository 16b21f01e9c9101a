package poller

import (
	"log/slog"
	"sync"
	"time"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// progressEvery is how often a cycle with accounts to backfill logs how far
// it has come.
const progressEvery = 5 * time.Second

// progress follows the first reads of a messages cycle: the accounts read
// for the first time, or again from scratch after a gap (backfills). A
// first start over a large fleet takes minutes; it is logged every few
// seconds, exported, and /readyz says "backfilling N of M" until it is done.
type progress struct {
	mu           sync.Mutex
	total, done  int
	msgs         int64
	start        time.Time
	lastDone     int
	lastReported time.Time
}

// Backfill is how far a cycle's backfills have come.
type Backfill struct {
	// Total accounts to backfill in the running cycle, Done of them done;
	// both zero when no cycle backfills.
	Total, Done int
	// Messages read by the backfills so far.
	Messages int64
}

// Backfill reports the running cycle's backfills.
func (p *Poller) Backfill() Backfill {
	pr := &p.progress
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return Backfill{Total: pr.total, Done: pr.done, Messages: pr.msgs}
}

// toBackfill counts the accounts whose next poll is a backfill (see
// pollLog), given their coverage.
func (p *Poller) toBackfill(accts []store.Account, covs map[string]traffic.Coverage) int {
	now, backfill := p.now(), p.backfill()
	n := 0
	for _, a := range accts {
		c := covs[a.SID]
		if c.Until.IsZero() || c.Until.Before(now.Add(-backfill)) || c.From.After(now.Add(-backfill)) {
			n++
		}
	}
	return n
}

// begin starts following n backfills and reporting them; the returned stop
// ends that with a last line.
func (pr *progress) begin(n int, log *slog.Logger, m *metrics) (stop func()) {
	pr.mu.Lock()
	pr.total, pr.done, pr.msgs, pr.start, pr.lastDone = n, 0, 0, time.Now(), 0
	pr.mu.Unlock()
	m.backfillPending.Set(float64(n))
	log.Info("backfilling message logs", "accounts", n)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				b, left := pr.report()
				m.backfillPending.Set(float64(b.Total - b.Done))
				log.Info("backfilling message logs", "done", b.Done, "accounts", b.Total,
					"messages", b.Messages, "left", left.Round(time.Second))
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		b, _ := pr.report()
		m.backfillPending.Set(0)
		log.Info("backfill done", "done", b.Done, "accounts", b.Total, "messages", b.Messages,
			"took", time.Since(pr.start).Round(time.Second))
		pr.mu.Lock()
		pr.total, pr.done = 0, 0
		pr.mu.Unlock()
	}
}

// accountDone counts one backfill done, which read msgs messages.
func (pr *progress) accountDone(msgs int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.total == 0 {
		return
	}
	pr.done++
	pr.msgs += int64(msgs)
}

// report returns the progress and an estimate of the time left, from the
// pace so far.
func (pr *progress) report() (Backfill, time.Duration) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	b := Backfill{Total: pr.total, Done: pr.done, Messages: pr.msgs}
	var left time.Duration
	if pr.done > 0 {
		per := time.Since(pr.start) / time.Duration(pr.done)
		left = per * time.Duration(pr.total-pr.done)
	}
	return b, left
}
