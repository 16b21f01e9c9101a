package backtest

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
)

// Report is what a replay found: for every subaccount for which a rule
// fired, each such rule with its firings, its would-be suspension (or what
// stopped it) and its peak; a summary set against what actually happened
// in the same period; and, for the whole fleet, how close each rule came
// to its threshold.
type Report struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Step is the time between evaluations ("" for given times).
	Step string `json:"step,omitempty"`
	// Evaluations is how many times every account was evaluated.
	Evaluations int `json:"evaluations"`
	// Judged is how many accounts were evaluated at least once.
	Judged int `json:"subaccounts_judged"`
	// Subaccounts are those for which at least one rule fired, those the
	// replay would suspend first.
	Subaccounts []Subaccount `json:"subaccounts"`
	Summary     Summary      `json:"summary"`
	// Actual are sentinel's own suspensions in the period, of any
	// subaccount, from the audit log.
	Actual []ActualSuspension `json:"actual"`
	// Fleet is, per rule, how close the judged subaccounts came to its
	// threshold.
	Fleet []Histogram `json:"fleet"`
	// Rules are the policy's rules, in policy order.
	Rules []policy.Rule `json:"-"`
	// Charts hold every rule's values over the period for each subaccount
	// in Subaccounts (Options.Charts).
	Charts []AccountChart `json:"-"`
}

// Subaccount is one subaccount for which a rule fired.
type Subaccount struct {
	SID    string       `json:"sid"`
	Name   string       `json:"name"`
	Parent bool         `json:"parent,omitempty"`
	Rules  []RuleResult `json:"rules"`
	// ActuallySuspendedAt are sentinel's own suspensions of it in the
	// period, from the audit log; ReinstatedAt its reinstatements.
	ActuallySuspendedAt []time.Time `json:"actually_suspended_at,omitempty"`
	ReinstatedAt        []time.Time `json:"reinstated_at,omitempty"`
}

// RuleResult is one rule that fired for one subaccount.
type RuleResult struct {
	Rule     string      `json:"rule"`
	Action   string      `json:"action"`
	Severity string      `json:"severity"`
	FiredAt  []time.Time `json:"fired_at"`
	// WouldSuspendAt is the rule's first suspension of the subaccount in
	// the replay; null when it would not have suspended it.
	WouldSuspendAt *time.Time `json:"would_suspend_at"`
	// SuspendedAt are all the rule's suspensions in the replay (after a
	// reinstatement, it may suspend again).
	SuspendedAt []time.Time `json:"suspended_at,omitempty"`
	// Outcome says in words what came of its firing: "would suspend",
	// "blocked by the per-hour cap", "alert only", ...
	Outcome string `json:"outcome"`
	// Blocked are the rails that stopped a suspension, once per firing.
	Blocked []Block `json:"blocked,omitempty"`
	// DryRunAt are the would-be suspensions of a rule in dry_run mode:
	// decided, never acted on.
	DryRunAt []time.Time `json:"dry_run_at,omitempty"`
	Peak     Peak        `json:"peak"`
}

// Peak is a rule's highest value against its threshold over the period
// (the threshold in force then, halved on probation).
type Peak struct {
	Value     float64   `json:"value"`
	Threshold float64   `json:"threshold"`
	At        time.Time `json:"at"`
}

// ActualSuspension is one suspension sentinel made.
type ActualSuspension struct {
	SID  string    `json:"sid"`
	Name string    `json:"name"`
	Rule string    `json:"rule"`
	At   time.Time `json:"at"`
}

// Block is a rail that stopped a suspension.
type Block struct {
	Rail string    `json:"rail"`
	At   time.Time `json:"at"`
	Why  string    `json:"why"`
}

