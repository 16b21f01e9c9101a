package policy

import (
	"fmt"
	"strings"
	"time"

	"sentinel/internal/traffic"
)

// Subject is everything Evaluate needs to know about one account.
type Subject struct {
	Account string // SID
	Name    string // friendly name
	// Parent marks the parent account: only parent signals apply to it and it
	// is never a suspension target.
	Parent bool
	// Buckets are oldest first and cover at least the set's MaxWindow.
	// Buckets that start at or after now are ignored. They may be wider
	// than traffic.BucketWidth (store.HourBuckets) as long as none
	// straddles a time of Set.Cuts: a window with a bucket across its start
	// cannot be summed exactly, and its rules are Unknown. When
	// ReinstatedAt is not a bucket boundary and lies within MaxWindow,
	// windows start exactly there: Buckets must then hold the head bucket
	// [ReinstatedAt, CeilBucket(ReinstatedAt)) recounted from the raw
	// messages (store.CountRange), after the bucket that holds
	// ReinstatedAt, which no window counts any more.
	Buckets []traffic.Bucket
	// Examples, when set, supplies the evidence's example SIDs in place of
	// the buckets' samples: store.ScanHourBuckets leaves samples out and
	// decodes them only for the decisions that carry examples.
	Examples traffic.ExampleFunc
	// Coverage says over which stretch the message log is known complete.
	Coverage traffic.Coverage
	// MaxLag, when positive and shorter than settings.staleness, is how far
	// behind now Coverage may end for a window to count as read: the
	// caller's own bound on stale data (sentinel's -max-staleness), so
	// that an evaluation on data too stale to act on is Unknown and does
	// not count toward a rule's `for`.
	MaxLag time.Duration
	// Allowance is how much further behind than that Coverage may end
	// because the account is polled less often: its pushed events arrive
	// and have missed nothing (sentinel's reconcile interval).
	Allowance time.Duration
	// Usage is daily usage oldest first, today (UTC) included, covering
	// the set's UsageDays.
	Usage []traffic.Usage
	// UsageAsOf is when usage was last read successfully; zero = never.
	UsageAsOf time.Time
	// ReinstatedAt is the last reactivation, by anyone; zero = never.
	ReinstatedAt time.Time
	// Offences is how many times sentinel has suspended the account.
	Offences int
	// AdvanceAfter, when set, is the time of the last scheduled evaluation
	// before this one: a rule's Consecutive goes up only if it has not
	// since. Evaluations between scheduled ones (on pushed evidence) can
	// then trip a rule at once, but a `for` still counts at most one
	// evaluation per scheduled interval, so hysteresis keeps its meaning.
	AdvanceAfter time.Time
	// SpendDay and SpendBase are the UTC day of the last reinstatement and
	// the account's spend that day as known at the reinstatement: on that
	// day, spend rules judge the spend less SpendBase. SpendDay is empty
	// when the spend at the reinstatement is not known; spend rules then
	// skip the rest of a reinstatement's day.
	SpendDay  string
	SpendBase float64
	// OffenceDays are the UTC days ("2006-01-02") on which a spend rule
	// fired for the account: spend_spike's baseline leaves them out, so
	// that an offence does not raise its own bar.
	OffenceDays map[string]bool
}

// State is what a rule remembers about one account between evaluations.
// Evaluate returns it; the caller persists it.
type State struct {
	Consecutive int       // consecutive evaluations at or over the trip threshold
	Firing      bool      //
	Since       time.Time // when Firing became true
	LastValue   float64
	LastEval    time.Time // last evaluation that judged a value (not Unknown or Skipped)
	Advanced    time.Time // when Consecutive last went up
}

// Result is the outcome of one rule for one account.
type Result string

// Results.
const (
	OK           Result = "ok"           // judged, below the trip threshold, not firing
	Pending      Result = "pending"      // over the trip threshold, `for` not reached yet
	Firing       Result = "firing"       // over the trip threshold for `for` evaluations, or not yet resolved
	Resolved     Result = "resolved"     // was firing, now below the resolve threshold
	Unknown      Result = "unknown"      // gap in the message log or stale usage: neither trips nor resolves
	Insufficient Result = "insufficient" // below the minimum volume: cannot be judged
	Skipped      Result = "skipped"      // the rule does not apply (scope, parent, no budget)
)

