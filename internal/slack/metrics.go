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
	for _, c := range holdCauses {
		m.held.WithLabelValues(c)
	}
	if err := register(reg, m.messages, m.depth, m.retries, m.held); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers cs on reg if it is not nil.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// RegisterMetrics registers a Dispatcher's metrics on reg, at zero, for a
// process whose alerts go to the log: nothing waits for Slack and nothing
// is sent to it, and dashboards and alerts on these metrics read 0 rather
// than no data.
func RegisterMetrics(reg prometheus.Registerer) error {
	_, err := newMetrics(reg)
	return err
}

// interactionMetrics are the Interactions' and the HTTP endpoint's.
type interactionMetrics struct {
	interactions *prometheus.CounterVec // by action and result
	rejected     *prometheus.CounterVec // HTTP requests refused, by reason
}

// Results of an interaction, the values of the result label.
var interactionResults = []string{"opened", "done", "refused", "failed", "dropped"}

// Reasons an HTTP interaction request is rejected.
var rejectReasons = []string{"method", "body", "timestamp", "signature", "payload"}

func newInteractionMetrics(reg prometheus.Registerer) (*interactionMetrics, error) {
	m := &interactionMetrics{
		interactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_slack_interactions_total",
			Help: "Decisions asked for from Slack's buttons, by action and result: opened (the form), done, refused (stale, not a decider, ...; audited), failed (reported in the thread) or dropped (too many waiting).",
		}, []string{"action", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_slack_interaction_requests_rejected_total",
			Help: "Requests to POST /slack/interactions refused before reading them, by reason: method, body (too large or unreadable), timestamp (older or newer than 5 minutes), signature or payload.",
		}, []string{"reason"}),
	}
	for _, a := range []string{DecideReinstate, DecideKeep, DecideAck} {
		for _, r := range interactionResults {
			m.interactions.WithLabelValues(a, r)
		}
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	if err := register(reg, m.interactions, m.rejected); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *interactionMetrics) result(action, result string) {
	m.interactions.WithLabelValues(action, result).Inc()
}

// socketMetrics are the Socket Mode connection's.
type socketMetrics struct {
	up          prometheus.Gauge
	connections prometheus.Counter
}

func newSocketMetrics(reg prometheus.Registerer) (*socketMetrics, error) {
	m := &socketMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sentinel_slack_socket_up",
			Help: "1 while sentinel's Socket Mode connection to Slack is up (buttons work), 0 while it is down or reconnecting.",
		}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_slack_socket_connections_total",
			Help: "Socket Mode connections to Slack made; more than a few an hour means it keeps dropping.",
		}),
	}
	if err := register(reg, m.up, m.connections); err != nil {
		return nil, err
	}
	return m, nil
}
