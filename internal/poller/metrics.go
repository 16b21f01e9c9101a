package poller

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	cycle         *prometheus.HistogramVec
	ingested      *prometheus.CounterVec
	statusUpdates prometheus.Counter
	failures      *prometheus.CounterVec
	timeouts      *prometheus.CounterVec
	lastSuccess   *prometheus.GaugeVec
	coverageEnd   *prometheus.GaugeVec
	accounts      prometheus.Gauge
	pruned        prometheus.Counter
	undecodable   prometheus.Counter
	// backfillPending counts the accounts the running cycle has yet to
	// backfill; backfillMessages the messages backfills read.
	backfillPending  prometheus.Gauge
	backfillMessages prometheus.Counter
	unknownStatus    *prometheus.CounterVec
	optOuts          *prometheus.CounterVec
	// pushMissed counts what reconciling reads found that pushed events
	// had missed, by reason (the accounts whose polling is backed off are
	// a gauge of their own: registerPush).
	pushMissed *prometheus.CounterVec
}

// newMetrics builds the poller's metrics and registers them on reg, which
// may be nil. The subaccount label is empty when noSubaccountLabel is set,
// which keeps a single series per metric for very large fleets.
func newMetrics(reg prometheus.Registerer, noSubaccountLabel bool) (*metrics, error) {
	perAccount := []string{"subaccount"}
	if noSubaccountLabel {
		perAccount = nil
	}
	m := &metrics{
		cycle: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sentinel_poll_cycle_duration_seconds",
			Help:    "Duration of one poll of every account, by stream.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"stream"}),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_messages_ingested_total",
			Help: "Messages stored, by whether they were new or changed state since last read.",
		}, []string{"result"}),
		statusUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_message_status_updates_total",
			Help: "Stored messages whose status, error code or price changed on a later read.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_poll_failures_total",
			Help: "Failed polls, by stream and account.",
		}, append([]string{"stream"}, perAccount...)),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_poll_timeouts_total",
			Help: "Polls of one account abandoned at their deadline, by stream; each is also a failed poll.",
		}, []string{"stream"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_poll_last_success_timestamp_seconds",
			Help: "Unix time of the last successful poll, by stream and account.",
		}, append([]string{"stream"}, perAccount...)),
		coverageEnd: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_message_coverage_end_timestamp_seconds",
			Help: "Unix time up to which an account's message log is known to be completely stored.",
		}, perAccount),
		accounts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sentinel_subaccounts",
			Help: "Subaccounts listed by Twilio at the last account poll.",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_messages_pruned_total",
			Help: "Raw messages deleted past the retention period.",
		}),
		backfillPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sentinel_backfill_accounts_pending",
			Help: "Accounts whose message logs the running cycle still has to read for the first time (or from scratch after a gap).",
		}),
		backfillMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_backfill_messages_read_total",
			Help: "Messages read by first reads (backfills) of message logs.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sentinel_messages_undecodable_total",
			Help: "Messages skipped because they could not be decoded (the rest of their page is stored).",
		}),
		unknownStatus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_messages_unknown_status_total",
			Help: "Messages read with a status Twilio does not document, by status; they count in no rate.",
		}, []string{"status"}),
		optOuts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_opt_outs_total",
			Help: "Inbound opt-outs first stored, by whether they count: counted, repeated (the number's opt-out already counted) or unsolicited (a number the subaccount never messaged).",
		}, []string{"result"}),
		pushMissed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_push_missed_total",
			Help: "Messages a reconciling poll found that pushed events had missed, by reason: new (never pushed) or status (a status change never pushed). Each sends its account back to polling every cycle.",
		}, []string{"reason"}),
	}
	for _, r := range []string{"new", "status"} {
		m.pushMissed.WithLabelValues(r)
	}
	for _, r := range []string{"counted", "repeated", "unsolicited", "reclassified"} {
		m.optOuts.WithLabelValues(r)
	}
	// Series that would otherwise appear only with their first event start
	// at zero, so that rate() and increase() count that event and
	// dashboards show 0 rather than no data. Per-account failures start at
	// an account's first poll (Poller.each).
	for _, s := range []string{StreamAccounts, StreamMessages, StreamUsage} {
		m.cycle.WithLabelValues(s)
		if noSubaccountLabel {
			m.failures.WithLabelValues(s)
		}
	}
	for _, r := range []string{"new", "changed"} {
		m.ingested.WithLabelValues(r)
	}
	// From zero, so that the first timeout is an increase.
	for _, s := range []string{StreamMessages, StreamUsage} {
		m.timeouts.WithLabelValues(s)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.cycle, m.ingested, m.statusUpdates, m.failures, m.timeouts, m.lastSuccess, m.coverageEnd, m.accounts, m.pruned,
		m.undecodable, m.unknownStatus, m.optOuts, m.backfillPending, m.backfillMessages, m.pushMissed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
