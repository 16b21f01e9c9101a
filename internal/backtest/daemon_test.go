package backtest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

// t0 is the first cycle of the daemon scenarios.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// clock is the daemon's injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// nop drops notifications: the scenarios compare decisions, not alerts.
type nop struct{}

func (nop) Notify(context.Context, slack.Event) error { return nil }

// decisionKey names one rule's decision for one account at one time.
type decisionKey struct {
	SID, Rule string
	At        int64 // UnixNano
}

// decisionVal is what is compared of a decision.
type decisionVal struct {
	Result    policy.Result
	Fired     bool
	Value     float64
	Trip      float64
	Probation bool
}

// decisions collects the decisions the daemon logs at debug level (the
// evaluator's "decision" records) or a replay traces.
type decisions struct {
	mu sync.Mutex
	m  map[decisionKey]decisionVal
}

func newDecisions() *decisions { return &decisions{m: map[decisionKey]decisionVal{}} }

func (d *decisions) put(sid string, at time.Time, ds []policy.Decision) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range ds {
		if x.Result != policy.Skipped {
			d.m[decisionKey{sid, x.Rule, at.UnixNano()}] = decisionVal{x.Result, x.Fired, x.Evidence.Value, x.Evidence.Threshold, x.Probation}
		}
	}
}

// Enabled, Handle, WithAttrs and WithGroup make decisions a slog.Handler
// that keeps the daemon's decision records.
func (d *decisions) Enabled(context.Context, slog.Level) bool { return true }

func (d *decisions) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "decision" {
		return nil
	}
	var sid, rule string
	var v decisionVal
	var at time.Time
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "subaccount":
			sid = a.Value.String()
		case "rule":
			rule = a.Value.String()
		case "result":
			v.Result = policy.Result(fmt.Sprint(a.Value.Any()))
		case "fired":
			v.Fired = a.Value.Bool()
		case "value":
			v.Value = a.Value.Float64()
		case "trip":
			v.Trip = a.Value.Float64()
		case "probation":
			v.Probation = a.Value.Bool()
		case "to":
			at = a.Value.Time()
		}
		return true
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[decisionKey{sid, rule, at.UnixNano()}] = v
	return nil
}

func (d *decisions) WithAttrs([]slog.Attr) slog.Handler { return d }
func (d *decisions) WithGroup(string) slog.Handler      { return d }

// daemon is sentinel's judging side in a test process: the real store, a
// Twilio fake and the real actions.Actor on an injected clock. Its
// messages are stored directly, as a poll would store them.
type daemon struct {
	t      *testing.T
	clock  *clock
	fake   *twiliofake.Server
	st     *store.Store
	set    *policy.Set
	actor  *actions.Actor
	cfg    actions.Config
	logged *decisions
	subs   map[string]string // name -> SID
	parent string
	cycles []time.Time
}