// Decision is the outcome of one rule for one account at one time.
type Decision struct {
	Rule, Description string
	Severity          string
	Action            string // as the rule asks: alert | suspend
	DryRun            bool   // the rule is in dry_run mode: report, never act
	Result            Result
	// Fired is true when the rule became Firing in this evaluation: the
	// moment to act (alert, suspend).
	Fired bool
	// Protected is true when the rule asks to suspend but the account is the
	// parent or on the protected list: act as an alert.
	Protected bool
	// Probation is true when thresholds were tightened after a reinstatement.
	Probation bool
	Evidence  Evidence
}

// Suspend reports whether the decision calls for suspending the account now.
func (d Decision) Suspend() bool {
	return d.Fired && d.Action == ActionSuspend && !d.Protected && !d.DryRun
}

// Evidence is what a rule saw.
type Evidence struct {
	Signal string // e.g. "error_rate 30007"
	// Numerator and Denominator of Value for rates (errors / finished);
	// for counts Numerator is the count and Denominator the volume it came
	// from; for spend_budget spend / budget; for spend_spike spend / mean.
	Numerator, Denominator float64
	Value                  float64
	Threshold, ResolveAt   float64 // effective trip and resolve thresholds
	MinVolume              float64
	From, To               time.Time // the window judged: buckets starting in [From, To)
	Examples               []string  // up to 5 message SIDs behind the numerator
	Reason                 string    // why Unknown, Insufficient or Skipped
}

// MaxExamples is how many example message SIDs a Decision carries.
const MaxExamples = 5

// minTrailingMean floors spend_spike's trailing mean (USD per day) so that an
// account with no recent spend is still judged, against $1 a day.
const minTrailingMean = 1.0

// ProbationUntil returns when the probation after a reinstatement ends: the
// probation duration for a first offence, doubled for each repeat, capped.
// It is zero when the account was never reinstated.
func ProbationUntil(settings Settings, reinstatedAt time.Time, offences int) time.Time {
	p := settings.Probation
	if reinstatedAt.IsZero() || p.Duration <= 0 {
		return time.Time{}
	}
	d := p.Duration
	for i := 1; i < offences && (p.Cap <= 0 || d < p.Cap); i++ {
		d *= 2
	}
	if p.Cap > 0 && d > p.Cap {
		d = p.Cap
	}
	return reinstatedAt.Add(d)
}

// sums are a window's counts, restricted to what the rules read.
type sums struct {
	outbound, finished, failed, noService, optOuts int64
}

// Evaluate judges every rule for one account at now, given the states the
// previous evaluation returned. It returns one Decision per rule, in rule
// order, and the new states by rule name (rules no longer in the set are
// dropped). It is pure: no I/O, no clock.
func (s *Set) Evaluate(subj Subject, prev map[string]State, now time.Time) ([]Decision, map[string]State) {
	return s.EvaluateInto(subj, prev, now, nil, nil)
}

// EvaluateInto is Evaluate into decisions and next, which it empties and
// fills (allocating where they are nil or too small), for a caller that
// judges many accounts in turn and keeps neither past the next call.
func (s *Set) EvaluateInto(subj Subject, prev map[string]State, now time.Time, decisions []Decision, next map[string]State) ([]Decision, map[string]State) {
	e := evaluation{s: s, subj: &subj, now: now}
	e.prepare()
	if cap(decisions) < len(s.rules) {
		decisions = make([]Decision, len(s.rules))
	}
	decisions = decisions[:len(s.rules)]
	if next == nil {
		next = make(map[string]State, len(s.rules))
	}
	clear(next)
	for i, r := range s.rules {
		st, had := prev[r.Name]
		d, st, keep := e.rule(r, st)
		decisions[i] = d
		if keep || had {
			next[r.Name] = st
		}
	}
	return decisions, next
}

