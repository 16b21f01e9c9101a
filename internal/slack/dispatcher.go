package slack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OutboxItem is one queued alert. It mirrors store.OutboxItem field for
// field, so a store item converts with slack.OutboxItem(item).
type OutboxItem struct {
	ID        uint64
	Created   time.Time
	NotBefore time.Time // next attempt
	Attempts  int
	Payload   []byte // written by Encode
	LastError string
}

// Outbox is the persistent queue the Dispatcher drains: the store's outbox
// API. It has five methods because it is one thing, a queue, and splitting
// it would only make every caller pass the store twice.
//
// *store.Store satisfies every method but Due, whose items are of the
// store's own type; cmd/sentinel adapts it with a conversion.
//
// Due must return the head of the queue: the lowest IDs first, stopping at
// the first item that is not yet due, so that a newer message never
// overtakes an older one waiting for a retry, across restarts too.
type Outbox interface {
	Enqueue(payload []byte, at time.Time) (uint64, error)
	Due(at time.Time, limit int) ([]OutboxItem, error)
	Delivered(id uint64) error
	Retry(id uint64, notBefore time.Time, errText string) error
	OutboxLen() (int, error)
}

// Poster delivers one rendered message; *Client is the real one. thread is
// the ts to reply to ("" for a new message); the returned ts is the new
// message's ("" if the transport has none, like a webhook).
type Poster interface {
	Post(ctx context.Context, m Message, thread string) (ts string, err error)
}

// Hold is the Dispatcher's hold on the whole outbox: after Slack refused
// sentinel or was unavailable, no delivery is attempted before Until. The
// zero Hold is none. It mirrors store.SlackHold field for field.
type Hold struct {
	Until time.Time
	// Cause is CauseRefused or CauseUnavailable.
	Cause string
	// Failures counts consecutive failed attempts; the backoff doubles
	// with each.
	Failures int
	// Config is the Config.Fingerprint of the configuration that failed.
	Config string
}

// Causes of a hold, also the values of sentinel_slack_hold's cause label.
const (
	// CauseRefused: Slack refuses sentinel (ClassConfig): a revoked webhook,
	// a bad token, an unknown or archived channel. A person must act.
	CauseRefused = "refused"
	// CauseUnavailable: Slack or the network failed, or Slack is rate
	// limiting (ClassUnavailable).
	CauseUnavailable = "unavailable"
)

// holdCauses are the values of sentinel_slack_hold's cause label.
var holdCauses = []string{CauseRefused, CauseUnavailable}

// HoldStore keeps the hold across restarts: the store's meta bucket, which
// cmd/sentinel adapts. Hold returns the zero Hold when none is stored;
// SetHold of the zero Hold removes it.
type HoldStore interface {
	Hold() (Hold, error)
	SetHold(Hold) error
}

// Threads remembers the Slack thread of each incident: the ts of the first
// message delivered for it. The actions package (over store.Incident and
// PutIncident, keeping the ts in Incident.Thread) implements it. Opened tells
// an incident apart from an earlier one of the same subaccount and rule:
// Thread returns "" and SetThread does nothing when the stored incident has
// another Opened time (it was superseded while the message sat in the
// outbox) or none.
type Threads interface {
	Thread(subaccount, rule string, opened time.Time) (string, error)
	SetThread(subaccount, rule string, opened time.Time, ts string) error
}

