package actions

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"sentinel/internal/store"
)

// Change is one change of a subaccount's breaker as its audit log records
// it. Every change passes transition, whose record ends by naming it
// ("breaker closed -> open"), so the audit log alone says when a
// subaccount was suspended, by whom, and when it was reinstated: what a
// backtest replays, and what an explanation shows.
type Change struct {
	// At is when sentinel recorded the change; for one made outside
	// sentinel (the console, Twilio), when its account sync noticed it.
	At       time.Time
	From, To string // breaker states
	// Actor is ActorSentinel, ActorOutside or the person who acted.
	Actor string
	// Rule is the rule behind a suspension by sentinel.
	Rule string
	// ReinstatedAt is, for a reinstatement, the instant the subaccount was
	// active again, where rule windows restart (store.Breaker's): the
	// intent of a reinstatement through sentinel, or Twilio's date_updated
	// of a reactivation made outside it, to the second.
	ReinstatedAt time.Time
	// SpendDay and SpendBase are, for a reinstatement, the day's spend
	// noted at it (store.Breaker's); SpendDay is empty when none was
	// (or the record predates the note).
	SpendDay  string
	SpendBase float64
	// ID is the audit record's.
	ID uint64
}

// Suspension reports whether c suspended the subaccount, by anyone, or
// closed it.
func (c Change) Suspension() bool { return !suspendedState(c.From) && suspendedState(c.To) }

// Offence reports whether c is a suspension sentinel made by itself: what
// lengthens the next probation and counts against its blast radius.
func (c Change) Offence() bool {
	return c.Suspension() && c.To == StateOpen && c.Actor == ActorSentinel
}

// Reinstatement reports whether c made a suspended subaccount active again:
// every reactivation is a reinstatement, whoever made it.
func (c Change) Reinstatement() bool { return suspendedState(c.From) && !suspendedState(c.To) }

var (
	changeRE      = regexp.MustCompile(`breaker ([a-z_]+) -> ([a-z_]+)$`)
	reactivatedRE = regexp.MustCompile(`reactivated at (\S+) \(Twilio's date_updated\)`)
	spendNoteRE   = regexp.MustCompile(`spend at the reinstatement (\S+) on (\d{4}-\d\d-\d\d)`)
)

// spendNote says, in an audit record, the day's spend noted at a
// reinstatement, exactly.
func spendNote(day string, base float64) string {
	return fmt.Sprintf("spend at the reinstatement %s on %s", strconv.FormatFloat(base, 'g', -1, 64), day)
}

// joinDetail joins two parts of an audit record's detail.
func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// Changes returns the breaker changes that recs, one subaccount's audit
// records in any order, hold, oldest first.
func Changes(recs []store.AuditRecord) []Change {
	intents := map[uint64]time.Time{}
	for _, r := range recs {
		if r.Kind == KindIntent {
			intents[r.ID] = r.At
		}
	}
	var out []Change
	for _, r := range recs {
		m := changeRE.FindStringSubmatch(r.Detail)
		if m == nil {
			continue
		}
		c := Change{At: r.At, From: m[1], To: m[2], Actor: r.Actor, Rule: r.Rule, ID: r.ID}
		if c.Reinstatement() {
			// As enterProbation dates it.
			c.ReinstatedAt = r.At
			if at, ok := intents[r.IntentID]; ok && r.Kind == KindOutcome {
				c.ReinstatedAt = at
			} else if m := reactivatedRE.FindStringSubmatch(r.Detail); m != nil {
				if at, err := time.Parse(time.RFC3339, m[1]); err == nil {
					c.ReinstatedAt = at.UTC()
				}
			}
			if m := spendNoteRE.FindStringSubmatch(r.Detail); m != nil {
				if base, err := strconv.ParseFloat(m[1], 64); err == nil {
					c.SpendDay, c.SpendBase = m[2], base
				}
			}
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(x, y Change) int {
		if c := x.At.Compare(y.At); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
	return out
}
