package backtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// explainSpan is how far back an explanation draws each rule.
const explainSpan = 24 * time.Hour

// sparkWidth is the characters of a text sparkline: half-hour columns.
const sparkWidth = 48

// Explanation is one subaccount's current judgement, rule by rule, with
// each rule's values over the last 24 hours: why it is suspended, or how
// close it is.
type Explanation struct {
	// At is when it was judged; JudgedAt, when its rules were: At, or for
	// a subaccount not judged now (suspended), its last evaluation.
	At       time.Time `json:"at"`
	JudgedAt time.Time `json:"judged_at,omitzero"`
	// Daemon says the running daemon's policies judged it.
	Daemon   bool              `json:"daemon,omitempty"`
	Status   actions.StatusRow `json:"status"`
	Coverage traffic.Coverage  `json:"coverage"`
	// UsagePolled is the last successful read of its usage.
	UsagePolled time.Time       `json:"usage_polled,omitzero"`
	Rules       []ExplainedRule `json:"rules"`
	// Changes are its breaker changes of the last 24 hours.
	Changes []actions.Change `json:"changes,omitempty"`
	// Chart holds every rule's values over the last 24 hours.
	Chart *AccountChart `json:"chart,omitempty"`
}

// ExplainedRule is one rule's line: -status's view of it, and what an
// explanation adds.
type ExplainedRule struct {
	actions.RuleView
	// VolumeText is the window's volume against the minimum.
	VolumeText string `json:"volume_text"`
	// Coverage says whether the data the rule needs is complete:
	// "complete", or since when it is unknown.
	Coverage string `json:"coverage"`
	// LastDecision is the last thing the rule led to: an incident, a
	// suspension, a rail that stopped one.
	LastDecision string `json:"last_decision"`
	// ForText is the rule's `for` progress: evaluations over the trip
	// threshold in a row against how many it takes ("1/2"), or "fired".
	ForText string `json:"for_text"`
	// Sparkline is the rule's value over the last 24 hours, one character
	// a half hour, █ at the higher of its peak and its trip threshold; a
	// space where it was not judged.
	Sparkline string `json:"sparkline"`
}

// Explain judges one subaccount now with set, as -status does, and adds
// what a person needs to see why: each rule's data coverage, its last
// decision, and its values over the last 24 hours, replayed from the
// store as they happened (the audit log's suspensions, every rule's for
// and hysteresis). A subaccount that is not judged now, because it is
// suspended, is explained by its last judgement.
func Explain(ctx context.Context, st *store.Store, set *policy.Set, sid string, now time.Time, maxStaleness time.Duration) (*Explanation, error) {
	if set == nil {
		return nil, errors.New("explain: no policy set")
	}
	row, err := actions.StatusOf(ctx, st, set, sid, now, maxStaleness)
	if err != nil {
		return nil, err // it names the subaccount
	}
	from := now.Add(-explainSpan)
	req := RequestFor(set, from, now)
	req.SID = sid
	h, err := Load(ctx, st, req)
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	r, err := newRun(ctx, h, set, Options{From: from, To: now, Follow: true, Charts: true})
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	if err := r.replay(); err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	rep := r.report()
	a := r.accts[0]
	e := &Explanation{At: now, JudgedAt: now, Status: row, Coverage: a.h.Coverage, UsagePolled: a.h.UsagePolled}
	if charts := r.chartsOf(rep, []string{sid}); len(charts) > 0 {
		e.Chart = &charts[0]
		e.Changes = e.Chart.Changes
	}
	views := row.Rules
	if len(views) == 0 && a.lastJudged.After(from) {
		// Not judged now: its last judgement says why.
		e.JudgedAt = a.lastJudged
		byName := map[string]policy.Rule{}
		for _, rule := range r.rules {
			byName[rule.Name] = rule
		}
		for _, d := range a.decs {
			if d.Result != policy.Skipped {
				views = append(views, actions.View(byName[d.Rule], d, a.lastStates[d.Rule]))
			}
		}
	}
	// Read once for every rule; unreadable, each rule's incident alone
	// says its last decision.
	recent, _ := st.Audit(sid, 200)
	for _, rv := range views {
		er := ExplainedRule{RuleView: rv, VolumeText: volumeText(rv), Coverage: e.coverageText(r, rv),
			LastDecision: lastDecision(st, sid, rv.Rule, recent), ForText: fmt.Sprintf("%d/%d", min(rv.Consecutive, rv.For), rv.For)}
		if rv.Result == string(policy.Firing) {
			er.ForText = "fired"
		}
		if e.Chart != nil {
			for _, rc := range e.Chart.Rules {
				if rc.Rule.Name == rv.Rule {
					er.Sparkline = sparkline(rc.Points, sparkWidth)
				}
			}
		}
		if er.Sparkline == "" {
			er.Sparkline = strings.Repeat(" ", sparkWidth)
		}
		e.Rules = append(e.Rules, er)
	}
	return e, nil
}

