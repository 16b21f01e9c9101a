package poller

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the tests' "now" at the start: midday UTC, so that a 24h backfill
// spans two UTC days and the settle window stays inside one.
var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// clock is the injected clock shared by the fake and the poller.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// sleeps records the delays twilioapi asked for between retries, without
// waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// env is a poller wired to the fake over loopback and to a real store.
type env struct {
	tb     testing.TB
	clock  *clock
	fake   *twiliofake.Server
	tw     *twilioapi.Client
	sleeps *sleeps
	path   string
	st     *store.Store
	reg    *prometheus.Registry
	p      *Poller
	cfg    Config
	logs   logBuffer // what the poller logged
}

// logBuffer collects log output written from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// envOptions adjust an env before it is built.
type envOptions struct {
	fake   twiliofake.Options
	client func(*twilioapi.Config)
	poller func(*Config)
	// handler, if set, wraps the fake in a server of the test's own, which
	// the client talks to instead.
	handler func(http.Handler) http.Handler
}

func newEnv(tb testing.TB, o envOptions) *env {
	tb.Helper()
	e := &env{tb: tb, clock: newClock(t0), sleeps: &sleeps{}}
	o.fake.Now = e.clock.Now
	if o.fake.Seed == 0 {
		o.fake.Seed = 1
	}
	e.fake = twiliofake.New(o.fake)
	e.fake.Start()
	tb.Cleanup(e.fake.Close)

	base := e.fake.URL()
	if o.handler != nil {
		srv := httptest.NewServer(o.handler(e.fake))
		tb.Cleanup(srv.Close)
		base = srv.URL
	}
	cfg := twilioapi.Config{
		BaseURL:    base,
		AccountSID: e.fake.ParentSID(),
		AuthToken:  e.fake.ParentToken(),
		MaxRetries: 2,
		Sleep:      e.sleeps.sleep,
	}
	if o.client != nil {
		o.client(&cfg)
	}
	var err error
	if e.tw, err = twilioapi.New(cfg); err != nil {
		tb.Fatalf("twilioapi.New: %v", err)
	}
	e.cfg = Config{Parent: e.fake.ParentSID(), Concurrency: 4}
	if o.poller != nil {
		o.poller(&e.cfg)
	}
	e.path = filepath.Join(tb.TempDir(), "sentinel.db")
	e.open()
	return e
}

// open opens the store at e.path and builds a new Poller on it, as a
// restarted process would.
func (e *env) open() {
	e.tb.Helper()
	st, err := store.Open(e.path, store.Options{})
	if err != nil {
		e.tb.Fatalf("open store: %v", err)
	}
	e.st = st
	e.tb.Cleanup(func() { _ = st.Close() })
	e.reg = prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(&e.logs, nil))
	if e.p, err = New(e.cfg, e.tw, e.st, e.reg, log, e.clock.Now); err != nil {
		e.tb.Fatalf("poller.New: %v", err)
	}
}

// restart closes the store and opens a new store and Poller on the file.
func (e *env) restart() {
	e.tb.Helper()
	if err := e.st.Close(); err != nil {
		e.tb.Fatalf("close store: %v", err)
	}
	e.open()
}

func (e *env) addSub(status string) string {
	e.tb.Helper()
	a, err := e.fake.AddSubaccount(twiliofake.Account{Status: status})
	if err != nil {
		e.tb.Fatalf("add subaccount: %v", err)
	}
	return a.SID
}

// generate adds n plain outbound messages (and some inbound) to sid, spread
// over [from, to).
func (e *env) generate(sid string, n int, from, to time.Time) []string {
	e.tb.Helper()
	sids, err := e.fake.Generate(twiliofake.Traffic{AccountSID: sid, N: n, From: from, To: to, Seed: uint64(n), Inbound: 0.1, Failed: 0.05})
	if err != nil {
		e.tb.Fatalf("generate: %v", err)
	}
	return sids
}

