package twilioapi

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint label values: one per kind of request, never a SID.
const (
	endpointAccounts      = "accounts"
	endpointAccount       = "account"
	endpointAccountUpdate = "account_update"
	endpointMessages      = "messages"
	endpointUsageToday    = "usage_today"
	endpointUsageDaily    = "usage_daily"
)

type metrics struct {
	requests  *prometheus.CounterVec
	retries   *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	limit     prometheus.Gauge
	capped    prometheus.Gauge
	inFlight  prometheus.Gauge
	throttled prometheus.Counter
	wait      prometheus.Counter
}

// newMetrics builds the Client's metrics and registers them on reg if it is
// not nil. A second Client on the same registry shares the first one's
// collectors rather than failing.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_twilio_requests_total",
			Help: "HTTP requests sent to Twilio, by endpoint and HTTP status code (\"error\" when no response arrived).",
		}, []string{"endpoint", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_twilio_retries_total",
			Help: "Twilio requests retried after a 429, 5xx, timeout or transport error, by endpoint.",
		}, []string{"endpoint"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sentinel_twilio_request_duration_seconds",
			Help:    "Time from sending a Twilio request to its response headers, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.025, 2, 10),
		}, []string{"endpoint"}),
	}
	// Every endpoint's retries and durations exist from the start, at
	// zero, so that dashboards show 0 rather than no data and increase()
	// counts the first retry. Requests appear with their first status code.
	for _, e := range []string{endpointAccounts, endpointAccount, endpointAccountUpdate, endpointMessages, endpointUsageToday, endpointUsageDaily} {
		m.retries.WithLabelValues(e)
		m.duration.WithLabelValues(e)
	}
	m.limit = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sentinel_twilio_concurrency_limit",
		Help: "Requests to Twilio sentinel lets be in flight at once now: -concurrency, halved on 429s, grown back on success, capped by -concurrency-share.",
	})
	m.capped = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sentinel_twilio_concurrency_share_cap",
		Help: "The cap -concurrency-share puts on sentinel's requests in flight, from Twilio's Twilio-Concurrent-Requests header; 0 when the header showed no other traffic.",
	})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sentinel_twilio_requests_in_flight",
		Help: "Requests to Twilio in flight now.",
	})
	m.throttled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sentinel_twilio_throttled_total",
		Help: "Responses 429 (Twilio's 20429: too many concurrent requests on the account).",
	})
	m.wait = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sentinel_twilio_budget_wait_seconds_total",
		Help: "Time requests spent waiting for a place in sentinel's concurrency budget.",
	})
	if reg == nil {
		return m, nil
	}
	for _, g := range []*prometheus.Gauge{&m.limit, &m.capped, &m.inFlight} {
		var err error
		if *g, err = register(reg, *g); err != nil {
			return nil, err
		}
	}
	for _, c := range []*prometheus.Counter{&m.throttled, &m.wait} {
		var err error
		if *c, err = register(reg, *c); err != nil {
			return nil, err
		}
	}
	var err error
	m.requests, err = register(reg, m.requests)
	if err != nil {
		return nil, err
	}
	m.retries, err = register(reg, m.retries)
	if err != nil {
		return nil, err
	}
	m.duration, err = register(reg, m.duration)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
