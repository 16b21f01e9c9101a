package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
)

// candidate is one firing suspension rule for one account.
type candidate struct {
	acct     store.Account
	br       store.Breaker
	dec      policy.Decision
	inc      store.Incident
	rule     policy.Rule
	stale    bool
	coverage traffic.Coverage
}

// sortCandidates sorts candidates worst offender first (CompareCandidates),
// so that a limited budget goes to the worst offenders and the same data
// always gives the same result.
func sortCandidates(cands []candidate) {
	slices.SortStableFunc(cands, func(x, y candidate) int {
		return CompareCandidates(x.acct.SID, x.dec, y.acct.SID, y.dec)
	})
}

// stage is one step of the suspension pipeline. It returns false to stop the
// candidate there.
type stage struct {
	name string
	run  func(ctx context.Context, c *candidate) (bool, error)
}

// enforce passes the cycle's candidates, in order, through the pipeline.
func (a *Actor) enforce(ctx context.Context, set *policy.Set, cands []candidate, fl fleet, sum *Summary) error {
	if len(cands) == 0 {
		return nil
	}
	sortCandidates(cands)
	now := a.now()
	var errs []error

	hour, err := a.suspensionsSince(now.Add(-time.Hour))
	if err != nil {
		// Without the count the per-hour rail cannot be honoured: act as if
		// it were reached.
		errs = append(errs, err)
		hour = a.cfg.MaxPerHour
	}
	rails := a.cfg.rails()
	maxOpen := rails.MaxOpen(fl.active)
	suspended := 0 // in this cycle, including outcomes still unknown
	done := map[string]bool{}
	var blocked []string

	block := func(c *candidate, rail, why string) (bool, error) {
		isNew, err := a.block(ctx, c, rail, why, now)
		if isNew {
			sum.Blocked = append(sum.Blocked, c.acct.SID)
			if rail == RailPerHour || rail == RailFraction {
				blocked = append(blocked, c.acct.SID)
			}
		}
		return false, err
	}
	stages := []stage{
		{"parent", func(ctx context.Context, c *candidate) (bool, error) {
			if !c.acct.Parent {
				return true, nil
			}
			return block(c, RailParent, "never the parent account, whatever a rule says")
		}},
		{"dedup", func(ctx context.Context, c *candidate) (bool, error) {
			if done[c.acct.SID] || suspendedState(stateOf(c.br)) {
				return false, nil
			}
			// A suspension Twilio refused (21476 parent suspended, 20404,
			// ...) is tried again at most once per reminder period, not
			// every cycle. 21478 and 21479 change the breaker instead.
			since := c.inc.Opened
			if t := now.Add(-a.cfg.Reminder); t.After(since) {
				since = t
			}
			refused, err := a.recorded(c.acct.SID, c.dec.Rule, since, func(r store.AuditRecord) bool {
				return r.Kind == KindOutcome && r.Action == ActionSuspend && r.Outcome == OutcomeRefused
			})
			return !refused && err == nil, err
		}},
		{"protected", func(ctx context.Context, c *candidate) (bool, error) {
			if !c.dec.Protected && stateOf(c.br) != StateProtected && !set.Protected(c.acct.SID, c.acct.FriendlyName) {
				return true, nil
			}
			return block(c, RailProtected, "protected account: alerts only")
		}},
		{"closed", func(ctx context.Context, c *candidate) (bool, error) {
			return c.acct.Status != statusClosed, nil
		}},
		{"stale", func(ctx context.Context, c *candidate) (bool, error) {
			if !c.stale {
				return true, nil
			}
			done[c.acct.SID] = true
			return block(c, RailStale, fmt.Sprintf("no suspension on stale data: message log known complete only until %s",
				c.coverage.Until.UTC().Format(time.RFC3339)))
		}},
		{"dry-run", func(ctx context.Context, c *candidate) (bool, error) {
			if !a.cfg.DryRun && !c.dec.DryRun {
				return true, nil
			}
			done[c.acct.SID] = true
			return false, a.dryRun(ctx, c, now, sum)
		}},
		{"twilio status", func(ctx context.Context, c *candidate) (bool, error) {
			live, err := a.tw.FetchAccount(ctx, c.acct.SID)
			if err != nil {
				return false, fmt.Errorf("read status of %s before suspending: %w", c.acct.SID, err)
			}
			if live.Status == statusActive {
				return true, nil
			}
			// Already suspended or closed in Twilio: nothing to send.
			done[c.acct.SID] = true
			if err := a.st.SetAccountStatus(c.acct.SID, live.Status, now); err != nil {
				return false, err
			}
			c.acct.Status = live.Status
			_, err = a.syncStatus(ctx, &c.acct, c.br, set)
			return false, err
		}},
		{"blast radius", func(ctx context.Context, c *candidate) (bool, error) {
			rail, why := rails.Blast(hour+suspended, fl.open+suspended, fl.active)
			if rail == "" {
				return true, nil
			}
			done[c.acct.SID] = true // one block per account, not per rule
			return block(c, rail, why)
		}},
	}

	for i := range cands {
		c := &cands[i]
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		pass := true
		for _, s := range stages {
			ok, err := s.run(ctx, c)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s %s: %w", s.name, c.acct.SID, c.dec.Rule, err))
			}
			if !ok {
				pass = false
				break
			}
		}
		if !pass {
			continue
		}
		done[c.acct.SID] = true
		o := order{acct: c.acct, br: c.br, rule: c.dec.Rule, actor: ActorSentinel, reason: c.dec.Description,
			detail: evidence(c.dec, c.rule), event: decisionEvent("", c.acct, c.dec, c.rule, c.inc, now)}
		res, err := a.suspend(ctx, o)
		if err != nil && !errors.Is(err, ErrRefused) { // a refusal is reported, not an error of the cycle
			errs = append(errs, err)
		}
		switch res {
		case resultDone, resultUnknown:
			suspended++
			sum.Suspended = append(sum.Suspended, c.acct.SID)
		case resultRefused:
			sum.Refused = append(sum.Refused, c.acct.SID)
		}
	}

	if len(blocked) > 0 {
		tripped := map[string]bool{}
		for i := range cands {
			tripped[cands[i].acct.SID] = true
		}
		sum.Systemic = true
		a.notify(ctx, slack.Event{
			Kind:     slack.KindSystemic,
			Severity: slack.SeverityCritical,
			Action:   fmt.Sprintf("suspended %d, blocked %d by the blast-radius limit", suspended, len(blocked)),
			Detail: fmt.Sprintf("%d subaccounts tripped suspension rules in one cycle; the safety rails allow %d per hour "+
				"and %d of %d active subaccounts suspended at once. Many subaccounts at once usually means a carrier "+
				"or Twilio incident, not many customers misbehaving: check before suspending by hand. Blocked: %s",
				len(tripped), a.cfg.MaxPerHour, maxOpen, fl.active, strings.Join(blocked, ", ")),
			At: now,
		})
		a.log.Error("blast-radius limit reached", "action", "suspend", "blocked", len(blocked), "suspended", suspended)
	}
	return errors.Join(errs...)
}

