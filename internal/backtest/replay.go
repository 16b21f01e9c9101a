package backtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/traffic"
)

// DefaultStep is how often a replay evaluates, as the daemon's default
// messages schedule does.
const DefaultStep = time.Minute

// maxSteps bounds a replay: a year at one-minute steps.
const maxSteps = 366 * 24 * 60

// Options configure Run.
type Options struct {
	// From and To bound the period judged: evaluations at From,
	// From+Step, ... up to To.
	From, To time.Time
	// Step is the time between evaluations; default DefaultStep.
	Step time.Duration
	// Times, when not empty, are the exact times to evaluate at instead,
	// ascending (a daemon's recorded cycles); From and To default to the
	// first and the last.
	Times []time.Time
	// Rails are the safety rails the replay's suspensions pass.
	Rails actions.Rails
	// Follow replays what happened instead of deciding: every suspension
	// is the audit log's, sentinel's own included, and the rails are not
	// consulted. It is how an explanation draws a rule's recent values.
	Follow bool
	// Charts keeps, for every subaccount for which a rule fired, each
	// rule's value over the period, for Report.Charts (HTML): the firing
	// subaccounts are replayed a second time, with their suspensions as
	// the first replay decided them.
	Charts bool
	// Workers bounds how many accounts are evaluated at once; default
	// GOMAXPROCS.
	Workers int
	// Trace, if not nil, is called with every evaluation's decisions, from
	// several goroutines at once. ds is only valid during the call.
	Trace func(sid string, at time.Time, ds []policy.Decision)

	// exhaustive evaluates every account at every step, even where
	// nothing Evaluate reads has changed (tests prove that it changes
	// nothing).
	exhaustive bool
	// buckets, when not nil, gives an account's buckets at now instead of
	// the running sums (tests compare with the store's own reads).
	buckets func(sid string, now, reinstatedAt time.Time) []traffic.Bucket
	// fixed holds each account's suspensions, replayed as given instead
	// of decided (the charts' second pass).
	fixed map[string][]suspension
}

// suspension is one suspension the replay made.
type suspension struct {
	at   time.Time
	rule int // index in the set's rules
}

// run is one replay.
type run struct {
	ctx   context.Context
	h     *History
	set   *policy.Set
	opts  Options
	rules []policy.Rule
	// spend marks the rules with spend signals, by index.
	spend     []bool
	fields    int
	staleness time.Duration
	settings  policy.Settings
	usageDays int
	memo      bool
	from, to  time.Time
	steps     []time.Time
	accts     []*acct
	// hour holds the suspensions by sentinel that count toward the
	// per-hour rail, ascending: the audit log's before From, then the
	// replay's.
	hour []time.Time
	// cols is the number of chart columns (Options.Charts).
	cols int
}

// Run replays h through set over the period opts asks for and reports
// what the rules would have done. It never writes anything anywhere: h is
// in memory. See the package doc for what the replay assumes.
func Run(ctx context.Context, h *History, set *policy.Set, opts Options) (*Report, error) {
	r, err := newRun(ctx, h, set, opts)
	if err != nil {
		return nil, err
	}
	if err := r.replay(); err != nil {
		return nil, err
	}
	rep := r.report()
	var sids []string
	for i, s := range rep.Subaccounts {
		if i < maxCharted {
			sids = append(sids, s.SID)
		}
	}
	if opts.Charts && !opts.Follow {
		// Replay the subaccounts that fired again, on their own, with the
		// suspensions the first replay made: the same evaluations, this
		// time keeping every value.
		fixed := map[string][]suspension{}
		for _, sid := range sids {
			fixed[sid] = nil
		}
		for _, a := range r.accts {
			if _, ok := fixed[a.h.Info.SID]; ok {
				fixed[a.h.Info.SID] = a.suspensions
			}
		}
		o := opts
		o.fixed, o.Trace = fixed, nil
		r2, err := newRun(ctx, h, set, o)
		if err != nil {
			return nil, err
		}
		if err := r2.replay(); err != nil {
			return nil, err
		}
		rep.Charts = r2.chartsOf(rep, sids)
	} else if opts.Charts {
		rep.Charts = r.chartsOf(rep, sids)
	}
	return rep, nil
}

