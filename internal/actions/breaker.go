package actions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twilio/twilio-go/client"

	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/twilioapi"
)

// Twilio account statuses as the store keeps them.
const (
	statusActive    = "active"
	statusSuspended = "suspended"
	statusClosed    = "closed"
)

// suspendedState reports whether a breaker state means the subaccount is
// suspended (by anyone) or gone: nothing to judge, nothing to suspend.
func suspendedState(s string) bool {
	switch s {
	case StateOpen, StateExternalSuspended, StateTwilioSuspended, StateAccountClosed:
		return true
	}
	return false
}

// transition moves sid's breaker to `to` and appends rec in one store
// transaction. rec.Detail gets the change appended; Kind defaults to
// "transition".
func (a *Actor) transition(sid string, from, to store.Breaker, rec store.AuditRecord) error {
	rec.Subaccount = sid
	if rec.At.IsZero() {
		rec.At = a.now()
	}
	if rec.Kind == "" {
		rec.Kind = KindTransition
	}
	change := fmt.Sprintf("breaker %s -> %s", stateOf(from), to.State)
	if rec.Detail == "" {
		rec.Detail = change
	} else {
		rec.Detail += "; " + change
	}
	if err := a.st.Transition(sid, to, rec); err != nil {
		return fmt.Errorf("breaker %s %s -> %s: %w", sid, stateOf(from), to.State, err)
	}
	a.m.breakers.set(sid, to.State)
	a.log.Info("breaker transition", "subaccount", sid, "from", stateOf(from), "to", to.State,
		"rule", rec.Rule, "actor", rec.Actor, "reason", rec.Reason)
	return nil
}

func stateOf(b store.Breaker) string {
	if b.State == "" {
		return StateClosed
	}
	return b.State
}

// settings returns the current policy settings, or the defaults while no
// set is loaded (a reinstatement must not wait for a valid policy).
func (a *Actor) settings() policy.Settings {
	if set := a.policies(); set != nil {
		return set.Settings()
	}
	return policy.DefaultSettings()
}

// enterProbation completes a reinstatement, whoever made it (a person
// through sentinel, the Twilio console, the API, Twilio support lifting its
// own suspension): every reactivation is a reinstatement. at is the
// reactivation instant: the breaker goes to probation with at as the time
// that bounds every later window, the account's rule states are reset so no
// old `for` counter or firing state carries over, its open incidents are
// closed as reinstated, and today's spend is noted so that spend rules
// judge only what is spent after at. rec is the audit record (rec.At is when
// sentinel recorded it). Offences are not counted here: only sentinel's own
// suspensions are offences, so a person's pause does not lengthen
// probation. inc, when not zero, is the incident the reinstatement answers
// (a button on its message): the notification joins its thread.
func (a *Actor) enterProbation(ctx context.Context, acct store.Account, br store.Breaker, rec store.AuditRecord, at time.Time, inc incidentRef) error {
	now := rec.At
	nb := store.Breaker{
		State:          StateProbation,
		Since:          now,
		ReinstatedAt:   at,
		Offences:       br.Offences,
		ProbationUntil: policy.ProbationUntil(a.settings(), at, br.Offences),
	}
	nb.SpendDay, nb.SpendBase = a.spendAt(ctx, acct.SID, at)
	if nb.SpendDay != "" {
		// The audit log keeps the note too: the breaker forgets it at the
		// next suspension, and a backtest replays every reinstatement.
		rec.Detail = joinDetail(rec.Detail, spendNote(nb.SpendDay, nb.SpendBase))
	}
	if err := a.transition(acct.SID, br, nb, rec); err != nil {
		return err
	}
	var errs []error
	if err := a.st.SetAccountStatus(acct.SID, statusActive, now); err != nil {
		errs = append(errs, fmt.Errorf("set status of %s: %w", acct.SID, err))
	}
	if err := a.st.PutRuleStates(acct.SID, map[string]store.RuleState{}); err != nil {
		errs = append(errs, fmt.Errorf("reset rule states of %s: %w", acct.SID, err))
	}
	if err := a.markIncidents(acct.SID, incidentReinstated, now); err != nil {
		errs = append(errs, fmt.Errorf("close incidents of %s: %w", acct.SID, err))
	}
	action := fmt.Sprintf("reinstated; on probation until %s", nb.ProbationUntil.UTC().Format(time.RFC3339))
	if rec.Actor == ActorOutside {
		action = fmt.Sprintf("reactivated outside sentinel at %s: treated as a reinstatement, rules judge only what is sent from then on; on probation until %s",
			at.UTC().Format(time.RFC3339), nb.ProbationUntil.UTC().Format(time.RFC3339))
	}
	a.notify(ctx, slack.Event{
		Kind:       slack.KindReinstated,
		Severity:   slack.SeverityInfo,
		Subaccount: acct.SID,
		Name:       acct.FriendlyName,
		Rule:       inc.rule,
		Opened:     inc.opened,
		Action:     action,
		Actor:      rec.Actor,
		Reason:     rec.Reason,
		At:         now,
	})
	return errors.Join(errs...)
}

