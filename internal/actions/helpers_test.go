package actions_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

// start is the test clock's first reading.
var start = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// basePolicy suspends on 30007 over 5% of at least 20 finished messages in
// the last hour, and alerts on opt-outs.
const basePolicy = `
rules:
  - name: filtered
    description: Carrier filtering (30007) over 5% of finished messages in the last hour
    signal: error_rate
    codes: [30007]
    window: 1h
    min_volume: 20
    trip: 5%
    severity: critical
    action: suspend
  - name: opt-outs
    description: Opt-outs over 10% of outbound messages in the last hour
    signal: opt_out_rate
    window: 1h
    min_volume: 20
    trip: 10%
    severity: warning
    action: alert
`

// clock is the injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder is a Notifier that keeps every event.
type recorder struct {
	mu  sync.Mutex
	evs []slack.Event
}

func (r *recorder) Notify(_ context.Context, ev slack.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

// of returns the events of kind.
func (r *recorder) of(kind string) []slack.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slack.Event
	for _, ev := range r.evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// env is one test world: a Twilio fake with subaccounts, the real store,
// the real Twilio client, a policy set and an Actor.
type env struct {
	t      *testing.T
	clock  *clock
	fake   *twiliofake.Server
	tw     *twilioapi.Client
	st     *store.Store
	notes  *recorder
	reg    *prometheus.Registry
	set    atomic.Pointer[policy.Set]
	actor  *actions.Actor
	parent string
	subs   []string
	seq    int // message SID counter
}

type envOptions struct {
	subs   int
	cfg    actions.Config
	policy string // YAML; basePolicy if empty
	// twilio wraps the client the Actor uses (to inject races).
	twilio func(e *env, tw actions.Twilio) actions.Twilio
	// closed and suspended subaccounts (by index) at start, in the fake.
	closed, suspended []int
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: start}, notes: &recorder{}, reg: prometheus.NewRegistry()}
	e.fake = twiliofake.New(twiliofake.Options{Now: e.clock.Now, Seed: 1})
	e.fake.Start()
	t.Cleanup(e.fake.Close)
	e.parent = e.fake.ParentSID()
	for i := range o.subs {
		status := twiliofake.StatusActive
		if slices.Contains(o.closed, i) {
			status = twiliofake.StatusClosed
		}
		if slices.Contains(o.suspended, i) {
			status = twiliofake.StatusSuspended
		}
		a, err := e.fake.AddSubaccount(twiliofake.Account{
			SID:          fmt.Sprintf("AC%032x", 0xa000+i),
			FriendlyName: fmt.Sprintf("client %02d", i),
			Status:       status,
		})
		if err != nil {
			t.Fatal(err)
		}
		e.subs = append(e.subs, a.SID)
	}
	var err error
	e.tw, err = twilioapi.New(twilioapi.Config{
		BaseURL:    e.fake.URL(),
		AccountSID: e.parent,
		AuthToken:  e.fake.ParentToken(),
		MaxRetries: 2,
		Sleep:      func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.st, err = store.Open(filepath.Join(t.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.syncAccounts()

	src := o.policy
	if src == "" {
		src = basePolicy
	}
	e.loadPolicy(src)

	var tw actions.Twilio = e.tw
	if o.twilio != nil {
		tw = o.twilio(e, tw)
	}
	e.actor, err = actions.New(o.cfg, e.st, tw, e.set.Load, e.notes, e.reg, nil, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.fresh()
	return e
}

// loadPolicy writes src to a policy directory and loads it as the current
// set (hot reload).
func (e *env) loadPolicy(src string) {
	e.t.Helper()
	dir := e.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(src), 0o600); err != nil {
		e.t.Fatal(err)
	}
	set, err := policy.Load(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.set.Store(set)
}

// syncAccounts does what the poller's account poll does: the fake's list
// into the store.
func (e *env) syncAccounts() {
	e.t.Helper()
	var accts []store.Account
	for _, a := range e.fake.Accounts() {
		accts = append(accts, store.Account{SID: a.SID, FriendlyName: a.FriendlyName, Status: a.Status, Parent: a.Parent, Updated: a.Updated})
	}
	if _, err := e.st.SyncAccounts(accts, e.clock.Now()); err != nil {
		e.t.Fatal(err)
	}
}

// fresh marks every account's message log complete up to now, as a
// successful poll does.
func (e *env) fresh() { e.coverUntil(e.clock.Now()) }

func (e *env) coverUntil(until time.Time) {
	e.t.Helper()
	for _, sid := range append([]string{e.parent}, e.subs...) {
		if err := e.st.SetCoverage(sid, traffic.Coverage{From: start.Add(-48 * time.Hour), Until: until}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// send stores n finished outbound messages of sid, `filtered` of them
// undelivered with 30007, spread over the 20 minutes before now.
func (e *env) send(sid string, n, filtered int) {
	e.t.Helper()
	now := e.clock.Now()
	msgs := make([]traffic.Message, 0, n)
	for i := range n {
		e.seq++
		m := traffic.Message{
			SID:              fmt.Sprintf("SM%032x", e.seq),
			AccountSID:       sid,
			Direction:        traffic.OutboundAPI,
			Status:           "delivered",
			Time:             now.Add(-time.Duration(i%20) * time.Minute).Add(-time.Second),
			MessagingService: true,
		}
		if i < filtered {
			m.Status, m.ErrorCode = "undelivered", 30007
		}
		msgs = append(msgs, m)
	}
	if _, err := e.st.PutMessages(sid, msgs); err != nil {
		e.t.Fatal(err)
	}
}

// judge advances the clock by a minute, refreshes coverage and runs a cycle.
func (e *env) judge() actions.Summary {
	e.t.Helper()
	e.clock.Advance(time.Minute)
	e.fresh()
	sum, err := e.actor.Judge(context.Background())
	if err != nil {
		e.t.Fatalf("Judge: %v", err)
	}
	return sum
}

// posts returns the subaccounts the fake saw a Status=status POST for, in
// order.
func (e *env) posts(status string) []string {
	var out []string
	for _, r := range e.fake.Requests() {
		if r.Method == "POST" && r.Form.Get("Status") == status {
			out = append(out, accountOf(r.Path))
		}
	}
	return out
}

// allPosts counts every POST the fake saw.
func (e *env) allPosts() int {
	n := 0
	for _, r := range e.fake.Requests() {
		if r.Method == "POST" {
			n++
		}
	}
	return n
}

func accountOf(path string) string {
	p, _ := url.PathUnescape(path)
	p = strings.TrimSuffix(strings.TrimPrefix(p, "/2010-04-01/Accounts/"), ".json")
	return p
}

func (e *env) breaker(sid string) store.Breaker {
	e.t.Helper()
	b, err := e.st.Breaker(sid)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) twilioStatus(sid string) string {
	e.t.Helper()
	a, err := e.fake.Account(sid)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Status
}

// audit returns sid's audit records matching kind (all if ""), oldest first.
func (e *env) audit(sid, kind string) []store.AuditRecord {
	e.t.Helper()
	recs, err := e.st.Audit(sid, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditRecord
	for i := len(recs) - 1; i >= 0; i-- {
		if kind == "" || recs[i].Kind == kind {
			out = append(out, recs[i])
		}
	}
	return out
}

func mustRefused(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, actions.ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
}

// value returns the value of the metric name whose labels include every
// "name=value" in labels; the test fails if there is none.
func value(e *env, name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	e.t.Fatalf("no metric %s%v", name, labels)
	return 0
}

type policySet = policy.Set