func newRun(ctx context.Context, h *History, set *policy.Set, opts Options) (*run, error) {
	switch {
	case h == nil:
		return nil, errors.New("backtest: no history")
	case set == nil:
		return nil, errors.New("backtest: no policy set")
	}
	for _, code := range Codes(set) {
		if !slices.Contains(h.Codes, code) {
			return nil, fmt.Errorf("backtest: the history does not count error %d, which the policies read: load it for these policies", code)
		}
	}
	if err := h.sum(); err != nil {
		return nil, fmt.Errorf("backtest: %w", err)
	}
	if opts.Step == 0 {
		opts.Step = DefaultStep
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	// A log that lags more than the rails' MaxStaleness is not judged,
	// as the daemon does not (policy.Subject.MaxLag).
	lag := set.Settings().Staleness
	if m := opts.Rails.MaxStaleness; m > 0 && m < lag {
		lag = m
	}
	r := &run{
		ctx: ctx, h: h, set: set, opts: opts, rules: set.Rules(), fields: h.fields(),
		staleness: lag, settings: set.Settings(), usageDays: max(minUsageDays, set.UsageDays()),
		memo: !opts.exhaustive && opts.buckets == nil,
	}
	for _, rule := range r.rules {
		r.spend = append(r.spend, rule.Signal == policy.SignalSpendBudget || rule.Signal == policy.SignalSpendSpike)
	}
	if err := r.plan(); err != nil {
		return nil, err
	}
	if opts.Charts {
		r.cols = min(len(r.steps), maxColumns)
	}
	fromDay := r.from.UTC().Format(time.DateOnly)
	for i := range h.Accounts {
		ha := &h.Accounts[i]
		if opts.fixed != nil {
			if _, ok := opts.fixed[ha.Info.SID]; !ok {
				continue
			}
		}
		a := &acct{h: ha, rules: make([]track, len(r.rules)), offenceDays: map[string]bool{}}
		for _, d := range ha.SpendDays {
			// Before the period the days are what happened; in it, the
			// replay marks its own (Follow: what happened).
			if opts.Follow || d < fromDay {
				a.offenceDays[d] = true
			}
		}
		if r.cols > 0 {
			a.chart = newChart(len(r.rules), r.cols)
		}
		for _, c := range ha.Changes {
			if c.Offence() && c.At.Before(r.from) && !c.At.Before(r.from.Add(-time.Hour)) {
				r.hour = append(r.hour, c.At)
			}
		}
		r.accts = append(r.accts, a)
	}
	slices.SortFunc(r.hour, func(a, b time.Time) int { return a.Compare(b) })
	return r, nil
}

// plan works out the evaluation times.
func (r *run) plan() error {
	o := r.opts
	if len(o.Times) > 0 {
		if !slices.IsSortedFunc(o.Times, func(a, b time.Time) int { return a.Compare(b) }) {
			return errors.New("backtest: evaluation times out of order")
		}
		r.steps = slices.Clone(o.Times)
		r.from, r.to = o.From, o.To
		if r.from.IsZero() {
			r.from = r.steps[0]
		}
		if r.to.IsZero() {
			r.to = r.steps[len(r.steps)-1]
		}
		return nil
	}
	switch {
	case o.Step < 0:
		return fmt.Errorf("backtest: step %v: want a positive duration", o.Step)
	case !o.From.Before(o.To):
		return fmt.Errorf("backtest: the period starts at %s, not before its end at %s",
			o.From.UTC().Format(time.RFC3339), o.To.UTC().Format(time.RFC3339))
	case o.To.Sub(o.From)/o.Step >= maxSteps:
		return fmt.Errorf("backtest: %v at steps of %v is more than %d evaluations: choose a longer -step or a shorter period",
			o.To.Sub(o.From), o.Step, maxSteps)
	}
	r.from, r.to = o.From, o.To
	for t := o.From; !t.After(o.To); t = t.Add(o.Step) {
		r.steps = append(r.steps, t)
	}
	return nil
}

// scratch is one worker's memory for building buckets.
type scratch struct {
	cuts    []time.Time
	buckets []traffic.Bucket
}

func newScratch(codes []int) *scratch {
	s := &scratch{buckets: make([]traffic.Bucket, maxWindows+1)}
	for i := range s.buckets {
		s.buckets[i].Errors = make(map[int]int64, len(codes))
	}
	return s
}

// replay evaluates every account at every step: the accounts of a step
// in parallel, then the step's suspensions through the rails, in order.
func (r *run) replay() error {
	workers := min(r.opts.Workers, max(len(r.accts), 1))
	scratches := make([]*scratch, workers)
	for w := range scratches {
		scratches[w] = newScratch(r.h.Codes)
	}
	for si, t := range r.steps {
		if si%32 == 0 {
			if err := r.ctx.Err(); err != nil {
				return err
			}
		}
		if workers == 1 {
			for _, a := range r.accts {
				a.step(r, t, si, scratches[0])
			}
		} else {
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := w; i < len(r.accts); i += workers {
						r.accts[i].step(r, t, si, scratches[w])
					}
				})
			}
			wg.Wait()
		}
		switch {
		case r.opts.Follow:
		case r.opts.fixed != nil:
			r.replayFixed(t)
		default:
			r.enforce(t)
		}
	}
	return nil
}

