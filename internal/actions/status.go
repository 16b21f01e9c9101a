package actions

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"sentinel/internal/policy"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// StatusRow is one account's line in `sentinel -status`: its state in
// words, what needs attention and why, and each rule's value over that
// rule's own window, as the current policies judge it now.
type StatusRow struct {
	SID            string    `json:"sid"`
	Name           string    `json:"name"`
	Parent         bool      `json:"parent,omitempty"`
	Status         string    `json:"status"`  // Twilio's, as last seen
	Breaker        string    `json:"breaker"` // breaker state
	BreakerSince   time.Time `json:"breaker_since,omitzero"`
	ProbationUntil time.Time `json:"probation_until,omitzero"`
	// State says the breaker state in words: "suspended by sentinel",
	// "on probation until ...", "watching".
	State string `json:"state"`
	// Attention orders rows by what needs a person: suspended, tripping (a
	// suspension rule over its threshold), warning (an alert rule firing,
	// or data too old to judge), or ok.
	Attention string `json:"attention"`
	// Note is the rule and reason behind anything but ok, in plain words.
	Note string `json:"note,omitempty"`
	// Reinstate is the command that reinstates a suspended subaccount, as
	// alerts print it (Config.Command), when a person can: empty for one
	// that is not suspended, or that only Twilio can reinstate.
	Reinstate string `json:"reinstate,omitempty"`
	// Rules is every rule that applies to the account, in policy order.
	Rules []RuleView `json:"rules,omitempty"`
	// Outbound1h counts outbound messages in the last hour.
	Outbound1h int64 `json:"outbound_1h"`
	// IgnoredOptOuts24h counts the last 24h's opt-outs that did not count:
	// repeats from a number whose opt-out already counted, and STOPs from
	// numbers the subaccount never messaged. Many of them is an attack on
	// the subaccount's opt-out rate, or a list problem worth a look.
	IgnoredOptOuts24h int64 `json:"ignored_opt_outs_24h"`
	// SpendToday is today's (UTC) spend as Twilio last reported it.
	SpendToday float64 `json:"spend_today"`
	// LastPoll is the last successful read of the message log; DataUntil
	// the end of its coverage, up to which it is known complete.
	LastPoll  time.Time `json:"last_poll,omitzero"`
	DataUntil time.Time `json:"data_until,omitzero"`
}

// Attention values, most urgent first.
const (
	AttentionSuspended = "suspended"
	AttentionTripping  = "tripping"
	AttentionWarning   = "warning"
	AttentionOK        = "ok"
)

// RuleView is one rule's judgement of one account.
type RuleView struct {
	Rule     string `json:"rule"`
	Signal   string `json:"signal"`
	Action   string `json:"action"` // alert | suspend
	Severity string `json:"severity"`
	// Result is the policy result: ok, pending, firing, resolved, unknown,
	// insufficient.
	Result      string    `json:"result"`
	Value       float64   `json:"value"`
	Threshold   float64   `json:"threshold"`
	Resolve     float64   `json:"resolve"`
	Numerator   float64   `json:"numerator"`
	Denominator float64   `json:"denominator"`
	MinVolume   float64   `json:"min_volume,omitempty"`
	Window      string    `json:"window"` // the rule's window: "1h", "today"
	From        time.Time `json:"from,omitzero"`
	To          time.Time `json:"to,omitzero"`
	// Consecutive is the rule's run of evaluations over its threshold, For
	// how many it takes to fire.
	Consecutive int  `json:"consecutive"`
	For         int  `json:"for"`
	Probation   bool `json:"probation,omitempty"`
	// Text says the value against the threshold in plain words.
	Text string `json:"text"`
	// Reason says why a result is unknown, insufficient or skipped.
	Reason string `json:"reason,omitempty"`
}

// Status returns every account's status line as the daemon's current
// policies judge it now, with the command that reinstates each suspended
// one.
func (a *Actor) Status(ctx context.Context) ([]StatusRow, error) {
	rows, err := StatusRows(ctx, a.st, a.policies(), a.now(), a.cfg.MaxStaleness)
	AddReinstate(rows, a.cfg.Command)
	return rows, err
}