// evaluation holds one Evaluate call's precomputed window sums.
type evaluation struct {
	s         *Set
	subj      *Subject
	now       time.Time
	probation bool
	protected bool

	froms   []time.Time
	sums    []sums
	codes   []int64 // len(windows) * len(Set.codes)
	covered []bool
	// coarse[k] is the index of a bucket that straddles window k's start
	// (or now), or -1: the window cannot be summed exactly.
	coarse []int

	fromsArr   [4]time.Time
	sumsArr    [4]sums
	codesArr   [32]int64
	coveredArr [4]bool
	coarseArr  [4]int
}

// prepare sums every message window in one backward pass over the buckets:
// windows share their end (now), so each longer window continues the sum of
// the shorter one.
func (e *evaluation) prepare() {
	s, subj := e.s, e.subj
	e.probation = e.now.Before(ProbationUntil(s.settings, subj.ReinstatedAt, subj.Offences))
	e.protected = subj.Parent || s.protected.match(subj.Account, subj.Name)

	nw, nc := len(s.windows), len(s.codes)
	e.froms, e.sums, e.covered, e.coarse = e.fromsArr[:0], e.sumsArr[:0], e.coveredArr[:0], e.coarseArr[:0]
	if nw*nc <= len(e.codesArr) {
		e.codes = e.codesArr[:nw*nc]
	} else {
		e.codes = make([]int64, nw*nc)
	}
	fresh := e.now.Add(-e.lag())
	for _, w := range s.windows {
		from := windowFrom(e.now, w, subj.ReinstatedAt)
		e.froms = append(e.froms, from)
		e.covered = append(e.covered, subj.Coverage.Covers(from, fresh))
		e.coarse = append(e.coarse, -1)
	}

	b := subj.Buckets
	i := len(b) - 1
	for i >= 0 && !b[i].Start.Before(e.now) {
		i--
	}
	// A bucket wider than BucketWidth counts in a window only whole (see
	// traffic.Bucket.Within). One with slots at or after now straddles the
	// end of every window.
	if i >= 0 && b[i].Width > traffic.BucketWidth && !b[i].Start.Add(b[i].Width-traffic.BucketWidth).Before(e.now) {
		for k := range e.coarse {
			e.coarse[k] = i
		}
	}
	var cur sums
	var curCodesArr [8]int64
	var curCodes []int64
	if nc <= len(curCodesArr) {
		curCodes = curCodesArr[:nc]
	} else {
		curCodes = make([]int64, nc)
	}
	for k := range nw {
		from := e.froms[k]
		// Only the codes of rules with this window or a longer one: the
		// shorter windows' sums are already taken.
		slots := s.windowSlots[k]
		for ; i >= 0 && !b[i].Start.Before(from); i-- {
			bk := &b[i]
			cur.outbound += bk.Outbound
			cur.finished += bk.Finished
			cur.failed += bk.Failed
			cur.noService += bk.NoService
			cur.optOuts += bk.OptOuts
			if len(bk.Errors) > 0 {
				for _, j := range slots {
					curCodes[j] += bk.Errors[s.codes[j]]
				}
			}
		}
		// b[i] starts before from: it must also end by then.
		if i >= 0 && b[i].Width > traffic.BucketWidth && b[i].Start.Add(b[i].Width).After(from) && e.coarse[k] < 0 {
			e.coarse[k] = i
		}
		e.sums = append(e.sums, cur)
		copy(e.codes[k*nc:], curCodes)
	}
}

// windowFrom returns the first bucket start of a message window at now:
// never before the reinstatement, whose traffic a person has reviewed, and
// exactly at it when it is later than the window's own start, so that
// traffic sent a second after a reinstatement counts (from the head bucket
// that starts there; see Subject.Buckets).
func windowFrom(now time.Time, window time.Duration, reinstatedAt time.Time) time.Time {
	from := traffic.WindowStart(now, window)
	if r := reinstatedAt.UTC(); !reinstatedAt.IsZero() && from.Before(r) {
		from = r
	}
	return from
}