// maxWindows bounds the distinct message windows a set may have for the
// replay to skip evaluations that could not change (inputs); a set with
// more is evaluated at every step.
const maxWindows = 8

// inputs is everything Evaluate reads of a subject at a time, reduced to
// what can change a decision: equal inputs and a rule state that the last
// evaluation left as it found it (fixedPoint) give equal decisions, so
// the evaluation is skipped. Between bucket boundaries nothing here moves
// for most accounts, so most one-minute steps cost a comparison.
type inputs struct {
	valid      bool
	slots      int // slots that start before now
	nfroms     int
	froms      [maxWindows]int64 // the windows' starts
	covered    uint16            // per window: the coverage spans it
	day        int64             // now's UTC day
	probation  bool
	reinstated int64
	offences   int
	spend      float64 // today's spend as the subject shows it
	usage      uint8   // 0 never read, 1 stale, 2 fresh
	spendDay   string
	spendBase  float64
	offences2  int // the offence days' version
}

// acct is one account being replayed.
type acct struct {
	h      *Account
	events int // the next of h.Changes to apply

	suspended bool
	// byReplay: suspended by sentinel, a suspension that counts toward
	// the blast radius (the audit log's before From, or the replay's).
	byReplay    bool
	state       string // the breaker state while suspended
	manual      bool
	suspendedAt time.Time
	closed      bool

	reinstatedAt time.Time
	head         []int64 // counts of the reinstatement's head bucket, if any
	headGone     bool    // the head's raw messages are pruned
	offences     int
	spendDay     string
	spendBase    float64
	offenceDays  map[string]bool
	offenceVer   int

	states    map[string]policy.State
	decs      []policy.Decision
	key       inputs
	fixed     bool
	judged    bool  // evaluated at this step
	evaluated bool  // at any step
	evals     int64 // Evaluate calls
	cand      bool  // a suspension rule is firing
	// lastJudged is the last step it was judged at, and lastStates the
	// rule states its decisions (decs) left.
	lastJudged time.Time
	lastStates map[string]policy.State

	ud    dayUsage
	usage []traffic.Usage
	today int // index of today's record in usage, or -1

	rules       []track
	suspensions []suspension
	chart       *chart
}

// track is what the report keeps of one rule for one account.
type track struct {
	fired     []time.Time
	suspended []time.Time
	dryRun    []time.Time
	blocked   []Block
	// episode counts the rule's firings, as the daemon's incidents do:
	// a block or dry-run decision is reported once per episode and rail.
	episode int
	seen    map[string]int
	judged  bool // measured a value at least once
	applies bool // not skipped at least once
	peak    Peak
	ratio   float64 // peak value over its threshold
}