func newDaemon(t *testing.T, policies string, cfg actions.Config, names []string) *daemon {
	t.Helper()
	d := &daemon{t: t, clock: &clock{t: t0.Add(-26 * time.Hour)}, cfg: cfg, logged: newDecisions(), subs: map[string]string{}}
	d.fake = twiliofake.New(twiliofake.Options{Now: d.clock.Now, Seed: 7})
	d.fake.Start()
	t.Cleanup(d.fake.Close)
	d.parent = d.fake.ParentSID()
	for i, name := range names {
		a, err := d.fake.AddSubaccount(twiliofake.Account{SID: fmt.Sprintf("AC%032x", 0xb000+i), FriendlyName: name})
		if err != nil {
			t.Fatal(err)
		}
		d.subs[name] = a.SID
	}
	tw, err := twilioapi.New(twilioapi.Config{
		BaseURL: d.fake.URL(), AccountSID: d.parent, AuthToken: d.fake.ParentToken(), MaxRetries: 1,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.st, err = store.Open(filepath.Join(t.TempDir(), "sentinel.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.st.Close() })
	if d.set, err = policy.Load(policies); err != nil {
		t.Fatal(err)
	}
	d.sync()
	d.actor, err = actions.New(cfg, d.st, tw, func() *policy.Set { return d.set }, nop{}, prometheus.NewRegistry(),
		slog.New(d.logged), d.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sync stores the fake's account list, as the poller's account poll does.
func (d *daemon) sync() {
	d.t.Helper()
	var accts []store.Account
	for _, a := range d.fake.Accounts() {
		accts = append(accts, store.Account{SID: a.SID, FriendlyName: a.FriendlyName, Status: a.Status, Parent: a.Parent, Updated: a.Updated})
	}
	if _, err := d.st.SyncAccounts(accts, d.clock.Now()); err != nil {
		d.t.Fatal(err)
	}
}

// usage stores today's spend of every subaccount, read at at, and tells
// the fake the same (a reinstatement asks Twilio for it).
func (d *daemon) usage(at time.Time, spend map[string]float64) {
	d.t.Helper()
	day := at.UTC().Format(time.DateOnly)
	for name, sid := range d.subs {
		usd := spend[name]
		var days []traffic.Usage
		for i := 7; i >= 1; i-- {
			days = append(days, traffic.Usage{Day: at.AddDate(0, 0, -i).Format(time.DateOnly), TotalPrice: usd / 2, AsOf: at, Currency: "USD"})
		}
		days = append(days, traffic.Usage{Day: day, TotalPrice: usd, AsOf: at, Currency: "USD"})
		if err := d.st.PutUsage(sid, days); err != nil {
			d.t.Fatal(err)
		}
		if err := d.st.RecordPoll(sid, "usage", at, nil); err != nil {
			d.t.Fatal(err)
		}
		if err := d.fake.SetUsage(sid, day, "totalprice", twiliofake.UsageRecord{Price: usd}); err != nil {
			d.t.Fatal(err)
		}
	}
}

// cover marks every account's message log complete up to until, and
// those in stopped up to stop only (their polls stopped then). A poll
// would move the end of the coverage to each cycle; an end later than the
// cycle judges the same, and costs no commit per account and cycle.
func (d *daemon) cover(until, stop time.Time, stopped ...string) {
	d.t.Helper()
	for _, sid := range append([]string{d.parent}, values(d.subs)...) {
		end := until
		if slices.Contains(stopped, sid) {
			end = stop
		}
		if err := d.st.SetCoverage(sid, traffic.Coverage{From: t0.Add(-26 * time.Hour), Until: end}); err != nil {
			d.t.Fatal(err)
		}
	}
}

// cycle judges every account at t.
func (d *daemon) cycle(t time.Time) {
	d.t.Helper()
	d.clock.Set(t)
	if _, err := d.actor.Judge(context.Background()); err != nil {
		d.t.Fatalf("Judge at %v: %v", t, err)
	}
	d.cycles = append(d.cycles, t)
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// profile says what one subaccount sends at a time: per message, the
// chance it is filtered (30007), failed (30003), refused as unsubscribed
// (21610), and per minute the chance of a counted STOP.
type profile func(at time.Time) (filtered, failed, unsubscribed, stop float64)

// traffic stores, for every subaccount, a message every five minutes from
// 26 hours before t0 and one a minute from an hour before it, up to end,
// shaped by its profile. It is all stored before the first cycle, so that
// the daemon sees, as a replay does, every message of a bucket in it.
func (d *daemon) traffic(end time.Time, profiles map[string]profile) {
	d.t.Helper()
	seq := 0
	for _, name := range sortedNames(d.subs) {
		sid := d.subs[name]
		p := profiles[name]
		rng := rand.New(rand.NewPCG(uint64(len(name)), uint64(seq)))
		var msgs []traffic.Message
		peer := uint64(0)
		for at := t0.Add(-26 * time.Hour); at.Before(end); {
			step := 5 * time.Minute
			if !at.Before(t0.Add(-time.Hour)) {
				step = time.Minute
			}
			sent := at.Add(time.Duration(rng.IntN(59)) * time.Second)
			var filtered, failed, unsub, stop float64
			if p != nil {
				filtered, failed, unsub, stop = p(at)
			}
			seq++
			peer++
			m := traffic.Message{SID: fmt.Sprintf("SM%032x", seq), AccountSID: sid, Direction: traffic.OutboundAPI,
				Status: "delivered", Time: sent, MessagingService: true, Peer: peer}
			switch x := rng.Float64(); {
			case x < filtered:
				m.Status, m.ErrorCode = "undelivered", 30007
			case x < filtered+failed:
				m.Status, m.ErrorCode = "undelivered", 30003
			case x < filtered+failed+unsub:
				m.Status, m.ErrorCode = "failed", 21610
			}
			msgs = append(msgs, m)
			if rng.Float64() < stop {
				seq++
				msgs = append(msgs, traffic.Message{SID: fmt.Sprintf("SM%032x", seq), AccountSID: sid, Direction: traffic.Inbound,
					Status: "received", Time: sent.Add(time.Second), Keyword: traffic.OptOut, Peer: peer - uint64(rng.IntN(50))})
			}
			at = at.Add(step)
		}
		if _, err := d.st.PutMessages(sid, msgs); err != nil {
			d.t.Fatal(err)
		}
	}
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// event is one thing the audit log holds, as compared.
type event struct {
	SID, Rule, What string
	At              time.Time
}

// auditEvents returns the daemon's suspensions, blocks and dry-run
// decisions, by subaccount, rule and time.
func (d *daemon) auditEvents() []event {
	d.t.Helper()
	recs, err := d.st.Audit("", 0)
	if err != nil {
		d.t.Fatal(err)
	}
	var out []event
	for _, r := range recs {
		switch {
		case r.Kind == actions.KindOutcome && r.Action == actions.ActionSuspend && r.Outcome == actions.OutcomeOK && r.Actor == actions.ActorSentinel:
			out = append(out, event{r.Subaccount, r.Rule, "suspend", r.At})
		case r.Kind == actions.KindRefusal:
			rail := r.Detail[len("rail="):]
			rail = rail[:indexByte(rail, ':')]
			out = append(out, event{r.Subaccount, r.Rule, "block " + rail, r.At})
		case r.Kind == actions.KindDecision && r.DryRun:
			out = append(out, event{r.Subaccount, r.Rule, "dry-run", r.At})
		}
	}
	sortEvents(out)
	return out
}

func indexByte(s string, c byte) int {
	for i := range len(s) {
		if s[i] == c {
			return i
		}
	}
	return len(s)
}

func sortEvents(evs []event) {
	sort.Slice(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		if a.SID != b.SID {
			return a.SID < b.SID
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.What < b.What
	})
}

// reportEvents returns the same events from a replay's report.
func reportEvents(rep *Report) []event {
	var out []event
	for _, s := range rep.Subaccounts {
		for _, rr := range s.Rules {
			for _, at := range rr.SuspendedAt {
				out = append(out, event{s.SID, rr.Rule, "suspend", at})
			}
			for _, b := range rr.Blocked {
				out = append(out, event{s.SID, rr.Rule, "block " + b.Rail, b.At})
			}
			for _, at := range rr.DryRunAt {
				out = append(out, event{s.SID, rr.Rule, "dry-run", at})
			}
		}
	}
	sortEvents(out)
	return out
}

// runScenario drives the daemon through three hours of the replay
// policy, minute by minute: a subaccount over its budget from the start;
// a protected one filtered; four filtered at once, more than the rails
// allow; a person's reinstatement in the middle of a bucket followed by
// more filtering on probation; a suspension and a reactivation in the
// Twilio console; a rule in dry_run mode; a count rule; an opt-out storm;
// hysteresis holding a rule between its resolve and trip lines, then
// letting it go; usage going stale; a subaccount whose polls stop.
func runScenario(t *testing.T) *daemon {
	t.Helper()
	names := []string{"spender", "house-filtered", "acme", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
		"hotel", "india", "steady-1", "steady-2", "steady-3", "steady-4"}
	cfg := actions.Config{MaxPerHour: 3, MaxFraction: 0.25, MaxStaleness: 10 * time.Minute}
	d := newDaemon(t, "testdata/replay", cfg, names)
	after := func(m int) func(time.Time) bool {
		return func(at time.Time) bool { return !at.Before(t0.Add(time.Duration(m) * time.Minute)) }
	}
	filtered := func(from int, share float64) profile {
		return func(at time.Time) (float64, float64, float64, float64) {
			if after(from)(at) {
				return share, 0, 0, 0
			}
			return 0, 0, 0, 0
		}
	}
	end := t0.Add(3*time.Hour + 10*time.Minute)
	d.traffic(end, map[string]profile{
		"house-filtered": filtered(20, 0.3),
		"acme": func(at time.Time) (float64, float64, float64, float64) {
			switch {
			case after(76)(at):
				return 0.2, 0, 0, 0
			case after(30)(at):
				return 0.3, 0, 0, 0
			}
			return 0, 0, 0, 0
		},
		"bravo":   filtered(30, 0.15),
		"charlie": filtered(30, 0.12),
		"delta": func(at time.Time) (float64, float64, float64, float64) {
			switch {
			case after(150)(at):
				return 0, 0, 0, 0
			case after(120)(at):
				return 0.03, 0, 0, 0
			case after(31)(at):
				return 0.1, 0, 0, 0
			}
			return 0, 0, 0, 0
		},
		"foxtrot": func(at time.Time) (float64, float64, float64, float64) {
			if after(50)(at) && !after(110)(at) {
				return 0, 0.5, 0, 0
			}
			return 0, 0, 0, 0
		},
		"golf": func(at time.Time) (float64, float64, float64, float64) {
			if after(40)(at) {
				return 0, 0, 0.08, 0
			}
			return 0, 0, 0, 0
		},
		"india": filtered(140, 0.25),
		"hotel": func(at time.Time) (float64, float64, float64, float64) {
			if after(60)(at) {
				return 0, 0, 0, 0.5
			}
			return 0, 0, 0, 0
		},
	})
	spend := map[string]float64{}
	for name := range d.subs {
		spend[name] = 5
	}
	spend["spender"] = 30
	// Read at 9:52:30, usage goes stale (an hour later) between two
	// bucket boundaries.
	d.usage(t0.Add(-7*time.Minute-30*time.Second), spend)

	// india's polls stop at 12:32: its data goes stale, then unknown.
	d.cover(t0.Add(180*time.Minute), t0.Add(152*time.Minute), d.subs["india"])
	for i := 0; i <= 180; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		d.clock.Set(at)
		switch i {
		case 40: // a person suspends echo in the Twilio console
			if err := d.fake.SetStatus(d.subs["echo"], "suspended"); err != nil {
				t.Fatal(err)
			}
			d.sync()
		case 100: // and reactivates it there; sentinel's sync sees it at 103
			if err := d.fake.SetStatus(d.subs["echo"], "active"); err != nil {
				t.Fatal(err)
			}
		case 103:
			d.sync()
		}
		d.cycle(at)
		if i == 75 {
			d.clock.Set(at.Add(30 * time.Second))
			if err := d.actor.Reinstate(context.Background(), d.subs["acme"], "alice", "reviewed the list"); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// TestReplayEqualsDaemon is the backtest's promise: replaying what the
// store holds through the same policies, at the daemon's own cycle times,
// gives every decision the daemon made, for every rule, subaccount and
// cycle, and the same suspensions, blocks and dry-run decisions.
func TestReplayEqualsDaemon(t *testing.T) {
	d := runScenario(t)

	// The scenario exercises what it claims to.
	evs := d.auditEvents()
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.What]++
	}
	for _, k := range []string{"suspend", "block per_hour", "block fraction", "block protected", "dry-run"} {
		if kinds[k] == 0 {
			t.Errorf("the daemon made no %q in the scenario; events: %v", k, kinds)
		}
	}
	reinstated := t0.Add(75*time.Minute + 30*time.Second)
	onProbation := false
	for _, e := range evs {
		onProbation = onProbation || (e.SID == d.subs["acme"] && e.Rule == "filtered" && e.At.After(reinstated))
	}
	if !onProbation {
		t.Errorf("acme's filtering after its reinstatement led nowhere; events: %v", evs)
	}

	h, err := Load(context.Background(), d.st, RequestFor(d.set, d.cycles[0], d.cycles[len(d.cycles)-1]))
	if err != nil {
		t.Fatal(err)
	}
	replayed := newDecisions()
	rails := actions.Rails{MaxPerHour: d.cfg.MaxPerHour, MaxFraction: d.cfg.MaxFraction, MaxStaleness: d.cfg.MaxStaleness}
	rep, err := Run(context.Background(), h, d.set, Options{Times: d.cycles, Rails: rails, Trace: replayed.put})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.logged.m) < 1000 {
		t.Fatalf("the daemon logged %d decisions", len(d.logged.m))
	}
	if diff := cmp.Diff(d.logged.m, replayed.m); diff != "" {
		t.Errorf("decisions (-daemon +replay):\n%s", diff)
	}
	if diff := cmp.Diff(evs, reportEvents(rep)); diff != "" {
		t.Errorf("suspensions, blocks and dry-run decisions (-daemon +replay):\n%s", diff)
	}

	// Evaluating every account at every step, and reading the buckets
	// from the store as the daemon does, change nothing.
	for name, o := range map[string]Options{
		"exhaustive": {exhaustive: true},
		"store":      {buckets: storeBuckets(t, d.st, d.set, h)},
	} {
		got := newDecisions()
		o.Times, o.Rails, o.Trace = d.cycles, rails, got.put
		rep2, err := Run(context.Background(), h, d.set, o)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(replayed.m, got.m); diff != "" {
			t.Errorf("%s: decisions (-replay +%s):\n%s", name, name, diff)
		}
		if diff := cmp.Diff(rep, rep2); diff != "" {
			t.Errorf("%s: report (-replay +%s):\n%s", name, name, diff)
		}
	}
}

// storeBuckets reads an account's buckets at now the way the daemon's
// cycle does: the store's hour buckets split at the set's cuts, and the
// head bucket of a reinstatement recounted from the raw messages.
func storeBuckets(t *testing.T, st *store.Store, set *policy.Set, h *History) func(sid string, now, reinstatedAt time.Time) []traffic.Bucket {
	return func(sid string, now, r time.Time) []traffic.Bucket {
		from := traffic.WindowStart(now, set.MaxWindow())
		bs, err := st.HourBuckets(sid, from, now, set.Cuts(now, r))
		if err != nil {
			t.Error(err)
			return nil
		}
		if !r.IsZero() && r.After(from) && r.Before(now) && !traffic.BucketStart(r).Equal(r) {
			head, err := st.CountRange(sid, r, traffic.CeilBucket(r))
			if err != nil {
				t.Error(err)
				return nil
			}
			i := sort.Search(len(bs), func(i int) bool { return !bs[i].Start.Before(head.Start) })
			bs = append(bs[:i], append([]traffic.Bucket{head}, bs[i:]...)...)
		}
		return bs
	}
}