// block records, once per incident, that a rail stopped a suspension. It
// reports whether this is the first record for the incident.
func (a *Actor) block(ctx context.Context, c *candidate, rail, why string, now time.Time) (bool, error) {
	seen, err := a.recorded(c.acct.SID, c.dec.Rule, c.inc.Opened, func(r store.AuditRecord) bool {
		return r.Kind == KindRefusal && strings.HasPrefix(r.Detail, "rail="+rail+":")
	})
	if err != nil || seen {
		return false, err
	}
	rec := store.AuditRecord{
		At: now, Subaccount: c.acct.SID, Kind: KindRefusal, Action: ActionSuspend, Rule: c.dec.Rule,
		Actor: ActorSentinel, Reason: c.dec.Description, Outcome: OutcomeBlocked,
		Detail: fmt.Sprintf("rail=%s: %s; %s", rail, why, evidence(c.dec, c.rule)),
	}
	if _, err := a.st.AppendAudit(rec); err != nil {
		return false, err
	}
	a.m.blocked.WithLabelValues(rail).Inc()
	a.log.Warn("suspension blocked", "subaccount", c.acct.SID, "rule", c.dec.Rule, "action", "suspend", "rail", rail)
	if rail != RailStale { // the blind alert tells about stale data
		ev := decisionEvent(slack.KindBlocked, c.acct, c.dec, c.rule, c.inc, now)
		ev.Action = why
		a.notify(ctx, ev)
	}
	return true, nil
}