// step evaluates a at t.
func (a *acct) step(r *run, t time.Time, si int, scr *scratch) {
	a.judged = false
	a.apply(r, t)
	if a.suspended || a.closed {
		if a.chart != nil && a.suspended {
			a.chart.suspended[r.column(si)] = true
		}
		return
	}
	a.judged, a.evaluated, a.lastJudged = true, true, t
	cuts := r.set.Cuts(t, a.reinstatedAt)
	cov := a.coverage(t)
	a.usageAt(r, t)
	spend := 0.0
	if a.today >= 0 {
		spend = a.usage[a.today].TotalPrice
	}
	usageAsOf := a.h.UsagePolled
	if usageAsOf.After(t) {
		usageAsOf = t
	}
	var key inputs
	if r.memo && len(cuts)-1 <= maxWindows {
		key = inputs{
			valid: true, slots: r.slot(t), nfroms: len(cuts) - 1, day: t.Unix() / 86400,
			reinstated: a.reinstatedAt.UnixNano(), offences: a.offences, spend: spend,
			spendDay: a.spendDay, spendBase: a.spendBase, offences2: a.offenceVer,
			probation: t.Before(policy.ProbationUntil(r.settings, a.reinstatedAt, a.offences)),
		}
		fresh := t.Add(-r.staleness)
		for k, from := range cuts[:len(cuts)-1] {
			key.froms[k] = from.UnixNano()
			if cov.Covers(from, fresh) {
				key.covered |= 1 << k
			}
		}
		switch {
		case usageAsOf.IsZero():
		case t.Sub(usageAsOf) > r.settings.UsageStaleness:
			key.usage = 1
		default:
			key.usage = 2
		}
		if a.fixed && key == a.key {
			a.record(r, t, si, false)
			return
		}
	}
	var buckets []traffic.Bucket
	if r.opts.buckets != nil {
		buckets = r.opts.buckets(a.h.Info.SID, t, a.reinstatedAt)
	} else {
		buckets = a.segments(r, cuts, t, scr)
	}
	subj := policy.Subject{
		Account:      a.h.Info.SID,
		Name:         a.h.Info.FriendlyName,
		Parent:       a.h.Info.Parent,
		Buckets:      buckets,
		Examples:     noExamples,
		Coverage:     cov,
		MaxLag:       r.staleness,
		Usage:        a.usage,
		UsageAsOf:    usageAsOf,
		ReinstatedAt: a.reinstatedAt,
		Offences:     a.offences,
		SpendDay:     a.spendDay,
		SpendBase:    a.spendBase,
		OffenceDays:  a.offenceDays,
	}
	decs, next := r.set.Evaluate(subj, a.states, t)
	a.evals++
	a.fixed = fixedPoint(a.states, next)
	a.states, a.decs, a.key, a.lastStates = next, decs, key, next
	a.record(r, t, si, true)
}

// noExamples leaves example SIDs out: a replay reports values, not
// messages, and the synthetic buckets carry no samples.
func noExamples(time.Time, time.Time, int, ...int) []string { return nil }

// fixedPoint reports whether an evaluation left every rule's state as it
// found it, as far as a later decision reads it: Firing and its start,
// and the run of evaluations over the threshold of a rule not firing (a
// firing rule's run decides nothing: it fires once, and resolves below
// its resolve line whatever the run).
func fixedPoint(prev, next map[string]policy.State) bool {
	if len(prev) != len(next) {
		return false
	}
	for name, n := range next {
		p, ok := prev[name]
		if !ok || p.Firing != n.Firing || !p.Since.Equal(n.Since) || (!n.Firing && p.Consecutive != n.Consecutive) {
			return false
		}
	}
	return true
}