// incidentRef names an incident: (subaccount, rule, opened) with the
// subaccount known from context. The zero incidentRef names none.
type incidentRef struct {
	rule   string
	opened time.Time
}

// spendAt returns the UTC day of at and the account's spend that day as
// known now, read from Twilio (the stored usage if that fails), when at is
// today; "" and 0 when it is not (the reinstatement's day is over) or no
// spend is known at all.
func (a *Actor) spendAt(ctx context.Context, sid string, at time.Time) (string, float64) {
	day := at.UTC().Format(time.DateOnly)
	if day != a.now().UTC().Format(time.DateOnly) {
		return "", 0
	}
	u, err := a.tw.UsageToday(ctx, sid)
	if err == nil && u.Day == day {
		return day, u.TotalPrice
	}
	stored, serr := a.st.Usage(sid, day, day)
	if serr != nil || len(stored) == 0 {
		a.log.Warn("spend at a reinstatement not known: spend rules wait for the next UTC day",
			"subaccount", sid, "err", errors.Join(err, serr))
		return "", 0
	}
	return day, stored[0].TotalPrice
}

// reactivatedAt returns when a subaccount that sentinel knew suspended
// since `since` was reactivated: Twilio's date_updated of the account
// (updated), which is the reactivation unless something else changed the
// account after it, such as a rename (?), kept between since and now.
// Without it, the reactivation is placed at now: nothing sent before is
// judged.
func reactivatedAt(updated, since, now time.Time) time.Time {
	switch {
	case updated.IsZero() || updated.After(now):
		return now
	case updated.Before(since):
		return since
	}
	return updated
}

