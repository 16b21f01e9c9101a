// Package poller is sentinel's eyes: it reads the subaccount list, every
// account's message log and usage from Twilio and keeps them in the store.
//
// The model, and the Twilio behaviour it is built around (see the Twilio
// notes in the project's shared documentation):
//
//   - Message logs are listed newest first and Twilio's DateSent filters are
//     whole UTC days, so each poll asks for the UTC day of its lower bound and
//     stops paging once a page reaches back past that bound.
//   - A message's status and error code change after it is first read (a
//     "sent" message becomes "undelivered" with 30007 minutes or hours
//     later), so every poll re-reads a trailing settle window. The store keeps
//     each message once, by SID, in its latest state.
//   - Each account has a Coverage: the stretch of time whose messages are
//     known to be completely stored. Only a poll that paged all the way back
//     to its lower bound extends it. A failed or partial poll leaves it as it
//     was, so the policies see "unknown" rather than a quiet hour.
//   - The first poll of an account, and the first after a gap longer than
//     the backfill, reads the whole backfill window, so rules can judge from
//     the first cycle.
//   - Messages refused before they were sent (21610) have no date_sent, and
//     whether Twilio's DateSent filter lists them is not documented (?).
//     Every read (the first poll's backfill and each later poll's re-read
//     from the settle window) lists the log without a DateSent filter
//     (twilioapi's Messages), where such a message appears by its
//     date_created, and judges its lower bound by that date too, so they are
//     counted under either answer.
//
// One account's failure never stops the others; failures are recorded per
// account in the store and in metrics, and logged when they start, at
// doubling intervals while they last, and when they end. How old each
// account's data is (the time since its coverage ends) is computed when
// asked, for metrics and readiness (Freshness), so that it keeps growing
// while a cycle is stuck.
//
// # Caveats
//
//   - A status change that Twilio makes after a message has left the settle
//     window is not guaranteed to be seen. A poll reads newest first down to
//     the first page that reaches back past the settle window, and stores
//     every message on the pages it reads; an older message is refreshed only
//     if it happens to share that last page, otherwise it stays counted in
//     the state it was last read in. Choose Settle longer than the carriers'
//     usual delivery-receipt delay.
//   - Messages are stored in batches of up to maxBatch messages (several
//     pages of one account) per store transaction. readersPerSlot*
//     Concurrency accounts are read from Twilio at once; an account whose
//     read is done may wait for the store (bbolt has one writer) without
//     holding a slot, up to pendingPerSlot*Concurrency accounts in all. A
//     cycle therefore holds at most that many batches in memory, however
//     large the fleet. A poll
//     that fails part way keeps the batches stored so far but does not
//     advance the coverage, so the next poll reads them again.
//   - Cancelling the context stops a cycle promptly: polls in flight are
//     abandoned without storing their last batch, and they are neither
//     recorded nor counted as failures (shutting down is not a fault of the
//     account). Coverage only ever advances for an account whose poll
//     finished, so the store stays consistent.
//   - Each account's read from Twilio has a deadline (Config's
//     MessagesDeadline, UsageDeadline and SweepDeadline), retries and
//     backoff included, so that one account whose log hangs delays its
//     cycle by at most that long and the others are judged on time. A read
//     that goes its deadline without a page is hung: it is abandoned like a
//     cancelled one, but it is the account's failure: it is recorded and
//     counted (ErrDeadline, sentinel_poll_timeouts_total) and its coverage
//     stays where it was, so its rules say "unknown" once the data is too
//     old. The next poll starts again from the same watermark. A messages
//     read that is still reading page after page at its deadline (the
//     first backfill of a very busy account, the catch-up after an outage)
//     leaves its cycle instead and reads on to the end; see each.
package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
)

// Streams, as recorded in the store's poll bookkeeping.
const (
	StreamAccounts = "accounts"
	StreamMessages = "messages"
	StreamUsage    = "usage"
	StreamSweep    = "sweep"
)

// maxBatch bounds the messages of one store transaction: five pages of
// 1,000. Fewer, larger transactions write each touched B+tree page and sync
// the file less often than one per page.
const maxBatch = 5000

// Config holds the poller's settings. Zero values take the documented
// defaults.
type Config struct {
	// Parent is the parent account's SID; default the Twilio client's. Its
	// own message log is polled too (sending from the parent is a compliance
	// risk in itself), but it is kept apart from the subaccounts.
	Parent string
	// Concurrency scales how many accounts are polled at once (see
	// readersPerSlot). Default 8: -concurrency, which also bounds the
	// Twilio client's requests in flight.
	Concurrency int
	// Settle is the trailing window re-read on every poll so that later
	// status changes and prices are seen. Default 2h.
	Settle time.Duration
	// Backfill is how far back the first poll of an account reads, and how
	// long a gap may be before coverage restarts. Default 24h.
	Backfill time.Duration
	// UsageDays is how many whole past days of daily usage are kept for
	// spend baselines. Default 7.
	UsageDays int
	// Retention is how long raw messages are kept; AggRetention how long
	// their aggregates are. Defaults 7 and 35 days. Retention is raised to
	// at least Backfill+Settle so that no window loses its raw messages.
	Retention, AggRetention time.Duration
	// UsageRefresh is the longest an account's usage goes unread while it
	// sends nothing; see SetUsageRefresh. Default 30m.
	UsageRefresh time.Duration
	// NoSubaccountLabel drops the subaccount label from per-account metrics,
	// for fleets too large to label.
	NoSubaccountLabel bool
	// MessagesDeadline and UsageDeadline bound one account's poll of each
	// stream: all of its requests, their retries and the backoff between
	// them (the Twilio client bounds each request on its own). A poll that
	// runs past its deadline is abandoned, recorded as failed with
	// ErrDeadline, and the cycle goes on without it. Defaults 30s and
	// 2m30s (the daemon gives half its schedules' intervals). A poll that
	// reads page after page is not hung: see each.
	MessagesDeadline, UsageDeadline time.Duration
	// SweepDeadline bounds one account's sweep (see Sweep) the same way.
	// Default 30m: half the interval of the default schedule (@every 1h).
	SweepDeadline time.Duration
	// Reconcile is how often the log of an account whose pushed events
	// are trusted is read (see push.go); 0 when nothing is pushed, and
	// every log is read every cycle.
	Reconcile time.Duration
}

