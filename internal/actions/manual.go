package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/twilioapi"
)

// account returns the stored account sid, or an error wrapping
// ErrUnknownAccount.
func (a *Actor) account(sid string) (store.Account, error) {
	return storedAccount(a.st, sid)
}

// storedAccount returns the account sid as st knows it, or an error
// wrapping ErrUnknownAccount.
func storedAccount(st *store.Store, sid string) (store.Account, error) {
	acct, err := st.Account(sid)
	if errors.Is(err, store.ErrNotFound) {
		return acct, fmt.Errorf("no subaccount %s in this fleet, as of sentinel's last read of Twilio's account list (sentinel -status lists them): %w", sid, ErrUnknownAccount)
	}
	return acct, err
}

func manualArgs(sid, by, reason string) error {
	switch {
	case strings.TrimSpace(sid) == "":
		return fmt.Errorf("%w: no subaccount SID", ErrInvalid)
	case strings.TrimSpace(by) == "":
		return fmt.Errorf("%w: no actor: say who acts (-by)", ErrInvalid)
	case strings.TrimSpace(reason) == "":
		return fmt.Errorf("%w: no reason: say why (-reason)", ErrInvalid)
	}
	return nil
}

// Reinstate makes a subaccount active again in Twilio for a person (by) with
// a reason, and puts it on probation: windows never reach before now, its
// rule states start afresh, and its thresholds are the policy's probation
// thresholds until the probation ends (24h doubling per repeat offence,
// capped; see policy.ProbationUntil). It refuses the parent, a subaccount
// suspended by Twilio itself (21478) and a closed one, and one that is not
// suspended; refusals wrap ErrRefused.
func (a *Actor) Reinstate(ctx context.Context, sid, by, reason string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	o, err := a.reinstateOrder(ctx, sid, by, reason, false)
	if err != nil {
		return err
	}
	_, err = a.execute(ctx, o, ActionReinstate, twilioapi.StatusActive, a.reinstated)
	return err
}

// reinstateOrder makes the checks of a reinstatement of sid, whoever asks
// (the command line, a Slack button), and returns its order. Its errors
// wrap ErrInvalid, ErrUnknownAccount, ErrUnreconciled or ErrRefused. With
// dryRun a subaccount that is not suspended passes: nothing will be sent.
// a.mu must be held.
func (a *Actor) reinstateOrder(ctx context.Context, sid, by, reason string, dryRun bool) (order, error) {
	if err := manualArgs(sid, by, reason); err != nil {
		return order{}, fmt.Errorf("reinstate: %w", err)
	}
	acct, err := a.account(sid)
	if err != nil {
		return order{}, fmt.Errorf("reinstate: %w", err)
	}
	if err := a.reconcileAccount(ctx, sid); err != nil {
		return order{}, fmt.Errorf("reinstate %s: %w", sid, err)
	}
	br, err := a.st.Breaker(sid)
	if err != nil {
		return order{}, fmt.Errorf("reinstate %s: %w", sid, err)
	}
	state := stateOf(br)
	switch {
	case acct.Parent:
		return order{}, fmt.Errorf("reinstate %s: %w: it is the parent account; sentinel never changes it", sid, ErrRefused)
	case state == StateTwilioSuspended:
		return order{}, fmt.Errorf("reinstate %s: %w: suspended by Twilio itself (21478); only Twilio support can lift it", sid, ErrRefused)
	case state == StateAccountClosed || acct.Status == statusClosed:
		return order{}, fmt.Errorf("reinstate %s: %w: the subaccount is closed; a closed account cannot be reopened (21479)", sid, ErrRefused)
	case acct.Status == statusActive && !suspendedState(state) && !dryRun:
		return order{}, fmt.Errorf("reinstate %s: %w: not suspended (Twilio status %s, breaker %s)", sid, ErrRefused, acct.Status, state)
	}
	return order{acct: acct, br: br, actor: by, reason: reason,
		detail: fmt.Sprintf("manual reinstatement; breaker %s", state),
		event:  slack.Event{Severity: slack.SeverityInfo, Actor: by, Reason: reason}}, nil
}