// syncStatus reconciles the breaker with the account status the poller
// synced from Twilio, for changes sentinel did not make. A status that
// contradicts the breaker is confirmed with Twilio first: an account list
// read before sentinel's own change and stored after it must not undo it.
// It returns the breaker as it is afterwards.
func (a *Actor) syncStatus(ctx context.Context, acct *store.Account, br store.Breaker, set *policy.Set) (store.Breaker, error) {
	now := a.now()
	state := stateOf(br)
	rec := func(reason string) store.AuditRecord {
		return store.AuditRecord{At: now, Actor: ActorOutside, Reason: reason}
	}
	if acct.Parent {
		return br, nil // the parent's breaker stays closed: it is never suspended
	}
	if acct.Status == statusClosed {
		if state == StateAccountClosed {
			return br, nil
		}
		nb := store.Breaker{State: StateAccountClosed, Since: now, ReinstatedAt: br.ReinstatedAt, Offences: br.Offences}
		if err := a.transition(acct.SID, br, nb, rec("account closed in Twilio")); err != nil {
			return br, err
		}
		a.tell(ctx, slack.KindResolved, *acct, ActorOutside, "account closed in Twilio: sentinel ignores it from now on", now)
		return nb, nil
	}
	if state == StateAccountClosed {
		return br, nil // closed is permanent; a later status is a stale read
	}

	contradicts := (acct.Status == statusSuspended && !suspendedState(state)) ||
		(acct.Status == statusActive && suspendedState(state))
	if contradicts {
		live, err := a.tw.FetchAccount(ctx, acct.SID)
		if err != nil {
			return br, fmt.Errorf("confirm status of %s: %w", acct.SID, err)
		}
		if live.Status != acct.Status {
			// The store was behind (or ahead of) Twilio; trust Twilio.
			// A reactivation seen only now is judged at the next sync.
			if err := a.st.SetAccountStatus(acct.SID, live.Status, now); err != nil {
				return br, fmt.Errorf("set status of %s: %w", acct.SID, err)
			}
			acct.Status = live.Status
			if live.Status == statusClosed {
				return a.syncStatus(ctx, acct, br, set)
			}
			return br, nil
		}
		if acct.Status == statusSuspended {
			nb := br
			nb.State, nb.Since = StateExternalSuspended, now
			if err := a.transition(acct.SID, br, nb, rec("suspended outside sentinel")); err != nil {
				return br, err
			}
			a.tell(ctx, slack.KindManualSuspended, *acct, ActorOutside,
				"suspended outside sentinel: sentinel stops judging it until it is active again", now)
			return nb, nil
		}
		// Reactivated outside sentinel (the console, the API, Twilio
		// support): whoever did it, it is a reinstatement. The evidence
		// before it was there to be reviewed; windows restart at the
		// reactivation as Twilio dates it, so that what was sent between
		// it and now is judged.
		at := reactivatedAt(live.Updated, br.Since, now)
		why := map[string]string{
			StateOpen:              "reactivated outside sentinel while suspended by sentinel",
			StateExternalSuspended: "reactivated after a suspension outside sentinel",
			StateTwilioSuspended:   "reactivated after a suspension by Twilio",
		}[state]
		r := rec(why)
		r.Action = ActionReinstate
		r.Detail = fmt.Sprintf("reactivated at %s (Twilio's date_updated)", at.UTC().Format(time.RFC3339))
		if err := a.enterProbation(ctx, *acct, br, r, at, incidentRef{}); err != nil {
			return br, err
		}
		return a.st.Breaker(acct.SID)
	}

	// Protection follows the current policy set.
	protected := set != nil && set.Protected(acct.SID, acct.FriendlyName)
	switch {
	case protected && (state == StateClosed || state == StateProbation):
		nb := br
		nb.State, nb.Since = StateProtected, now
		r := store.AuditRecord{At: now, Actor: ActorSentinel, Reason: "on the policy's protected list"}
		if err := a.transition(acct.SID, br, nb, r); err != nil {
			return br, err
		}
		a.tell(ctx, slack.KindBlocked, *acct, ActorSentinel, "on the policy's protected list: alerts only, never suspended", now)
		return nb, nil
	case !protected && state == StateProtected:
		nb := br
		nb.State, nb.Since = StateClosed, now
		if now.Before(br.ProbationUntil) {
			nb.State = StateProbation
		}
		r := store.AuditRecord{At: now, Actor: ActorSentinel, Reason: "no longer on the policy's protected list"}
		if err := a.transition(acct.SID, br, nb, r); err != nil {
			return br, err
		}
		a.tell(ctx, slack.KindResolved, *acct, ActorSentinel, "no longer on the policy's protected list: suspension rules apply again", now)
		return nb, nil
	case state == StateProbation && !now.Before(br.ProbationUntil):
		nb := br
		nb.State, nb.Since = StateClosed, now
		r := store.AuditRecord{At: now, Actor: ActorSentinel, Reason: "probation ended"}
		if err := a.transition(acct.SID, br, nb, r); err != nil {
			return br, err
		}
		a.tell(ctx, slack.KindResolved, *acct, ActorSentinel, "probation ended: normal thresholds again", now)
		return nb, nil
	}
	return br, nil
}

// tell notifies a breaker transition that has no incident of its own. The
// slack package has no generic "transition" kind; the closest kind is used
// and Action says what happened.
func (a *Actor) tell(ctx context.Context, kind string, acct store.Account, actor, action string, now time.Time) {
	sev := slack.SeverityInfo
	if kind == slack.KindManualSuspended {
		sev = slack.SeverityWarning
	}
	a.notify(ctx, slack.Event{Kind: kind, Severity: sev, Subaccount: acct.SID, Name: acct.FriendlyName,
		Action: action, Actor: actor, At: now})
}

// refusalState returns the breaker state a Twilio refusal proves, or "".
func refusalState(code int) string {
	switch code {
	case 21478:
		return StateTwilioSuspended
	case 21479:
		return StateAccountClosed
	}
	return ""
}

// refusalText explains a Twilio refusal code.
func refusalText(code int) string {
	switch code {
	case 21476:
		return "Twilio refused (21476): the parent account is suspended"
	case 21478:
		return "Twilio refused (21478): the subaccount was suspended by Twilio; only Twilio support can lift it"
	case 21479:
		return "Twilio refused (21479): the subaccount is closed and cannot be reopened"
	case 20404:
		return "Twilio refused (20404): no such account"
	}
	return fmt.Sprintf("Twilio refused (%d)", code)
}

// definite reports whether err is a final answer (Twilio's 4xx other than
// 429, or the client's own refusal before any request): nothing changed.
// Anything else (retries exhausted, timeouts, a dropped connection, a
// cancelled context) leaves the outcome unknown.
func definite(err error) bool {
	if errors.Is(err, twilioapi.ErrParent) || errors.Is(err, twilioapi.ErrStatus) {
		return true
	}
	if errors.Is(err, twilioapi.ErrExhausted) {
		return false
	}
	var rest *client.TwilioRestError
	if !errors.As(err, &rest) {
		return false
	}
	return rest.Status >= 400 && rest.Status < 500 && rest.Status != 429
}