func (c *Config) setDefaults() error {
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Hour
	}
	if c.Backfill == 0 {
		c.Backfill = 24 * time.Hour
	}
	if c.UsageDays == 0 {
		c.UsageDays = 7
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.AggRetention == 0 {
		c.AggRetention = 35 * 24 * time.Hour
	}
	if c.MessagesDeadline == 0 {
		c.MessagesDeadline = 30 * time.Second
	}
	if c.UsageDeadline == 0 {
		c.UsageDeadline = 150 * time.Second
	}
	if c.SweepDeadline == 0 {
		c.SweepDeadline = 30 * time.Minute
	}
	switch {
	case c.Concurrency < 0:
		return fmt.Errorf("poller: concurrency %d is negative", c.Concurrency)
	case c.Settle < 0 || c.Backfill < 0 || c.Retention < 0 || c.AggRetention < 0 || c.Reconcile < 0 ||
		c.MessagesDeadline < 0 || c.UsageDeadline < 0 || c.SweepDeadline < 0:
		return errors.New("poller: durations must not be negative")
	case c.UsageDays < 0:
		return fmt.Errorf("poller: usage days %d is negative", c.UsageDays)
	}
	if min := c.Backfill + c.Settle; c.Retention < min {
		c.Retention = min
	}
	if c.AggRetention < c.Retention {
		c.AggRetention = c.Retention
	}
	return nil
}

// Poller reads Twilio into the store. Its methods are safe for concurrent
// use, but the scheduler never runs the same stream twice at once.
type Poller struct {
	cfg Config
	tw  *twilioapi.Client
	st  *store.Store
	log *slog.Logger
	now func() time.Time
	m   *metrics
	// fresh is how old each account's data is, for metrics and readiness.
	fresh *freshness

	// batches holds *[]traffic.Message of polls that are done, for the
	// next ones: a batch grows a page at a time to maxBatch messages, and
	// growing one for every account of a fleet makes hundreds of MB of
	// garbage per cycle.
	batches sync.Pool

	mu           sync.Mutex
	lastPrune    time.Time
	pruneHorizon time.Time
	failing      map[string]int       // consecutive failures by stream+"/"+account, for logging
	lastRead     map[string]int       // messages the last poll of an account read (firstPage)
	logged       map[string]bool      // account/message SIDs logged as undecodable
	statuses     map[string]bool      // unknown statuses seen: whether each has its own label
	active       map[string]time.Time // when a poll last stored a new or changed message, by account
	progress     progress             // of the first reads (backfills)
	started      time.Time            // when the Poller was made
	catching     map[string]bool      // accounts whose messages poll outlived its cycle
	outlived     sync.WaitGroup       // those polls
	push         map[string]pushState // pushed events, by account (push.go)
}

// New returns a Poller. reg may be nil.
func New(cfg Config, tw *twilioapi.Client, st *store.Store, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*Poller, error) {
	if tw == nil || st == nil || log == nil || now == nil {
		return nil, errors.New("poller: client, store, logger and clock are required")
	}
	switch {
	case cfg.Parent == "":
		cfg.Parent = tw.ParentSID()
	case cfg.Parent != tw.ParentSID():
		// The parent would be polled as a subaccount and a subaccount
		// labelled the parent.
		return nil, fmt.Errorf("poller: parent %s is not the Twilio client's account %s", cfg.Parent, tw.ParentSID())
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg, cfg.NoSubaccountLabel)
	if err != nil {
		return nil, err
	}
	fresh := newFreshness(now, cfg.NoSubaccountLabel)
	if reg != nil {
		if err := reg.Register(fresh); err != nil {
			return nil, err
		}
	}
	p := &Poller{cfg: cfg, tw: tw, st: st, log: log, now: now, m: m, fresh: fresh, failing: map[string]int{},
		lastRead: map[string]int{}, logged: map[string]bool{}, statuses: map[string]bool{}, active: map[string]time.Time{},
		started: now(), catching: map[string]bool{}, push: map[string]pushState{}}
	p.progress.log, p.progress.m = log, m
	if err := p.registerPush(reg); err != nil {
		return nil, err
	}
	m.failures.WithLabelValues(append([]string{StreamAccounts}, p.label(cfg.Parent)...)...)
	// The data ages are known from the store before the first cycle, which
	// may be long in coming (the account list is read first).
	if err := p.reloadFreshness(); err != nil {
		return nil, fmt.Errorf("poller: %w", err)
	}
	return p, nil
}

