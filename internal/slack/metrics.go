package slack

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Dispatcher's.
type metrics struct {
	messages *prometheus.CounterVec
	depth    prometheus.Gauge
	retries  prometheus.Counter
	held     *prometheus.GaugeVec // by cause: 1 while the outbox is held
}

// newMetrics builds the Dispatcher's metrics, every result at zero, and
// registers them on reg if it is not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_slack_messages_total",
			Help: "Slack delivery attempts by result: sent, failed (kept for retry) or dead (given up, logged at error level).",
		}, []string{"result"}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sentinel_slack_outbox_depth",
			Help: "Alerts waiting in the outbox for delivery to Slack.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_slack_retries_total",
			Help: "Alerts rescheduled for another delivery attempt.",
		}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_slack_hold",
			Help: "1 while no alert is sent because Slack refused sentinel (cause=refused: token, channel or webhook) or was unavailable (cause=unavailable); until Slack accepts one.",
		}, []string{"cause"}),
	}
	for _, r := range []string{"sent", "failed", "dead"} {
		m.messages.WithLabelValues(r)
	}
	for _, c := range []string{CauseRefused, CauseUnavailable} {
		m.held.WithLabelValues(c)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.depth, m.retries, m.held} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// RegisterMetrics registers a Dispatcher's metrics on reg, at zero, for a
// process whose alerts go to the log: nothing waits for Slack and nothing
// is sent to it, and dashboards and alerts on these metrics read 0 rather
// than no data.
func RegisterMetrics(reg prometheus.Registerer) error {
	_, err := newMetrics(reg)
	return err
}