// record keeps what the report needs of a's decisions at t; evaluated is
// false when they are the last evaluation's, unchanged.
func (a *acct) record(r *run, t time.Time, si int, evaluated bool) {
	if a.chart != nil {
		col := r.column(si)
		for i := range a.decs {
			a.chart.add(i, col, &a.decs[i])
		}
	}
	if r.opts.Trace != nil {
		r.opts.Trace(a.h.Info.SID, t, a.decs)
	}
	if !evaluated {
		return
	}
	a.cand = false
	today := ""
	for i := range a.decs {
		d := &a.decs[i]
		if d.Action == policy.ActionSuspend && d.Result == policy.Firing {
			a.cand = true
		}
		tr := &a.rules[i]
		if d.Fired {
			tr.fired = append(tr.fired, t)
			tr.episode++
		}
		tr.applies = tr.applies || d.Result != policy.Skipped
		if judged(d.Result) {
			tr.judged = true
			ratio := d.Evidence.Value
			if th := d.Evidence.Threshold; th > 0 {
				ratio /= th
			}
			if tr.peak.At.IsZero() || ratio > tr.ratio {
				tr.ratio = ratio
				tr.peak = Peak{Value: d.Evidence.Value, Threshold: d.Evidence.Threshold, At: t}
			}
		}
		// A day on which a spend rule fires is left out of spend_spike's
		// baseline on the days after, as the daemon marks it.
		if r.spend[i] && d.Result == policy.Firing && !r.opts.Follow {
			if today == "" {
				today = t.UTC().Format(time.DateOnly)
			}
			if !a.offenceDays[today] {
				a.offenceDays[today] = true
				a.offenceVer++
			}
		}
	}
}

// judged reports whether a result measured a value against the threshold.
func judged(res policy.Result) bool {
	switch res {
	case policy.OK, policy.Pending, policy.Firing, policy.Resolved:
		return true
	}
	return false
}

// apply replays the breaker changes the audit log records up to t. Before
// the period everything is what happened. In it, the replay makes its own
// suspensions and copies everyone else's; a reinstatement ends a
// suspension that began before it, and is ignored when the replay never
// made (or copied) the suspension it ended.
func (a *acct) apply(r *run, t time.Time) {
	for ; a.events < len(a.h.Changes) && !a.h.Changes[a.events].At.After(t); a.events++ {
		c := a.h.Changes[a.events]
		if c.To == actions.StateAccountClosed {
			a.closed = true
		}
		switch {
		case c.Offence():
			if !r.opts.Follow && !c.At.Before(r.from) {
				continue // the replay decides for itself
			}
			if !a.suspended {
				a.suspend(c.At, c.To, false, true)
				a.offences++
			}
		case c.Suspension():
			if !a.suspended {
				a.suspend(c.At, c.To, c.To == actions.StateOpen, false)
			}
		case c.Reinstatement():
			if !a.suspended || a.closed || c.ReinstatedAt.Before(a.suspendedAt) {
				continue
			}
			a.reinstate(r, c)
		}
	}
}

func (a *acct) suspend(at time.Time, state string, manual, bySentinel bool) {
	a.suspended, a.suspendedAt, a.state, a.manual, a.byReplay = true, at, state, manual, bySentinel
	a.states, a.fixed = nil, false
}

// reinstate puts a on probation from c's reinstatement: windows start
// there, the rule states start afresh, and spend rules judge that day's
// spend after it.
func (a *acct) reinstate(r *run, c actions.Change) {
	a.suspended, a.byReplay, a.manual = false, false, false
	a.reinstatedAt = c.ReinstatedAt
	a.states, a.fixed = nil, false
	a.head, a.headGone = nil, false
	if rt := c.ReinstatedAt; !traffic.BucketStart(rt).Equal(rt) {
		for _, hd := range a.h.Heads {
			if hd.At.Equal(rt) {
				a.head = hd.Counts
			}
		}
		a.headGone = !r.h.Horizon.IsZero() && rt.Before(r.h.Horizon)
	}
	// The spend the daemon noted at the reinstatement: the audit log
	// records it (since it does), the breaker keeps the last one until
	// the next suspension; without either it is estimated as the day's
	// spend is (usageAt). A reactivation noticed on a later day was not
	// noted.
	a.spendDay, a.spendBase = "", 0
	day := c.ReinstatedAt.UTC().Format(time.DateOnly)
	switch br := a.h.Breaker; {
	case c.SpendDay != "":
		a.spendDay, a.spendBase = c.SpendDay, c.SpendBase
	case c.ReinstatedAt.Equal(br.ReinstatedAt) && br.SpendDay != "":
		a.spendDay, a.spendBase = br.SpendDay, br.SpendBase
	case day == c.At.UTC().Format(time.DateOnly):
		a.spendDay = day
		for _, u := range a.h.Usage {
			if u.Day == day {
				a.spendBase = a.spendOf(r, u, c.ReinstatedAt)
			}
		}
	}
}

