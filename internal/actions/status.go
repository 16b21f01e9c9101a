package actions

import (
	"cmp"
	"slices"
	"time"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// StatusRow is one account's line in `sentinel -status`.
type StatusRow struct {
	SID            string    `json:"sid"`
	Name           string    `json:"name"`
	Parent         bool      `json:"parent,omitempty"`
	Status         string    `json:"status"`  // Twilio's, as last seen
	Breaker        string    `json:"breaker"` // breaker state
	BreakerSince   time.Time `json:"breaker_since,omitzero"`
	ProbationUntil time.Time `json:"probation_until,omitzero"`
	// Outbound1h counts outbound messages in the last hour.
	Outbound1h int64 `json:"outbound_1h"`
	// Filtered24h is the 30007 rate over the last 24h: 30007s / finished
	// outbound messages; 0 without traffic.
	Filtered24h float64 `json:"rate_30007_24h"`
	// OptOut24h is the opt-out rate over the last 24h: inbound opt-outs /
	// outbound messages; 0 without traffic.
	OptOut24h float64 `json:"opt_out_rate_24h"`
	// IgnoredOptOuts24h counts the last 24h's opt-outs that did not count:
	// repeats from a number whose opt-out already counted, and STOPs from
	// numbers the subaccount never messaged. Many of them is an attack on
	// the subaccount's opt-out rate, or a list problem worth a look.
	IgnoredOptOuts24h int64 `json:"ignored_opt_outs_24h"`
	// SpendToday is today's (UTC) spend in USD as Twilio last reported it.
	SpendToday float64 `json:"spend_today_usd"`
	// LastPoll is the last successful read of the message log.
	LastPoll time.Time `json:"last_poll,omitzero"`
}

// StatusRows computes every account's status line from the store at now. It
// only reads, so it works through the daemon and on a directly opened DB.
func StatusRows(st *store.Store, now time.Time) ([]StatusRow, error) {
	accts, err := st.Accounts()
	if err != nil {
		return nil, err
	}
	day := now.UTC().Format(time.DateOnly)
	hourFrom := traffic.WindowStart(now, time.Hour)
	dayFrom := traffic.WindowStart(now, 24*time.Hour)
	to := traffic.BucketStart(now).Add(traffic.BucketWidth)
	rows := make([]StatusRow, 0, len(accts))
	for _, acct := range accts {
		br, err := st.Breaker(acct.SID)
		if err != nil {
			return nil, err
		}
		buckets, err := st.Buckets(acct.SID, dayFrom, to)
		if err != nil {
			return nil, err
		}
		usage, err := st.Usage(acct.SID, day, day)
		if err != nil {
			return nil, err
		}
		ps, err := st.PollState(acct.SID, "messages")
		if err != nil {
			return nil, err
		}
		row := StatusRow{
			SID: acct.SID, Name: acct.FriendlyName, Parent: acct.Parent, Status: acct.Status,
			Breaker: stateOf(br), BreakerSince: br.Since, LastPoll: ps.LastSuccess,
		}
		if row.Breaker == StateProbation {
			row.ProbationUntil = br.ProbationUntil
		}
		row.Outbound1h = traffic.Sum(buckets, hourFrom, to).Outbound
		c := traffic.Sum(buckets, dayFrom, to)
		if c.Finished > 0 {
			row.Filtered24h = float64(c.ErrorCount(30007)) / float64(c.Finished)
		}
		if c.Outbound > 0 {
			row.OptOut24h = float64(c.OptOuts) / float64(c.Outbound)
		}
		row.IgnoredOptOuts24h = c.RepeatedOptOuts + c.UnsolicitedOptOuts
		for _, u := range usage {
			if u.Day == day {
				row.SpendToday = u.TotalPrice
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// HistoryEntry is one line of `sentinel -history`: an incident or an audit
// record (action, outcome, transition, decision, refusal).
type HistoryEntry struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"` // "incident" or the audit record's kind
	ID      uint64    `json:"id,omitempty"`
	Action  string    `json:"action,omitempty"`
	Rule    string    `json:"rule,omitempty"`
	State   string    `json:"state,omitempty"` // incidents: firing, suspended, resolved, reinstated
	Actor   string    `json:"actor,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	DryRun  bool      `json:"dry_run,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	// Resolved is when an incident ended; zero while it lasts.
	Resolved time.Time `json:"resolved,omitzero"`
}

// historyLimit bounds the audit records History reads.
const historyLimit = 1000

// History returns sid's incidents and its last audit records (actions,
// outcomes, transitions, decisions, refusals), newest first. It only reads.
func History(st *store.Store, sid string) ([]HistoryEntry, error) {
	if _, err := st.Account(sid); err != nil {
		return nil, err
	}
	incs, err := st.Incidents(sid)
	if err != nil {
		return nil, err
	}
	recs, err := st.Audit(sid, historyLimit)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, 0, len(incs)+len(recs))
	for _, inc := range incs {
		out = append(out, HistoryEntry{At: inc.Opened, Kind: "incident", Rule: inc.Rule, State: inc.State, Resolved: inc.Resolved})
	}
	for _, r := range recs {
		out = append(out, HistoryEntry{At: r.At, Kind: r.Kind, ID: r.ID, Action: r.Action, Rule: r.Rule, Actor: r.Actor,
			Reason: r.Reason, Outcome: r.Outcome, DryRun: r.DryRun, Detail: r.Detail})
	}
	slices.SortStableFunc(out, func(x, y HistoryEntry) int {
		if c := y.At.Compare(x.At); c != 0 {
			return c
		}
		return cmp.Compare(y.ID, x.ID)
	})
	return out, nil
}