// volumeText says a window's volume against its minimum.
func volumeText(rv actions.RuleView) string {
	switch rv.Signal {
	case policy.SignalErrorCount, policy.SignalNoServiceCount, policy.SignalParentOutbound, policy.SignalSpendBudget:
		return "-"
	case policy.SignalSpendSpike:
		return fmt.Sprintf("$%.2f (min $%.2f)", rv.Numerator, rv.MinVolume)
	}
	return fmt.Sprintf("%s (min %s)", trimFloat(rv.Denominator, 0), trimFloat(rv.MinVolume, 0))
}

// coverageText says whether the data a rule reads is complete at the
// judgement, and if not, since when it is unknown.
func (e *Explanation) coverageText(r *run, rv actions.RuleView) string {
	at := e.JudgedAt
	if rv.Signal == policy.SignalSpendBudget || rv.Signal == policy.SignalSpendSpike {
		stale := r.settings.UsageStaleness
		switch p := e.UsagePolled; {
		case p.IsZero():
			return "unknown: usage never read"
		case at.Sub(p) > stale:
			return "unknown since " + p.Add(stale).UTC().Format(textTime)
		}
		return "complete (usage read " + e.UsagePolled.UTC().Format(textTime) + ")"
	}
	c := e.Coverage
	fresh := at.Add(-r.staleness)
	switch {
	case c.Until.IsZero():
		return "unknown: the message log was never read"
	case c.Until.Before(fresh):
		return "unknown since " + c.Until.Add(r.staleness).UTC().Format(textTime)
	case !rv.From.IsZero() && rv.From.Before(c.From):
		return "unknown: complete only from " + c.From.UTC().Format(textTime)
	}
	return "complete"
}

// lastDecision says the last thing a rule led to for sid, from its
// incident and recent, sid's latest audit records (newest first),
// whichever is newer.
func lastDecision(st *store.Store, sid, rule string, recent []store.AuditRecord) string {
	var at time.Time
	text := "none"
	if inc, err := st.Incident(sid, rule); err == nil {
		at = inc.Opened
		text = fmt.Sprintf("fired %s", inc.Opened.UTC().Format(textTime))
		switch inc.State {
		case "suspended":
			text += ", suspended"
		case "resolved", "reinstated":
			if !inc.Resolved.IsZero() {
				at = inc.Resolved
				text = fmt.Sprintf("%s %s (fired %s)", inc.State, inc.Resolved.UTC().Format(textTime), inc.Opened.UTC().Format(textTime))
			}
		default:
			text += ", firing"
		}
	}
	for _, rec := range recent {
		if rec.Rule != rule || rec.At.Before(at) {
			continue
		}
		when := rec.At.UTC().Format(textTime)
		switch {
		case rec.Kind == actions.KindOutcome && rec.Action == actions.ActionSuspend && rec.Outcome == actions.OutcomeOK:
			return "suspended " + when
		case rec.Kind == actions.KindRefusal:
			rail, _, _ := strings.Cut(strings.TrimPrefix(rec.Detail, "rail="), ":")
			return fmt.Sprintf("blocked (%s) %s", rail, when)
		case rec.Kind == actions.KindDecision && rec.DryRun:
			return "would suspend (dry-run) " + when
		case rec.Kind == actions.KindOutcome && rec.Action == actions.ActionSuspend:
			return fmt.Sprintf("suspension %s %s", rec.Outcome, when)
		}
	}
	return text
}

