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
	"sentinel/internal/twilioapi"
)

// Decisions on incidents made from Slack: the buttons on an incident's
// messages. They are one more caller of the paths the command line takes
// (a reinstatement is Reinstate's checks, write-ahead audit and probation),
// made under the same lock, and checked first against the incident the
// button names, so that a stale button or a second click is refused rather
// than acted on.

var _ slack.Decider = (*Actor)(nil)

// Audit actions of decisions that change no subaccount.
const (
	ActionKeep = "keep_suspended"
	ActionAck  = "acknowledge"
)

// Incident decisions (store.Decision.What).
const (
	decisionKept           = "kept_suspended"
	decisionAcknowledged   = "acknowledged"
	decisionWouldReinstate = "would_reinstate"
)

// Preview checks d against the current incident and breaker and says what
// it would do: for a reinstatement, the probation that follows. It changes
// nothing; a refusal is Preview.Refused, not an error.
func (a *Actor) Preview(ctx context.Context, d slack.Decision) (slack.Preview, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, err := a.vet(d)
	if err != nil || v.refused != "" {
		return slack.Preview{Refused: v.refused}, err
	}
	switch d.Action {
	case slack.DecideReinstate:
		follows := a.probationText(v.br, a.now())
		if d.DryRun {
			follows = "Dry-run: your decision is recorded and nothing is sent to Twilio. A reinstatement would set the subaccount active in Twilio and put it on probation: " + follows
		} else {
			follows = "Twilio sets the subaccount active again. " + follows
		}
		return slack.Preview{Follows: follows}, nil
	case slack.DecideKeep:
		return slack.Preview{Follows: "The subaccount stays suspended; your decision and reason go to the audit log and this incident is not reminded of again. " +
			"It can still be reinstated later with sentinel -reinstate."}, nil
	}
	return slack.Preview{Follows: "No reminders for this incident until it resolves or its severity changes."}, nil
}

// Decide carries out d once. A refusal (a stale button, a second click, the
// parent, a closed subaccount, one suspended by Twilio) is audited and
// returned as Outcome.Refused; an error means the decision failed.
func (a *Actor) Decide(ctx context.Context, d slack.Decision) (slack.Outcome, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, err := a.vet(d)
	if err != nil {
		return slack.Outcome{}, err
	}
	if v.refused != "" {
		return a.refuse(d, v.refused)
	}
	if strings.TrimSpace(d.Reason) == "" && d.Action != slack.DecideAck {
		return a.refuse(d, "a reason is required")
	}
	switch d.Action {
	case slack.DecideReinstate:
		return a.decideReinstate(ctx, d, v)
	case slack.DecideKeep:
		return a.decideKeep(ctx, d, v)
	}
	return a.decideAck(ctx, d, v)
}

// Refused records a decision refused before it reached the checks (the
// person may not decide), so that every attempt is in the audit log.
func (a *Actor) Refused(_ context.Context, d slack.Decision, why string) error {
	_, err := a.st.AppendAudit(a.refusal(d, why))
	return err
}

func (a *Actor) refusal(d slack.Decision, why string) store.AuditRecord {
	return store.AuditRecord{
		At: a.now(), Subaccount: d.Subaccount, Kind: KindRefusal, Action: d.Action, Rule: d.Rule,
		Actor: d.By, Reason: d.Reason, DryRun: d.DryRun, Outcome: OutcomeRefused, Detail: why,
	}
}

// refuse audits a refusal and returns it as the outcome.
func (a *Actor) refuse(d slack.Decision, why string) (slack.Outcome, error) {
	if _, err := a.st.AppendAudit(a.refusal(d, why)); err != nil {
		return slack.Outcome{}, fmt.Errorf("%s %s: record refusal: %w", d.Action, d.Subaccount, err)
	}
	a.log.Info("decision refused", "subaccount", d.Subaccount, "rule", d.Rule, "action", d.Action, "actor", d.By, "why", why)
	return slack.Outcome{Refused: why}, nil
}

// vetted is what vet found.
type vetted struct {
	refused string // why d cannot be made; "" when it can
	acct    store.Account
	br      store.Breaker
	inc     store.Incident
}