// SetBackfill changes the backfill window, for example when reloaded
// policies need a longer history. Accounts whose coverage starts later are
// backfilled on their next poll.
func (p *Poller) SetBackfill(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d > 0 {
		p.cfg.Backfill = d
		if min := d + p.cfg.Settle; p.cfg.Retention < min {
			p.cfg.Retention = min
		}
		// Prune refuses to drop aggregates before the raw messages under
		// them.
		if p.cfg.AggRetention < p.cfg.Retention {
			p.cfg.AggRetention = p.cfg.Retention
		}
	}
}

func (p *Poller) backfill() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Backfill
}

// ErrDeadline marks a poll abandoned because it ran past its deadline
// (Config.MessagesDeadline, Config.UsageDeadline).
var ErrDeadline = errors.New("poll deadline exceeded")

// Result summarises one pass over the accounts.
type Result struct {
	Polled int
	// Failed maps each account whose poll failed to its error.
	Failed map[string]error
	// CatchingUp lists the accounts whose poll was still reading, page
	// after page, when the cycle went on without it (see each), or had
	// been since an earlier cycle. Their outcome is recorded when the read
	// ends.
	CatchingUp []string
	// BackedOff counts the accounts not read because their pushed events
	// are trusted (see push.go).
	BackedOff int
}

// Err returns an error when every account failed, which usually means
// Twilio could not be reached at all; nil when at least one succeeded or
// there was nothing to poll.
func (r Result) Err() error {
	if r.Polled == 0 || len(r.Failed) < r.Polled {
		return nil
	}
	for _, err := range r.Failed {
		return fmt.Errorf("all %d accounts failed, for example: %w", r.Polled, err)
	}
	return nil
}

// Accounts reads the complete subaccount list and stores it, noticing
// status changes made outside sentinel. The parent is identified by SID; if
// Twilio does not list it, it is fetched.
func (p *Poller) Accounts(ctx context.Context) ([]store.AccountChange, error) {
	start := time.Now()
	defer func() { p.m.cycle.WithLabelValues(StreamAccounts).Observe(time.Since(start).Seconds()) }()

	at := p.now()
	list, err := p.tw.Accounts(ctx)
	if err == nil && !containsSID(list, p.cfg.Parent) {
		var parent twilioapi.Account
		parent, err = p.tw.FetchAccount(ctx, p.cfg.Parent)
		list = append(list, parent)
	}
	if rerr := p.st.RecordPoll(p.cfg.Parent, StreamAccounts, at, err); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		p.m.failures.WithLabelValues(append([]string{StreamAccounts}, p.label(p.cfg.Parent)...)...).Inc()
		return nil, err // the client's and the store's errors name the operation
	}
	accts := make([]store.Account, 0, len(list))
	for _, a := range list {
		accts = append(accts, store.Account{
			SID:          a.SID,
			FriendlyName: a.FriendlyName,
			Status:       a.Status,
			Parent:       a.SID == p.cfg.Parent,
			Updated:      a.Updated,
		})
	}
	changes, err := p.st.SyncAccounts(accts, at)
	if err != nil {
		return nil, fmt.Errorf("store accounts: %w", err)
	}
	// A new subaccount's data ages from now, before any messages cycle.
	if err := p.reloadFreshness(); err != nil {
		return nil, fmt.Errorf("data ages: %w", err)
	}
	p.m.accounts.Set(float64(len(accts) - 1))
	for _, c := range changes {
		if c.From != "" {
			p.log.Info("subaccount status changed outside sentinel", "subaccount", c.SID, "from", c.From, "to", c.To)
		}
	}
	return changes, nil
}

func containsSID(list []twilioapi.Account, sid string) bool {
	for _, a := range list {
		if a.SID == sid {
			return true
		}
	}
	return false
}

// pollable returns the accounts whose logs are read: every account that is
// not closed (a suspended subaccount's earlier messages still receive late
// status changes), the parent included. The account list is synced first if
// the store has never seen it.
func (p *Poller) pollable(ctx context.Context) ([]store.Account, error) {
	accts, err := p.st.Accounts()
	if err != nil {
		return nil, err
	}
	if len(accts) == 0 {
		if _, err := p.Accounts(ctx); err != nil {
			return nil, err
		}
		if accts, err = p.st.Accounts(); err != nil {
			return nil, err
		}
	}
	out := accts[:0]
	for _, a := range accts {
		if a.Status != "closed" {
			out = append(out, a)
		}
	}
	return out, nil
}

