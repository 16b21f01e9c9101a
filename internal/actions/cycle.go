package actions

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"sentinel/internal/policy"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// snapshot is what a Judge cycle reads of every account: each kind of
// record in one read transaction, instead of one transaction per account
// and kind. A kind whose bulk read failed is nil and is read account by
// account instead, so that a corrupt record fails its own account, as it
// would without the snapshot, and not the whole cycle.
type snapshot struct {
	st *store.Store

	breakers map[string]store.Breaker
	coverage map[string]traffic.Coverage
	usage    map[string][]traffic.Usage
	polls    map[string]store.PollState // the "usage" stream
	states   map[string]map[string]store.RuleState
	// blind holds the accounts whose blind incident is open.
	blind map[string]bool
	// spendDays holds, by account, the days on which a spend rule fired.
	spendDays map[string]map[string]bool

	fromDay, toDay string // the usage days read
}

// loadBreakers reads every breaker. The breakers are read before the
// accounts' statuses are synced, and the rest (loadRest) after, because a
// sync can reset an account's rule states and incidents.
func (s *snapshot) loadBreakers() {
	s.breakers, _ = s.st.AllBreakers() // nil on error: read one by one
}

// loadRest reads the records evaluation and incidents need, usage from
// fromDay to toDay.
func (s *snapshot) loadRest(fromDay, toDay string) {
	s.fromDay, s.toDay = fromDay, toDay
	// On error a kind stays nil and is read one account at a time, where a
	// corrupt record fails only its account.
	s.coverage, _ = s.st.AllCoverage()
	s.usage, _ = s.st.AllUsage(fromDay, toDay)
	s.polls, _ = s.st.AllPollStates("usage")
	s.states, _ = s.st.AllRuleStates()
	if s.spendDays, _ = s.st.AllSpendDays(fromDay, toDay); s.spendDays == nil {
		s.spendDays = map[string]map[string]bool{} // unknown: no day left out
	}
	if incs, err := s.st.Incidents(""); err == nil {
		s.blind = map[string]bool{}
		for _, inc := range incs {
			if inc.Rule == blindRule && inc.State == incidentFiring {
				s.blind[inc.Subaccount] = true
			}
		}
	}
}

func (s *snapshot) breaker(sid string) (store.Breaker, error) {
	if s.breakers == nil {
		return s.st.Breaker(sid)
	}
	if b, ok := s.breakers[sid]; ok {
		return b, nil
	}
	return store.Breaker{State: StateClosed}, nil
}

// maybeBlind reports whether sid's blind incident may be open: whether
// judging sid without a reason to be blind must look for it to close it.
// The incidents a cycle writes are read from the store, not from the
// snapshot: the slack package records their threads concurrently.
func (s *snapshot) maybeBlind(sid string) bool {
	return s.blind == nil || s.blind[sid]
}

// gather fills in what evaluating v at now needs besides its buckets,
// reading back as far as from. It runs before the bucket scan: a read
// inside the scan's fn could wait behind a writer that waits for the
// scan's own transaction to end.
func (s *snapshot) gather(v *verdict, from, now time.Time) error {
	sid := v.acct.SID
	var err error
	v.offenceDays = s.spendDays[sid]
	// A window that starts at a reinstatement starts exactly there: the
	// part of its first bucket after it is recounted from the raw
	// messages.
	if r := v.br.ReinstatedAt.UTC(); !r.IsZero() && r.After(from) && r.Before(now) && !traffic.BucketStart(r).Equal(r) {
		head, err := s.st.CountRange(sid, r, traffic.CeilBucket(r))
		if err != nil {
			return err
		}
		v.head = &head
	}
	if s.coverage != nil {
		v.cov = s.coverage[sid]
	} else if v.cov, err = s.st.Coverage(sid); err != nil {
		return err
	}
	if s.usage != nil {
		v.usage = s.usage[sid]
	} else if v.usage, err = s.st.Usage(sid, s.fromDay, s.toDay); err != nil {
		return err
	}
	if s.polls != nil {
		v.usageAsOf = s.polls[sid].LastSuccess
	} else {
		ps, err := s.st.PollState(sid, "usage")
		if err != nil {
			return err
		}
		v.usageAsOf = ps.LastSuccess
	}
	if s.states != nil {
		v.stored = s.states[sid]
	} else if v.stored, err = s.st.RuleStates(sid); err != nil {
		return err
	}
	return nil
}