// reinstated completes a reinstatement Twilio confirmed.
func (a *Actor) reinstated(ctx context.Context, o order, intent store.AuditRecord) error {
	br, err := a.st.Breaker(o.acct.SID)
	if err != nil {
		br = o.br
	}
	out := outcomeOf(intent, a.now(), OutcomeOK, intent.Detail)
	// The account was suspended until the request went out: the intent's
	// time is the earliest it can have been reactivated, so nothing sent
	// after the reactivation is left out of the windows.
	if err := a.enterProbation(ctx, o.acct, br, out, intent.At, incidentRef{o.event.Rule, o.event.Opened}); err != nil {
		return fmt.Errorf("reinstate %s: %w", o.acct.SID, err)
	}
	a.m.reinstatements.Inc()
	a.log.Warn("subaccount reinstated", "subaccount", o.acct.SID, "action", "reinstate", "actor", intent.Actor, "reason", intent.Reason)
	return nil
}

// Suspend suspends a subaccount for a person (by) with a reason, through the
// same write-ahead pipeline as an automatic suspension (audit, Slack,
// breaker) but without the blast-radius limit or the dry-run switch: a
// person decided. It never touches the parent or a closed subaccount
// (ErrRefused) and does nothing for one already suspended.
func (a *Actor) Suspend(ctx context.Context, sid, by, reason string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := manualArgs(sid, by, reason); err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	acct, err := a.account(sid)
	if err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	if err := a.reconcileAccount(ctx, sid); err != nil {
		return fmt.Errorf("suspend %s: %w", sid, err)
	}
	br, err := a.st.Breaker(sid)
	if err != nil {
		return fmt.Errorf("suspend %s: %w", sid, err)
	}
	state := stateOf(br)
	switch {
	case acct.Parent:
		return fmt.Errorf("suspend %s: %w: it is the parent account; sentinel never changes it", sid, ErrRefused)
	case state == StateAccountClosed || acct.Status == statusClosed:
		return fmt.Errorf("suspend %s: %w: the subaccount is closed", sid, ErrRefused)
	case suspendedState(state):
		a.log.Info("already suspended", "subaccount", sid, "action", "suspend", "breaker", state)
		return fmt.Errorf("suspend %s: %w: it is already suspended: %s", sid, ErrUnchanged, a.suspendedBy(sid, br))
	}
	live, err := a.tw.FetchAccount(ctx, sid)
	if err != nil {
		return fmt.Errorf("suspend %s: read status: %w", sid, err)
	}
	if live.Status != statusActive {
		// Suspended or closed outside sentinel: record what is true.
		acct.Status = live.Status
		if err := a.st.SetAccountStatus(sid, live.Status, a.now()); err != nil {
			return fmt.Errorf("suspend %s: %w", sid, err)
		}
		if _, err := a.syncStatus(ctx, &acct, br, a.policies()); err != nil {
			return fmt.Errorf("suspend %s: %w", sid, err)
		}
		if live.Status == statusClosed {
			return fmt.Errorf("suspend %s: %w: the subaccount is closed", sid, ErrRefused)
		}
		return fmt.Errorf("suspend %s: %w: it is already %s in Twilio, outside sentinel (the console, or Twilio itself)", sid, ErrUnchanged, live.Status)
	}
	o := order{acct: acct, br: br, actor: by, reason: reason,
		detail: fmt.Sprintf("manual suspension; breaker %s", state),
		event:  slack.Event{Severity: slack.SeverityCritical, Actor: by, Reason: reason}}
	_, err = a.suspend(ctx, o)
	return err
}

// Reconcile finishes the actions a crash (or a lost response) left between
// intent and outcome: for each open intent it reads the subaccount's actual
// status from Twilio and writes the missing outcome. A suspension that took
// effect is completed (breaker open, unless already); one that did not is
// abandoned, and the next Judge decides again. The same holds for
// reinstatements. Intents whose status cannot be read stay open. Run it at
// start-up, before the first Judge (Judge also runs it).
func (a *Actor) Reconcile(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reconcile(ctx)
}

func (a *Actor) reconcile(ctx context.Context) error {
	return a.reconcileWhere(ctx, func(string) bool { return true })
}

// ErrUnreconciled means an action found an earlier action on the same
// subaccount whose outcome is still unknown (Twilio could not be asked):
// acting on top of it could record the earlier one wrongly.
var ErrUnreconciled = errors.New("an earlier action on it has no known outcome yet")

// reconcileAccount reconciles sid's open intents, so that an action on sid
// never runs on top of one whose outcome is unknown: after a crash, the
// breaker and the account status are what they were before that action,
// not what Twilio now says, and acting on them would record the earlier
// action as abandoned, or sentinel's own suspension as someone else's. It
// fails, wrapping ErrUnreconciled, when an intent stays open.
func (a *Actor) reconcileAccount(ctx context.Context, sid string) error {
	if err := a.reconcileWhere(ctx, func(s string) bool { return s == sid }); err != nil {
		return fmt.Errorf("%w: %w", ErrUnreconciled, err)
	}
	return nil
}