// Messages polls every account's message log once.
func (p *Poller) Messages(ctx context.Context) (Result, error) {
	start := time.Now()
	defer func() { p.m.cycle.WithLabelValues(StreamMessages).Observe(time.Since(start).Seconds()) }()

	accts, err := p.pollable(ctx)
	if err != nil {
		return Result{}, err
	}
	covs, err := p.loadFreshness(accts)
	if err != nil {
		return Result{}, fmt.Errorf("data ages: %w", err)
	}
	backfills := p.toBackfill(accts, covs)
	p.progress.expect(backfills)
	h, err := p.st.Horizon()
	if err != nil {
		return Result{}, err
	}
	p.mu.Lock()
	p.pruneHorizon = h
	p.mu.Unlock()
	now := p.now()
	due := slices.DeleteFunc(slices.Clone(accts), func(a store.Account) bool { return p.backedOff(a.SID, now) })
	res := p.each(ctx, due, StreamMessages, p.cfg.MessagesDeadline, p.pollMessages)
	res.BackedOff = len(accts) - len(due)
	// The backfills that did not end well end here, but for those still
	// reading: each ends them.
	p.progress.end(false, slices.DeleteFunc(backfills, func(sid string) bool { return slices.Contains(res.CatchingUp, sid) })...)
	if ctx.Err() != nil {
		// Shutting down: pruning can wait for the next cycle.
		return res, ctx.Err()
	}
	if err := p.prune(); err != nil {
		p.log.Error("prune old messages", "err", err)
	}
	return res, nil
}

// Sweep reads every account's whole settle window again, at low priority,
// behind the regular polls. Those read back only to the oldest message
// that can still change; a message that shows up in a log later than it
// is dated, more than the overlap before the last poll (a listing that is
// eventually consistent (?)), is caught here, within the sweep's schedule.
func (p *Poller) Sweep(ctx context.Context) (Result, error) {
	start := time.Now()
	defer func() { p.m.cycle.WithLabelValues(StreamSweep).Observe(time.Since(start).Seconds()) }()
	accts, err := p.pollable(ctx)
	if err != nil {
		return Result{}, err
	}
	return p.each(ctx, accts, StreamSweep, p.cfg.SweepDeadline, p.sweepMessages), ctx.Err()
}

// Usage polls every subaccount's usage once. The parent's usage is not read:
// spend rules judge subaccounts.
func (p *Poller) Usage(ctx context.Context) (Result, error) {
	start := time.Now()
	defer func() { p.m.cycle.WithLabelValues(StreamUsage).Observe(time.Since(start).Seconds()) }()

	accts, err := p.pollable(ctx)
	if err != nil {
		return Result{}, err
	}
	subs := make([]store.Account, 0, len(accts))
	for _, a := range accts {
		if !a.Parent {
			subs = append(subs, a)
		}
	}
	return p.each(ctx, subs, StreamUsage, p.cfg.UsageDeadline, p.pollUsage), ctx.Err()
}

// each runs poll for every account with bounded concurrency and records
// each outcome. A failure is counted and logged, never propagated to the
// other accounts. Polls cut short by ctx are reported in the Result but not
// recorded: shutting down is not the account's failure.
//
// A poll has two parts: reading from Twilio, which holds one of
// readersPerSlot*Concurrency slots, and storing the rest of what it read
// (the finish it returns), which does not, so that the next account's
// requests go out while the store syncs its file. At most
// pendingPerSlot*Concurrency accounts are in either part at once, which
// bounds the memory of reads waiting for the store.
//
// The deadline tells a hung read from a long one. A read that goes a whole
// deadline without a page (see touch) is hung: it is abandoned, recorded as
// failed with ErrDeadline and counted as a timeout, and its slot goes to
// the next account. A messages read still going at its deadline that is
// reading page after page, such as the first backfill of a very busy
// account or the catch-up after an outage, is not abandoned, or it would
// never finish: it leaves the cycle (which goes on, so that the other
// accounts are read and judged on time) and goes on reading on its own,
// up to Concurrency of them at once; later cycles skip its account until
// it ends, and its outcome is recorded then. The store part is local work
// and is not abandoned, so a read that completed always advances the
// coverage.
func (p *Poller) each(ctx context.Context, accts []store.Account, stream string, deadline time.Duration, poll pollFunc) Result {
	res := Result{Failed: map[string]error{}}
	var mu sync.Mutex
	fail := func(sid string, err error) {
		mu.Lock()
		res.Failed[sid] = err
		mu.Unlock()
	}
	outlive := stream == StreamMessages
	slots := make(chan struct{}, readersPerSlot*p.cfg.Concurrency)
	pending := make(chan struct{}, pendingPerSlot*p.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, a := range accts {
		if (stream == StreamMessages || stream == StreamSweep) && p.catchingUp(a.SID) {
			mu.Lock()
			res.CatchingUp = append(res.CatchingUp, a.SID)
			mu.Unlock()
			continue
		}
		res.Polled++
		if err := acquire(ctx, pending); err != nil {
			fail(a.SID, err)
			continue
		}
		if err := acquire(ctx, slots); err != nil {
			<-pending
			fail(a.SID, err)
			continue
		}
		wg.Add(1)
		// releaseSlot ends the read's hold on its slot; leave, the poll's
		// part in the cycle. A poll that outlives its cycle does both when
		// it leaves.
		releaseSlot := sync.OnceFunc(func() { <-slots })
		leave := sync.OnceFunc(func() {
			<-pending
			wg.Done()
		})
		go func() {
			defer leave()
			at := p.now()
			pctx, cancel := context.WithCancel(ctx)
			dog := newWatchdog(deadline, cancel)
			var (
				omu      sync.Mutex
				read     bool // the read is over
				outlived bool // the read left the cycle
			)
			if outlive {
				t := time.AfterFunc(deadline, func() {
					omu.Lock()
					defer omu.Unlock()
					if read || !dog.progressing() || !p.startCatchUp(a.SID) {
						return
					}
					outlived = true
					p.log.Info("poll goes on past its deadline, reading page after page; the cycle goes on without it",
						"stream", stream, "subaccount", a.SID, "deadline", deadline)
					mu.Lock()
					res.CatchingUp = append(res.CatchingUp, a.SID)
					mu.Unlock()
					releaseSlot()
					leave()
				})
				defer t.Stop()
			}
			finish, err := poll(withTouch(pctx, dog.touch), a)
			hung := dog.stop()
			if err != nil && ctx.Err() == nil && (hung || errors.Is(err, twilioapi.ErrDeadline)) {
				err = &deadlineError{sid: a.SID, d: deadline, err: err}
			}
			cancel()
			omu.Lock()
			read = true
			gone := outlived
			omu.Unlock()
			if gone {
				defer p.endCatchUp(a.SID)
			}
			releaseSlot()
			// What the cycle reports: nothing for a poll that left it.
			report := func(err error) {
				if !gone {
					fail(a.SID, err)
				}
			}
			if errors.Is(err, errUnchanged) {
				return
			}
			if err == nil && finish != nil {
				err = finish()
			}
			if err != nil && ctx.Err() != nil {
				report(err)
				return
			}
			if rerr := p.st.RecordPoll(a.SID, stream, at, err); rerr != nil && err == nil {
				err = rerr
			}
			p.logOutcome(stream, a.SID, err)
			label := append([]string{stream}, p.label(a.SID)...)
			failures := p.m.failures.WithLabelValues(label...) // from 0, so a later failure is an increase
			if err != nil {
				report(err)
				failures.Inc()
				if errors.Is(err, ErrDeadline) {
					p.m.timeouts.WithLabelValues(stream).Inc()
				}
				return
			}
			p.m.lastSuccess.WithLabelValues(label...).Set(float64(at.Unix()))
		}()
	}
	wg.Wait()
	return res
}

// catchingUp reports whether sid's messages poll outlived its cycle and is
// still reading.
func (p *Poller) catchingUp(sid string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.catching[sid]
}

// startCatchUp lets sid's messages poll outlive its cycle, unless
// Concurrency of them already do: then it stays in its cycle, which waits
// for it.
func (p *Poller) startCatchUp(sid string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.catching) >= p.cfg.Concurrency {
		return false
	}
	p.catching[sid] = true
	p.outlived.Add(1)
	return true
}

