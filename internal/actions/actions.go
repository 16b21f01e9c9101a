package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
)

// Breaker states (store.Breaker.State).
const (
	StateClosed            = "closed"
	StateOpen              = "open"
	StateProbation         = "probation"
	StateExternalSuspended = "external_suspended"
	StateTwilioSuspended   = "twilio_suspended"
	StateAccountClosed     = "account_closed"
	StateProtected         = "protected"
)

// States returns every breaker state, for metrics and documentation.
func States() []string {
	return []string{StateClosed, StateOpen, StateProbation, StateExternalSuspended,
		StateTwilioSuspended, StateAccountClosed, StateProtected}
}

// Audit record kinds and outcomes written by this package.
const (
	KindIntent     = "intent"     // an action about to be sent to Twilio
	KindOutcome    = "outcome"    // what came of an intent (IntentID)
	KindTransition = "transition" // a breaker change not caused by an intent
	KindDecision   = "decision"   // a dry-run suspension: everything but the Twilio call
	KindRefusal    = "refusal"    // a safety rail stopped a suspension

	OutcomeOK        = "ok"
	OutcomeRefused   = "refused"   // Twilio said no (21476, 21478, 21479, 20404, ...)
	OutcomeError     = "error"     // the request failed and nothing changed
	OutcomeAbandoned = "abandoned" // found unfinished after a crash; nothing changed
	OutcomeBlocked   = "blocked"   // a safety rail stopped it
	OutcomeDryRun    = "dry_run"

	ActionSuspend   = "suspend"
	ActionReinstate = "reinstate"
)

// ActorSentinel is the actor of everything sentinel does by itself.
const ActorSentinel = "sentinel"

// ActorOutside is the actor of changes sentinel noticed but did not make.
const ActorOutside = "twilio console/outside sentinel"

// Errors callers branch on. Messages wrap them with the reason.
var (
	// ErrRefused means a manual action was refused by sentinel or Twilio:
	// the parent, a closed subaccount, one suspended by Twilio, one that is
	// not suspended.
	ErrRefused = errors.New("refused")
	// ErrUnknownAccount means the SID is not an account sentinel knows.
	ErrUnknownAccount = errors.New("unknown subaccount")
	// ErrInvalid means a manual action lacks its SID, actor or reason, or
	// a SID is not one.
	ErrInvalid = errors.New("invalid request")
	// ErrUnchanged means a manual action found the subaccount already as
	// asked (a -suspend of a suspended subaccount): nothing was sent to
	// Twilio and nothing recorded. Its message says since when and by whom.
	ErrUnchanged = errors.New("nothing to do")
)

// Twilio is what actions needs of the Twilio client (*twilioapi.Client):
// account status, and today's usage for the spend snapshot a
// reinstatement takes.
type Twilio interface {
	FetchAccount(ctx context.Context, sid string) (twilioapi.Account, error)
	SetStatus(ctx context.Context, sid, status string) (twilioapi.Account, error)
	UsageToday(ctx context.Context, sid string) (traffic.Usage, error)
}

var _ Twilio = (*twilioapi.Client)(nil)

// Notifier delivers an event to people (*slack.Client's outbox, or a log).
type Notifier interface {
	Notify(ctx context.Context, ev slack.Event) error
}

var (
	_ Notifier = (*slack.Dispatcher)(nil)
	_ Notifier = (*slack.LogNotifier)(nil)
)

// Config holds the safety rails and options. Zero values mean the defaults.
type Config struct {
	// DryRun makes every automatic suspension a "would suspend": decided,
	// recorded (DryRun) and told, never sent to Twilio. Manual actions are
	// not affected.
	DryRun bool
	// MaxPerHour bounds suspensions by sentinel in any rolling hour.
	// Default 3.
	MaxPerHour int
	// MaxFraction bounds the fraction of active subaccounts suspended by
	// sentinel at once (breakers open, whether sentinel or a person through
	// sentinel opened them), rounded down but never below one. Default 0.10.
	MaxFraction float64
	// MaxStaleness: no suspension when an account's message coverage ends
	// more than this before now. Default 10m.
	MaxStaleness time.Duration
	// Reminder is how often an open incident is told again. Default 4h.
	Reminder time.Duration
	// NoSubaccountLabel drops the subaccount label from the breaker gauge,
	// which then counts subaccounts per state (very large fleets).
	NoSubaccountLabel bool
	// Command is how a person runs sentinel to reach this actor, such as
	// "/usr/local/bin/sentinel -control-socket /srv/s.sock": the start of
	// the reinstate command alerts and Status print, which must work as
	// pasted on this host. Default "sentinel".
	Command string
	// AuditScan bounds how many audit records are read to count the last
	// hour's suspensions. Default 10000; if the hour holds more, the limit
	// is taken as reached.
	AuditScan int
	// Interval is the interval of the scheduled Judge (the messages
	// schedule). A rule's `for` counts at most one evaluation per
	// interval, however many evaluations pushed evidence brings between
	// (see Nudge). Default 1m.
	Interval time.Duration
	// Allowance, if set, returns how much longer than MaxStaleness an
	// account's polled coverage may lag: the poller's reconcile interval
	// while the account's pushed events are trusted (poller.Allowance).
	Allowance func(sid string) time.Duration
	// EachRunCounts makes the first Judge of the Actor count every rule's
	// `for`, whenever the last one counted: for a run that is itself one
	// scheduled evaluation (-once from cron). Otherwise the first Judge
	// after a restart counts only what was not counted within Interval.
	EachRunCounts bool
}

