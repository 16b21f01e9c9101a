package slack

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event kinds. An Event of one of the incident kinds with a Subaccount, a
// Rule and an Opened time belongs to the incident (Subaccount, Rule, Opened).
const (
	KindFiring          = "firing"           // a rule trips; the incident opens
	KindSuspended       = "suspended"        // sentinel suspended the subaccount
	KindWouldSuspend    = "would_suspend"    // dry-run: it would have suspended
	KindBlocked         = "blocked"          // a safety rail stopped the suspension
	KindReminder        = "reminder"         // the incident is still open
	KindReinstated      = "reinstated"       // a person reinstated the subaccount
	KindResolved        = "resolved"         // the rule stopped firing
	KindSystemic        = "systemic"         // many subaccounts at once: likely not their fault
	KindBlind           = "blind"            // sentinel cannot see (polls failing, stale data)
	KindPolicyRejected  = "policy_rejected"  // a policy file was refused
	KindManualSuspended = "manual_suspended" // a person suspended through sentinel
	KindKeptSuspended   = "kept_suspended"   // a person decided to keep it suspended (Slack)
	KindAcknowledged    = "acknowledged"     // a person acknowledged an alert (Slack)
	KindWouldReinstate  = "would_reinstate"  // dry-run: a person would have reinstated it (Slack)
)

// Offers: the decisions an incident message offers a person, as buttons
// (Event.Offer), when sentinel takes Slack interactions.
const (
	OfferSuspended    = "suspended"     // Reinstate…, Keep suspended…
	OfferWouldSuspend = "would_suspend" // the same in dry-run: recorded, nothing sent to Twilio
	OfferAlert        = "alert"         // Acknowledge
)

// Severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Units of Event.Value and Event.Threshold.
const (
	UnitRatio = "ratio" // a fraction, rendered as a percentage
	UnitUSD   = "usd"   // dollars
	UnitCount = "count" // a plain number
)