// verdict is one account to judge in a cycle: what its evaluation reads,
// and what is kept of its result once the buckets it was judged on are
// gone (they are the scan's, and reused for the next account).
type verdict struct {
	acct *store.Account
	br   store.Breaker
	// allow is how much longer than the staleness bound the account's
	// polled coverage may lag (Config.Allowance).
	allow time.Duration

	// Read before evaluation (snapshot.gather); err if that failed, and
	// the account is not judged.
	err       error
	cov       traffic.Coverage
	usage     []traffic.Usage
	usageAsOf time.Time
	stored    map[string]store.RuleState
	// head is the bucket from a reinstatement that is not a bucket
	// boundary to the next one (see policy.Subject.Buckets); nil if none.
	head        *traffic.Bucket
	offenceDays map[string]bool
	// spendFired is set when a spend rule fired on a day not yet marked in
	// offenceDays: that day is marked after the cycle's scan.
	spendFired string

	done bool // evaluated
	// next holds the new rule states when they differ from stored in
	// anything a later evaluation reads (see statesChanged); nil if not.
	next map[string]store.RuleState
	// decs are the decisions that call for more than a metric (see
	// consequential), in rule order.
	decs []judged
	// all holds every decision, in rule order, for read-only views
	// (evaluator.all).
	all []judged
}

// judged is a decision with the rule state it was judged from, and (for
// read-only views) the state it leads to.
type judged struct {
	d    policy.Decision
	prev policy.State
	next policy.State
}

// consequential reports whether d, judged from prev, can lead to anything
// beyond its evaluation metric: an incident to open, remind or resolve, a
// suspension candidate, or a blind alert. The others (ok, pending,
// insufficient, skipped, and unknown without a threshold crossed before)
// leave incidents and the pipeline alone.
func consequential(d policy.Decision, prev policy.State) bool {
	switch d.Result {
	case policy.Firing, policy.Resolved:
		return true
	case policy.Unknown:
		return d.Action == policy.ActionSuspend && (prev.Firing || prev.Consecutive > 0)
	}
	return false
}

// statesChanged reports whether next must be stored in place of stored: a
// rule gained or lost its state, or changed what a later evaluation reads
// of it (Consecutive, Firing, Since, and whether LastEval is before the
// account's reinstatement, which resets the rule). LastValue and LastEval
// alone move with every evaluation; storing them every cycle would rewrite
// every account every minute, so they are stored with the next change that
// matters and may lag behind until then.
func statesChanged(stored map[string]store.RuleState, next map[string]policy.State, reinstatedAt time.Time) bool {
	if len(stored) != len(next) {
		return true
	}
	for name, n := range next {
		s, ok := stored[name]
		if !ok || s.Consecutive != n.Consecutive || s.Firing != n.Firing || !s.Since.Equal(n.Since) ||
			s.LastEval.Before(reinstatedAt) != n.LastEval.Before(reinstatedAt) {
			return true
		}
	}
	return false
}

// evaluator judges the accounts of one cycle against one policy set.
type evaluator struct {
	set *policy.Set
	now time.Time
	lag time.Duration // policy.Subject.MaxLag: Config.MaxStaleness
	// advanceAfter is policy.Subject.AdvanceAfter.
	advanceAfter time.Time
	// push: an evaluation on pushed evidence (Actor.Nudge), which only
	// moves rules towards firing.
	push  bool
	log   *slog.Logger
	debug bool                    // log every decision (-log-level debug)
	spend []bool                  // by rule index: a spend signal
	all   bool                    // keep every decision in verdict.all (read-only views)
	prev  map[string]policy.State // scratch, reused for every account
	// decs and next are Evaluate's results, reused for every account: what
	// is kept of them is copied (verdict.decs, verdict.next, verdict.all).
	decs []policy.Decision
	next map[string]policy.State
	// only, if not nil, are the accounts to scan (a Nudge's).
	only []string
	// evals counts decisions by rule (index in set order) and result, for
	// sentinel_policy_evaluations_total: one Add per pair and cycle.
	evals map[evalKey]int
}

type evalKey struct {
	rule   int
	result policy.Result
}

