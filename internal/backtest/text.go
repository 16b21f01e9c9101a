package backtest

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"sentinel/internal/policy"
)

// textTime is how the text report writes a time (UTC).
const textTime = "2006-01-02 15:04"

// WriteText writes the report for a person: one line per subaccount and
// rule that fired, with its first firing, its would-be suspension or what
// stopped it, and its peak against the threshold; then the summary set
// against what actually happened. Friendly names are written on one line,
// without control characters: they are the customers' own.
func (r *Report) WriteText(w io.Writer) error {
	step := "every " + r.Step
	if r.Step == "" {
		step = "at given times"
	}
	fmt.Fprintf(w, "Backtest %s to %s UTC, %s: %d evaluations of %d accounts, %d rules.\n",
		r.From.UTC().Format(textTime), r.To.UTC().Format(textTime), step, r.Evaluations, r.Judged, len(r.Rules))
	if len(r.Subaccounts) == 0 {
		fmt.Fprintln(w, "\nNo rule would have fired.")
	} else {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SUBACCOUNT\tNAME\tRULE\tFIRED\tFIRST FIRED (UTC)\tWOULD SUSPEND (UTC)\tPEAK")
		for _, s := range r.Subaccounts {
			for _, rr := range s.Rules {
				fired := strconv.Itoa(len(rr.FiredAt))
				if len(rr.FiredAt) == 1 {
					fired = "once"
				} else {
					fired += " times"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.SID, Clean(s.Name, 30), rr.Rule, fired,
					rr.FiredAt[0].UTC().Format(textTime), r.outcomeText(rr), peakText(r.rule(rr.Rule), rr.Peak))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	sum := r.Summary
	fmt.Fprintf(w, "\nWould suspend: %s (%s). Alerts: %s. Actually suspended by sentinel in the same period: %s (%s).\n",
		plural(sum.WouldSuspend, "suspension"), plural(len(sum.OnlyBacktest)+len(sum.Both), "subaccount"),
		plural(sum.Alerts, "firing"), plural(sum.ActuallySuspended, "suspension"),
		plural(len(sum.OnlyActual)+len(sum.Both), "subaccount"))
	if len(sum.OnlyBacktest)+len(sum.Both)+len(sum.OnlyActual) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nAgainst the audit log (+ only in the backtest, - only in reality, = both):")
	names := map[string]string{}
	for _, a := range r.Actual {
		names[a.SID] = a.Name
	}
	for _, s := range r.Subaccounts {
		names[s.SID] = s.Name
	}
	backtest := r.suspensions()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(mark, sid, what string) {
		fmt.Fprintf(tw, "  %s %s\t%s\t%s\n", mark, sid, Clean(names[sid], 30), what)
	}
	for _, sid := range sum.OnlyBacktest {
		line("+", sid, "would be suspended "+strings.Join(backtest[sid], ", ")+"; sentinel did not suspend it")
	}
	for _, sid := range sum.OnlyActual {
		line("-", sid, "suspended by sentinel "+strings.Join(r.actual(sid), ", ")+"; the backtest would not suspend it")
	}
	for _, sid := range sum.Both {
		line("=", sid, "suspended in both: backtest "+strings.Join(backtest[sid], ", ")+"; actually "+strings.Join(r.actual(sid), ", "))
	}
	return tw.Flush()
}

// suspensions returns the replay's suspensions by subaccount, as text; a
// subaccount it never suspended has none.
func (r *Report) suspensions() map[string][]string {
	out := map[string][]string{}
	for _, s := range r.Subaccounts {
		for _, rr := range s.Rules {
			for _, at := range rr.SuspendedAt {
				out[s.SID] = append(out[s.SID], at.UTC().Format(textTime)+" ("+rr.Rule+")")
			}
		}
	}
	return out
}

// actual returns sid's actual suspensions in the period, as text.
func (r *Report) actual(sid string) []string {
	var out []string
	for _, a := range r.Actual {
		if a.SID == sid {
			out = append(out, a.At.UTC().Format(textTime)+" ("+a.Rule+")")
		}
	}
	return out
}

// rule returns the rule named name.
func (r *Report) rule(name string) policy.Rule {
	for _, x := range r.Rules {
		if x.Name == name {
			return x
		}
	}
	return policy.Rule{Name: name}
}

// outcomeText is the WOULD SUSPEND cell.
func (r *Report) outcomeText(rr RuleResult) string {
	if rr.WouldSuspendAt != nil {
		s := rr.WouldSuspendAt.UTC().Format(textTime)
		if n := len(rr.SuspendedAt); n > 1 {
			s += fmt.Sprintf(" (and %d more)", n-1)
		}
		return s
	}
	if len(rr.DryRunAt) > 0 {
		return rr.DryRunAt[0].UTC().Format(textTime) + " in dry-run: not acted on"
	}
	return rr.Outcome
}

// peakText writes a peak against its threshold: "9.1% at 03-02 10:31
// (trip 5%)".
func peakText(rule policy.Rule, p Peak) string {
	if p.At.IsZero() {
		return "never judged"
	}
	return fmt.Sprintf("%s at %s (trip %s)", FormatValue(rule.Signal, p.Value), p.At.UTC().Format("01-02 15:04"),
		FormatValue(rule.Signal, p.Threshold))
}

// FormatValue writes a rule's value as its signal reads: a percentage for
// rates and the budget, a multiple for spikes, a number for counts.
func FormatValue(signal string, v float64) string {
	switch signal {
	case policy.SignalErrorCount, policy.SignalNoServiceCount, policy.SignalParentOutbound:
		return trimFloat(v, 2)
	case policy.SignalSpendSpike:
		return trimFloat(v, 1) + "×"
	}
	p := v * 100
	if p != 0 && math.Abs(p) < 0.1 {
		return strconv.FormatFloat(p, 'g', 2, 64) + "%"
	}
	return trimFloat(p, 1) + "%"
}

func trimFloat(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Clean makes a customer's string safe to print on a terminal: one line,
// control and formatting characters (escape sequences, bidirectional
// overrides) replaced, at most max runes.
func Clean(s string, max int) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar:
			r = '?'
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		if n >= max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