// Event is one thing a compliance person should hear about. It is plain data:
// the actions package fills it in, Notify stores it in the outbox as JSON, and
// the dispatcher renders it when it delivers it, so that a follow-up rendered
// later can still find its incident's thread.
type Event struct {
	Kind       string `json:"kind"`               // one of the Kind constants
	Severity   string `json:"severity,omitempty"` // one of the Severity constants; "" means info
	Subaccount string `json:"subaccount,omitempty"`
	Name       string `json:"name,omitempty"` // the subaccount's friendly name (customer-controlled text)
	Rule       string `json:"rule,omitempty"`

	// Opened is when the incident (Subaccount, Rule) opened. It tells this
	// incident apart from an earlier one of the same rule and names the
	// incident in messages that cannot be threaded. Zero for events that
	// belong to no incident.
	Opened time.Time `json:"opened,omitzero"`

	Signal    string  `json:"signal,omitempty"` // what was measured, e.g. "30007 rate"
	Unit      string  `json:"unit,omitempty"`   // one of the Unit constants; "" means count
	Value     float64 `json:"value,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
	// Numerator and Denominator are the counts behind a ratio (25 filtered of
	// 200 sent); the Denominator is the window's volume. Both zero: not shown.
	Numerator   float64   `json:"numerator,omitempty"`
	Denominator float64   `json:"denominator,omitempty"`
	From        time.Time `json:"from,omitzero"` // the measured window [From, To)
	To          time.Time `json:"to,omitzero"`
	Examples    []string  `json:"examples,omitempty"` // message SIDs; the first few are shown
	// Measure says the evidence in plain words, with the threshold and
	// what crossing it does: "30007 filtering: 9.1% of 220 finished
	// messages in the last hour (suspends at 5%)". It replaces the
	// measured value, window and volume when set.
	Measure string `json:"measure,omitempty"`

	Action    string `json:"action,omitempty"`    // what was done: "suspended", "would suspend (dry-run)", "blocked by safety rail: max 3 per hour", ...
	Reinstate string `json:"reinstate,omitempty"` // the exact command, e.g. sentinel -reinstate AC... -reason "..."
	// Offer is the decisions the message offers (one of the Offer
	// constants), shown as buttons when Slack interactions are on. Only an
	// incident's events offer any: the buttons name the incident.
	Offer  string    `json:"offer,omitempty"`
	Actor  string    `json:"actor,omitempty"` // who acted, for manual actions
	Reason string    `json:"reason,omitempty"`
	Detail string    `json:"detail,omitempty"` // free text: Twilio's error, the rejected policy's error, ...
	At     time.Time `json:"at"`               // when it happened
}

// payloadVersion is the version of the outbox encoding written by Encode. A
// newer binary may write a higher version; DecodeEvent refuses it instead of
// guessing, and the dispatcher dead-letters it with that reason.
const payloadVersion = 1

// maxPayload bounds an outbox payload. Events are small; anything bigger was
// not written by Encode.
const maxPayload = 64 << 10

type envelope struct {
	V     int   `json:"v"`
	Event Event `json:"event"`
}

// ErrPayload is wrapped by every DecodeEvent error.
var ErrPayload = errors.New("bad outbox payload")

// Encode returns the outbox payload for ev. It validates ev first, so a
// malformed event is refused where it is made, not found later in the outbox.
func Encode(ev Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(envelope{V: payloadVersion, Event: ev})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	if len(b) > maxPayload {
		return nil, fmt.Errorf("encode event: %d bytes, more than %d", len(b), maxPayload)
	}
	return b, nil
}

// DecodeEvent reads an outbox payload written by Encode. The payload comes
// back from disk, so anything may be in it: errors wrap ErrPayload.
func DecodeEvent(b []byte) (Event, error) {
	if len(b) > maxPayload {
		return Event{}, fmt.Errorf("%w: %d bytes, more than %d", ErrPayload, len(b), maxPayload)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrPayload, err)
	}
	if env.V != payloadVersion {
		return Event{}, fmt.Errorf("%w: version %d, want %d", ErrPayload, env.V, payloadVersion)
	}
	if err := env.Event.Validate(); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrPayload, err)
	}
	return env.Event, nil
}

var (
	kinds = map[string]bool{
		KindFiring: true, KindSuspended: true, KindWouldSuspend: true, KindBlocked: true,
		KindReminder: true, KindReinstated: true, KindResolved: true, KindSystemic: true,
		KindBlind: true, KindPolicyRejected: true, KindManualSuspended: true,
		KindKeptSuspended: true, KindAcknowledged: true, KindWouldReinstate: true,
	}
	offers     = map[string]bool{"": true, OfferSuspended: true, OfferWouldSuspend: true, OfferAlert: true}
	severities = map[string]bool{"": true, SeverityInfo: true, SeverityWarning: true, SeverityCritical: true}
	units      = map[string]bool{"": true, UnitRatio: true, UnitUSD: true, UnitCount: true}
)

// Validate reports whether ev can be rendered: a known kind, severity and
// unit. It does not judge text; rendering escapes and truncates it.
func (ev Event) Validate() error {
	switch {
	case !kinds[ev.Kind]:
		return fmt.Errorf("event kind %q unknown", ev.Kind)
	case !severities[ev.Severity]:
		return fmt.Errorf("event severity %q unknown", ev.Severity)
	case !units[ev.Unit]:
		return fmt.Errorf("event unit %q unknown", ev.Unit)
	case !offers[ev.Offer]:
		return fmt.Errorf("event offer %q unknown", ev.Offer)
	}
	return nil
}

// incident reports whether ev belongs to an incident, whose first delivered
// message is the root of the incident's Slack thread.
func (ev Event) incident() bool {
	return ev.Subaccount != "" && ev.Rule != "" && !ev.Opened.IsZero()
}