// AddReinstate sets the Reinstate command of every row that a person can
// reinstate: suspended, and not by Twilio. command is how to run sentinel
// (Config.Command).
func AddReinstate(rows []StatusRow, command string) {
	for i, r := range rows {
		if r.Attention == AttentionSuspended && r.Breaker != StateTwilioSuspended {
			rows[i].Reinstate = reinstateCommand(command, r.SID)
		}
	}
}

// StatusRows computes every account's status line from the store at now,
// judging it with set (nil: the rules are left out) as a cycle with
// Config.MaxStaleness maxStaleness does. It only reads, so it works
// through the daemon and on a directly opened database; it evaluates
// exactly as a cycle does, but writes nothing and tells nobody.
func StatusRows(ctx context.Context, st *store.Store, set *policy.Set, now time.Time, maxStaleness time.Duration) ([]StatusRow, error) {
	accts, err := st.Accounts()
	if err != nil {
		return nil, err
	}
	return statusRows(ctx, st, set, now, maxStaleness, accts)
}

// StatusOf is StatusRows for one account, sid; the error wraps
// ErrUnknownAccount when the store does not know it.
func StatusOf(ctx context.Context, st *store.Store, set *policy.Set, sid string, now time.Time, maxStaleness time.Duration) (StatusRow, error) {
	acct, err := storedAccount(st, sid)
	if err != nil {
		return StatusRow{}, err
	}
	rows, err := statusRows(ctx, st, set, now, maxStaleness, []store.Account{acct})
	if err != nil {
		return StatusRow{}, err
	}
	return rows[0], nil
}

// statusRows computes the status lines of accts.
func statusRows(ctx context.Context, st *store.Store, set *policy.Set, now time.Time, maxStaleness time.Duration, accts []store.Account) ([]StatusRow, error) {
	snap := &snapshot{st: st}
	snap.loadBreakers()
	vs := make([]*verdict, 0, len(accts))
	bySID := map[string]*verdict{}
	for i := range accts {
		br, err := snap.breaker(accts[i].SID)
		if err != nil {
			return nil, err
		}
		v := &verdict{acct: &accts[i], br: br}
		bySID[accts[i].SID] = v
		if accts[i].Status == statusActive && !suspendedState(stateOf(br)) {
			vs = append(vs, v)
		}
	}
	day := now.UTC().Format(time.DateOnly)
	if set != nil {
		days := max(usageDays, set.UsageDays())
		snap.loadRest(now.UTC().AddDate(0, 0, 1-days).Format(time.DateOnly), day)
		e := newEvaluator(set, now, maxStaleness, slog.New(slog.DiscardHandler), false)
		e.all = true
		if err := evaluateAll(ctx, st, snap, vs, e); err != nil {
			return nil, err
		}
	}
	rules := map[string]policy.Rule{}
	if set != nil {
		for _, r := range set.Rules() {
			rules[r.Name] = r
		}
	}
	hourFrom := traffic.WindowStart(now, time.Hour)
	dayFrom := traffic.WindowStart(now, 24*time.Hour)
	to := traffic.BucketStart(now).Add(traffic.BucketWidth)
	rows := make([]StatusRow, 0, len(accts))
	for _, acct := range accts {
		v := bySID[acct.SID]
		br := v.br
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
		cov, err := st.Coverage(acct.SID)
		if err != nil {
			return nil, err
		}
		row := StatusRow{
			SID: acct.SID, Name: acct.FriendlyName, Parent: acct.Parent, Status: acct.Status,
			Breaker: stateOf(br), BreakerSince: br.Since, LastPoll: ps.LastSuccess, DataUntil: cov.Until,
		}
		if row.Breaker == StateProbation {
			row.ProbationUntil = br.ProbationUntil
		}
		row.Outbound1h = traffic.Sum(buckets, hourFrom, to).Outbound
		c := traffic.Sum(buckets, dayFrom, to)
		row.IgnoredOptOuts24h = c.RepeatedOptOuts + c.UnsolicitedOptOuts
		for _, u := range usage {
			if u.Day == day {
				row.SpendToday = u.TotalPrice
			}
		}
		for _, j := range v.all {
			if j.d.Result == policy.Skipped {
				continue
			}
			row.Rules = append(row.Rules, ruleView(rules[j.d.Rule], j))
		}
		row.State, row.Attention, row.Note = judgeRow(st, acct, br, row.Rules, cov, now)
		rows = append(rows, row)
	}
	slices.SortStableFunc(rows, func(x, y StatusRow) int {
		if c := cmp.Compare(attentionRank(x.Attention), attentionRank(y.Attention)); c != 0 {
			return c
		}
		return cmp.Compare(x.SID, y.SID)
	})
	return rows, nil
}