// Cuts returns the times at which an account's buckets must be split for
// Evaluate at now to sum every window exactly, given the account's last
// reinstatement (zero for never): the start of each message window and now.
// Read the buckets that start in [traffic.WindowStart(now, s.MaxWindow()),
// now) with these cuts from store.HourBuckets or store.ScanHourBuckets:
// hours that no window starts in come back as one bucket, which sums the
// same as its five-minute buckets at a twelfth of the cost. Examples from
// such an hour are its smallest sample SIDs rather than its newest.
func (s *Set) Cuts(now, reinstatedAt time.Time) []time.Time {
	cuts := make([]time.Time, 0, len(s.windows)+1)
	for _, w := range s.windows {
		cuts = append(cuts, windowFrom(now, w, reinstatedAt))
	}
	return append(cuts, now)
}

// limits are a rule's thresholds after overrides and probation.
type limits struct {
	trip, resolve, minVolume, budget float64
	forN                             int
}

func (e *evaluation) limits(r *rule) limits {
	l := limits{trip: r.Trip, resolve: r.Resolve, minVolume: r.MinVolume, budget: r.Budget, forN: r.For}
	for i := range r.overrides {
		o := &r.overrides[i]
		if !o.match.match(e.subj.Account, e.subj.Name) {
			continue
		}
		if o.trip != nil {
			l.trip = *o.trip
			if !r.resolveSet {
				l.resolve = l.trip
			}
		}
		if o.resolve != nil {
			l.resolve = *o.resolve
		}
		if o.minVolume != nil {
			l.minVolume = *o.minVolume
		}
		if o.budget != nil {
			l.budget = *o.budget
		}
		if o.forN > 0 {
			l.forN = o.forN
		}
		break // the first matching override wins
	}
	if e.probation {
		f := e.s.settings.Probation.Factor
		l.trip *= f
		l.resolve *= f
		l.forN = 1
	}
	return l
}