// dryRun records and tells, once per incident, the suspension that would
// have happened.
func (a *Actor) dryRun(ctx context.Context, c *candidate, now time.Time, sum *Summary) error {
	seen, err := a.recorded(c.acct.SID, c.dec.Rule, c.inc.Opened, func(r store.AuditRecord) bool {
		return r.Kind == KindDecision && r.DryRun && r.Action == ActionSuspend
	})
	if err != nil || seen {
		return err
	}
	why := "global dry-run"
	if c.dec.DryRun {
		why = "rule in dry_run mode"
	}
	rec := store.AuditRecord{
		At: now, Subaccount: c.acct.SID, Kind: KindDecision, Action: ActionSuspend, Rule: c.dec.Rule,
		Actor: ActorSentinel, Reason: c.dec.Description, DryRun: true, Outcome: OutcomeDryRun,
		Detail: why + "; " + evidence(c.dec, c.rule),
	}
	if _, err := a.st.AppendAudit(rec); err != nil {
		return err
	}
	a.m.suspensions.WithLabelValues("dry_run", "sentinel").Inc()
	a.m.blocked.WithLabelValues(RailDryRun).Inc()
	sum.WouldSuspend = append(sum.WouldSuspend, c.acct.SID)
	a.log.Info("would suspend (dry-run)", "subaccount", c.acct.SID, "rule", c.dec.Rule, "action", "suspend")
	ev := decisionEvent(slack.KindWouldSuspend, c.acct, c.dec, c.rule, c.inc, now)
	ev.Action = "would suspend (dry-run: " + why + ")"
	ev.Offer = slack.OfferWouldSuspend
	a.notify(ctx, ev)
	return nil
}

// recorded reports whether sid's audit log holds a record of rule at or
// after since that match accepts: dedup against the audit log.
func (a *Actor) recorded(sid, rule string, since time.Time, match func(store.AuditRecord) bool) (bool, error) {
	const page = 1000
	recs, err := a.st.Audit(sid, page)
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.At.Before(since) {
			break
		}
		if r.Rule == rule && match(r) {
			return true, nil
		}
	}
	return false, nil
}

// suspensionsSince counts the suspensions sentinel itself made since t, from
// the audit log, so that the count survives restarts. Intents still open
// count too: they may have succeeded. If the scan limit is reached within
// the hour, the limit counts as reached.
func (a *Actor) suspensionsSince(t time.Time) (int, error) {
	recs, err := a.st.Audit("", a.cfg.AuditScan)
	if err != nil {
		return 0, fmt.Errorf("count suspensions: %w", err)
	}
	intents, err := a.st.OpenIntents()
	if err != nil {
		return 0, fmt.Errorf("count suspensions: %w", err)
	}
	open := map[uint64]bool{}
	for _, r := range intents {
		open[r.ID] = true
	}
	n := 0
	for _, r := range recs {
		if r.At.Before(t) {
			return n, nil
		}
		if r.Action != ActionSuspend || r.Actor != ActorSentinel || r.DryRun {
			continue
		}
		if (r.Kind == KindOutcome && r.Outcome == OutcomeOK) || (r.Kind == KindIntent && open[r.ID]) {
			n++
		}
	}
	if a.cfg.AuditScan > 0 && len(recs) >= a.cfg.AuditScan {
		return max(n, a.cfg.MaxPerHour), nil
	}
	return n, nil
}

// order is one suspension or reinstatement to carry out.
type order struct {
	acct   store.Account
	br     store.Breaker
	rule   string // "" for manual actions
	actor  string
	reason string
	detail string      // evidence, for the audit log
	event  slack.Event // evidence, for notifications
}

// result is what came of an order.
type result int

const (
	resultNone    result = iota
	resultDone           // Twilio confirmed
	resultRefused        // Twilio refused: nothing changed
	resultError          // the request failed: nothing changed
	resultUnknown        // the outcome is unknown: the intent stays open for Reconcile
)