// vet checks d against the incident its button names and the breaker, as
// they are now: a decision on an incident that resolved, was superseded,
// ended with a reinstatement or was already decided is stale. a.mu must be
// held.
func (a *Actor) vet(d slack.Decision) (vetted, error) {
	var v vetted
	switch d.Action {
	case slack.DecideReinstate, slack.DecideKeep, slack.DecideAck:
	default:
		v.refused = fmt.Sprintf("unknown decision %q", d.Action)
		return v, nil
	}
	if d.Subaccount == "" || d.Rule == "" || d.Opened.IsZero() || strings.TrimSpace(d.By) == "" {
		v.refused = "the button does not name an incident and a person"
		return v, nil
	}
	acct, err := a.account(d.Subaccount)
	if errors.Is(err, ErrUnknownAccount) {
		v.refused = fmt.Sprintf("no subaccount %s in this fleet", d.Subaccount)
		return v, nil
	}
	if err != nil {
		return v, err
	}
	v.acct = acct
	if acct.Parent && d.Action != slack.DecideAck { // acknowledging its alert changes nothing
		v.refused = "it is the parent account; sentinel never changes it"
		return v, nil
	}
	if v.br, err = a.st.Breaker(d.Subaccount); err != nil {
		return v, err
	}
	v.inc, err = a.st.Incident(d.Subaccount, d.Rule)
	switch {
	case errors.Is(err, store.ErrNotFound):
		v.refused = fmt.Sprintf("stale: no incident of %s is recorded for %s", d.Rule, d.Subaccount)
		return v, nil
	case err != nil:
		return v, err
	}
	inc, dec := v.inc, v.inc.Decision
	switch {
	case !inc.Opened.Equal(d.Opened):
		v.refused = fmt.Sprintf("stale: this message is about an earlier incident; a newer incident of %s opened %s and is %s now",
			d.Rule, stamp(inc.Opened), inc.State)
	case inc.State == incidentResolved:
		v.refused = fmt.Sprintf("stale: the incident resolved at %s; %s no longer fires", stamp(inc.Resolved), d.Rule)
	case inc.State == incidentReinstated:
		v.refused = "stale: the subaccount was already reinstated" + a.lastReinstatement(d.Subaccount) + "; the incident is closed"
	case dec.What == decisionKept:
		v.refused = fmt.Sprintf("stale: already decided: kept suspended by %s at %s", dec.By, stamp(dec.At))
	case dec.What == decisionWouldReinstate && d.DryRun:
		// A dry-run reinstatement sent nothing: only another dry-run is stale.
		v.refused = fmt.Sprintf("stale: already decided: would be reinstated (dry-run) by %s at %s", dec.By, stamp(dec.At))
	case dec.What == decisionAcknowledged && d.Action == slack.DecideAck:
		v.refused = fmt.Sprintf("stale: already acknowledged by %s at %s", dec.By, stamp(dec.At))
	case d.Action == slack.DecideAck:
	case d.DryRun:
		// A would-suspend incident: the subaccount was never suspended.
	case !suspendedState(stateOf(v.br)) || inc.State != incidentSuspended:
		v.refused = fmt.Sprintf("stale: the subaccount is not suspended (Twilio status %s, breaker %s)", acct.Status, stateOf(v.br))
	}
	return v, nil
}

// lastReinstatement says who last reinstated sid and when, from the audit
// log: " by U123 (ana) via Slack at 2026-11-26 22:50 UTC", or "".
func (a *Actor) lastReinstatement(sid string) string {
	recs, err := a.st.Audit(sid, 200)
	if err != nil {
		return ""
	}
	for _, r := range recs {
		if r.Action == ActionReinstate && r.Outcome == OutcomeOK && (r.Kind == KindOutcome || r.Kind == KindTransition) {
			return fmt.Sprintf(" by %s at %s", r.Actor, stamp(r.At))
		}
	}
	return ""
}

func (a *Actor) decideReinstate(ctx context.Context, d slack.Decision, v vetted) (slack.Outcome, error) {
	o, err := a.reinstateOrder(ctx, d.Subaccount, d.By, d.Reason, d.DryRun)
	if err != nil {
		if errors.Is(err, ErrRefused) || errors.Is(err, ErrUnreconciled) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnknownAccount) {
			return a.refuse(d, err.Error())
		}
		return slack.Outcome{}, err
	}
	now := a.now()
	if d.DryRun {
		until := policy.ProbationUntil(a.settings(), now, v.br.Offences)
		done := fmt.Sprintf("would reinstate (dry-run): nothing was sent to Twilio; probation would last until %s", stamp(until))
		rec := store.AuditRecord{
			At: now, Subaccount: d.Subaccount, Kind: KindDecision, Action: ActionReinstate, Rule: d.Rule,
			Actor: d.By, Reason: d.Reason, DryRun: true, Outcome: OutcomeDryRun, Detail: done,
		}
		return a.decided(ctx, d, v, store.Decision{What: decisionWouldReinstate}, slack.KindWouldReinstate, done, rec)
	}
	// The same order as sentinel -reinstate, told in the incident's thread
	// and recorded against its rule.
	o.rule = d.Rule
	o.detail = fmt.Sprintf("manual reinstatement from Slack, incident %s opened %s; breaker %s", d.Rule, stamp(d.Opened), stateOf(v.br))
	o.event.Rule, o.event.Opened = d.Rule, d.Opened
	res, err := a.execute(ctx, o, ActionReinstate, twilioapi.StatusActive, a.reinstated)
	switch {
	case res == resultRefused:
		// Twilio refused; refused() wrote the outcome to the audit log.
		return slack.Outcome{Refused: err.Error()}, nil
	case err != nil:
		return slack.Outcome{}, err
	}
	done := "reinstated"
	if br, err := a.st.Breaker(d.Subaccount); err == nil && !br.ProbationUntil.IsZero() {
		done += "; on probation until " + stamp(br.ProbationUntil)
	}
	return slack.Outcome{Done: done}, nil
}