// rule judges one rule. keep reports whether the returned state should be
// stored (false for a rule that does not apply and never had a state).
func (e *evaluation) rule(r *rule, st State) (d Decision, _ State, keep bool) {
	subj := e.subj
	d = Decision{
		Rule: r.Name, Description: r.Description, Severity: r.Severity,
		Action: r.Action, DryRun: r.Mode == ModeDryRun,
		Protected: r.Action == ActionSuspend && e.protected,
		Probation: e.probation,
	}
	ev := &d.Evidence
	ev.Signal = r.signalText
	skip := func(reason string) (Decision, State, bool) {
		d.Result, ev.Reason, d.Probation, d.Protected = Skipped, reason, false, false
		return d, st, false
	}
	switch {
	case r.spec.parent && !subj.Parent:
		return skip("applies to the parent account only")
	case !r.spec.parent && subj.Parent:
		return skip("the parent account is judged on parent signals only")
	case !r.include.empty() && !r.include.match(subj.Account, subj.Name):
		return skip("not in the rule's scope")
	case r.exclude.match(subj.Account, subj.Name):
		return skip("excluded from the rule's scope")
	}
	// A reinstatement by a person starts every rule afresh: what fired before
	// it has been reviewed.
	if !subj.ReinstatedAt.IsZero() && st.LastEval.Before(subj.ReinstatedAt) {
		st = State{}
	}
	l := e.limits(r)
	ev.Threshold, ev.ResolveAt, ev.MinVolume = l.trip, l.resolve, l.minVolume

	var num, den float64
	if r.spec.spend {
		var reason string
		var res Result
		_, _, res, reason = e.spend(r, l, ev) // the evidence holds them
		switch res {
		case Skipped:
			return skip(reason)
		case Unknown:
			d.Result, ev.Reason = res, reason
			st.Consecutive = 0 // `for` counts consecutive judgements
			return d, st, true
		case Insufficient:
			d.Result, ev.Reason = res, reason
			st.Consecutive, st.LastValue, st.LastEval = 0, ev.Value, e.now
			return d, st, true
		}
	} else {
		k := r.win
		ev.From, ev.To = e.froms[k], e.now
		if !e.covered[k] {
			// A gap breaks a streak, as a missing series resets a
			// Prometheus alert's `for`; a firing rule stays firing.
			d.Result, ev.Reason = Unknown, e.gapReason(ev.From)
			st.Consecutive = 0
			return d, st, true
		}
		if j := e.coarse[k]; j >= 0 {
			bk := &subj.Buckets[j]
			d.Result = Unknown
			st.Consecutive = 0
			ev.Reason = fmt.Sprintf("the bucket [%s, %s) straddles the window [%s, %s): buckets must be read split at the set's cuts",
				bk.Start.UTC().Format(time.RFC3339), bk.End().UTC().Format(time.RFC3339),
				ev.From.UTC().Format(time.RFC3339), e.now.UTC().Format(time.RFC3339))
			return d, st, true
		}
		w := &e.sums[k]
		var codes int64
		for _, slot := range r.slots {
			codes += e.codes[k*len(e.s.codes)+slot]
		}
		switch r.Signal {
		case SignalErrorRate:
			num, den = float64(codes), float64(w.finished)
		case SignalErrorCount:
			num, den = float64(codes), float64(w.finished)
		case SignalFailureRate:
			num, den = float64(w.failed), float64(w.finished)
		case SignalOptOutRate:
			num, den = float64(w.optOuts), float64(w.outbound)
		case SignalNoServiceRate:
			num, den = float64(w.noService), float64(w.outbound)
		case SignalNoServiceCount:
			num, den = float64(w.noService), float64(w.outbound)
		case SignalParentOutbound:
			num = float64(w.outbound)
		}
		ev.Numerator, ev.Denominator = num, den
		if r.spec.unit == unitRate {
			if den > 0 {
				ev.Value = num / den
			}
			if den == 0 || den < l.minVolume {
				d.Result = Insufficient
				ev.Reason = fmt.Sprintf("%d %s in the window, fewer than the %g needed", int64(den), r.spec.volume, max(l.minVolume, 1))
				st.Consecutive, st.LastValue, st.LastEval = 0, ev.Value, e.now
				return d, st, true
			}
		} else {
			ev.Value = num
		}
	}

	v := ev.Value
	st.LastValue, st.LastEval = v, e.now
	switch {
	case v >= l.trip:
		if subj.AdvanceAfter.IsZero() || !st.Advanced.After(subj.AdvanceAfter) {
			st.Consecutive++
			st.Advanced = e.now
		}
		switch {
		case st.Firing:
			d.Result = Firing
		case st.Consecutive >= l.forN:
			d.Result, d.Fired = Firing, true
			st.Firing, st.Since = true, e.now
		default:
			d.Result = Pending
		}
	case st.Firing && v < l.resolve:
		d.Result = Resolved
		st.Consecutive, st.Firing, st.Since = 0, false, time.Time{}
	case st.Firing:
		d.Result = Firing // between resolve and trip: hysteresis holds it
		st.Consecutive = 0
	default:
		d.Result = OK
		st.Consecutive = 0
	}
	if (d.Result == Pending || d.Result == Firing) && len(r.sampleKeys) > 0 {
		if subj.Examples != nil {
			ev.Examples = subj.Examples(ev.From, ev.To, MaxExamples, r.sampleKeys...)
		} else {
			ev.Examples = traffic.Examples(subj.Buckets, ev.From, ev.To, MaxExamples, r.sampleKeys...)
		}
	}
	return d, st, true
}