// suspend carries out a suspension write-ahead: intent, Twilio, outcome.
func (a *Actor) suspend(ctx context.Context, o order) (result, error) {
	return a.execute(ctx, o, ActionSuspend, twilioapi.StatusSuspended, a.suspended)
}

// execute writes the intent, sets the status in Twilio, and writes the
// outcome through complete (success) or a refusal record.
func (a *Actor) execute(ctx context.Context, o order, action, status string,
	complete func(context.Context, order, store.AuditRecord) error) (result, error) {
	sid := o.acct.SID
	intent := store.AuditRecord{
		At: a.now(), Subaccount: sid, Kind: KindIntent, Action: action, Rule: o.rule,
		Actor: o.actor, Reason: o.reason, Detail: o.detail,
	}
	id, err := a.st.AppendAudit(intent)
	if err != nil {
		// Nothing was sent: without the intent on disk a crash could not
		// be reconciled.
		return resultError, fmt.Errorf("%s %s: record intent: %w", action, sid, err)
	}
	intent.ID = id
	_, terr := a.tw.SetStatus(ctx, sid, status)
	if terr != nil && !definite(terr) {
		// The request may or may not have reached Twilio: look.
		live, ferr := a.tw.FetchAccount(ctx, sid)
		switch {
		case ferr != nil:
			a.log.Error("outcome unknown; left for reconciliation", "subaccount", sid, "action", action, "err", terr)
			return resultUnknown, fmt.Errorf("%s %s: outcome unknown, left for reconciliation: %w", action, sid, terr)
		case live.Status == status:
			terr = nil
		default:
			out := outcomeOf(intent, a.now(), OutcomeError, fmt.Sprintf("%s unchanged after: %v", live.Status, terr))
			if _, err := a.st.AppendAudit(out); err != nil {
				return resultError, errors.Join(fmt.Errorf("%s %s: %w", action, sid, terr), err)
			}
			return resultError, fmt.Errorf("%s %s: %w", action, sid, terr)
		}
	}
	if terr == nil {
		return resultDone, complete(ctx, o, intent)
	}
	return resultRefused, a.refused(ctx, o, intent, terr)
}

func outcomeOf(intent store.AuditRecord, at time.Time, outcome, detail string) store.AuditRecord {
	return store.AuditRecord{
		At: at, Subaccount: intent.Subaccount, Kind: KindOutcome, Action: intent.Action, Rule: intent.Rule,
		Actor: intent.Actor, Reason: intent.Reason, DryRun: intent.DryRun, IntentID: intent.ID,
		Outcome: outcome, Detail: detail,
	}
}

// suspended completes a suspension Twilio confirmed: the outcome and the
// breaker move in one transaction, then the account status, incidents,
// metrics and the notification follow.
func (a *Actor) suspended(ctx context.Context, o order, intent store.AuditRecord) error {
	now := a.now()
	sid := o.acct.SID
	br, err := a.st.Breaker(sid)
	if err != nil {
		br = o.br
	}
	out := outcomeOf(intent, now, OutcomeOK, intent.Detail)
	manual := intent.Actor != ActorSentinel
	// Only sentinel's own suspensions are offences (they lengthen the next
	// probation) and count against its blast radius; a person's is neither.
	nb := store.Breaker{State: StateOpen, Since: now, ReinstatedAt: br.ReinstatedAt, Offences: br.Offences, Manual: manual}
	if !manual {
		nb.Offences++
	}
	if stateOf(br) == StateOpen {
		// Already recorded (a reconciliation of a completed suspension).
		if _, err := a.st.AppendAudit(out); err != nil {
			return fmt.Errorf("suspend %s: record outcome: %w", sid, err)
		}
		return nil
	}
	if err := a.transition(sid, br, nb, out); err != nil {
		return fmt.Errorf("suspend %s: %w", sid, err)
	}
	var errs []error
	if err := a.st.SetAccountStatus(sid, statusSuspended, now); err != nil {
		errs = append(errs, err)
	}
	if err := a.markIncidents(sid, incidentSuspended, now); err != nil {
		errs = append(errs, err)
	}
	actorLabel := "sentinel"
	if manual {
		actorLabel = "manual"
	}
	a.m.suspensions.WithLabelValues("enforce", actorLabel).Inc()
	a.log.Warn("subaccount suspended", "subaccount", sid, "rule", intent.Rule, "action", "suspend",
		"actor", intent.Actor, "reason", intent.Reason)

	ev := o.event
	ev.Kind = slack.KindSuspended
	if manual {
		ev.Kind = slack.KindManualSuspended
		ev.Actor = intent.Actor
		ev.Reason = intent.Reason
	}
	ev.Subaccount, ev.Name, ev.At = sid, o.acct.FriendlyName, now
	if ev.Severity == "" {
		ev.Severity = slack.SeverityCritical
	}
	if ev.Rule == "" {
		ev.Rule = intent.Rule
	}
	ev.Action = "suspended"
	ev.Reinstate = a.reinstateHint(sid)
	if !manual && ev.Rule != "" && !ev.Opened.IsZero() {
		ev.Offer = slack.OfferSuspended
	}
	ev.Detail = intent.Detail
	a.notify(ctx, ev)
	return errors.Join(errs...)
}

