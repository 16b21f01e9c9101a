package backtest

import (
	"time"

	"sentinel/internal/policy"
)

// maxColumns bounds the points of one chart: a week at one-minute steps
// is drawn as 720 columns of 14 minutes, each its highest value, so that
// no peak is lost.
const maxColumns = 720

// chart collects one account's rule values per column.
type chart struct {
	rules     [][]column
	suspended []bool
}

type column struct {
	n             int // judged evaluations in it
	value         float64
	trip, resolve float64
}

func newChart(rules, cols int) *chart {
	c := &chart{rules: make([][]column, rules), suspended: make([]bool, cols)}
	for i := range c.rules {
		c.rules[i] = make([]column, cols)
	}
	return c
}

func (c *chart) add(rule, col int, d *policy.Decision) {
	if !judged(d.Result) {
		return
	}
	p := &c.rules[rule][col]
	if p.n == 0 || d.Evidence.Value > p.value {
		p.value = d.Evidence.Value
	}
	p.n++
	p.trip, p.resolve = d.Evidence.Threshold, d.Evidence.ResolveAt
}

// column returns the chart column of step si.
func (r *run) column(si int) int {
	if r.cols == 0 {
		return 0
	}
	return si * r.cols / len(r.steps)
}

// columnAt returns the time a column starts at.
func (r *run) columnAt(col int) time.Time {
	return r.steps[(col*len(r.steps)+r.cols-1)/r.cols]
}

// chartsOf assembles the charts of the accounts sids, with what rep
// says of them.
func (r *run) chartsOf(rep *Report, sids []string) []AccountChart {
	bySID := map[string]*acct{}
	for _, a := range r.accts {
		bySID[a.h.Info.SID] = a
	}
	first := map[string]Subaccount{}
	for _, s := range rep.Subaccounts {
		first[s.SID] = s
	}
	var out []AccountChart
	for _, sid := range sids {
		a := bySID[sid]
		if a == nil || a.chart == nil {
			continue
		}
		s := first[sid]
		ac := AccountChart{SID: sid, Name: a.h.Info.FriendlyName, From: r.from, To: r.to}
		for _, c := range a.h.Changes {
			if !c.At.Before(r.from) && !c.At.After(r.to) && (c.Suspension() || c.Reinstatement()) {
				ac.Changes = append(ac.Changes, c)
			}
		}
		for col := 0; col < r.cols; col++ {
			if !a.chart.suspended[col] {
				continue
			}
			from, to := r.columnAt(col), r.to
			if col+1 < r.cols {
				to = r.columnAt(col + 1)
			}
			if n := len(ac.Suspended); n > 0 && ac.Suspended[n-1][1].Equal(from) {
				ac.Suspended[n-1][1] = to
			} else {
				ac.Suspended = append(ac.Suspended, [2]time.Time{from, to})
			}
		}
		results := map[string]RuleResult{}
		for _, rr := range first[s.SID].Rules {
			results[rr.Rule] = rr
		}
		// The rules that fired first, then the others the subaccount was
		// judged on, in policy order.
		for _, fired := range []bool{true, false} {
			for i, rule := range r.rules {
				rr, ok := results[rule.Name]
				if ok != fired || !a.rules[i].judged {
					continue
				}
				rc := RuleChart{Rule: rule, Fired: rr.FiredAt, Suspend: rr.SuspendedAt, Blocked: rr.Blocked}
				for col, p := range a.chart.rules[i] {
					rc.Points = append(rc.Points, ChartPoint{At: r.columnAt(col), Judged: p.n > 0, Value: p.value, Trip: p.trip, Resolve: p.resolve})
				}
				ac.Rules = append(ac.Rules, rc)
			}
		}
		out = append(out, ac)
	}
	return out
}