// Options tune a Dispatcher. Zero values take the defaults.
type Options struct {
	Now  func() time.Time // default time.Now
	Poll time.Duration    // how often the outbox is checked without a Notify; default 30s
	// Batch is the most items taken from the outbox per pass; default 50.
	// A full batch triggers another pass at once.
	Batch int
	// MinBackoff and MaxBackoff bound the wait after any failure: Slack
	// unavailable (transport error, 5xx, 429 without Retry-After), Slack
	// refusing sentinel (invalid_auth, channel_not_found, a revoked
	// webhook) or Slack rejecting one message. The wait is MinBackoff
	// doubled per consecutive failure, capped at MaxBackoff, with jitter
	// over its upper half. Defaults 2s and 5m: however long Slack refuses,
	// it is asked again within MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps a Retry-After from Slack; default 1h.
	MaxRetryAfter time.Duration
	// MaxAttempts is how many attempts a message Slack keeps rejecting gets
	// before it is dead-lettered; default 10. Messages that fail because
	// Slack is unavailable or refuses sentinel are never dead-lettered.
	MaxAttempts int
	// PostTimeout bounds one post; default 30s.
	PostTimeout time.Duration
	// Registerer receives the metrics; nil means none are registered.
	Registerer prometheus.Registerer
	// Holds keeps the hold across restarts; nil keeps it in memory only,
	// and a restart then tries Slack at once.
	Holds HoldStore
	// Config is the Config.Fingerprint of the poster's configuration. A
	// stored hold earned under another one is lifted at the first pass:
	// a new webhook or token is tried at once.
	Config string
	// Interactivity says which buttons incident messages carry; the zero
	// value, none.
	Interactivity Interactivity
}

// Dispatcher delivers the outbox to Slack. Notify queues an event and wakes
// it; Run drains the outbox until its context ends; Flush makes one pass.
//
// Delivery is at least once and in order. While Slack is unavailable or
// refuses sentinel, the Dispatcher holds the whole outbox: it probes with
// the oldest undelivered item after a capped backoff and attempts nothing
// after it, so alerts arrive in the order they were raised once Slack is
// back, and an incident's first message is delivered (and its thread
// recorded) before its follow-ups. The first accepted probe lifts the hold
// and the rest of the queue follows in the same pass. The hold is kept
// through Options.Holds, so a restart neither forgets it nor, with a new
// Slack configuration, keeps it. A message Slack rejects on its own is
// retried as plain text at once, then with backoff, and after MaxAttempts
// it is dead-lettered: logged at error level with its full text and
// counted, then removed. An outbox item that cannot be decoded is
// dead-lettered the same way at once, so it cannot stick the queue.
type Dispatcher struct {
	outbox  Outbox
	poster  Poster
	threads Threads // may be nil: no threading
	log     *slog.Logger
	opt     Options
	wake    chan struct{}
	*metrics

	mu       sync.Mutex // one pass at a time; guards the fields below
	hold     Hold       // the zero Hold while Slack takes alerts
	loaded   bool       // hold was read from opt.Holds
	lastWarn time.Time  // rate limit for repeated failure logs
}

// NewDispatcher returns a Dispatcher that drains outbox through poster.
// threads may be nil (a webhook cannot thread). logger must not be nil.
func NewDispatcher(outbox Outbox, poster Poster, threads Threads, logger *slog.Logger, opt Options) (*Dispatcher, error) {
	if outbox == nil || poster == nil || logger == nil {
		return nil, errors.New("new slack dispatcher: outbox, poster and logger are required")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	opt.Poll = cmp.Or(opt.Poll, 30*time.Second)
	opt.Batch = cmp.Or(opt.Batch, 50)
	opt.MinBackoff = cmp.Or(opt.MinBackoff, 2*time.Second)
	opt.MaxBackoff = cmp.Or(opt.MaxBackoff, 5*time.Minute)
	opt.MaxRetryAfter = cmp.Or(opt.MaxRetryAfter, time.Hour)
	opt.MaxAttempts = cmp.Or(opt.MaxAttempts, 10)
	opt.PostTimeout = cmp.Or(opt.PostTimeout, 30*time.Second)
	if opt.Poll < 0 || opt.Batch < 0 || opt.MinBackoff < 0 || opt.MaxBackoff < opt.MinBackoff ||
		opt.MaxRetryAfter < 0 || opt.MaxAttempts < 0 || opt.PostTimeout < 0 {
		return nil, errors.New("new slack dispatcher: negative option or MaxBackoff below MinBackoff")
	}

	m, err := newMetrics(opt.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new slack dispatcher: %w", err)
	}
	return &Dispatcher{
		outbox: outbox, poster: poster, threads: threads, log: logger, opt: opt,
		wake:    make(chan struct{}, 1),
		metrics: m,
	}, nil
}

// Notify queues ev in the outbox and wakes the dispatcher. Once Notify has
// returned nil the alert survives a Slack outage and a restart. At defaults
// to now.
func (d *Dispatcher) Notify(_ context.Context, ev Event) error {
	if ev.At.IsZero() {
		ev.At = d.opt.Now()
	}
	b, err := Encode(ev)
	if err != nil {
		return fmt.Errorf("notify %s: %w", ev.Kind, err)
	}
	if _, err := d.outbox.Enqueue(b, d.opt.Now()); err != nil {
		return fmt.Errorf("notify %s: enqueue: %w", ev.Kind, err)
	}
	d.depth.Inc() // until the next pass counts the outbox
	d.kick()
	return nil
}

func (d *Dispatcher) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers the outbox until ctx ends: at once, after every Notify, every
// Poll, and when a backoff ends. Outbox errors are logged and retried at the
// next pass. It returns nil when ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-timer.C:
		}
		if err := d.pass(ctx); err != nil {
			d.mu.Lock()
			d.warn(slog.LevelError, "slack outbox", "err", err)
			d.mu.Unlock()
		}
		timer.Reset(d.nextWait())
	}
}

// Flush makes one delivery pass, for shutdown. What it cannot deliver stays
// in the outbox for the next start.
func (d *Dispatcher) Flush(ctx context.Context) error {
	return d.pass(ctx)
}

// nextWait is how long Run sleeps after a pass: until the hold ends or the
// oldest item's own retry is due, whichever comes first, and at most Poll.
// The outbox is asked rather than remembered, so a restarted process
// retries an item that the previous one deferred as soon as it is due.
func (d *Dispatcher) nextWait() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.opt.Now()
	wait := d.opt.Poll
	if rest := d.hold.Until.Sub(now); rest > 0 {
		wait = min(wait, rest)
	}
	// Due at the end of time returns the head whatever its NotBefore.
	// A head that is due already is not waited for here: a full batch
	// kicks the next pass, and a pass that failed waits for Poll rather
	// than spin.
	if head, err := d.outbox.Due(now.Add(math.MaxInt64), 1); err == nil && len(head) == 1 {
		if rest := head[0].NotBefore.Sub(now); rest > 0 {
			wait = min(wait, rest)
		}
	}
	return wait
}

// pass delivers what is due, in ID order, stopping at the first failure that
// would hit every message.
func (d *Dispatcher) pass(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.updateDepth()

	now := d.opt.Now()
	if err := d.loadHold(now); err != nil {
		return err
	}
	if now.Before(d.hold.Until) {
		return nil
	}
	items, err := d.outbox.Due(now, d.opt.Batch)
	if err != nil {
		return fmt.Errorf("due: %w", err)
	}
	slices.SortFunc(items, func(a, b OutboxItem) int { return cmp.Compare(a.ID, b.ID) })
	for _, it := range items {
		if ctx.Err() != nil {
			return nil
		}
		stop, err := d.deliver(ctx, it)
		if err != nil {
			return err
		}
		if stop {
			return nil
		}
	}
	if len(items) == d.opt.Batch {
		d.kick()
	}
	return nil
}

