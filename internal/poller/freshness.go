package poller

import (
	"cmp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// freshness keeps, for every account whose log is polled, since when its
// message data is known to be complete: the end of its coverage, or, for an
// account never read, when sentinel first saw it. The data-age metrics and
// Freshness are computed from it when asked, so they keep growing while a
// cycle hangs or never runs, and a scrape of a fleet of 10,000 accounts
// never reads the store. The poller loads it from the store when it starts
// and at every account sync and messages cycle, and advances an account
// when a poll of it completes.
type freshness struct {
	now            func() time.Time
	noLabel        bool
	age, staleness *prometheus.Desc

	mu    sync.Mutex
	accts map[string]freshAccount
}

type freshAccount struct {
	since  time.Time
	active bool // active in Twilio: counts in Freshness
}

func newFreshness(now func() time.Time, noSubaccountLabel bool) *freshness {
	var labels []string
	if !noSubaccountLabel {
		labels = []string{"subaccount"}
	}
	return &freshness{
		now:     now,
		noLabel: noSubaccountLabel,
		age: prometheus.NewDesc("sentinel_subaccount_data_age_seconds",
			"How old each polled account's message data is: the time since its coverage ends, or since it was first seen if it was never read completely (fleet maximum without the subaccount label).",
			labels, nil),
		staleness: prometheus.NewDesc("sentinel_data_staleness_seconds",
			"How far the least recently covered account's message log lags behind now.",
			nil, nil),
		accts: map[string]freshAccount{},
	}
}

// reset replaces the accounts with accts, except closed ones (their logs
// are not polled), dated by covs. An account's date never moves back: a
// poll that completed while covs was read is kept.
func (f *freshness) reset(accts []store.Account, covs map[string]traffic.Coverage) {
	m := make(map[string]freshAccount, len(accts))
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range accts {
		if a.Status == "closed" {
			continue
		}
		since := covs[a.SID].Until
		if since.IsZero() {
			since = a.FirstSeen
		}
		if old, ok := f.accts[a.SID]; ok && old.since.After(since) {
			since = old.since
		}
		m[a.SID] = freshAccount{since: since, active: a.Status == "active"}
	}
	f.accts = m
}

// advance records that sid's data is complete up to until.
func (f *freshness) advance(sid string, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.accts[sid]; ok && until.After(a.since) {
		a.since = until
		f.accts[sid] = a
	}
}

// Freshness is how old the active accounts' message data is at one
// instant.
type Freshness struct {
	// Active counts the accounts active in Twilio (the parent included)
	// whose logs are polled.
	Active int
	// Stale counts those whose data is older than the bound asked for.
	Stale int
	// Oldest is the active account whose data is oldest (the first by SID
	// of equals), and Age how old its data is; "" and 0 without accounts.
	Oldest string
	Age    time.Duration
}

// Freshness reports how old the active accounts' message data is now and
// how many are older than maxAge (plus their Allowance, while their pushed
// events are trusted). Suspended accounts are polled (late
// status changes) but not counted: nothing is judged on them. It reads no
// store and is cheap enough for every readiness probe.
func (p *Poller) Freshness(maxAge time.Duration) Freshness {
	now := p.now()
	allow := p.allowances() // before f.mu: it takes p.mu
	f := p.fresh
	f.mu.Lock()
	defer f.mu.Unlock()
	var out Freshness
	for sid, a := range f.accts {
		if !a.active {
			continue
		}
		out.Active++
		age := max(now.Sub(a.since), 0)
		if age > maxAge+allow[sid] {
			out.Stale++
		}
		if c := cmp.Compare(age, out.Age); out.Oldest == "" || c > 0 || (c == 0 && sid < out.Oldest) {
			out.Oldest, out.Age = sid, age
		}
	}
	return out
}

// Describe implements prometheus.Collector.
func (f *freshness) Describe(ch chan<- *prometheus.Desc) {
	ch <- f.age
	ch <- f.staleness
}

// Collect implements prometheus.Collector. The accounts are copied out
// under the lock and the metrics built after it, so that a scrape holds up
// no poll.
func (f *freshness) Collect(ch chan<- prometheus.Metric) {
	type sidAge struct {
		sid string
		age time.Duration
	}
	now := f.now()
	var worst time.Duration
	var ages []sidAge
	f.mu.Lock()
	if !f.noLabel {
		ages = make([]sidAge, 0, len(f.accts))
	}
	for sid, a := range f.accts {
		age := max(now.Sub(a.since), 0)
		worst = max(worst, age)
		if !f.noLabel {
			ages = append(ages, sidAge{sid, age})
		}
	}
	f.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(f.staleness, prometheus.GaugeValue, worst.Seconds())
	if f.noLabel {
		ch <- prometheus.MustNewConstMetric(f.age, prometheus.GaugeValue, worst.Seconds())
		return
	}
	for _, a := range ages {
		ch <- prometheus.MustNewConstMetric(f.age, prometheus.GaugeValue, a.age.Seconds(), a.sid)
	}
}

// loadFreshness resets the data ages from the store and returns the
// coverage it read.
func (p *Poller) loadFreshness(accts []store.Account) (map[string]traffic.Coverage, error) {
	covs, err := p.st.AllCoverage()
	if err != nil {
		return nil, err
	}
	p.fresh.reset(accts, covs)
	return covs, nil
}

// reloadFreshness resets the data ages from every stored account.
func (p *Poller) reloadFreshness() error {
	accts, err := p.st.Accounts()
	if err == nil {
		_, err = p.loadFreshness(accts)
	}
	return err
}
