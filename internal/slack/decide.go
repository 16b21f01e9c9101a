package slack

import (
	"context"
	"time"
)

// Decisions a person can make from an incident message.
const (
	// DecideReinstate reinstates the suspended subaccount, through the same
	// audited path as sentinel -reinstate; probation follows.
	DecideReinstate = "reinstate"
	// DecideKeep records that the subaccount stays suspended, and why;
	// the incident is not reminded of again.
	DecideKeep = "keep_suspended"
	// DecideAck acknowledges an alert: no reminders until the incident
	// resolves or its severity changes.
	DecideAck = "acknowledge"
)

// Decision is a person's decision on one incident, as a button (and, for a
// reinstatement or keeping it suspended, a modal with the reason) carries
// it. The incident is named by (Subaccount, Rule, Opened): a decision on an
// incident that is no longer the current one, or that is already decided,
// is refused.
type Decision struct {
	Action     string // one of the Decide constants
	Subaccount string
	Rule       string
	Opened     time.Time
	// By is who decides, for the audit log: "U123ABC (ana) via Slack".
	By     string
	Reason string
	// DryRun: record the decision and what it would do, send nothing to
	// Twilio.
	DryRun bool
}

// Preview is what a decision would do, shown before it is made.
type Preview struct {
	// Refused says why the decision cannot be made ("" when it can): the
	// button is stale, the subaccount is the parent, ...
	Refused string
	// Follows says what follows the decision, in words: for a
	// reinstatement, the probation.
	Follows string
}

// Outcome is what came of a decision.
type Outcome struct {
	// Refused says why nothing was done ("" when it was). The refusal is
	// in the audit log.
	Refused string
	// Done says what was done, in words: "reinstated; on probation until
	// 2026-11-27 22:50 UTC".
	Done string
}

// Decider carries out people's decisions: *actions.Actor, through the same
// checks, write-ahead audit and probation as the command line.
type Decider interface {
	// Preview checks d against the current incident and breaker and says
	// what it would do. It changes nothing.
	Preview(ctx context.Context, d Decision) (Preview, error)
	// Decide carries d out once: a second decision on the same incident
	// is refused as stale. An error means it failed (Twilio or the store),
	// not that it was refused.
	Decide(ctx context.Context, d Decision) (Outcome, error)
	// Refused records in the audit log that d was refused before it
	// reached sentinel's checks (the person may not decide), and why.
	Refused(ctx context.Context, d Decision, why string) error
}
