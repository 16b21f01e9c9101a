package actions

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Safety rails, the values of sentinel_actions_blocked_total's rail label.
const (
	RailPerHour   = "per_hour"
	RailFraction  = "fraction"
	RailStale     = "stale"
	RailProtected = "protected"
	RailParent    = "parent"
	RailDryRun    = "dry_run"
)

type metrics struct {
	suspensions    *prometheus.CounterVec
	reinstatements prometheus.Counter
	blocked        *prometheus.CounterVec
	evaluations    *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	blind          prometheus.Gauge
	breakers       *breakerCollector
}

func newMetrics(reg prometheus.Registerer, noSubaccount bool) (*metrics, error) {
	m := &metrics{
		suspensions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_suspensions_total",
			Help: "Subaccount suspensions, by mode (enforce or dry_run) and actor (sentinel or manual).",
		}, []string{"mode", "actor"}),
		reinstatements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_reinstatements_total",
			Help: "Subaccounts reinstated by a person through sentinel.",
		}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_actions_blocked_total",
			Help: "Suspensions stopped by a safety rail, by rail.",
		}, []string{"rail"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_policy_evaluations_total",
			Help: "Rule evaluations, by rule and result.",
		}, []string{"rule", "result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_twilio_refusals_total",
			Help: "Account status updates Twilio refused, by Twilio error code.",
		}, []string{"code"}),
		blind: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sentinel_blind_subaccounts",
			Help: "Subaccounts sentinel could not judge on fresh data at the last cycle: their message log is older than -max-staleness, or a suspension rule that was over its threshold is unknown.",
		}),
		breakers: &breakerCollector{noSubaccount: noSubaccount, state: map[string]string{}},
	}
	for _, mode := range []string{"enforce", "dry_run"} {
		for _, actor := range []string{"sentinel", "manual"} {
			m.suspensions.WithLabelValues(mode, actor)
		}
	}
	for _, r := range []string{RailPerHour, RailFraction, RailStale, RailProtected, RailParent, RailDryRun} {
		m.blocked.WithLabelValues(r)
	}
	// The refusals sentinel knows how to handle start at zero, so that the
	// first one is an increase; others appear when Twilio first sends them.
	for _, code := range []int{21476, 21478, 21479, 20404} {
		m.refusals.WithLabelValues(strconv.Itoa(code))
	}
	if noSubaccount {
		m.breakers.desc = prometheus.NewDesc("sentinel_breaker_state",
			"Subaccounts whose breaker is in each state.", []string{"state"}, nil)
	} else {
		m.breakers.desc = prometheus.NewDesc("sentinel_breaker_state",
			"1 for the current breaker state of each subaccount.", []string{"subaccount", "state"}, nil)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.suspensions, m.reinstatements, m.blocked, m.evaluations, m.refusals, m.blind, m.breakers} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) refused(code int) {
	m.refusals.WithLabelValues(strconv.Itoa(code)).Inc()
}

// breakerCollector exports the breaker states it was last told about.
// Judge refreshes every account each cycle; transitions update it at once.
type breakerCollector struct {
	desc         *prometheus.Desc
	noSubaccount bool

	mu    sync.Mutex
	state map[string]string // by subaccount
}

func (c *breakerCollector) set(sid, state string) {
	c.mu.Lock()
	c.state[sid] = state
	c.mu.Unlock()
}

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.noSubaccount {
		n := map[string]int{}
		for _, s := range c.state {
			n[s]++
		}
		for _, s := range States() {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[s]), s)
		}
		return
	}
	for sid, s := range c.state {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, sid, s)
	}
}
