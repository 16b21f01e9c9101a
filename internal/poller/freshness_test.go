package poller

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// The data age of every polled account grows between cycles, and while a
// cycle hangs or never runs: it is computed when scraped, not when a cycle
// ends. A suspended account's age is exported but does not count towards
// Freshness, which readiness uses.
func TestDataAgeGrowsLive(t *testing.T) {
	for _, noLabel := range []bool{false, true} {
		name := map[bool]string{false: "subaccount label", true: "no subaccount label"}[noLabel]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{poller: func(c *Config) {
				c.NoSubaccountLabel = noLabel
				c.MessagesDeadline = 200 * time.Millisecond
			}})
			good, hung, suspended := e.addSub(""), e.addSub(""), e.addSub("suspended")
			for _, sid := range []string{good, hung, suspended} {
				e.generate(sid, 10, t0.Add(-time.Hour), t0)
			}
			parent := e.fake.ParentSID()
			e.accounts()
			e.mustSucceed()
			e.hang(messagesPath(hung))
			e.hang(messagesPath(suspended))
			e.clock.Advance(time.Minute)
			e.messages()
			// Then no cycle for five minutes: the ages keep growing.
			e.clock.Advance(5 * time.Minute)

			want := map[string]float64{good: 300, parent: 300, hung: 360, suspended: 360}
			if noLabel {
				want = map[string]float64{"": 360}
			}
			if diff := cmp.Diff(want, e.ages()); diff != "" {
				t.Errorf("sentinel_subaccount_data_age_seconds (-want +got):\n%s", diff)
			}
			if got := e.metric("sentinel_data_staleness_seconds", nil); got != 360 {
				t.Errorf("sentinel_data_staleness_seconds = %v, want 360", got)
			}

			// A subaccount that was never read is as old as sentinel's
			// knowledge of it.
			fresh := e.addSub("")
			e.accounts()
			e.clock.Advance(2 * time.Minute)
			if !noLabel {
				if got := e.ages()[fresh]; got != 120 {
					t.Errorf("age of a subaccount never read, first seen 2m ago = %v, want 120", got)
				}
			}

			wantFresh := Freshness{Active: 4, Stale: 1, Oldest: hung, Age: 8 * time.Minute}
			if diff := cmp.Diff(wantFresh, e.p.Freshness(7*time.Minute)); diff != "" {
				t.Errorf("Freshness(7m) (-want +got):\n%s", diff)
			}
			wantFresh = Freshness{Active: 4, Stale: 0, Oldest: hung, Age: 8 * time.Minute}
			if diff := cmp.Diff(wantFresh, e.p.Freshness(10*time.Minute)); diff != "" {
				t.Errorf("Freshness(10m) (-want +got):\n%s", diff)
			}

			// A restarted poller knows the ages from the store before its
			// first cycle.
			e.restart()
			if got := e.metric("sentinel_data_staleness_seconds", nil); got != 480 {
				t.Errorf("sentinel_data_staleness_seconds after a restart = %v, want 480", got)
			}
		})
	}
}

// ages returns sentinel_subaccount_data_age_seconds by subaccount label
// ("" without one).
func (e *env) ages() map[string]float64 {
	e.tb.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.tb.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "sentinel_subaccount_data_age_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			sid := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "subaccount" {
					sid = l.GetValue()
				}
			}
			out[sid] = m.GetGauge().GetValue()
		}
	}
	return out
}

// BenchmarkDataAgeScrape10k measures one scrape (a registry Gather) of the
// data-age metrics with 10,000 subaccounts. They are computed from memory,
// never from the store: the target is to cost no more than gathering any
// gauge vector of 10,000 series, which is mostly the registry's own work.
func BenchmarkDataAgeScrape10k(b *testing.B) {
	for _, noLabel := range []bool{false, true} {
		b.Run(fmt.Sprintf("noSubaccountLabel=%v", noLabel), func(b *testing.B) {
			now := t0
			f := newFreshness(func() time.Time { return now }, noLabel)
			accts := make([]store.Account, 10000)
			covs := map[string]traffic.Coverage{}
			for i := range accts {
				sid := fmt.Sprintf("AC%032x", i+1)
				accts[i] = store.Account{SID: sid, Status: "active", FirstSeen: t0.Add(-48 * time.Hour)}
				covs[sid] = traffic.Coverage{From: t0.Add(-24 * time.Hour), Until: t0.Add(-time.Duration(i) * time.Second)}
			}
			f.reset(accts, covs)
			reg := prometheus.NewRegistry()
			reg.MustRegister(f)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
