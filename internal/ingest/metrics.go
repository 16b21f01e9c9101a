package ingest

import "github.com/prometheus/client_golang/prometheus"

// Sources of pushed reports.
const (
	sourceEvents = "event_streams"
	sourceStatus = "status_callback"
)

type metrics struct {
	received   *prometheus.CounterVec
	rejected   *prometheus.CounterVec
	ignored    *prometheus.CounterVec
	stored     *prometheus.CounterVec
	duplicates prometheus.Counter
	lag        prometheus.Histogram
	duration   prometheus.Histogram
	last       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_events_received_total",
			Help: "Pushed events accepted (authenticated, well formed), by source: event_streams or status_callback.",
		}, []string{"source"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_events_rejected_total",
			Help: "Push requests refused with nothing stored, by reason: unauthorized, bad_signature, malformed, too_large, store.",
		}, []string{"reason"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_events_ignored_total",
			Help: "Pushed events acknowledged but not stored, by reason: type (not a message event), unknown_account (not of this fleet), unknown_message (a subaccount's callback about a message no poll has read), self_signed (a subaccount's callback reporting anything but a failure).",
		}, []string{"reason"}),
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_events_stored_total",
			Help: "Pushed reports stored, by result: new (a message no poll had read), changed, unchanged (already known).",
		}, []string{"result"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_events_duplicate_total",
			Help: "Pushed events whose id had been seen before: Twilio's retries, counted once.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sentinel_event_lag_seconds",
			Help:    "Time from an event's timestamp to its arrival at sentinel.",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 14400},
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sentinel_events_request_duration_seconds",
			Help:    "Time from a push request's arrival to its acknowledgement, its events stored.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sentinel_events_last_received_timestamp_seconds",
			Help: "When pushed events were last stored (Unix time); 0 before the first.",
		}),
	}
	for _, s := range []string{sourceEvents, sourceStatus} {
		m.received.WithLabelValues(s)
	}
	for _, r := range []string{"unauthorized", "bad_signature", "malformed", "too_large", "store"} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"type", "unknown_account", "unknown_message", "self_signed"} {
		m.ignored.WithLabelValues(r)
	}
	for _, r := range []string{"new", "changed", "unchanged"} {
		m.stored.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.rejected, m.ignored, m.stored, m.duplicates, m.lag, m.duration, m.last} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
