package main

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sentinel/internal/poller"
	"sentinel/internal/twiliofake"
)

// TestReadyzNamesHungSubaccount replays issue 10's outage: one subaccount's
// message log hangs. Its polls are abandoned at their deadline and counted,
// the others stay fresh, its data age grows, and /readyz says which
// subaccount is stale; once the log answers again, sentinel is ready again.
func TestReadyzNamesHungSubaccount(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	_, steady := w.fleet(t, 3, false)
	hung := steady[1]
	d := w.start(t, daemonArgs(w, "-poll-deadline", "1s", "-max-staleness", "4s")...)
	addr := d.addr(t)
	waitReady(t, d, addr)

	fault := w.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDelay, Delay: time.Hour,
		Path: "/2010-04-01/Accounts/" + hung + "/Messages.json"})
	var body string
	eventually(t, 30*time.Second, "/readyz 503 naming "+hung, func() bool {
		code, b := get(t, "http://"+addr+"/readyz")
		body = string(b)
		return code == http.StatusServiceUnavailable && strings.Contains(body, hung)
	})
	t.Logf("/readyz: %s", body)
	if !strings.Contains(body, "-max-staleness") || !regexp.MustCompile(`\d+ of 4 active accounts`).MatchString(body) {
		t.Errorf("/readyz: %q, want the count of stale accounts of 4 and the bound", body)
	}

	_, metrics := get(t, "http://"+addr+"/metrics")
	ageOf := func(sid string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^sentinel_subaccount_data_age_seconds\{subaccount="` + sid + `"\} (\S+)$`).FindSubmatch(metrics)
		if m == nil {
			t.Fatalf("/metrics has no data age for %s", sid)
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if hungAge, steadyAge := ageOf(hung), ageOf(steady[0]); hungAge <= 4 || steadyAge >= hungAge {
		t.Errorf("data age: %s (hung) %vs, %s %vs; want the hung one past -max-staleness and older", hung, hungAge, steady[0], steadyAge)
	}
	m := regexp.MustCompile(`(?m)^sentinel_poll_timeouts_total\{stream="messages"\} (\d+)$`).FindSubmatch(metrics)
	if m == nil || string(m[1]) == "0" {
		t.Errorf("sentinel_poll_timeouts_total{stream=\"messages\"}: %q, want the abandoned polls counted", m)
	}

	w.fake.RemoveFault(fault)
	waitReady(t, d, addr)
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const sid = "AC00000000000000000000000000000007"
	fresh := poller.Freshness{Active: 31, Oldest: sid, Age: time.Minute}
	for _, tc := range []struct {
		name     string
		lastGood time.Time
		fresh    poller.Freshness
		backfill poller.Backfill
		want     string // "" for ready
	}{
		{name: "backfilling", fresh: fresh, backfill: poller.Backfill{Total: 200, Done: 37, Messages: 185000},
			want: "backfilling 37 of 200 subaccounts (185000 messages read)"},
		{name: "no cycle yet", fresh: fresh, want: "no complete cycle yet"},
		{name: "last cycle too old", lastGood: now.Add(-11 * time.Minute), fresh: fresh, want: "data is stale: last complete cycle 11m0s ago"},
		{name: "fresh", lastGood: now.Add(-time.Minute), fresh: fresh},
		{name: "no accounts", lastGood: now.Add(-time.Minute)},
		{name: "one account stale", lastGood: now.Add(-time.Minute), fresh: poller.Freshness{Active: 31, Stale: 1, Oldest: sid, Age: 197 * time.Second},
			want: "data is stale: 1 of 31 active accounts not read completely for over 10m0s (-max-staleness); the oldest, " + sid + ", for 3m17s"},
		{name: "several stale", lastGood: now.Add(-time.Minute), fresh: poller.Freshness{Active: 31, Stale: 3, Oldest: sid, Age: 12*time.Minute + 300*time.Millisecond},
			want: "data is stale: 3 of 31 active accounts not read completely for over 10m0s (-max-staleness); the oldest, " + sid + ", for 12m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r readiness
			if !tc.lastGood.IsZero() {
				r.cycleDone(tc.lastGood, true)
			}
			ok, why := r.check(now, 10*time.Minute, tc.fresh, tc.backfill)
			if ok != (tc.want == "") || why != tc.want {
				t.Errorf("check = %v, %q; want %v, %q", ok, why, tc.want == "", tc.want)
			}
		})
	}
}
