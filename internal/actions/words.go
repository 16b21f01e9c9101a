package actions

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"sentinel/internal/policy"
)

// codeWords names the error codes a compliance person knows by what they
// mean. Any other code is "error N".
var codeWords = map[int]string{
	30007: "30007 filtering",
	21610: "sends to unsubscribed recipients (21610)",
	30004: "30004 blocked",
	30034: "30034 unregistered 10DLC sender",
	30032: "30032 unverified toll-free sender",
	30003: "30003 unreachable",
	30005: "30005 unknown handset",
	30006: "30006 landline",
	30008: "30008 unknown error",
}

// codesText names a rule's codes in plain words.
func codesText(codes []int) string {
	if len(codes) == 1 {
		if w, ok := codeWords[codes[0]]; ok {
			return w
		}
		return fmt.Sprintf("error %d", codes[0])
	}
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c)
	}
	return "errors " + strings.Join(parts, "/")
}

// describe says a decision's evidence in plain words, with the threshold and
// what crossing it does: "30007 filtering: 9.1% of 220 finished messages in
// the last hour (suspends at 5%)". It is what Slack and -status show; the
// audit log keeps the raw numbers (evidence).
func describe(r policy.Rule, d policy.Decision) string {
	ev := d.Evidence
	span := windowText(r, d)
	does := "alerts at"
	if d.Action == policy.ActionSuspend && !d.Protected && !d.DryRun {
		does = "suspends at"
	}
	if d.Probation {
		does = "on probation, " + does
	}
	n, den := count(ev.Numerator), count(ev.Denominator)
	switch r.Signal {
	case policy.SignalErrorRate:
		return fmt.Sprintf("%s: %s of %s finished messages %s (%s %s)", codesText(r.Codes), pct(ev.Value), den, span, does, pct(ev.Threshold))
	case policy.SignalErrorCount:
		return fmt.Sprintf("%s: %s messages %s (%s %s)", codesText(r.Codes), n, span, does, count(ev.Threshold))
	case policy.SignalFailureRate:
		return fmt.Sprintf("%s of %s finished messages failed or undelivered %s (%s %s)", pct(ev.Value), den, span, does, pct(ev.Threshold))
	case policy.SignalOptOutRate:
		return fmt.Sprintf("opt-outs: %s of %s messages sent %s drew one, %s (%s %s)", n, den, span, pct(ev.Value), does, pct(ev.Threshold))
	case policy.SignalNoServiceRate:
		return fmt.Sprintf("%s of %s messages sent without a Messaging Service %s (%s %s)", pct(ev.Value), den, span, does, pct(ev.Threshold))
	case policy.SignalNoServiceCount:
		return fmt.Sprintf("%s messages sent without a Messaging Service %s (%s %s)", n, span, does, count(ev.Threshold))
	case policy.SignalParentOutbound:
		return fmt.Sprintf("%s messages sent from the parent account %s (%s %s)", n, span, does, count(ev.Threshold))
	case policy.SignalSpendBudget:
		budget := ev.Denominator
		s := fmt.Sprintf("%s spent today against a %s budget", money(ev.Numerator), money(budget))
		if d.Probation || ev.Threshold != 1 {
			s += fmt.Sprintf(" (%s %s of it, %s)", does, pct(ev.Threshold), money(budget*ev.Threshold))
		} else {
			s += fmt.Sprintf(" (%s the budget)", does)
		}
		return s
	case policy.SignalSpendSpike:
		return fmt.Sprintf("%s spent today, %s its %d-day average of %s (%s %s×)", money(ev.Numerator), times(ev.Value), r.Days, money(ev.Denominator), does, count(ev.Threshold))
	}
	return fmt.Sprintf("%s: %s (%s %s)", r.Signal, count(ev.Value), does, count(ev.Threshold))
}

// windowText says over what a message rule measured: "in the last hour",
// "in the last 24 hours", "since the reinstatement at 10:21 UTC".
func windowText(r policy.Rule, d policy.Decision) string {
	ev := d.Evidence
	if r.Window == 0 {
		return "today"
	}
	if !ev.From.IsZero() && !ev.To.IsZero() && ev.To.Sub(ev.From) < r.Window-policyBucket && d.Probation {
		return "since the reinstatement at " + ev.From.UTC().Format("15:04 UTC")
	}
	return "in the last " + spanText(r.Window)
}

// policyBucket is the margin by which a window's measured span falls short
// of its length through bucket alignment.
const policyBucket = 5 * time.Minute

// spanText says a window's length: "hour", "24 hours", "7 days", "90 minutes".
func spanText(w time.Duration) string {
	switch {
	case w == time.Hour:
		return "hour"
	case w == 24*time.Hour:
		return "24 hours"
	case w%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", w/(24*time.Hour))
	case w%time.Hour == 0:
		return fmt.Sprintf("%d hours", w/time.Hour)
	case w%time.Minute == 0:
		return fmt.Sprintf("%d minutes", w/time.Minute)
	}
	return policy.FormatDuration(w)
}

// pct writes a ratio as a percentage with one decimal where it matters:
// "9.1%", "5%", "0.4%".
func pct(v float64) string {
	p := v * 100
	if p == math.Trunc(p) {
		return strconv.FormatFloat(p, 'f', 0, 64) + "%"
	}
	if p < 0.1 {
		return strconv.FormatFloat(p, 'g', 2, 64) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// count writes a whole number without decimals, others with up to two.
func count(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strings.TrimRight(strings.TrimRight(strconv.FormatFloat(v, 'f', 2, 64), "0"), ".")
}

// times writes a multiple: "6.9×".
func times(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "×" }

// money writes an amount with cents: "$14.48".
func money(v float64) string { return "$" + strconv.FormatFloat(v, 'f', 2, 64) }