func (p *Poller) endCatchUp(sid string) {
	p.progress.end(false, sid) // if it was a backfill that did not end well
	p.mu.Lock()
	delete(p.catching, sid)
	p.mu.Unlock()
	p.outlived.Done()
}

// Wait waits for the polls that outlived their cycle (see each) to end.
// Cancel the context given to the cycles first to have them end soon.
func (p *Poller) Wait() {
	p.outlived.Wait()
}

// deadlineError is a poll abandoned at its deadline; err is how the read
// ended, which says what it was waiting for (a page, a retry).
type deadlineError struct {
	sid string
	d   time.Duration
	err error
}

func (e *deadlineError) Error() string {
	return fmt.Sprintf("poll of %s exceeded its %v deadline: %v", e.sid, e.d, e.err)
}

func (e *deadlineError) Unwrap() []error { return []error{ErrDeadline, e.err} }

// readersPerSlot is how many accounts per Concurrency slot are read from
// Twilio at once. The Twilio client's budget bounds the requests in flight
// (twilioapi.Config.Concurrency, the same -concurrency); with more readers
// than that, a message request is always waiting for the next free place
// in the budget, which therefore never goes to a low-priority request
// (usage, a backfill, the sweep) while the message watch has work left.
const readersPerSlot = 2

// pendingPerSlot is how many accounts per Concurrency slot may be read or
// waiting to store what they read.
const pendingPerSlot = 3

// pollFunc reads one account from Twilio and returns what remains to be
// done with the store once the read no longer needs its slot; finish may be
// nil.
type pollFunc func(ctx context.Context, a store.Account) (finish func() error, err error)