func (a *Actor) decideKeep(ctx context.Context, d slack.Decision, v vetted) (slack.Outcome, error) {
	done := "kept suspended: no reminders for this incident"
	if d.DryRun {
		done = "kept suspended (dry-run: sentinel suspends nobody): no reminders for this incident"
	}
	rec := store.AuditRecord{
		At: a.now(), Subaccount: d.Subaccount, Kind: KindDecision, Action: ActionKeep, Rule: d.Rule,
		Actor: d.By, Reason: d.Reason, Outcome: OutcomeOK, Detail: fmt.Sprintf("%s; breaker %s", done, stateOf(v.br)),
	}
	return a.decided(ctx, d, v, store.Decision{What: decisionKept}, slack.KindKeptSuspended, done, rec)
}

func (a *Actor) decideAck(ctx context.Context, d slack.Decision, v vetted) (slack.Outcome, error) {
	if strings.TrimSpace(d.Reason) == "" {
		d.Reason = "acknowledged"
	}
	sev := ""
	if set := a.policies(); set != nil {
		for _, r := range set.Rules() {
			if r.Name == d.Rule {
				sev = r.Severity
			}
		}
	}
	done := "acknowledged: no reminders until it resolves or its severity changes"
	rec := store.AuditRecord{
		At: a.now(), Subaccount: d.Subaccount, Kind: KindDecision, Action: ActionAck, Rule: d.Rule,
		Actor: d.By, Reason: d.Reason, Outcome: OutcomeOK, Detail: fmt.Sprintf("%s; severity %s", done, sev),
	}
	return a.decided(ctx, d, v, store.Decision{What: decisionAcknowledged, Severity: sev}, slack.KindAcknowledged, done, rec)
}

// decided records dec, a decision that changes no subaccount, on its
// incident with its audit record, and tells the incident's thread.
func (a *Actor) decided(ctx context.Context, d slack.Decision, v vetted, dec store.Decision, kind, done string, rec store.AuditRecord) (slack.Outcome, error) {
	dec.By, dec.At, dec.Reason = d.By, rec.At, d.Reason
	if err := a.st.Decide(d.Subaccount, d.Rule, d.Opened, dec, rec); err != nil {
		return slack.Outcome{}, fmt.Errorf("%s %s: %w", d.Action, d.Subaccount, err)
	}
	a.log.Info("incident decided", "subaccount", d.Subaccount, "rule", d.Rule, "action", d.Action, "actor", d.By, "reason", d.Reason)
	a.notify(ctx, slack.Event{
		Kind: kind, Severity: slack.SeverityInfo, Subaccount: d.Subaccount, Name: v.acct.FriendlyName,
		Rule: d.Rule, Opened: d.Opened, Action: done, Actor: d.By, Reason: d.Reason, At: rec.At,
	})
	return slack.Outcome{Done: done}, nil
}

// probationText says what probation a reinstatement at now would bring.
func (a *Actor) probationText(br store.Breaker, now time.Time) string {
	s := a.settings()
	until := policy.ProbationUntil(s, now, br.Offences)
	if until.IsZero() {
		return "No probation follows (the policies set none); rules judge only what is sent from the reinstatement on."
	}
	repeat := ""
	if br.Offences > 1 {
		repeat = fmt.Sprintf(", longer for its %d suspensions by sentinel", br.Offences)
	}
	return fmt.Sprintf("Probation follows until %s (%s%s): thresholds × %g and `for` 1, so new bad traffic suspends it again quickly. "+
		"Rules judge only what is sent from the reinstatement on.", stamp(until), until.Sub(now).Round(time.Minute), repeat, s.Probation.Factor)
}

// stamp formats t as the Slack messages do.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }
