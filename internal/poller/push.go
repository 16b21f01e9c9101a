package poller

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/store"
)

// Push ingest makes the poller the reconciler. Events pushed by Twilio
// (Event Streams, status callbacks) are stored as they arrive; every read
// of a log that pushes reach then also counts what the pushes missed
// (store.ReconcileMessages). An account whose pushes arrive and whose last
// reconciling read found nothing missed is trusted: its log is read on the
// reconcile schedule (Config.Reconcile) rather than every cycle, and its
// polled coverage may lag by that much more before it counts as stale
// (Allowance). A read that finds anything missed ends the trust at once.

// pushState is what the poller knows of one account's pushed events since
// it started.
type pushState struct {
	first, last time.Time // when the first and the latest events were stored
	trusted     bool      // the last reconciling read found nothing missed
	checked     time.Time // when the last reconciling read began
	missedAt    time.Time // when a read last found something missed
}

// pushGrace is how long after a change its event may take to arrive: a
// read does not count as missed what changed within it.
const pushGrace = 2 * time.Minute

// Pushed records that events were stored for accounts at at (the daemon
// calls it after each push request is durable). Like a poll that stores
// messages, it makes the accounts' usage due: an account whose pushes are
// trusted is polled only on the reconcile schedule.
func (p *Poller) Pushed(accounts map[string]time.Time, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for sid := range accounts {
		s := p.push[sid]
		if s.first.IsZero() {
			s.first = at
		}
		s.last = at
		p.push[sid] = s
		if at.After(p.active[sid]) {
			p.active[sid] = at
		}
	}
}

// backedOff reports whether an account's log can wait for the reconcile
// schedule (r) at now: pushes arrive, nothing was missed, and the last
// reconciling read is recent.
func (s pushState) backedOff(r time.Duration, now time.Time) bool {
	return r > 0 && s.trusted && now.Sub(s.last) < r && now.Sub(s.checked) < r
}

// allowed reports whether an account's polled coverage may lag by the
// reconcile interval (r) more at now (see Allowance).
func (s pushState) allowed(r time.Duration, now time.Time) bool {
	return r > 0 && s.trusted && now.Sub(s.last) < 2*r
}

// backedOff reports whether sid's log can wait for the reconcile schedule
// at now.
func (p *Poller) backedOff(sid string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.push[sid].backedOff(p.cfg.Reconcile, now)
}

// Allowance is how much longer than the staleness bound sid's polled
// coverage may lag while its pushes are trusted: the reconcile interval.
// It lasts a while after the pushes stop, until polling every cycle has
// caught the coverage up again.
func (p *Poller) Allowance(sid string) time.Duration {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.push[sid].allowed(p.cfg.Reconcile, now) {
		return p.cfg.Reconcile
	}
	return 0
}

// allowances returns Allowance of every account that has one.
func (p *Poller) allowances() map[string]time.Duration {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]time.Duration{}
	for sid, s := range p.push {
		if s.allowed(p.cfg.Reconcile, now) {
			out[sid] = p.cfg.Reconcile
		}
	}
	return out
}

// reconciling returns the window a read of sid beginning at now checks
// pushed events over: from the first event stored to pushGrace before
// now. ok is false when sid has had no pushes, and the read is a plain
// one.
func (p *Poller) reconciling(sid string, now time.Time) (from, to time.Time, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.push[sid]
	if !ok || s.first.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	return s.first, now.Add(-pushGrace), true
}

// missed records what a reconciling read of sid found the pushes missed.
func (p *Poller) missed(sid string, in store.Ingest) {
	if in.MissedNew+in.MissedStatus == 0 {
		return
	}
	p.m.pushMissed.WithLabelValues("new").Add(float64(in.MissedNew))
	p.m.pushMissed.WithLabelValues("status").Add(float64(in.MissedStatus))
	p.mu.Lock()
	s := p.push[sid]
	was := s.trusted
	s.trusted, s.missedAt = false, p.now()
	p.push[sid] = s
	p.mu.Unlock()
	level := slog.LevelDebug
	if was {
		level = slog.LevelWarn
	}
	p.log.Log(context.Background(), level, "the poll found messages that pushed events missed; the log is read every cycle again",
		"subaccount", sid, "missed_new", in.MissedNew, "missed_status", in.MissedStatus)
}

// reconciled records a reconciling read of sid that began at start and
// read everything. When it found nothing missed and covered some time in
// which pushes arrived, the pushes are trusted; after a miss, only once a
// whole reconcile interval of reads every cycle has found nothing more.
func (p *Poller) reconciled(sid string, start time.Time, missedAny bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.push[sid]
	if !ok {
		return
	}
	s.checked = start
	clean := !missedAny && start.Add(-pushGrace).After(s.first) &&
		(s.missedAt.IsZero() || start.Sub(s.missedAt) >= p.cfg.Reconcile)
	if clean && !s.trusted {
		s.trusted = true
		p.log.Info("pushed events arrive and miss nothing: the log is read on the reconcile schedule", "subaccount", sid,
			"reconcile", p.cfg.Reconcile)
	}
	p.push[sid] = s
}

// trustedCount is the number of accounts whose polling is backed off now.
func (p *Poller) trustedCount() float64 {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.push {
		if s.backedOff(p.cfg.Reconcile, now) {
			n++
		}
	}
	return float64(n)
}

// registerPush registers the gauge of trusted accounts on reg.
func (p *Poller) registerPush(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sentinel_push_trusted_subaccounts",
		Help: "Accounts whose pushed events arrive and miss nothing, so that their logs are read on -reconcile-schedule instead of every cycle.",
	}, p.trustedCount))
}