// acquire takes a place in sem unless ctx is done first.
func acquire(ctx context.Context, sem chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// logOutcome logs a poll failure when an account starts failing and then
// each time its run of consecutive failures doubles, and logs the recovery,
// so that an account that stays broken does not flood the log.
func (p *Poller) logOutcome(stream, sid string, err error) {
	key := stream + "/" + sid
	p.mu.Lock()
	n := p.failing[key]
	if err == nil {
		delete(p.failing, key)
	} else {
		n++
		p.failing[key] = n
	}
	p.mu.Unlock()
	switch {
	case err != nil && bits.OnesCount(uint(n)) == 1:
		p.log.Warn("poll failed", "stream", stream, "subaccount", sid, "failures", n, "err", err)
	case err == nil && n > 0:
		p.log.Info("poll recovered", "stream", stream, "subaccount", sid, "failures", n)
	}
}

// pollMessages reads one account's log from its watermark (the end of its
// coverage, less the settle window) back, newest first. Its finish stores
// the last batch and advances the coverage.
func (p *Poller) pollMessages(ctx context.Context, a store.Account) (func() error, error) {
	return p.pollLog(ctx, a, false)
}

// sweepMessages reads one account's whole settle window again, at low
// priority (see Sweep).
func (p *Poller) sweepMessages(ctx context.Context, a store.Account) (func() error, error) {
	return p.pollLog(ctx, a, true)
}

// pollLog reads a log; deep reads the whole settle window rather than back
// to the oldest message that can still change.
func (p *Poller) pollLog(ctx context.Context, a store.Account, deep bool) (func() error, error) {
	now := p.now()
	backfill := p.backfill()
	cov, err := p.st.Coverage(a.SID)
	if err != nil {
		return nil, err
	}
	from, since := cov.From, cov.Until.Add(-overlap)
	backfilling := false
	switch {
	case cov.Until.IsZero() || cov.Until.Before(now.Add(-backfill)):
		// First poll, or a gap longer than the backfill: coverage restarts.
		from, since, backfilling = now.Add(-backfill), now.Add(-backfill), true
	case cov.From.After(now.Add(-backfill)):
		// The backfill grew (policies now need a longer history).
		from, since, backfilling = now.Add(-backfill), now.Add(-backfill), true
	case deep:
		since = now.Add(-p.cfg.Settle)
		ctx = twilioapi.WithPriority(ctx, twilioapi.PriorityLow)
	default:
		// Re-read back to the oldest message that can still change (in
		// flight, or sent and waiting for its receipt), within the settle
		// window: a busy account whose messages reach a final state
		// quickly costs a page or two, not the whole window.
		settleFrom := now.Add(-p.cfg.Settle)
		at, found, err := p.st.OldestPending(a.SID, settleFrom, cov.Until)
		if err != nil {
			return nil, err
		}
		if found && at.Before(since) {
			since = at
		}
		if since.Before(settleFrom) {
			since = settleFrom
		}
	}
	// Messages before the prune horizon are not counted (they may have
	// been counted and pruned already): coverage must not claim them.
	if h := p.horizon(); from.Before(h) {
		from = h
	}
	if backfilling {
		// Watching the other accounts' logs goes first.
		ctx = twilioapi.WithPriority(ctx, twilioapi.PriorityLow)
	}
	label := p.label(a.SID)
	batch := p.batch()
	pushFrom, pushTo, reconciling := p.reconciling(a.SID, now)
	missedAny := false
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		// The store writes in SID order, and of a message listed twice it
		// keeps the later-read state.
		var ing store.Ingest
		var err error
		if reconciling {
			ing, err = p.st.ReconcileMessages(a.SID, batch, pushFrom, pushTo)
		} else {
			ing, err = p.st.PutMessages(a.SID, batch)
		}
		batch = batch[:0]
		if err != nil {
			return err
		}
		if ing.MissedNew+ing.MissedStatus > 0 {
			missedAny = true
			p.missed(a.SID, ing)
		}
		if ing.New+ing.Changed > 0 {
			p.mu.Lock()
			p.active[a.SID] = p.now()
			p.mu.Unlock()
		}
		p.m.ingested.WithLabelValues("new").Add(float64(ing.New))
		p.m.ingested.WithLabelValues("changed").Add(float64(ing.Changed))
		p.m.statusUpdates.Add(float64(ing.Changed))
		p.m.optOuts.WithLabelValues("counted").Add(float64(ing.OptOuts))
		p.m.optOuts.WithLabelValues("repeated").Add(float64(ing.Repeated))
		p.m.optOuts.WithLabelValues("unsolicited").Add(float64(ing.Unsolicited))
		p.m.optOuts.WithLabelValues("reclassified").Add(float64(ing.Reclassified))
		return nil
	}
	read, pages := 0, 0
	opts := twilioapi.MessageList{FirstPage: p.firstPage(a.SID)}
	err = p.tw.Messages(ctx, a.SID, opts, func(page *twilioapi.Page) (bool, error) {
		touch(ctx)
		pages = page.Number
		p.skipped(a.SID, page.Skipped)
		if len(page.Messages) == 0 {
			// Nothing on the page converted (or the log is empty): only
			// the next page can say whether the read reached back far
			// enough.
			return len(page.Skipped) > 0, nil
		}
		for i := range page.Messages {
			m := &page.Messages[i]
			if m.AccountSID != "" && m.AccountSID != a.SID {
				return false, fmt.Errorf("message %s belongs to %s, not %s", m.SID, m.AccountSID, a.SID)
			}
			if !traffic.KnownStatus(m.Status) {
				p.unknownStatus(a.SID, m)
			}
			// What lies before the read's lower bound was read before,
			// or is older than what the rules need.
			if !m.Time.Before(since) {
				batch = append(batch, *m)
				read++
			}
		}
		if len(batch) >= maxBatch {
			if err := flush(); err != nil {
				return false, err
			}
		}
		// Newest first: once a page ends before the lower bound, every later
		// page does too. The last message decides rather than the oldest: a
		// message whose date_sent is null carries its date_created, which
		// for a scheduled message can be days old, and Twilio does not
		// document where such messages sort (?). Either way the messages
		// before the last one on the page are in date_sent order.
		return !page.Messages[len(page.Messages)-1].Time.Before(since), nil
	})
	if err != nil {
		if ctx.Err() == nil {
			// What was read is valid although a later page failed: keep
			// it, so that the retry finds it stored.
			err = errors.Join(err, flush())
		}
		p.putBatch(batch)
		return nil, fmt.Errorf("poll messages of %s: %w", a.SID, err)
	}
	return func() error {
		err := flush()
		p.putBatch(batch)
		if err != nil {
			return fmt.Errorf("poll messages of %s: %w", a.SID, err)
		}
		if err := p.st.SetCoverage(a.SID, traffic.Coverage{From: from, Until: now}); err != nil {
			return err
		}
		p.noteRead(a.SID, read)
		p.fresh.advance(a.SID, now)
		if reconciling {
			p.reconciled(a.SID, now, missedAny)
		}
		if backfilling {
			p.progress.read(read)
			p.progress.end(true, a.SID)
			p.m.backfillMessages.Add(float64(read))
		}
		p.m.coverageEnd.WithLabelValues(label...).Set(float64(now.Unix()))
		p.log.Debug("messages polled", "subaccount", a.SID, "pages", pages, "first_page", opts.FirstPage,
			"read", read, "since", since, "coverage_from", from, "coverage_until", now)
		return nil
	}, nil
}