// sparkline draws points in width characters, each the highest value
// judged in its share of the points, on eight levels up to the higher of
// the peak and the trip threshold.
func sparkline(points []ChartPoint, width int) string {
	levels := []rune("▁▂▃▄▅▆▇█")
	top := 0.0
	for _, p := range points {
		if p.Judged {
			top = math.Max(top, math.Max(p.Value, p.Trip))
		}
	}
	var b strings.Builder
	for c := range width {
		lo, hi := c*len(points)/width, (c+1)*len(points)/width
		v, ok := 0.0, false
		for _, p := range points[lo:hi] {
			if p.Judged {
				v, ok = math.Max(v, p.Value), true
			}
		}
		switch {
		case !ok:
			b.WriteRune(' ')
		case top <= 0:
			b.WriteRune(levels[0])
		default:
			b.WriteRune(levels[min(len(levels)-1, int(v/top*float64(len(levels)-1)+0.5))])
		}
	}
	return b.String()
}

// WriteText writes the explanation for a person: the subaccount's state,
// then one line per rule.
func (e *Explanation) WriteText(w io.Writer) error {
	s := e.Status
	fmt.Fprintf(w, "%s %s\n", s.SID, Clean(s.Name, 60))
	fmt.Fprintf(w, "  state:       %s (Twilio: %s)\n", s.State, s.Status)
	if s.Note != "" {
		fmt.Fprintf(w, "  attention:   %s: %s\n", s.Attention, Clean(s.Note, 400))
	}
	data := "never read"
	if !e.Coverage.Until.IsZero() {
		data = fmt.Sprintf("complete from %s to %s UTC", e.Coverage.From.UTC().Format(textTime), e.Coverage.Until.UTC().Format(textTime))
	}
	fmt.Fprintf(w, "  message log: %s\n", data)
	if !e.UsagePolled.IsZero() {
		fmt.Fprintf(w, "  usage:       read %s UTC\n", e.UsagePolled.UTC().Format(textTime))
	}
	prob := "none"
	if !s.ProbationUntil.IsZero() {
		prob = "until " + s.ProbationUntil.UTC().Format(textTime) + " UTC"
	}
	fmt.Fprintf(w, "  probation:   %s\n", prob)
	by := "the policies given (-policies)"
	if e.Daemon {
		by = "the running daemon's policies"
	}
	when := fmt.Sprintf("judged %s UTC by %s", e.JudgedAt.UTC().Format(textTime), by)
	if !e.JudgedAt.Equal(e.At) {
		when = fmt.Sprintf("not judged now; last judged %s UTC, shown by %s", e.JudgedAt.UTC().Format(textTime), by)
	}
	fmt.Fprintf(w, "  rules:       %s\n", when)
	for _, c := range e.Changes {
		switch {
		case c.Suspension():
			fmt.Fprintf(w, "  %s UTC  suspended by %s%s\n", c.At.UTC().Format(textTime), Clean(c.Actor, 60), ruleSuffix(c.Rule))
		case c.Reinstatement():
			fmt.Fprintf(w, "  %s UTC  reinstated by %s\n", c.ReinstatedAt.UTC().Format(textTime), Clean(c.Actor, 60))
		}
	}
	if len(e.Rules) == 0 {
		fmt.Fprintln(w, "\nNo rule judged it in the last 24 hours.")
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRESULT\tVALUE\tTHRESHOLD\tRESOLVE\tWINDOW\tVOLUME\tCOVERAGE\tFOR\tLAST DECISION\tLAST 24H (█ = trip or peak)")
	for _, r := range e.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Rule, r.Result, FormatValue(r.Signal, r.Value),
			FormatValue(r.Signal, r.Threshold), FormatValue(r.Signal, r.Resolve), r.Window, r.VolumeText, r.Coverage,
			r.ForText, r.LastDecision, r.Sparkline)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, r := range e.Rules {
		if r.Text != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.Rule, Clean(r.Text, 400))
		}
	}
	return nil
}

func ruleSuffix(rule string) string {
	if rule == "" {
		return ""
	}
	return " (" + rule + ")"
}