// Summary sets the replay against the audit log.
type Summary struct {
	// WouldSuspend counts the replay's suspensions; Alerts the times a
	// rule fired, each an incident told to Slack; ActuallySuspended
	// sentinel's own suspensions in the period.
	WouldSuspend      int `json:"would_suspend"`
	Alerts            int `json:"alerts"`
	ActuallySuspended int `json:"actually_suspended"`
	// The subaccounts suspended in the replay only, in both, and in
	// reality only: a policy change's effect on suspensions.
	OnlyBacktest []string `json:"only_backtest"`
	Both         []string `json:"both"`
	OnlyActual   []string `json:"only_actual"`
}

// Histogram says how close the judged subaccounts came to one rule's
// threshold: Bins[i] counts those whose peak over the period was at least
// i tenths of the threshold and below i+1 tenths; Bins[10], those at or
// over it.
type Histogram struct {
	Rule   string  `json:"rule"`
	Action string  `json:"action"`
	Bins   [11]int `json:"bins"`
	// NotJudged counts the subaccounts the rule applies to that it never
	// judged (too little traffic, no data).
	NotJudged int `json:"not_judged"`
}

// AccountChart is one subaccount's rules over the period.
type AccountChart struct {
	SID, Name string
	From, To  time.Time
	Rules     []RuleChart
	// Changes are its breaker changes in the period, from the audit log:
	// what actually happened.
	Changes []actions.Change
	// Suspended are the stretches the replay had it suspended (or copied
	// a suspension), when it was not judged.
	Suspended [][2]time.Time
}

// RuleChart is one rule's values for one subaccount.
type RuleChart struct {
	Rule   policy.Rule
	Fired  []time.Time
	Points []ChartPoint
	// Suspend are the replay's suspensions by this rule.
	Suspend []time.Time
	Blocked []Block
}

// ChartPoint is one column of a chart: the highest value judged in it,
// and the thresholds in force.
type ChartPoint struct {
	At      time.Time
	Judged  bool
	Value   float64
	Trip    float64
	Resolve float64
}

// Outcomes in words.
const (
	outcomeSuspend   = "would suspend"
	outcomeAlert     = "alert only"
	outcomeDryRun    = "dry-run rule: would suspend, not acted on"
	outcomeProtected = "protected: alerts only"
	outcomeParent    = "parent account: never suspended"
	outcomeOther     = "not suspended: the subaccount was suspended by another rule"
)

// railWords names a rail in an outcome.
var railWords = map[string]string{
	actions.RailPerHour:  "blocked by the per-hour cap",
	actions.RailFraction: "blocked by the cap on the fraction suspended at once",
	actions.RailStale:    "blocked: the data was stale",
}