// overlap is how far before the end of its coverage a poll reads again
// when nothing can still change: a message whose date_sent Twilio's clock
// put a little before sentinel's, or that became visible in the listing a
// little after it was dated.
const overlap = 2 * time.Minute

// Page sizes of the first request of a poll (see firstPage).
const (
	minFirstPage = 20
	maxFirstPage = 1000
)

// firstPage returns the page size of the first request of an account's
// next poll: twice what its last poll read, plus a margin, so that a quiet
// account costs a small page of old messages and a busy one a full page.
// The listing is not filtered by date, so a first page that is too small
// only costs another request, never a message.
func (p *Poller) firstPage(sid string) int {
	p.mu.Lock()
	n, ok := p.lastRead[sid]
	p.mu.Unlock()
	if !ok {
		return maxFirstPage // the first poll reads the whole backfill
	}
	return min(max(2*n+minFirstPage, minFirstPage), maxFirstPage)
}

// noteRead records how many messages a poll of sid read.
func (p *Poller) noteRead(sid string, n int) {
	p.mu.Lock()
	p.lastRead[sid] = n
	p.mu.Unlock()
}

// horizon returns the store's prune horizon as read at the start of the
// cycle.
func (p *Poller) horizon() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pruneHorizon
}

// maxLogged bounds the SIDs and statuses remembered as logged, so that a
// flood of bad messages cannot grow memory; past it the memory starts
// afresh (a SID may then be logged once more).
const maxLogged = 10000

// skipped counts and logs, once per SID, the messages of sid's log that
// could not be decoded.
func (p *Poller) skipped(sid string, skipped []twilioapi.Skipped) {
	if len(skipped) == 0 {
		return
	}
	p.m.undecodable.Add(float64(len(skipped)))
	p.mu.Lock()
	var log []twilioapi.Skipped
	for _, s := range skipped {
		key := sid + "/" + s.SID
		if s.SID != "" && p.logged[key] {
			continue
		}
		if len(p.logged) >= maxLogged {
			clear(p.logged)
		}
		p.logged[key] = true
		log = append(log, s)
	}
	p.mu.Unlock()
	for _, s := range log {
		p.log.Warn("message skipped: it cannot be decoded; the rest of its page is stored",
			"subaccount", sid, "message", s.SID, "err", s.Err)
	}
}

// maxStatusLabels bounds the status label values of the unknown-status
// metric; further unknown statuses are counted as "other".
const maxStatusLabels = 16

// unknownStatus counts a message whose status Twilio does not document and
// logs each such status once.
func (p *Poller) unknownStatus(sid string, m *traffic.Message) {
	p.mu.Lock()
	seen, known := p.statuses[m.Status]
	if !known {
		seen = len(p.statuses) < maxStatusLabels
		p.statuses[m.Status] = seen
	}
	p.mu.Unlock()
	label := "other"
	if seen {
		label = m.Status
	}
	p.m.unknownStatus.WithLabelValues(label).Inc()
	if !known {
		p.log.Warn("message status that Twilio does not document: counted apart, in no rate",
			"subaccount", sid, "message", m.SID, "status", m.Status)
	}
}

// batch returns an empty batch from the pool, or nil.
func (p *Poller) batch() []traffic.Message {
	if b, ok := p.batches.Get().(*[]traffic.Message); ok {
		return (*b)[:0]
	}
	return nil
}

// putBatch returns b to the pool, cleared so that the pool does not keep
// its messages' strings alive.
func (p *Poller) putBatch(b []traffic.Message) {
	if cap(b) == 0 {
		return
	}
	b = b[:cap(b)]
	clear(b)
	b = b[:0]
	p.batches.Put(&b)
}

