package poller

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"sentinel/internal/twiliofake"
)

func TestMetricsLint(t *testing.T) {
	for _, noLabel := range []bool{false, true} {
		name := map[bool]string{false: "subaccount label", true: "no subaccount label"}[noLabel]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{poller: func(c *Config) { c.NoSubaccountLabel = noLabel }})
			good, bad := e.addSub(""), e.addSub("")
			e.generate(good, 10, t0.Add(-time.Hour), t0)
			e.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultServerError, Path: messagesPath(bad)})
			e.accounts()
			e.messages() // a success and a failure, so that every series exists

			m := e.p.m
			for _, c := range []prometheus.Collector{m.cycle, m.ingested, m.statusUpdates, m.failures, m.timeouts, m.lastSuccess, m.coverageEnd, e.p.fresh, m.accounts, m.pruned} {
				for _, p := range collectAndLint(t, c) {
					t.Errorf("promlint: %s: %s", p.Metric, p.Text)
				}
			}

			want := map[string]string{"stream": "messages", "subaccount": bad}
			if noLabel {
				want = map[string]string{"stream": "messages"}
			}
			if n := e.metric("sentinel_poll_failures_total", want); n != 1 {
				t.Errorf("sentinel_poll_failures_total%v = %v, want 1", want, n)
			}
			mfs, err := e.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			series := 0
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					series++
					for _, l := range m.GetLabel() {
						if l.GetName() == "subaccount" && noLabel {
							t.Errorf("%s has a subaccount label with NoSubaccountLabel", mf.GetName())
						}
					}
				}
			}
			if series == 0 {
				t.Errorf("no series registered")
			}
			if n := e.metric("sentinel_messages_ingested_total", map[string]string{"result": "new"}); n != 10 {
				t.Errorf("ingested new = %v, want 10", n)
			}
			if n := e.metric("sentinel_subaccounts", nil); n != 2 {
				t.Errorf("sentinel_subaccounts = %v, want 2", n)
			}
		})
	}
}

// TestFailuresStartAtZero checks that every poll failure counter exists at
// 0 before its first failure: one that appears at 1 is invisible to
// increase() and rate(), and so to the SentinelPollFailures alert.
func TestFailuresStartAtZero(t *testing.T) {
	for _, noLabel := range []bool{false, true} {
		name := map[bool]string{false: "subaccount label", true: "no subaccount label"}[noLabel]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{poller: func(c *Config) { c.NoSubaccountLabel = noLabel }})
			sub := e.addSub("")
			parent := e.fake.ParentSID()
			want := []map[string]string{{"stream": StreamAccounts, "subaccount": parent}}
			if noLabel {
				want = []map[string]string{{"stream": StreamAccounts}, {"stream": StreamMessages}, {"stream": StreamUsage}}
			}
			e.checkZero("sentinel_poll_failures_total", want...)
			e.checkZero("sentinel_messages_ingested_total", map[string]string{"result": "new"}, map[string]string{"result": "changed"})

			e.accounts()
			e.mustSucceed()
			if res, err := e.p.Usage(context.Background()); err != nil || len(res.Failed) > 0 {
				t.Fatalf("Usage: %v %v", err, res.Failed)
			}
			if !noLabel {
				e.checkZero("sentinel_poll_failures_total",
					map[string]string{"stream": StreamMessages, "subaccount": sub},
					map[string]string{"stream": StreamMessages, "subaccount": parent},
					map[string]string{"stream": StreamUsage, "subaccount": sub})
			}
		})
	}
}

// checkZero fails the test unless the counter name has a series with each
// of the label sets, at 0.
func (e *env) checkZero(name string, labelSets ...map[string]string) {
	e.tb.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.tb.Fatalf("gather: %v", err)
	}
	var series []map[string]string
	var values []float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			series = append(series, labels)
			values = append(values, m.GetCounter().GetValue())
		}
	}
next:
	for _, want := range labelSets {
		for i, got := range series {
			if maps.Equal(got, want) {
				if values[i] != 0 {
					e.tb.Errorf("%s%v = %v, want 0", name, want, values[i])
				}
				continue next
			}
		}
		e.tb.Errorf("%s has no series %v; it has %v", name, want, series)
	}
}

// collectAndLint is testutil.CollectAndLint: it collects c through a
// pedantic registry (which also checks help texts and label consistency)
// and runs promlint over the result. testutil itself needs a module that
// go.sum does not list; promlint is what it calls.
func collectAndLint(t *testing.T, c prometheus.Collector) []promlint.Problem {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	return problems
}

func TestMetricsRegisterOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg, false); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg, false); err == nil {
		t.Errorf("registering twice on one registry succeeded, want an error")
	}
	if _, err := newMetrics(nil, true); err != nil {
		t.Errorf("nil registerer: %v", err)
	}
}
