package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// ErrNoPolicy means Judge was called while no valid policy set is loaded.
var ErrNoPolicy = errors.New("no policy set loaded")

// Incident states (store.Incident.State).
const (
	incidentFiring     = "firing"
	incidentSuspended  = "suspended"
	incidentResolved   = "resolved"
	incidentReinstated = "reinstated"
)

// blindRule is the incident key of "sentinel cannot judge this account".
// Policy rule names start with a letter or digit, so it cannot collide.
const blindRule = "(blind)"

// usageDays is how many UTC days of usage a Subject carries, today included.
const usageDays = 8

// Summary reports one Judge cycle.
type Summary struct {
	Accounts     int      // accounts evaluated
	Firing       int      // decisions firing
	Suspended    []string // subaccounts suspended in this cycle
	WouldSuspend []string // dry-run: would have been suspended
	Blocked      []string // stopped by a safety rail for the first time in their incident
	Refused      []string // Twilio refused the suspension
	Blind        []string // accounts whose suspension rules cannot be judged on fresh data
	Systemic     bool     // the blast-radius limit was reached
}

// fleet counts what the blast-radius rail needs.
type fleet struct {
	active int // subaccounts sentinel could suspend: active, or suspended by sentinel itself
	open   int // subaccounts sentinel itself suspended, open now (a person's suspensions are not counted)
}

// count counts an account with breaker br in state in the fleet.
func (fl *fleet) count(acct *store.Account, br store.Breaker, state string) {
	if active, open := InFleet(acct.Parent, acct.Status, state, br.Manual); active {
		fl.active++
		if open {
			fl.open++
		}
	}
}

// Judge runs one evaluation and action cycle over every account in the
// store: evaluate the current policy set, persist the rule states, tell
// people about incidents, and pass the suspension candidates of the whole
// fleet through the safety pipeline. Errors for one account do not stop the
// others; they are joined into the returned error.
//
// It works in phases, reading and writing in bulk (see the package doc):
// sync every breaker with its Twilio status; read the snapshot; evaluate
// every account in one scan; store the rule states that changed in one
// transaction; handle incidents account by account; enforce.
func (a *Actor) Judge(ctx context.Context) (Summary, error) {
	return a.judge(ctx, nil)
}

// Nudge judges the given accounts at once, on pushed evidence that has just
// been stored, between scheduled Judges. Pushed evidence can make a rule
// fire (and so suspend, through the same incidents, rails and pipeline as
// Judge, the fleet counted whole), but only a complete poll can prove a
// window quiet: a rule that would resolve, go unknown or drop its count
// keeps its state until the next Judge, and no blind alert is told here. A
// rule's `for` counts at most one evaluation per scheduled interval
// (policy.Subject.AdvanceAfter). Actions of unknown outcome are left to the
// next Judge to reconcile; their accounts are not judged until then.
func (a *Actor) Nudge(ctx context.Context, sids []string) (Summary, error) {
	if sids == nil {
		sids = []string{}
	}
	return a.judge(ctx, sids)
}