// reconcileWhere reconciles the open intents of the subaccounts keep
// accepts.
func (a *Actor) reconcileWhere(ctx context.Context, keep func(sid string) bool) error {
	intents, err := a.st.OpenIntents()
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var errs []error
	for _, in := range intents {
		if !keep(in.Subaccount) {
			continue
		}
		if err := a.reconcileOne(ctx, in); err != nil {
			errs = append(errs, fmt.Errorf("reconcile intent %d (%s %s): %w", in.ID, in.Action, in.Subaccount, err))
		}
	}
	return errors.Join(errs...)
}

func (a *Actor) reconcileOne(ctx context.Context, in store.AuditRecord) error {
	sid := in.Subaccount
	acct, err := a.st.Account(sid)
	if err != nil {
		acct = store.Account{SID: sid}
	}
	br, err := a.st.Breaker(sid)
	if err != nil {
		return err
	}
	want := map[string]string{ActionSuspend: statusSuspended, ActionReinstate: statusActive}[in.Action]
	if want == "" {
		_, err := a.st.AppendAudit(outcomeOf(in, a.now(), OutcomeAbandoned, "unknown action; nothing done"))
		return err
	}
	live, err := a.tw.FetchAccount(ctx, sid)
	if err != nil {
		if definite(err) {
			// Twilio answered (20404: gone): the action cannot have happened.
			_, aerr := a.st.AppendAudit(outcomeOf(in, a.now(), OutcomeAbandoned,
				fmt.Sprintf("found after a restart; %s", refusalText(twilioapi.Code(err)))))
			return aerr
		}
		return fmt.Errorf("read status: %w", err) // stays open
	}
	o := order{acct: acct, br: br, rule: in.Rule, actor: in.Actor, reason: in.Reason, detail: in.Detail,
		event: slack.Event{Rule: in.Rule, Actor: in.Actor, Reason: in.Reason,
			Detail: "completed after a restart: Twilio shows it done"}}
	if in.Rule != "" {
		if inc, err := a.st.Incident(sid, in.Rule); err == nil {
			o.event.Opened = inc.Opened
		}
	}
	switch {
	case live.Status == want && in.Action == ActionSuspend:
		a.log.Warn("reconciled: suspension took effect", "subaccount", sid, "action", in.Action)
		return a.suspended(ctx, o, in)
	case live.Status == want:
		if stateOf(br) == StateProbation && !br.ReinstatedAt.Before(in.At) {
			_, err := a.st.AppendAudit(outcomeOf(in, a.now(), OutcomeOK, "found after a restart; already recorded"))
			return err
		}
		a.log.Warn("reconciled: reinstatement took effect", "subaccount", sid, "action", in.Action)
		return a.reinstated(ctx, o, in)
	default:
		a.log.Warn("reconciled: action abandoned", "subaccount", sid, "action", in.Action, "status", live.Status)
		_, err := a.st.AppendAudit(outcomeOf(in, a.now(), OutcomeAbandoned,
			fmt.Sprintf("found after a restart; Twilio status is %s, so it did not take effect", live.Status)))
		return err
	}
}

// suspendedBy says since when, by whom and why sid is suspended, for a
// -suspend that finds it so: the last suspension in its audit, or what the
// breaker knows.
func (a *Actor) suspendedBy(sid string, br store.Breaker) string {
	since := ""
	if !br.Since.IsZero() {
		since = " since " + br.Since.UTC().Format(time.RFC3339)
	}
	switch stateOf(br) {
	case StateExternalSuspended:
		return "suspended outside sentinel (the Twilio console or its API)" + since
	case StateTwilioSuspended:
		return "suspended by Twilio itself" + since
	}
	recs, err := a.st.Audit(sid, 200)
	if err == nil {
		for _, r := range recs {
			if r.Action == ActionSuspend && r.Kind == KindIntent && !r.DryRun {
				by := r.Actor
				if r.Rule != "" {
					by += " (rule " + r.Rule + ")"
				}
				return fmt.Sprintf("by %s at %s: %s", by, r.At.UTC().Format(time.RFC3339), r.Reason)
			}
		}
	}
	return "breaker " + stateOf(br) + since
}