// markIncidents moves sid's open incidents to state.
func (a *Actor) markIncidents(sid, state string, now time.Time) error {
	incs, err := a.st.Incidents(sid)
	if err != nil {
		return err
	}
	var errs []error
	for _, inc := range incs {
		if inc.Rule == blindRule || (inc.State != incidentFiring && inc.State != incidentSuspended) {
			continue
		}
		if state == incidentSuspended && inc.State == incidentFiring &&
			(inc.Decision.What == decisionKept || inc.Decision.What == decisionWouldReinstate) {
			// Decided on its would-suspend message, about a suspension that
			// did not happen: this one is news, and open to decide.
			inc.Decision = store.Decision{}
		}
		inc.State = state
		if state == incidentReinstated || state == incidentResolved {
			inc.Resolved = now
		}
		if err := a.st.PutIncident(inc); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// refused records Twilio's refusal of an order: once, clearly, with the
// breaker state it proves, and never retried by the same incident.
func (a *Actor) refused(ctx context.Context, o order, intent store.AuditRecord, terr error) error {
	now := a.now()
	sid := o.acct.SID
	code := twilioapi.Code(terr)
	text := refusalText(code)
	switch {
	case errors.Is(terr, twilioapi.ErrParent):
		text = "refused by the Twilio client: never the parent account"
	case errors.Is(terr, twilioapi.ErrStatus):
		text = "refused by the Twilio client: invalid status"
	case code == 0:
		text = fmt.Sprintf("Twilio refused: %v", terr)
	}
	out := outcomeOf(intent, now, OutcomeRefused, text)
	if code != 0 {
		a.m.refused(code)
	}
	var errs []error
	if state := refusalState(code); state != "" {
		br, err := a.st.Breaker(sid)
		if err != nil {
			br = o.br
		}
		nb := store.Breaker{State: state, Since: now, ReinstatedAt: br.ReinstatedAt, Offences: br.Offences}
		if err := a.transition(sid, br, nb, out); err != nil {
			errs = append(errs, err)
		}
		status := statusSuspended
		if state == StateAccountClosed {
			status = statusClosed
		}
		if err := a.st.SetAccountStatus(sid, status, now); err != nil {
			errs = append(errs, err)
		}
	} else if _, err := a.st.AppendAudit(out); err != nil {
		errs = append(errs, err)
	}
	a.log.Error("twilio refused", "subaccount", sid, "rule", intent.Rule, "action", intent.Action, "code", code)
	err := fmt.Errorf("%s %s: %w: %s", intent.Action, sid, ErrRefused, text)
	if intent.Action != ActionSuspend {
		// A refused reinstatement is answered to the person who asked; the
		// audit log keeps it.
		return errors.Join(append(errs, err)...)
	}
	ev := o.event
	ev.Kind = slack.KindBlocked
	ev.Subaccount, ev.Name, ev.At = sid, o.acct.FriendlyName, now
	if ev.Severity == "" {
		ev.Severity = slack.SeverityWarning
	}
	ev.Action = "not suspended: " + text
	ev.Actor = intent.Actor
	ev.Detail = text
	a.notify(ctx, ev)
	return errors.Join(append(errs, err)...)
}