// spend computes a spend signal. A non-empty result other than OK means the
// rule cannot be judged.
func (e *evaluation) spend(r *rule, l limits, ev *Evidence) (num, den float64, res Result, reason string) {
	subj, now := e.subj, e.now.UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	ev.From, ev.To = midnight, e.now
	// Days compared as bytes formatted on the stack: no allocation per call.
	var todayBuf, firstBuf [len(time.DateOnly)]byte
	today := midnight.AppendFormat(todayBuf[:0], time.DateOnly)
	reinstatedToday := !subj.ReinstatedAt.IsZero() && !subj.ReinstatedAt.Before(midnight)
	switch {
	case r.Signal == SignalSpendBudget && l.budget <= 0:
		return 0, 0, Skipped, "no budget configured for this account"
	case reinstatedToday && subj.SpendDay != string(today):
		// Without a snapshot of the spend at the reinstatement, today's
		// spend cannot be split at it.
		return 0, 0, Skipped, fmt.Sprintf("reinstated today at %s, and today's spend at the reinstatement is not known",
			subj.ReinstatedAt.UTC().Format("15:04"))
	case subj.UsageAsOf.IsZero():
		return 0, 0, Unknown, "usage has never been read"
	case e.now.Sub(subj.UsageAsOf) > e.s.settings.UsageStaleness:
		return 0, 0, Unknown, fmt.Sprintf("usage last read at %s, more than %v ago",
			subj.UsageAsOf.UTC().Format(time.RFC3339), e.s.settings.UsageStaleness)
	}
	first := midnight.AddDate(0, 0, -r.Days).AppendFormat(firstBuf[:0], time.DateOnly)
	var spend float64
	for i := len(subj.Usage) - 1; i >= 0; i-- {
		u := &subj.Usage[i]
		if u.Day < string(first) {
			break
		}
		if r.Signal == SignalSpendBudget && u.Day != string(today) {
			continue
		}
		if u.Currency != "" && !strings.EqualFold(u.Currency, e.s.settings.Currency) {
			return 0, 0, Unknown, fmt.Sprintf("cannot judge spend: currency %s (the policies' amounts are in %s)",
				u.Currency, e.s.settings.Currency)
		}
		if u.Day == string(today) {
			spend = u.TotalPrice
		}
	}
	if subj.SpendDay == string(today) {
		// Only what was spent since the reinstatement counts.
		spend = max(spend-subj.SpendBase, 0)
	}
	ev.Numerator = spend
	if r.Signal == SignalSpendBudget {
		ev.Denominator, ev.Value = l.budget, spend/l.budget
		return spend, l.budget, OK, ""
	}

	if len(subj.Usage) == 0 || subj.Usage[0].Day > string(first) {
		return 0, 0, Insufficient, fmt.Sprintf("usage history does not reach back to %s", first)
	}
	var total float64
	days := 0
	for d := midnight.AddDate(0, 0, -r.Days); d.Before(midnight); d = d.AddDate(0, 0, 1) {
		if !subj.OffenceDays[d.Format(time.DateOnly)] {
			days++
		}
	}
	if days == 0 {
		return 0, 0, Insufficient, fmt.Sprintf("a spend rule fired on every one of the %d days before today: no baseline", r.Days)
	}
	for _, u := range subj.Usage {
		if u.Day >= string(first) && u.Day < string(today) && !subj.OffenceDays[u.Day] {
			total += u.TotalPrice // days without a record spent nothing
		}
	}
	mean := max(total/float64(days), minTrailingMean)
	ev.Denominator, ev.Value = mean, spend/mean
	if spend < l.minVolume {
		return 0, 0, Insufficient, fmt.Sprintf("$%.2f spent today, below the $%.2f minimum", spend, l.minVolume)
	}
	return spend, mean, OK, ""
}

func (e *evaluation) gapReason(from time.Time) string {
	c := e.subj.Coverage
	if c.Until.IsZero() {
		return "the message log has not been read yet"
	}
	return fmt.Sprintf("the message log is known complete over [%s, %s], not over [%s, %s]",
		c.From.UTC().Format(time.RFC3339), c.Until.UTC().Format(time.RFC3339),
		from.UTC().Format(time.RFC3339), e.now.Add(-e.lag()).UTC().Format(time.RFC3339))
}

// lag is how far behind now the coverage may end: settings.staleness, or
// the Subject's MaxLag where shorter, plus its Allowance.
func (e *evaluation) lag() time.Duration {
	if l := e.subj.MaxLag; l > 0 && l < e.s.settings.Staleness {
		return l + max(e.subj.Allowance, 0)
	}
	return e.s.settings.Staleness + max(e.subj.Allowance, 0)
}