// coverage is a's coverage as a cycle at t would have seen it: complete
// from where the stored coverage starts up to t, or only to where it ends.
func (a *acct) coverage(t time.Time) traffic.Coverage {
	c := a.h.Coverage
	if c.Until.After(t) {
		c.Until = t
	}
	if a.headGone {
		// The window that starts at the reinstatement cannot be counted.
		c.From = latest(c.From, traffic.CeilBucket(a.reinstatedAt))
	}
	return c
}

// usageAt fills a.usage with the usage days a cycle at t reads, today's
// spend as known at t (spendOf). What it derives from a day is kept until
// the day changes, and today's spend until the slot does.
func (a *acct) usageAt(r *run, t time.Time) {
	day := t.Unix() / 86400
	u := &a.ud
	if !u.valid || day != u.day {
		*u = dayUsage{valid: true, day: day, last: -1}
		today := t.UTC().Format(time.DateOnly)
		first := t.UTC().AddDate(0, 0, 1-r.usageDays).Format(time.DateOnly)
		a.usage, a.today = a.usage[:0], -1
		for _, x := range a.h.Usage {
			if x.Day >= first && x.Day <= today {
				if x.Day == today {
					a.today = len(a.usage)
					u.rec = x
				}
				a.usage = append(a.usage, x)
			}
		}
		if a.today >= 0 {
			u.mid, u.known = a.spreadOver(u.rec)
			u.lo, u.hi = r.slot(u.mid), r.slot(u.known)
			u.den = a.sum(r, fieldOutbound, u.lo, u.hi)
		}
	}
	if a.today < 0 {
		return
	}
	spend := u.rec.TotalPrice
	switch {
	case !t.Before(u.known) || !u.known.After(u.mid):
	case u.den > 0:
		if s := r.slot(t); s != u.last {
			u.last, u.spend = s, u.rec.TotalPrice*float64(a.sum(r, fieldOutbound, u.lo, s))/float64(u.den)
		}
		spend = u.spend
	default:
		spend = u.rec.TotalPrice * float64(t.Sub(u.mid)) / float64(u.known.Sub(u.mid))
	}
	a.usage[a.today].TotalPrice = spend
}

// dayUsage is what usageAt keeps of the current day.
type dayUsage struct {
	valid  bool
	day    int64         // Unix days
	rec    traffic.Usage // today's stored record
	mid    time.Time
	known  time.Time // the record holds the spend up to here
	lo, hi int       // the slots of [mid, known)
	den    int64     // outbound messages in them
	last   int       // the slot spend was estimated at
	spend  float64
}

// spreadOver returns the stretch of u's day whose spend u holds: from
// midnight to its as_of, or to the end of the day.
func (a *acct) spreadOver(u traffic.Usage) (mid, known time.Time) {
	mid, err := time.Parse(time.DateOnly, u.Day)
	if err != nil {
		return time.Time{}, time.Time{}
	}
	known = mid.Add(24 * time.Hour)
	if !u.AsOf.IsZero() && u.AsOf.Before(known) {
		known = u.AsOf
	}
	return mid, known
}