// View is one rule's decision as a RuleView, next the rule's state after
// it: what -status shows, for a decision made elsewhere (an explanation
// of a subaccount that is not judged now shows its last judgement).
func View(r policy.Rule, d policy.Decision, next policy.State) RuleView {
	return ruleView(r, judged{d: d, next: next})
}

// ruleView is one decision as a RuleView.
func ruleView(r policy.Rule, j judged) RuleView {
	d, ev := j.d, j.d.Evidence
	w := policy.FormatDuration(r.Window)
	if r.Window == 0 {
		w = "today"
	}
	forN := r.For
	if d.Probation {
		forN = 1
	}
	rv := RuleView{
		Rule: d.Rule, Signal: r.Signal, Action: d.Action, Severity: d.Severity, Result: string(d.Result),
		Value: ev.Value, Threshold: ev.Threshold, Resolve: ev.ResolveAt, Numerator: ev.Numerator,
		Denominator: ev.Denominator, MinVolume: ev.MinVolume, Window: w, From: ev.From, To: ev.To,
		Consecutive: j.next.Consecutive, For: forN, Probation: d.Probation, Reason: ev.Reason,
	}
	switch d.Result {
	case policy.Insufficient:
		rv.Text = "too few to judge: " + strings.Replace(ev.Reason, "in the window", windowText(r, d), 1)
	case policy.Unknown:
		rv.Text = "unknown: " + ev.Reason
	default:
		rv.Text = describe(r, d)
	}
	return rv
}

func attentionRank(a string) int {
	switch a {
	case AttentionSuspended:
		return 0
	case AttentionTripping:
		return 1
	case AttentionWarning:
		return 2
	}
	return 3
}

// judgeRow says an account's state in words, how urgently it needs a
// person, and why.
func judgeRow(st *store.Store, acct store.Account, br store.Breaker, rules []RuleView, cov traffic.Coverage, now time.Time) (state, attention, note string) {
	since := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return " since " + t.UTC().Format(time.DateTime) + " UTC"
	}
	switch s := stateOf(br); {
	case acct.Status == statusClosed || s == StateAccountClosed:
		return "closed in Twilio", AttentionOK, ""
	case s == StateOpen && br.Manual:
		return "suspended by a person" + since(br.Since), AttentionSuspended, lastSuspension(st, acct.SID)
	case s == StateOpen:
		return "suspended by sentinel" + since(br.Since), AttentionSuspended, lastSuspension(st, acct.SID)
	case s == StateExternalSuspended || (acct.Status == statusSuspended && s != StateTwilioSuspended):
		return "suspended outside sentinel" + since(br.Since), AttentionSuspended, ""
	case s == StateTwilioSuspended:
		return "suspended by Twilio" + since(br.Since) + " (only Twilio support can lift it)", AttentionSuspended, ""
	case acct.Parent:
		state = "parent account: watched, never suspended"
	case s == StateProtected:
		state = "protected: alerts only, never suspended"
	case s == StateProbation:
		state = "on probation until " + br.ProbationUntil.UTC().Format(time.DateTime) + " UTC"
	default:
		state = "watching"
	}
	attention = AttentionOK
	worst := -1
	rank := func(r RuleView) int {
		switch {
		case r.Action == policy.ActionSuspend && (r.Result == string(policy.Firing) || r.Result == string(policy.Pending)):
			return 3
		case r.Result == string(policy.Firing):
			return 2
		case r.Result == string(policy.Unknown):
			return 1
		}
		return 0
	}
	for i, r := range rules {
		if rank(r) > 0 && (worst < 0 || rank(r) > rank(rules[worst])) {
			worst = i
		}
	}
	if worst >= 0 {
		r := rules[worst]
		note = r.Rule + ": " + r.Text
		if r.Result == string(policy.Pending) {
			note += fmt.Sprintf(" (over its threshold %d of %d evaluations in a row)", r.Consecutive, r.For)
		}
		attention = AttentionWarning
		if rank(r) == 3 {
			attention = AttentionTripping
		}
	}
	if cov.Until.IsZero() {
		return state, AttentionWarning, "its message log has not been read yet"
	}
	return state, attention, note
}