// judge is Judge over every account (only nil) or Nudge over only.
func (a *Actor) judge(ctx context.Context, only []string) (Summary, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sum Summary
	push := only != nil
	wanted := make(map[string]bool, len(only))
	for _, sid := range only {
		wanted[sid] = true
	}
	set := a.policies()
	if set == nil {
		return sum, fmt.Errorf("judge: %w", ErrNoPolicy)
	}
	var errs []error
	// Actions of unknown outcome are reconciled once a scheduled cycle: a
	// Nudge runs as often as events arrive, and asking Twilio each time,
	// while it does not answer, multiplies the requests of the budget the
	// polls share. Their accounts wait for it either way.
	if !push {
		if err := a.reconcile(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	accts, err := a.st.Accounts()
	if err != nil {
		return sum, fmt.Errorf("judge: %w", err)
	}
	cancelled := func(err error) (Summary, error) {
		return sum, errors.Join(append(errs, fmt.Errorf("judge: %w", err))...)
	}

	// An account whose last action's outcome is still unknown (Twilio
	// could not be asked) is left alone until it is known: its breaker and
	// status are what they were before that action.
	unknown := map[string]bool{}
	if intents, err := a.st.OpenIntents(); err != nil {
		errs = append(errs, err)
	} else {
		for _, in := range intents {
			unknown[in.Subaccount] = true
		}
	}
	snap := &snapshot{st: a.st}
	snap.loadBreakers()
	var fl fleet
	var vs []*verdict
	for i := range accts {
		if err := ctx.Err(); err != nil {
			return cancelled(err)
		}
		if unknown[accts[i].SID] {
			if !push || wanted[accts[i].SID] {
				errs = append(errs, fmt.Errorf("judge %s: %w", accts[i].SID, ErrUnreconciled))
			}
			continue
		}
		if push && !wanted[accts[i].SID] {
			// Counted in the fleet (the blast radius is the fleet's) as
			// stored, not judged: syncing it with Twilio is the Judge's,
			// once a cycle, not every time events arrive. A status the
			// store has and the breaker does not know yet counts it as
			// an open suspension, or not as active: never a larger budget.
			br, err := snap.breaker(accts[i].SID)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fl.count(&accts[i], br, stateOf(br))
			continue
		}
		v, err := a.syncAccount(ctx, set, snap, &accts[i], &fl)
		if err != nil {
			errs = append(errs, err)
		}
		if v != nil {
			v.allow = a.allowance(v.acct.SID)
			vs = append(vs, v)
		}
	}

	now := a.now()
	// A `for` counts one evaluation per scheduled interval: a scheduled
	// Judge counts unless something counted since the last one; the first
	// of a run unless something counted within the last interval (a Nudge
	// of this run, or the last Judge of the run before a restart: the
	// counts are stored); a Nudge unless something counted within the last
	// interval either. With Config.EachRunCounts (-once), the first Judge
	// of a run is its one scheduled evaluation, and counts.
	advanceAfter := a.scheduled
	if floor := now.Add(-a.cfg.Interval); advanceAfter.IsZero() || (push && floor.Before(advanceAfter)) {
		advanceAfter = floor
	}
	if !push && a.scheduled.IsZero() && a.cfg.EachRunCounts {
		advanceAfter = a.started
	}
	if !push {
		defer func() { a.scheduled = now }()
	}
	days := max(usageDays, set.UsageDays())
	today := now.UTC()
	snap.loadRest(today.AddDate(0, 0, 1-days).Format(time.DateOnly), today.Format(time.DateOnly))
	if err := a.evaluate(ctx, set, snap, vs, now, advanceAfter, only); err != nil {
		errs = append(errs, fmt.Errorf("judge: %w", err))
	}
	if err := ctx.Err(); err != nil {
		return cancelled(err)
	}
	if err := a.saveStates(vs); err != nil {
		errs = append(errs, err)
	}

	rules := map[string]policy.Rule{}
	for _, r := range set.Rules() {
		rules[r.Name] = r
	}
	var cands []candidate
	var blind []slack.Event
	for _, v := range vs {
		if err := ctx.Err(); err != nil {
			return cancelled(err)
		}
		cs, ev, err := a.judgeAccount(ctx, snap, v, rules, now, push, &sum)
		if err != nil {
			errs = append(errs, err)
		}
		cands = append(cands, cs...)
		if ev != nil {
			blind = append(blind, *ev)
		}
	}
	if !push {
		a.m.blind.Set(float64(len(sum.Blind)))
		a.tellBlind(ctx, blind, sum.Accounts, now)
	}
	if err := a.enforce(ctx, set, cands, fl, &sum); err != nil {
		errs = append(errs, err)
	}
	return sum, errors.Join(errs...)
}

// syncAccount syncs one account's breaker with its Twilio status and counts
// it in the fleet. It returns the account to judge, or nil for one that is
// suspended or closed.
func (a *Actor) syncAccount(ctx context.Context, set *policy.Set, snap *snapshot, acct *store.Account, fl *fleet) (*verdict, error) {
	sid := acct.SID
	br, err := snap.breaker(sid)
	if err != nil {
		return nil, err
	}
	var errs []error
	if nb, err := a.syncStatus(ctx, acct, br, set); err != nil {
		errs = append(errs, err) // judge with what we know
	} else {
		br = nb
	}
	state := stateOf(br)
	a.m.breakers.set(sid, state)
	fl.count(acct, br, state)
	if acct.Status != statusActive || suspendedState(state) {
		// Suspended or closed: it sends nothing, and judging it would only
		// resolve its incidents while it cannot send.
		return nil, errors.Join(errs...)
	}
	return &verdict{acct: acct, br: br}, errors.Join(errs...)
}

// judgeAccount handles the incidents of one evaluated account. It returns
// the account's suspension candidates, and the blind alert to send for it,
// if any (see tellBlind). On pushed evidence (push) the blind incident is
// left to the next Judge, which tells it: opened here, it would be open
// and already notified when the Judge looked, and never told.
func (a *Actor) judgeAccount(ctx context.Context, snap *snapshot, v *verdict, rules map[string]policy.Rule, now time.Time, push bool, sum *Summary) ([]candidate, *slack.Event, error) {
	if v.err != nil {
		return nil, nil, v.err
	}
	if !v.done {
		return nil, nil, nil
	}
	sum.Accounts++
	acct := *v.acct
	rails := a.cfg.rails()
	rails.MaxStaleness += v.allow
	stale := rails.Stale(v.cov, now)
	var errs []error
	var cands []candidate
	var unjudged []string // suspension rules sentinel cannot judge on fresh data
	for _, j := range v.decs {
		d, p := j.d, j.prev
		inc, err := a.track(ctx, acct, d, rules[d.Rule], now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if d.Result == policy.Firing {
			sum.Firing++
		}
		if d.Action != policy.ActionSuspend {
			continue
		}
		switch {
		case d.Result == policy.Firing && stale:
			unjudged = append(unjudged, fmt.Sprintf("%s is firing", d.Rule))
		case d.Result == policy.Unknown && (p.Firing || p.Consecutive > 0):
			unjudged = append(unjudged, fmt.Sprintf("%s was over its threshold and is now unknown: %s", d.Rule, d.Evidence.Reason))
		}
		if d.Result == policy.Firing {
			cands = append(cands, candidate{acct: acct, br: v.br, dec: d, inc: inc, stale: stale,
				rule: rules[d.Rule], coverage: v.cov})
		}
	}
	v.decs = nil
	// Stale data is blindness whether or not a rule was near its threshold:
	// a subaccount that sentinel cannot read could be doing anything (and
	// its message rules are Unknown: see newEvaluator). A subaccount seen
	// for the first time gets the staleness bound to be read once.
	blind := len(unjudged) > 0 || (stale && (!v.cov.Until.IsZero() || now.Sub(acct.FirstSeen) > rails.MaxStaleness))
	var ev *slack.Event
	if !push && (blind || snap.maybeBlind(acct.SID)) {
		var err error
		if ev, err = a.blindAlert(acct, blind, unjudged, v.cov, now); err != nil {
			errs = append(errs, err)
		}
	}
	if blind {
		sum.Blind = append(sum.Blind, acct.SID)
	}
	return cands, ev, errors.Join(errs...)
}

// track opens, reminds and resolves the incident of one decision and
// returns it as it is afterwards.
func (a *Actor) track(ctx context.Context, acct store.Account, d policy.Decision, rule policy.Rule, now time.Time) (store.Incident, error) {
	inc, err := a.st.Incident(acct.SID, d.Rule)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return inc, err
	}
	open := err == nil && (inc.State == incidentFiring || inc.State == incidentSuspended)
	// A person's decision (from Slack) silences reminders: keeping it
	// suspended for good, an acknowledgement while the rule's severity
	// stays what it was acknowledged at. A new severity is news: the
	// acknowledgement lapses and the reminder goes out at once.
	lapsed := inc.Decision.What == decisionAcknowledged && inc.Decision.Severity != d.Severity
	decided := inc.Decision.What != "" && !lapsed
	kind := ""
	switch {
	case d.Result == policy.Firing && !open:
		inc = store.Incident{Subaccount: acct.SID, Rule: d.Rule, Opened: now, LastNotified: now, State: incidentFiring}
		kind = slack.KindFiring
	case d.Result == policy.Firing && lapsed:
		inc.Decision = store.Decision{}
		inc.LastNotified = now
		kind = slack.KindReminder
	case d.Result == policy.Firing && !decided && now.Sub(inc.LastNotified) >= a.cfg.Reminder:
		inc.LastNotified = now
		kind = slack.KindReminder
	case d.Result == policy.Resolved && open:
		inc.State, inc.Resolved = incidentResolved, now
		kind = slack.KindResolved
	default:
		return inc, nil
	}
	if err := a.st.PutIncident(inc); err != nil {
		return inc, err
	}
	ev := decisionEvent(kind, acct, d, rule, inc, now)
	switch {
	case kind == slack.KindResolved:
		ev.Severity = slack.SeverityInfo
	case d.Action == policy.ActionSuspend && d.Protected:
		ev.Action = "alert only: protected account, never suspended"
		ev.Offer = slack.OfferAlert
	case d.Action == policy.ActionSuspend && (d.DryRun || a.cfg.DryRun):
		ev.Action = "suspension rule in dry-run"
	case d.Action == policy.ActionAlert && kind != slack.KindResolved:
		ev.Action = "alert only: the subaccount keeps sending"
		ev.Offer = slack.OfferAlert
	}
	a.notify(ctx, ev)
	return inc, nil
}

// blindAlert keeps an account's blind incident: opened when sentinel
// cannot judge the account on fresh data, closed (silently) when it can
// again. It returns the alert to send: one when the incident opens, and a
// reminder each reminder period while a suspension rule that was over its
// threshold cannot be judged (rules); staleness alone is told once.
func (a *Actor) blindAlert(acct store.Account, blind bool, rules []string, cov traffic.Coverage, now time.Time) (*slack.Event, error) {
	inc, err := a.st.Incident(acct.SID, blindRule)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	open := err == nil && inc.State == incidentFiring
	if !blind {
		if open {
			inc.State, inc.Resolved = incidentResolved, now
			return nil, a.st.PutIncident(inc)
		}
		return nil, nil
	}
	if open && (len(rules) == 0 || now.Sub(inc.LastNotified) < a.cfg.Reminder) {
		return nil, nil
	}
	if !open {
		inc = store.Incident{Subaccount: acct.SID, Rule: blindRule, Opened: now, State: incidentFiring}
	}
	inc.LastNotified = now
	if err := a.st.PutIncident(inc); err != nil {
		return nil, err
	}
	covered := "its message log has not been read yet"
	if !cov.Until.IsZero() {
		covered = fmt.Sprintf("its message log is known complete only until %s (%s ago)",
			cov.Until.UTC().Format(time.RFC3339), now.Sub(cov.Until).Round(time.Second))
	}
	detail := covered
	if len(rules) > 0 {
		detail += "; " + strings.Join(rules, "; ")
	}
	return &slack.Event{
		Kind:       slack.KindBlind,
		Severity:   slack.SeverityWarning,
		Subaccount: acct.SID,
		Name:       acct.FriendlyName,
		Action:     "not suspending on stale data",
		Detail:     detail,
		At:         now,
	}, nil
}

// foldBlind returns how many blind alerts one cycle sends one by one; past
// it they are folded into one: many subaccounts going blind together is
// Twilio, the network or sentinel itself, and one alert says so better
// than hundreds.
func foldBlind(judged int) int { return max(3, judged/10) }

// tellBlind sends a cycle's blind alerts (see foldBlind).
func (a *Actor) tellBlind(ctx context.Context, evs []slack.Event, judged int, now time.Time) {
	if len(evs) <= foldBlind(judged) {
		for _, ev := range evs {
			a.notify(ctx, ev)
		}
		return
	}
	names := make([]string, 0, 10)
	for _, ev := range evs[:min(len(evs), 10)] {
		names = append(names, ev.Subaccount)
	}
	more := ""
	if len(evs) > len(names) {
		more = fmt.Sprintf(" and %d more", len(evs)-len(names))
	}
	a.notify(ctx, slack.Event{
		Kind:     slack.KindBlind,
		Severity: slack.SeverityCritical,
		Action:   "not suspending on stale data",
		Detail: fmt.Sprintf("%d of %d subaccounts went blind at once: their message logs could not be read completely "+
			"within -max-staleness. That is usually Twilio, the network or sentinel itself (see sentinel_poll_failures_total "+
			"and the log), not the subaccounts. Blind: %s%s", len(evs), judged, strings.Join(names, ", "), more),
		At: now,
	})
}

// decisionEvent fills an event from a decision's evidence.
func decisionEvent(kind string, acct store.Account, d policy.Decision, rule policy.Rule, inc store.Incident, now time.Time) slack.Event {
	ev := d.Evidence
	sev := d.Severity
	if sev == "" {
		sev = slack.SeverityInfo
	}
	return slack.Event{
		Kind:        kind,
		Severity:    sev,
		Subaccount:  acct.SID,
		Name:        acct.FriendlyName,
		Rule:        d.Rule,
		Opened:      inc.Opened,
		Signal:      ev.Signal,
		Unit:        unitOf(rule.Signal),
		Measure:     describe(rule, d),
		Value:       ev.Value,
		Threshold:   ev.Threshold,
		Numerator:   ev.Numerator,
		Denominator: ev.Denominator,
		From:        ev.From,
		To:          ev.To,
		Examples:    ev.Examples,
		Reason:      d.Description,
		At:          now,
	}
}

// unitOf returns the slack unit of a signal's values.
func unitOf(signal string) string {
	switch signal {
	case policy.SignalErrorCount, policy.SignalNoServiceCount, policy.SignalParentOutbound:
		return slack.UnitCount
	}
	return slack.UnitRatio
}

// evidence renders a decision's evidence for the audit log.
func evidence(d policy.Decision, rule policy.Rule) string {
	ev := d.Evidence
	var b strings.Builder
	// In words first, for -status and -history; then the exact numbers.
	b.WriteString(describe(rule, d))
	b.WriteString(" [")
	if unitOf(rule.Signal) == slack.UnitRatio {
		fmt.Fprintf(&b, "%s %.4g (%g/%g), trip %.4g", ev.Signal, ev.Value, ev.Numerator, ev.Denominator, ev.Threshold)
	} else {
		fmt.Fprintf(&b, "%s %g, trip %g", ev.Signal, ev.Value, ev.Threshold)
	}
	if !ev.From.IsZero() {
		fmt.Fprintf(&b, " over [%s, %s)", ev.From.UTC().Format(time.RFC3339), ev.To.UTC().Format(time.RFC3339))
	}
	if d.Probation {
		b.WriteString(", probation thresholds")
	}
	b.WriteString("]")
	if len(ev.Examples) > 0 {
		fmt.Fprintf(&b, "; examples %s", strings.Join(ev.Examples, ","))
	}
	return b.String()
}