// judge evaluates v on buckets (examples may be nil) and keeps the result.
// It does no I/O: it runs inside the store's bucket scan.
func (e *evaluator) judge(v *verdict, buckets []traffic.Bucket, examples traffic.ExampleFunc) {
	clear(e.prev)
	for k, s := range v.stored {
		e.prev[k] = policy.State(s)
	}
	if v.head != nil {
		// The scan's buckets are its own: insert the head into a copy.
		i, _ := slices.BinarySearchFunc(buckets, v.head.Start, func(b traffic.Bucket, t time.Time) int { return b.Start.Compare(t) })
		buckets = slices.Insert(slices.Clone(buckets), i, *v.head)
		if examples != nil {
			examples = withHead(examples, *v.head)
		}
	}
	subj := policy.Subject{
		Account:      v.acct.SID,
		Name:         v.acct.FriendlyName,
		Parent:       v.acct.Parent,
		Buckets:      buckets,
		Examples:     examples,
		Coverage:     v.cov,
		MaxLag:       e.lag,
		Allowance:    v.allow,
		AdvanceAfter: e.advanceAfter,
		Usage:        v.usage,
		UsageAsOf:    v.usageAsOf,
		ReinstatedAt: v.br.ReinstatedAt,
		Offences:     v.br.Offences,
		SpendDay:     v.br.SpendDay,
		SpendBase:    v.br.SpendBase,
		OffenceDays:  v.offenceDays,
	}
	decs, next := e.set.EvaluateInto(subj, e.prev, e.now, e.decs, e.next)
	e.decs, e.next = decs, next // the scratch of the next account; nothing keeps them
	v.done = true
	// Pushed evidence can make a rule fire; only a complete poll can prove
	// a window quiet. On a Nudge, and for an account whose polled coverage
	// lags past the plain staleness bound (its pushes are trusted, so it
	// is polled less often), only a move towards firing counts.
	if e.push || (v.allow > 0 && v.cov.Until.Before(e.now.Add(-e.lag))) {
		decs = towardsFiring(decs, next, e.prev)
	}
	if statesChanged(v.stored, next, v.br.ReinstatedAt) {
		v.next = make(map[string]store.RuleState, len(next))
		for k, s := range next {
			v.next[k] = store.RuleState(s)
		}
	}
	today := e.now.UTC().Format(time.DateOnly)
	for i, d := range decs {
		e.evals[evalKey{i, d.Result}]++
		if e.debug && d.Result != policy.Skipped {
			ev := d.Evidence
			e.log.Debug("decision", "subaccount", v.acct.SID, "rule", d.Rule, "result", d.Result, "fired", d.Fired,
				"value", ev.Value, "numerator", ev.Numerator, "denominator", ev.Denominator, "trip", ev.Threshold,
				"resolve", ev.ResolveAt, "from", ev.From, "to", ev.To, "probation", d.Probation, "reason", ev.Reason)
		}
		if p := e.prev[d.Rule]; consequential(d, p) {
			v.decs = append(v.decs, judged{d: d, prev: p})
		}
		if e.all {
			v.all = append(v.all, judged{d, e.prev[d.Rule], next[d.Rule]})
		}
		if e.spend[i] && d.Result == policy.Firing && !v.offenceDays[today] {
			v.spendFired = today
		}
	}
	v.usage, v.stored = nil, nil // the snapshot's; not needed any more
}

// towardsFiring keeps, of decs, the moves towards firing: a rule firing, or
// pending with its count up. Every other rule is left as it was: its state
// in next is its state in prev, and its decision Skipped, so that it opens,
// resolves and alerts nothing.
func towardsFiring(decs []policy.Decision, next, prev map[string]policy.State) []policy.Decision {
	for i := range decs {
		d := &decs[i]
		p, had := prev[d.Rule]
		n := next[d.Rule]
		if d.Result == policy.Firing || (d.Result == policy.Pending && n.Consecutive > p.Consecutive) {
			continue
		}
		if d.Result == policy.Pending && had {
			// The count stayed: keep the value seen.
			n.Consecutive, n.Advanced = p.Consecutive, p.Advanced
			next[d.Rule] = n
			continue
		}
		if had {
			next[d.Rule] = p
		} else {
			delete(next, d.Rule)
		}
		d.Result = policy.Skipped
	}
	return decs
}

// withHead returns examples followed by those of head, the oldest bucket
// of a window that starts at a reinstatement, which the scan's examples do
// not know of.
func withHead(examples traffic.ExampleFunc, head traffic.Bucket) traffic.ExampleFunc {
	hb := []traffic.Bucket{head}
	return func(from, to time.Time, n int, keys ...int) []string {
		out := examples(from, to, n, keys...)
		if len(out) < n {
			out = append(out, traffic.Examples(hb, from, to, n-len(out), keys...)...)
		}
		return out
	}
}