func (c *Config) defaults() error {
	if c.MaxPerHour == 0 {
		c.MaxPerHour = 3
	}
	if c.MaxFraction == 0 {
		c.MaxFraction = 0.10
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = 10 * time.Minute
	}
	if c.Reminder == 0 {
		c.Reminder = 4 * time.Hour
	}
	if c.Command == "" {
		c.Command = "sentinel"
	}
	if c.AuditScan == 0 {
		c.AuditScan = 10000
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	switch {
	case c.MaxPerHour < 0:
		return fmt.Errorf("max suspensions per hour %d: want at least 1", c.MaxPerHour)
	case c.MaxFraction < 0 || c.MaxFraction > 1:
		return fmt.Errorf("max suspended fraction %g: want 0..1", c.MaxFraction)
	case c.MaxStaleness < 0:
		return fmt.Errorf("max staleness %v: want a positive duration", c.MaxStaleness)
	case c.Reminder < 0:
		return fmt.Errorf("reminder %v: want a positive duration", c.Reminder)
	case c.AuditScan < 0:
		return fmt.Errorf("audit scan %d: want a positive number", c.AuditScan)
	case c.Interval < 0:
		return fmt.Errorf("interval %v: want a positive duration", c.Interval)
	}
	return nil
}

// Actor runs the breaker: Judge, Reconcile and the manual actions. Its
// methods are safe for concurrent use; they run one at a time.
type Actor struct {
	cfg      Config
	st       *store.Store
	tw       Twilio
	policies func() *policy.Set
	notifier Notifier
	log      *slog.Logger
	now      func() time.Time
	m        *metrics

	mu sync.Mutex // serialises every action
	// scheduled is when the last scheduled Judge evaluated (its now).
	scheduled time.Time
	// started is when the Actor was made: a count after it was made by
	// this run (a Nudge before the first scheduled Judge).
	started time.Time
}

// New returns an Actor. policies returns the current policy set on every
// call, so a reload takes effect at the next cycle; it may return nil while
// no valid set is loaded, and Judge then refuses to run.
func New(cfg Config, st *store.Store, tw Twilio, policies func() *policy.Set, n Notifier,
	reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*Actor, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("new actions: %w", err)
	}
	switch {
	case st == nil:
		return nil, errors.New("new actions: no store")
	case tw == nil:
		return nil, errors.New("new actions: no twilio client")
	case policies == nil:
		return nil, errors.New("new actions: no policies")
	case n == nil:
		return nil, errors.New("new actions: no notifier")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	m, err := newMetrics(reg, cfg.NoSubaccountLabel)
	if err != nil {
		return nil, fmt.Errorf("new actions: %w", err)
	}
	return &Actor{cfg: cfg, st: st, tw: tw, policies: policies, notifier: n, log: log, now: now, m: m, started: now()}, nil
}

// Policies returns the policy set the Actor judges with now; nil while no
// valid set is loaded.
func (a *Actor) Policies() *policy.Set { return a.policies() }

// allowance is Config.Allowance of sid.
func (a *Actor) allowance(sid string) time.Duration {
	if a.cfg.Allowance == nil {
		return 0
	}
	return max(a.cfg.Allowance(sid), 0)
}

// MaxStaleness is Config.MaxStaleness.
func (a *Actor) MaxStaleness() time.Duration { return a.cfg.MaxStaleness }

// notify hands ev to the notifier. A failure is logged, not returned: the
// action it reports has happened and must not be undone or repeated.
func (a *Actor) notify(ctx context.Context, ev slack.Event) {
	if ev.At.IsZero() {
		ev.At = a.now()
	}
	if err := a.notifier.Notify(ctx, ev); err != nil {
		a.log.Error("notification not queued", "subaccount", ev.Subaccount, "rule", ev.Rule, "action", ev.Kind, "err", err)
	}
}

// reinstateHint is the exact command that reinstates sid.
func (a *Actor) reinstateHint(sid string) string {
	return reinstateCommand(a.cfg.Command, sid)
}

// reinstateCommand is the command that reinstates sid, command being how
// to run sentinel.
func reinstateCommand(command, sid string) string {
	return fmt.Sprintf("%s -reinstate %s -reason \"<why>\"", command, sid)
}