// deliver attempts one item. stop reports that Slack is unavailable or
// refuses sentinel, so the rest of the pass would fail the same way.
func (d *Dispatcher) deliver(ctx context.Context, it OutboxItem) (stop bool, err error) {
	ev, err := DecodeEvent(it.Payload)
	if err != nil {
		d.log.Error("slack alert unreadable, dead-lettered",
			"id", it.ID, "created", it.Created, "bytes", len(it.Payload), "payload", prefix(it.Payload, 512), "err", err)
		return false, d.bury(it.ID)
	}

	thread := ""
	if d.threads != nil && ev.incident() {
		if thread, err = d.threads.Thread(ev.Subaccount, ev.Rule, ev.Opened); err != nil {
			return true, fmt.Errorf("thread of %s/%s: %w", ev.Subaccount, ev.Rule, err)
		}
	}
	opener := thread == "" // this message starts the incident's thread
	msg := RenderInteractive(ev, d.opt.Interactivity)
	d.log.Debug("slack delivery attempt", "id", it.ID, "kind", ev.Kind, "subaccount", ev.Subaccount, "rule", ev.Rule,
		"attempts", it.Attempts, "threaded", !opener)
	ts, err := d.post(ctx, msg, thread)
	var de *DeliveryError
	if err != nil && errors.As(err, &de) && de.Class == ClassRejected && ctx.Err() == nil {
		// Slack took offence at this message (its blocks, most likely): the
		// plain text, which names the incident, beats no message at all.
		// It goes to the channel, since a bad thread ts may be the offence.
		d.log.Warn("slack rejected alert, sending it as plain text",
			"subaccount", ev.Subaccount, "rule", ev.Rule, "id", it.ID, "err", err)
		ts, err = d.post(ctx, Message{Text: msg.Text}, "")
	}
	if err != nil && ctx.Err() != nil {
		// Shutting down: not Slack's fault; the item stays due as it was.
		return true, nil
	}
	if err != nil {
		d.log.Debug("slack delivery failed", "id", it.ID, "err", err)
		return d.failed(it, ev, err)
	}
	d.log.Debug("slack delivered", "id", it.ID, "ts", ts)

	// Slack has it: the outbox forgets it before anything else is written.
	// A crash before this commit sends it again (at least once, as
	// promised); that window is one bbolt commit wide.
	if err := d.outbox.Delivered(it.ID); err != nil {
		return true, fmt.Errorf("delivered %d: %w", it.ID, err)
	}
	if d.threads != nil && ev.incident() && opener && ts != "" {
		if err := d.threads.SetThread(ev.Subaccount, ev.Rule, ev.Opened, ts); err != nil {
			// Delivered all the same; follow-ups will start a thread of their own.
			d.log.Warn("slack thread not recorded", "subaccount", ev.Subaccount, "rule", ev.Rule, "err", err)
		}
	}
	d.messages.WithLabelValues("sent").Inc()
	if d.hold != (Hold{}) {
		d.log.Info("slack delivery recovered", "failures", d.hold.Failures, "cause", d.hold.Cause)
		if err := d.setHold(Hold{}); err != nil {
			// The next start may wait out a hold that is over: no loss.
			d.log.Warn("slack hold not cleared", "err", err)
		}
		d.lastWarn = time.Time{}
	}
	return false, nil
}

func (d *Dispatcher) post(ctx context.Context, m Message, thread string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opt.PostTimeout)
	defer cancel()
	return d.poster.Post(ctx, m, thread)
}

// failed schedules the next attempt of a failed item, or dead-letters it.
func (d *Dispatcher) failed(it OutboxItem, ev Event, err error) (stop bool, _ error) {
	d.messages.WithLabelValues("failed").Inc()
	now := d.opt.Now()
	class, retryAfter := ClassUnavailable, time.Duration(0)
	var de *DeliveryError
	if errors.As(err, &de) {
		class, retryAfter = de.Class, de.RetryAfter
	}
	attrs := []any{"subaccount", ev.Subaccount, "rule", ev.Rule, "kind", ev.Kind, "id", it.ID, "attempts", it.Attempts + 1, "err", err}

	if class == ClassRejected {
		// Only this message is at fault: it alone waits, and the pass goes
		// on. Until it is due again it is the head of the queue, so later
		// alerts wait too, at most MaxBackoff at a time.
		if it.Attempts+1 >= d.opt.MaxAttempts {
			d.log.Error("slack alert dead-lettered after repeated rejection", append(attrs, "alert", Text(ev))...)
			return false, d.bury(it.ID)
		}
		next := now.Add(d.backoff(it.Attempts))
		d.log.Error("slack rejected alert, will retry", append(attrs, "next", next)...)
		if err := d.outbox.Retry(it.ID, next, err.Error()); err != nil {
			return true, fmt.Errorf("retry %d: %w", it.ID, err)
		}
		d.retries.Inc()
		return false, nil
	}

	// Every message would fail the same way: hold the whole outbox. The
	// item stays due; the hold says when it is tried again, so that a new
	// Slack configuration can lift it.
	h := Hold{Cause: CauseUnavailable, Failures: d.hold.Failures + 1, Config: d.opt.Config}
	if class == ClassConfig {
		h.Cause = CauseRefused
	}
	if retryAfter > 0 {
		h.Until = now.Add(min(retryAfter, d.opt.MaxRetryAfter))
	} else {
		h.Until = now.Add(d.backoff(d.hold.Failures))
	}
	if h.Cause != d.hold.Cause {
		d.lastWarn = time.Time{} // a new kind of trouble is said at once
	}
	if err := d.outbox.Retry(it.ID, now, err.Error()); err != nil {
		return true, fmt.Errorf("retry %d: %w", it.ID, err)
	}
	d.retries.Inc()
	attrs = append(attrs, "failures", h.Failures, "next", h.Until)
	if h.Cause == CauseRefused {
		d.warn(slog.LevelError, "slack refuses sentinel's alerts: check the token, channel or webhook", attrs...)
	} else {
		d.warn(slog.LevelWarn, "slack unavailable, alerts kept in the outbox", attrs...)
	}
	if err := d.setHold(h); err != nil {
		return true, err
	}
	return true, nil
}

