package actions

import (
	"testing"
	"time"

	"sentinel/internal/policy"
)

func TestDescribe(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)
	hour := policy.Evidence{From: at.Add(-57 * time.Minute), To: at}
	ev := func(e policy.Evidence, num, den, value, trip float64) policy.Evidence {
		e.Numerator, e.Denominator, e.Value, e.Threshold = num, den, value, trip
		return e
	}
	tests := []struct {
		name string
		rule policy.Rule
		dec  policy.Decision
		want string
	}{
		{"filtering",
			policy.Rule{Signal: policy.SignalErrorRate, Codes: []int{30007}, Window: time.Hour},
			policy.Decision{Action: policy.ActionSuspend, Evidence: ev(hour, 20, 220, 20.0/220, 0.05)},
			"30007 filtering: 9.1% of 220 finished messages in the last hour (suspends at 5%)"},
		{"protected filtering only alerts",
			policy.Rule{Signal: policy.SignalErrorRate, Codes: []int{30007}, Window: time.Hour},
			policy.Decision{Action: policy.ActionSuspend, Protected: true, Evidence: ev(hour, 20, 220, 20.0/220, 0.05)},
			"30007 filtering: 9.1% of 220 finished messages in the last hour (alerts at 5%)"},
		{"budget",
			policy.Rule{Signal: policy.SignalSpendBudget},
			policy.Decision{Action: policy.ActionSuspend, Evidence: ev(policy.Evidence{}, 100, 50, 2, 1)},
			"$100.00 spent today against a $50.00 budget (suspends at the budget)"},
		{"budget on probation",
			policy.Rule{Signal: policy.SignalSpendBudget},
			policy.Decision{Action: policy.ActionSuspend, Probation: true, Evidence: ev(policy.Evidence{}, 30, 50, 0.6, 0.5)},
			"$30.00 spent today against a $50.00 budget (on probation, suspends at 50% of it, $25.00)"},
		{"spike",
			policy.Rule{Signal: policy.SignalSpendSpike, Days: 7},
			policy.Decision{Action: policy.ActionAlert, Evidence: ev(policy.Evidence{}, 100, 14.48, 100/14.48, 5)},
			"$100.00 spent today, 6.9× its 7-day average of $14.48 (alerts at 5×)"},
		{"opt-outs over a day",
			policy.Rule{Signal: policy.SignalOptOutRate, Window: 24 * time.Hour},
			policy.Decision{Action: policy.ActionSuspend, Evidence: ev(policy.Evidence{}, 18, 300, 0.06, 0.05)},
			"opt-outs: 18 of 300 messages sent in the last 24 hours drew one, 6% (suspends at 5%)"},
		{"unsubscribed",
			policy.Rule{Signal: policy.SignalErrorCount, Codes: []int{21610}, Window: 24 * time.Hour},
			policy.Decision{Action: policy.ActionAlert, Evidence: ev(policy.Evidence{}, 7, 400, 7, 5)},
			"sends to unsubscribed recipients (21610): 7 messages in the last 24 hours (alerts at 5)"},
		{"since a reinstatement",
			policy.Rule{Signal: policy.SignalErrorRate, Codes: []int{30007}, Window: time.Hour},
			policy.Decision{Action: policy.ActionSuspend, Probation: true,
				Evidence: ev(policy.Evidence{From: at.Add(-11 * time.Minute), To: at}, 4, 40, 0.1, 0.025)},
			"30007 filtering: 10% of 40 finished messages since the reinstatement at 10:21 UTC (on probation, suspends at 2.5%)"},
	}
	for _, tt := range tests {
		if got := describe(tt.rule, tt.dec); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}