// pollUsage stores today's usage and makes sure the trailing days that
// spend baselines need are stored in their final form.
func (p *Poller) pollUsage(ctx context.Context, a store.Account) (func() error, error) {
	// Watching the message logs goes first.
	ctx = twilioapi.WithPriority(ctx, twilioapi.PriorityLow)
	now := p.now().UTC()
	var first, last string
	var stored []traffic.Usage
	if p.cfg.UsageDays > 0 {
		first = now.AddDate(0, 0, -p.cfg.UsageDays).Format(time.DateOnly)
		last = now.AddDate(0, 0, -1).Format(time.DateOnly)
		var err error
		if stored, err = p.st.Usage(a.SID, first, last); err != nil {
			return nil, err
		}
	}
	pastFinal := p.cfg.UsageDays == 0 || usageFinal(stored, p.cfg.UsageDays)
	if pastFinal {
		unchanged, err := p.usageUnchanged(a.SID, now)
		if err != nil {
			return nil, err
		}
		if unchanged {
			return nil, errUnchanged
		}
	}
	today, err := p.tw.UsageToday(ctx, a.SID)
	if err != nil {
		return nil, fmt.Errorf("poll usage of %s: %w", a.SID, err)
	}
	if today.Day == "" {
		today.Day = now.Format(time.DateOnly)
	}
	days := []traffic.Usage{today}
	if !pastFinal {
		past, err := p.tw.UsageDaily(ctx, a.SID, first, last)
		if err != nil {
			return nil, fmt.Errorf("poll daily usage of %s: %w", a.SID, err)
		}
		days = append(completeDays(past, now, p.cfg.UsageDays), today)
	}
	p.log.Debug("usage polled", "subaccount", a.SID, "day", today.Day, "spend", today.TotalPrice,
		"currency", today.Currency, "as_of", today.AsOf, "days", len(days))
	return func() error { return p.st.PutUsage(a.SID, days) }, nil
}

// errUnchanged is a poll that had nothing to read: not recorded, not a
// failure.
var errUnchanged = errors.New("nothing can have changed")

// usageUnchanged reports whether sid's usage today cannot have changed
// since it was last read: read today, less than UsageRefresh ago, and no
// message of the account stored since. Usage is read no more often than it
// can change; UsageRefresh bounds the wait for spend that messages do not
// show (calls, numbers), and keeps spend rules from going stale.
func (p *Poller) usageUnchanged(sid string, now time.Time) (bool, error) {
	ps, err := p.st.PollState(sid, StreamUsage)
	if err != nil {
		return false, err
	}
	last := ps.LastSuccess
	// What was stored before this process started is not in p.active.
	if last.IsZero() || last.Before(p.started) || last.UTC().Format(time.DateOnly) != now.Format(time.DateOnly) || now.Sub(last) >= p.usageRefresh() {
		return false, nil
	}
	p.mu.Lock()
	active := p.active[sid]
	p.mu.Unlock()
	return active.Before(last), nil
}

// SetUsageRefresh sets how long an account's usage may go unread while it
// sends nothing (see usageUnchanged): half the policies' usage_staleness,
// so that spend rules never go unknown for it. Zero means the default.
func (p *Poller) SetUsageRefresh(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg.UsageRefresh = d
}

func (p *Poller) usageRefresh() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.UsageRefresh <= 0 {
		return defaultUsageRefresh
	}
	return p.cfg.UsageRefresh
}

// defaultUsageRefresh is Config.UsageRefresh's default.
const defaultUsageRefresh = 30 * time.Minute

// completeDays returns the n whole days before now's UTC day as Twilio
// reported them in past, read at now. A day Twilio did not list had no
// usage, and a record without as_of is as fresh as the read: without both,
// usageFinal could never hold for such an account and its past days would
// be fetched again on every poll.
func completeDays(past []traffic.Usage, now time.Time, n int) []traffic.Usage {
	byDay := make(map[string]traffic.Usage, len(past))
	for _, u := range past {
		byDay[u.Day] = u
	}
	out := make([]traffic.Usage, 0, n)
	for i := n; i >= 1; i-- {
		day := now.AddDate(0, 0, -i).Format(time.DateOnly)
		u, ok := byDay[day]
		if !ok {
			u = traffic.Usage{Day: day}
		}
		if u.AsOf.IsZero() {
			u.AsOf = now
		}
		out = append(out, u)
	}
	return out
}

// usageFinal reports whether all n past days are stored and each was read
// after its UTC day had ended (usage lags by minutes, so a day read at
// 23:59 is not final). An hour's margin covers Twilio's lag.
func usageFinal(stored []traffic.Usage, n int) bool {
	if len(stored) < n {
		return false
	}
	for _, u := range stored {
		day, err := time.Parse(time.DateOnly, u.Day)
		if err != nil || u.AsOf.Before(day.Add(25*time.Hour)) {
			return false
		}
	}
	return true
}

// prune drops raw messages past retention, at most once an hour.
func (p *Poller) prune() error {
	now := p.now()
	p.mu.Lock()
	if now.Sub(p.lastPrune) < time.Hour {
		p.mu.Unlock()
		return nil
	}
	p.lastPrune = now
	retention, agg := p.cfg.Retention, p.cfg.AggRetention
	p.mu.Unlock()
	n, err := p.st.Prune(now.Add(-retention), now.Add(-agg))
	if n > 0 {
		p.m.pruned.Add(float64(n))
	}
	// The ids of pushed events are kept only as long as Twilio retries.
	if _, perr := p.st.PruneEvents(now); perr != nil {
		err = errors.Join(err, perr)
	}
	return err
}

// label returns the label values that name an account in per-account
// metrics: the SID, or none when the subaccount label is dropped.
func (p *Poller) label(sid string) []string {
	if p.cfg.NoSubaccountLabel {
		return nil
	}
	return []string{sid}
}