// evaluate judges every account of vs at now: the accounts with buckets in
// the policies' longest window in one scan of the store's aggregates, at
// the coarsest resolution the set's cuts allow, and the others (no
// traffic, or only older traffic) after it on no buckets, because their
// coverage, spend and parent rules still apply. It returns the scan's
// error, if any, after judging the accounts the scan did not reach one at
// a time; it stops early only when ctx is done.
func (a *Actor) evaluate(ctx context.Context, set *policy.Set, snap *snapshot, vs []*verdict, now, advanceAfter time.Time, only []string) error {
	e := newEvaluator(set, now, a.cfg.MaxStaleness, a.log, a.log.Enabled(ctx, slog.LevelDebug))
	e.advanceAfter, e.push = advanceAfter, only != nil
	e.only = only
	defer a.countEvaluations(set, e.evals)
	return evaluateAll(ctx, a.st, snap, vs, e)
}

// newEvaluator returns an evaluator of set at now. Message logs whose
// coverage ends more than maxStaleness before now are not read enough to
// judge: their rules are Unknown (see policy.Subject.MaxLag).
func newEvaluator(set *policy.Set, now time.Time, maxStaleness time.Duration, log *slog.Logger, debug bool) *evaluator {
	e := &evaluator{set: set, now: now, lag: maxStaleness, prev: map[string]policy.State{}, evals: map[evalKey]int{}, log: log, debug: debug}
	for _, r := range set.Rules() {
		e.spend = append(e.spend, r.Signal == policy.SignalSpendBudget || r.Signal == policy.SignalSpendSpike)
	}
	return e
}

// evaluateAll is evaluate's work, for the cycle and for read-only views
// (StatusRows): it reads, and never writes.
func evaluateAll(ctx context.Context, st *store.Store, snap *snapshot, vs []*verdict, e *evaluator) error {
	set, now := e.set, e.now
	from := traffic.WindowStart(now, set.MaxWindow())
	bySID := make(map[string]*verdict, len(vs))
	for _, v := range vs {
		if v.err = snap.gather(v, from, now); v.err == nil {
			bySID[v.acct.SID] = v
		}
	}
	plain := set.Cuts(now, time.Time{}) // shared by every account never reinstated
	cuts := func(sid string) []time.Time {
		if v := bySID[sid]; v != nil && !v.br.ReinstatedAt.IsZero() {
			return set.Cuts(now, v.br.ReinstatedAt)
		}
		return plain
	}
	scanErr := st.ScanHourBucketsOf(e.only, from, now, cuts, func(sid string, buckets []traffic.Bucket, examples traffic.ExampleFunc) error {
		v := bySID[sid]
		if v == nil {
			return nil // not judged (suspended, closed, unknown), or its data could not be read
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		e.judge(v, buckets, examples)
		return nil
	})
	if ctx.Err() != nil {
		return nil // the caller reports it
	}
	for _, v := range vs {
		if v.done || v.err != nil {
			continue
		}
		var buckets []traffic.Bucket
		if scanErr != nil {
			// The scan stopped at a record it could not read. Read the
			// accounts it did not reach one at a time, so that the record
			// fails only its own account.
			if buckets, v.err = st.Buckets(v.acct.SID, from, now); v.err != nil {
				continue
			}
		}
		e.judge(v, buckets, nil)
	}
	return scanErr
}

// countEvaluations adds a cycle's decision counts to the evaluation metric.
func (a *Actor) countEvaluations(set *policy.Set, evals map[evalKey]int) {
	rules := set.Rules()
	for k, n := range evals {
		a.m.evaluations.WithLabelValues(rules[k.rule].Name, string(k.result)).Add(float64(n))
	}
}

// saveStates stores, in one transaction, the rule states that changed, and
// marks the days on which a spend rule fired.
func (a *Actor) saveStates(vs []*verdict) error {
	changed := map[string]map[string]store.RuleState{}
	var errs []error
	for _, v := range vs {
		if v.next != nil {
			changed[v.acct.SID] = v.next
			v.next = nil
		}
		if v.spendFired != "" {
			if err := a.st.MarkSpendDays(v.acct.SID, v.spendFired); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(append(errs, a.st.PutRuleStatesBatch(changed))...)
}