// loadHold reads the stored hold at the first pass. A hold earned under
// another Slack configuration is lifted: the new one is tried at once. A
// hold reaching further than any backoff (the clock went back) is cut to
// the longest wait this Dispatcher would set. d.mu must be held.
func (d *Dispatcher) loadHold(now time.Time) error {
	if d.loaded {
		return nil
	}
	if d.opt.Holds == nil {
		d.loaded = true
		return nil
	}
	h, err := d.opt.Holds.Hold()
	if err != nil {
		return fmt.Errorf("load hold: %w", err)
	}
	d.loaded = true
	switch {
	case h == (Hold{}):
		return nil
	case h.Config != d.opt.Config:
		d.log.Info("slack configuration changed: held alerts are retried at once",
			"cause", h.Cause, "failures", h.Failures)
		return d.setHold(Hold{})
	}
	if limit := now.Add(max(d.opt.MaxBackoff, d.opt.MaxRetryAfter)); h.Until.After(limit) {
		h.Until = limit
	}
	d.hold = h
	d.updateHeld()
	return nil
}

// setHold makes h the hold, in memory, in the metric and in opt.Holds.
// d.mu must be held.
func (d *Dispatcher) setHold(h Hold) error {
	d.hold = h
	d.updateHeld()
	if d.opt.Holds == nil {
		return nil
	}
	if err := d.opt.Holds.SetHold(h); err != nil {
		return fmt.Errorf("store hold: %w", err)
	}
	return nil
}

func (d *Dispatcher) updateHeld() {
	for _, c := range holdCauses {
		v := 0.0
		if d.hold.Cause == c {
			v = 1
		}
		d.held.WithLabelValues(c).Set(v)
	}
}

// bury removes a dead letter (already logged) from the outbox and counts it.
func (d *Dispatcher) bury(id uint64) error {
	if err := d.outbox.Delivered(id); err != nil {
		return fmt.Errorf("remove dead letter %d: %w", id, err)
	}
	d.messages.WithLabelValues("dead").Inc()
	return nil
}

// backoff is MinBackoff doubled per earlier failure, capped at MaxBackoff,
// with jitter over its upper half so that a fleet does not retry in step.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	b := d.opt.MinBackoff
	for i := 0; i < attempts && b < d.opt.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.opt.MaxBackoff)
	half := b / 2
	if half <= 0 {
		return b
	}
	return half + rand.N(b-half+1)
}

// warn logs a repeated failure at most every ten minutes. d.mu must be held.
func (d *Dispatcher) warn(level slog.Level, msg string, attrs ...any) {
	now := d.opt.Now()
	if !d.lastWarn.IsZero() && now.Sub(d.lastWarn) < 10*time.Minute {
		return
	}
	d.lastWarn = now
	d.log.Log(context.Background(), level, msg, attrs...)
}

func (d *Dispatcher) updateDepth() {
	if n, err := d.outbox.OutboxLen(); err == nil {
		d.depth.Set(float64(n))
	}
}

func prefix(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