// spendOf estimates the spend of u's day up to t. The store keeps each
// day's spend only as last read: when that read was after t, the spend
// known at t is estimated by spreading the day's spend over its outbound
// messages up to the read (or evenly over the time, without any).
func (a *acct) spendOf(r *run, u traffic.Usage, t time.Time) float64 {
	mid, known := a.spreadOver(u)
	if !t.Before(known) || !known.After(mid) {
		return u.TotalPrice
	}
	if den := a.sum(r, fieldOutbound, r.slot(mid), r.slot(known)); den > 0 {
		return u.TotalPrice * float64(a.sum(r, fieldOutbound, r.slot(mid), r.slot(t))) / float64(den)
	}
	return u.TotalPrice * float64(t.Sub(mid)) / float64(known.Sub(mid))
}

// slot returns how many slots start before t.
func (r *run) slot(t time.Time) int {
	d := t.Sub(r.h.Start)
	if d <= 0 {
		return 0
	}
	i := int(d / traffic.BucketWidth)
	if d%traffic.BucketWidth != 0 {
		i++
	}
	return min(i, r.h.Slots)
}

// sum returns field f summed over slots [lo, hi).
func (a *acct) sum(r *run, f, lo, hi int) int64 {
	if hi <= lo {
		return 0
	}
	c, n := a.h.Counts, r.fields
	s := c[(hi-1)*n+f]
	if lo > 0 {
		s -= c[(lo-1)*n+f]
	}
	return s
}

// segments returns one bucket per stretch between consecutive cuts (the
// windows' starts and now): every window starts at a cut, so a bucket
// that spans one stretch counts in a window whole or not at all, and the
// sums are exact. The stretch that starts at a reinstatement within a
// bucket also holds that bucket's head.
func (a *acct) segments(r *run, cuts []time.Time, now time.Time, scr *scratch) []traffic.Bucket {
	ts := scr.cuts[:0]
	for _, c := range cuts[:len(cuts)-1] {
		if c.Before(now) {
			ts = append(ts, c)
		}
	}
	slices.SortFunc(ts, func(x, y time.Time) int { return x.Compare(y) })
	ts = slices.CompactFunc(ts, func(x, y time.Time) bool { return x.Equal(y) })
	ts = append(ts, now)
	scr.cuts = ts
	n := len(ts) - 1
	if n > len(scr.buckets) {
		for range n - len(scr.buckets) {
			scr.buckets = append(scr.buckets, traffic.Bucket{Counts: traffic.Counts{Errors: make(map[int]int64, len(r.h.Codes))}})
		}
	}
	bs := scr.buckets[:n]
	for i := range bs {
		lo, hi := ts[i], ts[i+1]
		ilo, ihi := r.slot(lo), r.slot(hi)
		b := &bs[i]
		b.Start, b.Width = lo, hi.Sub(lo)
		var head []int64
		if a.head != nil && lo.Equal(a.reinstatedAt) {
			head = a.head
		}
		at := func(f int) int64 {
			v := a.sum(r, f, ilo, ihi)
			if head != nil {
				v += head[f]
			}
			return v
		}
		b.Outbound, b.Finished, b.Failed = at(fieldOutbound), at(fieldFinished), at(fieldFailed)
		b.NoService, b.OptOuts = at(fieldNoService), at(fieldOptOuts)
		for j, code := range r.h.Codes {
			b.Errors[code] = at(fieldCodes + j)
		}
	}
	return bs
}

// cand is one firing suspension rule of one account at one step.
type cand struct {
	a    *acct
	rule int
	d    *policy.Decision
}

