package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/actions"
)

// gauges are the per-subaccount figures an operator graphs: the same numbers
// -status prints, refreshed after every judged cycle, and each subaccount's
// name for dashboards to join onto them. With the subaccount label dropped
// (very large fleets) they become fleet totals and maxima, without names.
type gauges struct {
	noLabel  bool
	outbound *prometheus.GaugeVec
	filtered *prometheus.GaugeVec
	optOut   *prometheus.GaugeVec
	spend    *prometheus.GaugeVec
	info     *prometheus.GaugeVec // nil without the subaccount label
}

func newGauges(reg prometheus.Registerer, noSubaccountLabel bool) (*gauges, error) {
	labels := []string{"subaccount"}
	if noSubaccountLabel {
		labels = nil
	}
	g := &gauges{
		noLabel: noSubaccountLabel,
		outbound: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_subaccount_outbound_messages_1h",
			Help: "Outbound messages in the last hour (fleet total without the subaccount label).",
		}, labels),
		filtered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_subaccount_filtered_ratio",
			Help: "Share of finished outbound messages filtered with error 30007 over 24h (fleet maximum without the subaccount label).",
		}, labels),
		optOut: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_subaccount_opt_out_ratio",
			Help: "Opt-out replies per outbound message over 24h (fleet maximum without the subaccount label).",
		}, labels),
		spend: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_subaccount_spend_today_usd",
			Help: "Today's (UTC) spend as Twilio last reported it (fleet total without the subaccount label).",
		}, labels),
	}
	collectors := []prometheus.Collector{g.outbound, g.filtered, g.optOut, g.spend}
	if !noSubaccountLabel {
		g.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sentinel_subaccount_info",
			Help: "Always 1 for each subaccount; name is its Twilio friendly name, to join onto the other subaccount metrics.",
		}, []string{"subaccount", "name"})
		collectors = append(collectors, g.info)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// update replaces every series with rows, so accounts that disappeared
// (closed, pruned) drop out.
func (g *gauges) update(rows []actions.Figures) {
	if g.noLabel {
		var out, spend, filtered, optOut float64
		for _, r := range rows {
			if r.Parent {
				continue
			}
			out += float64(r.Outbound1h)
			spend += r.SpendToday
			filtered = max(filtered, r.Filtered24h)
			optOut = max(optOut, r.OptOut24h)
		}
		g.outbound.WithLabelValues().Set(out)
		g.spend.WithLabelValues().Set(spend)
		g.filtered.WithLabelValues().Set(filtered)
		g.optOut.WithLabelValues().Set(optOut)
		return
	}
	for _, v := range []*prometheus.GaugeVec{g.outbound, g.filtered, g.optOut, g.spend, g.info} {
		v.Reset()
	}
	for _, r := range rows {
		if r.Status == "closed" {
			continue
		}
		g.info.WithLabelValues(r.SID, r.Name).Set(1)
		g.outbound.WithLabelValues(r.SID).Set(float64(r.Outbound1h))
		g.filtered.WithLabelValues(r.SID).Set(r.Filtered24h)
		g.optOut.WithLabelValues(r.SID).Set(r.OptOut24h)
		g.spend.WithLabelValues(r.SID).Set(r.SpendToday)
	}
}
