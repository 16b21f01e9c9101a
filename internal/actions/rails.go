package actions

import (
	"cmp"
	"fmt"
	"math"
	"time"

	"sentinel/internal/policy"
	"sentinel/internal/traffic"
)

// Rails are the safety rails an automatic suspension passes besides the
// policy itself: the blast radius (suspensions by sentinel per rolling
// hour, and as a fraction of the active subaccounts) and the staleness
// bound. The pipeline decides with these methods, and so does a backtest
// (internal/backtest), which replays history without acting: one way to
// decide.
type Rails struct {
	// MaxPerHour bounds suspensions by sentinel in any rolling hour.
	MaxPerHour int
	// MaxFraction bounds the fraction of the active subaccounts suspended
	// by sentinel at once, rounded down but never below one.
	MaxFraction float64
	// MaxStaleness: no suspension when an account's message coverage ends
	// more than this before now.
	MaxStaleness time.Duration
}

// DefaultRails are the rails of a Config left at its defaults.
func DefaultRails() Rails {
	var c Config
	_ = c.defaults()
	return c.rails()
}

func (c Config) rails() Rails {
	return Rails{MaxPerHour: c.MaxPerHour, MaxFraction: c.MaxFraction, MaxStaleness: c.MaxStaleness}
}

// MaxOpen returns how many subaccounts sentinel may hold suspended at once
// among active ones: MaxFraction of them, rounded down, at least one.
func (r Rails) MaxOpen(active int) int {
	return max(1, int(math.Floor(r.MaxFraction*float64(active))))
}

// Stale reports whether data known complete only until cov.Until is too
// old at now to suspend on.
func (r Rails) Stale(cov traffic.Coverage, now time.Time) bool {
	return cov.Until.Before(now.Add(-r.MaxStaleness))
}

// Blast returns the blast-radius rail that stops one more suspension, and
// why in words, or "" when it may go ahead: hour is how many suspensions
// sentinel made in the last hour, open how many subaccounts it holds
// suspended, active how many it could suspend (InFleet), each including
// this cycle's.
func (r Rails) Blast(hour, open, active int) (rail, why string) {
	switch maxOpen := r.MaxOpen(active); {
	case hour >= r.MaxPerHour:
		return RailPerHour, fmt.Sprintf("blocked by safety rail: at most %d suspensions per hour (%d in the last hour)",
			r.MaxPerHour, hour)
	case open >= maxOpen:
		return RailFraction, fmt.Sprintf("blocked by safety rail: at most %d of %d active subaccounts suspended at once (%.0f%%)",
			maxOpen, active, r.MaxFraction*100)
	}
	return "", ""
}

// InFleet says how one account counts toward the blast radius: active,
// among the subaccounts sentinel could suspend (active in Twilio and not
// suspended, or suspended by sentinel itself), and open, suspended by
// sentinel itself (state is its breaker state; manual marks an open
// breaker a person opened, which counts toward neither). The parent and
// closed subaccounts count toward neither.
func InFleet(parent bool, status, state string, manual bool) (active, open bool) {
	if parent || status == statusClosed || state == StateAccountClosed {
		return false, false
	}
	automatic := state == StateOpen && !manual
	return automatic || (status == statusActive && !suspendedState(state)), automatic
}

// Suspended reports whether a breaker state means the subaccount is
// suspended (by anyone) or gone: nothing is judged, nothing suspended.
func Suspended(state string) bool { return suspendedState(state) }

// CompareCandidates orders two firing suspension decisions, of subaccounts
// x and y, for a limited budget of suspensions: negative when x goes
// first. The worst offenders go first, by severity, then by the strength of
// the evidence (value over threshold), then by SID and rule, so that the
// same data always gives the same order.
func CompareCandidates(xSID string, x policy.Decision, ySID string, y policy.Decision) int {
	if c := cmp.Compare(severityRank(y.Severity), severityRank(x.Severity)); c != 0 {
		return c
	}
	if c := cmp.Compare(strength(y), strength(x)); c != 0 {
		return c
	}
	if c := cmp.Compare(xSID, ySID); c != 0 {
		return c
	}
	return cmp.Compare(x.Rule, y.Rule)
}

// strength is the evidence's strength: how far over its threshold it is.
func strength(d policy.Decision) float64 {
	if t := d.Evidence.Threshold; t > 0 {
		return d.Evidence.Value / t
	}
	return d.Evidence.Value
}

// severityRank orders severities, worst highest.
func severityRank(sev string) int {
	switch sev {
	case policy.SeverityCritical:
		return 3
	case policy.SeverityWarning:
		return 2
	case policy.SeverityInfo:
		return 1
	}
	return 0
}
