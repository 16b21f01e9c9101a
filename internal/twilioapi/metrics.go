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
	requests *prometheus.CounterVec
	retries  *prometheus.CounterVec
	duration *prometheus.HistogramVec
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
	if reg == nil {
		return m, nil
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