// report assembles what the replay found.
func (r *run) report() *Report {
	rep := &Report{From: r.from, To: r.to, Evaluations: len(r.steps), Rules: r.rules}
	if len(r.opts.Times) == 0 {
		rep.Step = policy.FormatDuration(r.opts.Step)
	}
	backtest, actual := map[string]bool{}, map[string]bool{}
	hist := make([]Histogram, len(r.rules))
	for i, rule := range r.rules {
		hist[i] = Histogram{Rule: rule.Name, Action: rule.Action}
	}
	for _, a := range r.accts {
		info := a.h.Info
		s := Subaccount{SID: info.SID, Name: info.FriendlyName, Parent: info.Parent}
		for _, c := range a.h.Changes {
			if c.At.Before(r.from) || c.At.After(r.to) {
				continue
			}
			switch {
			case c.Offence():
				s.ActuallySuspendedAt = append(s.ActuallySuspendedAt, c.At)
				rep.Actual = append(rep.Actual, ActualSuspension{SID: info.SID, Name: info.FriendlyName, Rule: c.Rule, At: c.At})
				rep.Summary.ActuallySuspended++
				actual[info.SID] = true
			case c.Reinstatement():
				s.ReinstatedAt = append(s.ReinstatedAt, c.ReinstatedAt)
			}
		}
		for i := range a.rules {
			tr := &a.rules[i]
			if tr.judged {
				b := min(int(tr.ratio*10), 10)
				hist[i].Bins[max(b, 0)]++
			} else if tr.applies {
				hist[i].NotJudged++
			}
			rep.Summary.WouldSuspend += len(tr.suspended)
			rep.Summary.Alerts += len(tr.fired)
			if len(tr.suspended) > 0 {
				backtest[info.SID] = true
			}
			if len(tr.fired) == 0 {
				continue
			}
			rule := r.rules[i]
			res := RuleResult{
				Rule: rule.Name, Action: rule.Action, Severity: rule.Severity, FiredAt: tr.fired,
				SuspendedAt: tr.suspended, Blocked: tr.blocked, DryRunAt: tr.dryRun, Peak: tr.peak,
			}
			switch {
			case len(tr.suspended) > 0:
				at := tr.suspended[0]
				res.WouldSuspendAt, res.Outcome = &at, outcomeSuspend
			case rule.Action != policy.ActionSuspend:
				res.Outcome = outcomeAlert
			case len(tr.dryRun) > 0 || rule.Mode == policy.ModeDryRun:
				res.Outcome = outcomeDryRun
			case info.Parent:
				res.Outcome = outcomeParent
			case len(tr.blocked) > 0 && tr.blocked[0].Rail == actions.RailProtected:
				res.Outcome = outcomeProtected
			case len(tr.blocked) > 0:
				last := tr.blocked[len(tr.blocked)-1]
				res.Outcome = railWords[last.Rail]
				if res.Outcome == "" {
					res.Outcome = "blocked: " + last.Rail
				}
			default:
				res.Outcome = outcomeOther
			}
			s.Rules = append(s.Rules, res)
		}
		if a.evaluated {
			rep.Judged++
		}
		if len(s.Rules) > 0 {
			rep.Subaccounts = append(rep.Subaccounts, s)
		}
	}
	slices.SortStableFunc(rep.Actual, func(x, y ActualSuspension) int { return x.At.Compare(y.At) })
	// Lists are lists in JSON, empty or not.
	for _, l := range []*[]string{&rep.Summary.OnlyBacktest, &rep.Summary.Both, &rep.Summary.OnlyActual} {
		if *l == nil {
			*l = []string{}
		}
	}
	if rep.Subaccounts == nil {
		rep.Subaccounts = []Subaccount{}
	}
	if rep.Actual == nil {
		rep.Actual = []ActualSuspension{}
	}
	// A rule that judged any subaccount has it in a bin.
	for _, h := range hist {
		if h.Bins != ([11]int{}) {
			rep.Fleet = append(rep.Fleet, h)
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(backtest)) {
		if actual[sid] {
			rep.Summary.Both = append(rep.Summary.Both, sid)
		} else {
			rep.Summary.OnlyBacktest = append(rep.Summary.OnlyBacktest, sid)
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(actual)) {
		if !backtest[sid] {
			rep.Summary.OnlyActual = append(rep.Summary.OnlyActual, sid)
		}
	}
	// Would-be suspensions first, then by first firing, then by SID.
	first := func(s Subaccount) (suspend, fired time.Time) {
		for _, rr := range s.Rules {
			if rr.WouldSuspendAt != nil && (suspend.IsZero() || rr.WouldSuspendAt.Before(suspend)) {
				suspend = *rr.WouldSuspendAt
			}
			if fired.IsZero() || rr.FiredAt[0].Before(fired) {
				fired = rr.FiredAt[0]
			}
		}
		return suspend, fired
	}
	slices.SortStableFunc(rep.Subaccounts, func(x, y Subaccount) int {
		xs, xf := first(x)
		ys, yf := first(y)
		switch {
		case !xs.IsZero() && ys.IsZero():
			return -1
		case xs.IsZero() && !ys.IsZero():
			return 1
		case !xs.Equal(ys):
			return xs.Compare(ys)
		case !xf.Equal(yf):
			return xf.Compare(yf)
		}
		return cmp.Compare(x.SID, y.SID)
	})
	return rep
}