func (e *env) append(msgs ...twiliofake.Message) []string {
	e.tb.Helper()
	sids, err := e.fake.AppendMessages(msgs...)
	if err != nil {
		e.tb.Fatalf("append messages: %v", err)
	}
	return sids
}

func (e *env) accounts() {
	e.tb.Helper()
	if _, err := e.p.Accounts(context.Background()); err != nil {
		e.tb.Fatalf("Accounts: %v", err)
	}
}

// messages runs one Messages cycle and fails the test on a cycle error.
func (e *env) messages() Result {
	e.tb.Helper()
	res, err := e.p.Messages(context.Background())
	if err != nil {
		e.tb.Fatalf("Messages: %v", err)
	}
	return res
}

// mustSucceed runs one Messages cycle and fails the test if any account
// failed.
func (e *env) mustSucceed() {
	e.tb.Helper()
	res := e.messages()
	for sid, err := range res.Failed {
		e.tb.Errorf("poll %s: %v", sid, err)
	}
	if e.tb.Failed() {
		e.tb.FailNow()
	}
}

func (e *env) coverage(sid string) traffic.Coverage {
	e.tb.Helper()
	c, err := e.st.Coverage(sid)
	if err != nil {
		e.tb.Fatalf("coverage: %v", err)
	}
	return c
}

// sum returns the sum of sid's stored buckets over all time.
func (e *env) sum(sid string) traffic.Counts {
	e.tb.Helper()
	bs, err := e.st.Buckets(sid, time.Time{}, e.clock.Now().Add(time.Hour))
	if err != nil {
		e.tb.Fatalf("buckets: %v", err)
	}
	return traffic.Sum(bs, time.Time{}, e.clock.Now().Add(time.Hour))
}

// checkConsistent asserts that sid's aggregates equal a recount of its raw
// messages.
func (e *env) checkConsistent(sid string) {
	e.tb.Helper()
	from, to := t0.Add(-30*24*time.Hour), e.clock.Now().Add(24*time.Hour)
	got, err := e.st.Buckets(sid, from, to)
	if err != nil {
		e.tb.Fatalf("buckets: %v", err)
	}
	want, err := e.st.Recount(sid, from, to)
	if err != nil {
		e.tb.Fatalf("recount: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		e.tb.Errorf("%s: Buckets differ from Recount (-recount +buckets):\n%s", sid, diff)
	}
}

// checkStored asserts that every message the fake holds for sid is stored,
// in its current state.
func (e *env) checkStored(sid string, msgSIDs []string) {
	e.tb.Helper()
	for _, m := range msgSIDs {
		fm, err := e.fake.Message(m)
		if err != nil {
			e.tb.Fatalf("fake message: %v", err)
		}
		sm, err := e.st.Message(sid, m)
		if err != nil {
			e.tb.Errorf("message %s not stored: %v", m, err)
			continue
		}
		if sm.AccountSID != sid || sm.Status != fm.Status || sm.ErrorCode != fm.ErrorCode {
			e.tb.Errorf("message %s stored as %s %s/%d, fake has %s %s/%d", m, sm.AccountSID, sm.Status, sm.ErrorCode, sid, fm.Status, fm.ErrorCode)
		}
	}
}

// requests returns the fake's requests to path since the last Reset.
func (e *env) requests(path string) []twiliofake.Request {
	var out []twiliofake.Request
	for _, r := range e.fake.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func messagesPath(sid string) string { return "/2010-04-01/Accounts/" + sid + "/Messages.json" }

// metric returns the value of the counter or gauge name with exactly labels
// from the env's registry, 0 if absent.
func (e *env) metric(name string, labels map[string]string) float64 {
	e.tb.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.tb.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if len(got) != len(labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// sweep runs a Sweep and fails the test on any failure.
func (e *env) sweep() {
	e.tb.Helper()
	res, err := e.p.Sweep(context.Background())
	if err != nil || len(res.Failed) > 0 {
		e.tb.Fatalf("Sweep: %v, failed %v", err, res.Failed)
	}
}