// enforce passes the step's firing suspension rules through the safety
// pipeline, as the daemon's cycle does (actions' pipeline): worst offender
// first; never the parent; once per account; protected accounts alert
// only; nothing on stale data; rules in dry_run mode decide without
// acting; then the blast radius, per hour and as a fraction of the active
// subaccounts.
func (r *run) enforce(t time.Time) {
	var cands []cand
	for _, a := range r.accts {
		if !a.judged || !a.cand {
			continue
		}
		for i := range a.decs {
			if d := &a.decs[i]; d.Action == policy.ActionSuspend && d.Result == policy.Firing {
				cands = append(cands, cand{a, i, d})
			}
		}
	}
	if len(cands) == 0 {
		return
	}
	slices.SortStableFunc(cands, func(x, y cand) int {
		return actions.CompareCandidates(x.a.h.Info.SID, *x.d, y.a.h.Info.SID, *y.d)
	})
	var active, open int
	for _, a := range r.accts {
		ac, op := actions.InFleet(a.h.Info.Parent, a.status(), a.breakerState(), a.manual)
		if ac {
			active++
		}
		if op {
			open++
		}
	}
	hour := len(r.hour) - sort.Search(len(r.hour), func(i int) bool { return !r.hour[i].Before(t.Add(-time.Hour)) })
	rails := r.opts.Rails
	suspended := 0
	done := map[*acct]bool{}
	for _, c := range cands {
		a, info := c.a, &c.a.h.Info
		switch {
		case info.Parent:
			a.block(c.rule, actions.RailParent, "never the parent account, whatever a rule says", t)
			continue
		case done[a] || a.suspended:
			continue
		case c.d.Protected || r.set.Protected(info.SID, info.FriendlyName):
			a.block(c.rule, actions.RailProtected, "protected account: alerts only", t)
			continue
		case a.closed:
			continue
		case rails.Stale(a.coverage(t), t):
			done[a] = true
			a.block(c.rule, actions.RailStale, fmt.Sprintf("no suspension on stale data: message log known complete only until %s",
				a.h.Coverage.Until.UTC().Format(time.RFC3339)), t)
			continue
		case c.d.DryRun:
			done[a] = true
			if tr := &a.rules[c.rule]; tr.once(actions.RailDryRun) {
				tr.dryRun = append(tr.dryRun, t)
			}
			continue
		}
		done[a] = true
		if rail, why := rails.Blast(hour+suspended, open+suspended, active); rail != "" {
			a.block(c.rule, rail, why, t)
			continue
		}
		a.replaySuspend(c.rule, t)
		suspended++
		r.hour = append(r.hour, t)
	}
}

// replayFixed makes the suspensions the first replay made at t (the
// charts' second pass).
func (r *run) replayFixed(t time.Time) {
	for _, a := range r.accts {
		for _, s := range r.opts.fixed[a.h.Info.SID] {
			if s.at.Equal(t) && !a.suspended {
				a.replaySuspend(s.rule, t)
			}
		}
	}
}

// replaySuspend suspends a at t for rule: a suspension by sentinel, an
// offence, until a person reinstates it (or the period ends).
func (a *acct) replaySuspend(rule int, t time.Time) {
	a.suspend(t, actions.StateOpen, false, true)
	a.offences++
	a.suspensions = append(a.suspensions, suspension{t, rule})
	a.rules[rule].suspended = append(a.rules[rule].suspended, t)
}

// once reports whether key is new in the rule's current episode.
func (tr *track) once(key string) bool {
	if tr.seen == nil {
		tr.seen = map[string]int{}
	}
	if ep, ok := tr.seen[key]; ok && ep == tr.episode {
		return false
	}
	tr.seen[key] = tr.episode
	return true
}

// block records, once per episode and rail, that a rail stopped rule.
func (a *acct) block(rule int, rail, why string, t time.Time) {
	if tr := &a.rules[rule]; tr.once(rail) {
		tr.blocked = append(tr.blocked, Block{Rail: rail, At: t, Why: why})
	}
}

// status is a's Twilio status in the replay.
func (a *acct) status() string {
	switch {
	case a.closed:
		return "closed"
	case a.suspended:
		return "suspended"
	}
	return "active"
}

// breakerState is a's breaker state in the replay, as far as the blast
// radius reads it.
func (a *acct) breakerState() string {
	switch {
	case a.closed:
		return actions.StateAccountClosed
	case a.suspended && a.byReplay:
		return actions.StateOpen
	case a.suspended:
		return a.state
	}
	return actions.StateClosed
}
