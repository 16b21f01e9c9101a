package poller

import (
	"log/slog"
	"sync"
	"time"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// progressEvery is how often, while accounts are being backfilled, the log
// says how far the backfill has come.
const progressEvery = 5 * time.Second

// progress follows backfills: the reads of accounts read for the first
// time, or again from scratch after a gap. A first start over a large
// fleet takes minutes; it is logged every few seconds, exported, and
// /readyz says "backfilling N of M" until it is done. A backfill that
// outlives its cycle (see each) is followed until it ends.
type progress struct {
	log *slog.Logger
	m   *metrics

	mu      sync.Mutex
	pending map[string]bool // backfills not yet ended
	total   int             // backfills since the progress started
	done    int             // of them, ended well
	msgs    int64
	start   time.Time
	quit    chan struct{} // closes the reporter; nil when idle
	exited  chan struct{} // closed by the reporter when it returns
}

// Backfill is how far the backfills have come.
type Backfill struct {
	// Total accounts to backfill, Done of them done; both zero when no
	// account is being backfilled.
	Total, Done int
	// Messages read by the backfills so far.
	Messages int64
}

// Backfill reports the running backfills.
func (p *Poller) Backfill() Backfill {
	b, _ := p.progress.report()
	return b
}

// toBackfill returns the accounts whose next poll is a backfill (see
// pollLog), given their coverage.
func (p *Poller) toBackfill(accts []store.Account, covs map[string]traffic.Coverage) []string {
	now, backfill := p.now(), p.backfill()
	var sids []string
	for _, a := range accts {
		c := covs[a.SID]
		if c.Until.IsZero() || c.Until.Before(now.Add(-backfill)) || c.From.After(now.Add(-backfill)) {
			sids = append(sids, a.SID)
		}
	}
	return sids
}

// expect follows the backfills of sids, those not followed already. The
// first starts the reporting.
func (pr *progress) expect(sids []string) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	n := 0
	for _, sid := range sids {
		if pr.pending[sid] {
			continue
		}
		if pr.pending == nil {
			pr.pending = map[string]bool{}
		}
		pr.pending[sid] = true
		n++
	}
	if n == 0 {
		return
	}
	pr.total += n
	pr.m.backfillPending.Set(float64(len(pr.pending)))
	if pr.quit != nil {
		pr.log.Info("backfilling more message logs", "accounts", n, "pending", len(pr.pending))
		return
	}
	pr.start, pr.quit, pr.exited = time.Now(), make(chan struct{}), make(chan struct{})
	pr.log.Info("backfilling message logs", "accounts", n)
	go pr.reporter(pr.quit, pr.exited)
}

// reporter logs the progress every progressEvery until quit closes.
func (pr *progress) reporter(quit, exited chan struct{}) {
	defer close(exited)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
			b, left := pr.report()
			pr.log.Info("backfilling message logs", "done", b.Done, "accounts", b.Total,
				"messages", b.Messages, "left", left.Round(time.Second))
		}
	}
}

// read counts messages a backfill read and stored.
func (pr *progress) read(n int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.quit != nil {
		pr.msgs += int64(n)
	}
}

// end ends the backfills of sids, done (well) or not. The last to end
// ends the reporting with a line that says how it went; an account that
// failed is backfilled again by its next poll.
func (pr *progress) end(ok bool, sids ...string) {
	pr.mu.Lock()
	ended := false
	for _, sid := range sids {
		if !pr.pending[sid] {
			continue
		}
		delete(pr.pending, sid)
		ended = true
		if ok {
			pr.done++
		}
	}
	if !ended {
		pr.mu.Unlock()
		return
	}
	pr.m.backfillPending.Set(float64(len(pr.pending)))
	if len(pr.pending) > 0 || pr.quit == nil {
		pr.mu.Unlock()
		return
	}
	close(pr.quit)
	exited := pr.exited
	b := Backfill{Total: pr.total, Done: pr.done, Messages: pr.msgs}
	took := time.Since(pr.start)
	pr.quit, pr.total, pr.done, pr.msgs = nil, 0, 0, 0
	pr.mu.Unlock()
	<-exited
	pr.log.Info("backfill done", "done", b.Done, "accounts", b.Total, "failed", b.Total-b.Done,
		"messages", b.Messages, "took", took.Round(time.Second))
}

// report returns the progress and an estimate of the time left, from the
// pace so far.
func (pr *progress) report() (Backfill, time.Duration) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.quit == nil {
		return Backfill{}, 0
	}
	b := Backfill{Total: pr.total, Done: pr.done, Messages: pr.msgs}
	var left time.Duration
	if pr.done > 0 {
		per := time.Since(pr.start) / time.Duration(pr.done)
		left = per * time.Duration(pr.total-pr.done)
	}
	return b, left
}