// lastSuspension says why the account was last suspended, from the audit
// log: "carrier-filtering: <evidence>", or a person's reason.
func lastSuspension(st *store.Store, sid string) string {
	recs, err := st.Audit(sid, 200)
	if err != nil {
		return ""
	}
	for _, r := range recs {
		if r.Kind == KindOutcome && r.Action == ActionSuspend && r.Outcome == OutcomeOK {
			if r.Rule == "" {
				return fmt.Sprintf("by %s: %s", r.Actor, r.Reason)
			}
			return r.Rule + ": " + r.Detail
		}
	}
	return ""
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
// What is not an account SID as Twilio writes it is refused with ErrInvalid
// before anything is read: the control socket passes on whatever its query
// says.
func History(st *store.Store, sid string) ([]HistoryEntry, error) {
	if !isSID(sid) {
		if len(sid) > 40 {
			sid = sid[:40] + "..."
		}
		return nil, fmt.Errorf("%w: %q is not an account SID (AC and 32 lower-case hex digits)", ErrInvalid, sid)
	}
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

// Figures are the per-subaccount numbers the daemon exports as gauges
// after every cycle: cheap to compute (no evaluation), so that they cost a
// cycle little however large the fleet.
type Figures struct {
	SID, Name string
	Parent    bool
	Status    string
	// Outbound1h counts outbound messages in the last hour.
	Outbound1h int64
	// Filtered24h is the 30007 rate over the last 24h; OptOut24h the
	// opt-out rate. 0 without traffic.
	Filtered24h, OptOut24h float64
	// SpendToday is today's (UTC) spend as Twilio last reported it.
	SpendToday float64
}

// FleetFigures computes every account's Figures from the store at now.
func FleetFigures(st *store.Store, now time.Time) ([]Figures, error) {
	accts, err := st.Accounts()
	if err != nil {
		return nil, err
	}
	day := now.UTC().Format(time.DateOnly)
	hourFrom := traffic.WindowStart(now, time.Hour)
	dayFrom := traffic.WindowStart(now, 24*time.Hour)
	to := traffic.BucketStart(now).Add(traffic.BucketWidth)
	out := make([]Figures, 0, len(accts))
	for _, acct := range accts {
		buckets, err := st.Buckets(acct.SID, dayFrom, to)
		if err != nil {
			return nil, err
		}
		usage, err := st.Usage(acct.SID, day, day)
		if err != nil {
			return nil, err
		}
		f := Figures{SID: acct.SID, Name: acct.FriendlyName, Parent: acct.Parent, Status: acct.Status}
		f.Outbound1h = traffic.Sum(buckets, hourFrom, to).Outbound
		c := traffic.Sum(buckets, dayFrom, to)
		if c.Finished > 0 {
			f.Filtered24h = float64(c.ErrorCount(30007)) / float64(c.Finished)
		}
		if c.Outbound > 0 {
			f.OptOut24h = float64(c.OptOuts) / float64(c.Outbound)
		}
		for _, u := range usage {
			if u.Day == day {
				f.SpendToday = u.TotalPrice
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// isSID reports whether s is an account SID as Twilio writes it: "AC" and
// 32 lower-case hex digits.
func isSID(s string) bool {
	if len(s) != 34 || s[:2] != "AC" {
		return false
	}
	for _, c := range []byte(s[2:]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
