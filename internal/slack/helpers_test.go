package slack

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack/slacktest"
	"go.uber.org/goleak"
)

// These tests use memOutbox, which follows the store's outbox contract;
// cmd/sentinel's tests deliver through the real store.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Test secrets: if either shows up in an error, a log line or a metric, a
// test fails.
const (
	testToken       = "xoxb-1111-2222-SECRETBOTTOKEN"
	testWebhookPath = "/services/T0001/B0002/SECRETWEBHOOKKEY"
	testSecretPart  = "SECRET"
)

var t0 = time.Date(2026, 11, 26, 22, 40, 0, 0, time.UTC)

// clock is an injected clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memOutbox is an in-memory Outbox with the store's contract: IDs are
// monotonic, Due returns items whose NotBefore is not after at, lowest ID
// first, Retry counts an attempt.
type memOutbox struct {
	mu    sync.Mutex
	next  uint64
	items map[uint64]*OutboxItem
}

func newOutbox() *memOutbox { return &memOutbox{items: map[uint64]*OutboxItem{}} }

func (o *memOutbox) Enqueue(payload []byte, at time.Time) (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	o.items[o.next] = &OutboxItem{ID: o.next, Created: at, NotBefore: at, Payload: slices.Clone(payload)}
	return o.next, nil
}

func (o *memOutbox) Due(at time.Time, limit int) ([]OutboxItem, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var all []OutboxItem
	for _, it := range o.items {
		all = append(all, *it)
	}
	slices.SortFunc(all, func(a, b OutboxItem) int { return cmp.Compare(a.ID, b.ID) })
	var out []OutboxItem
	for _, it := range all {
		if it.NotBefore.After(at) || len(out) == limit {
			break
		}
		out = append(out, it)
	}
	return out, nil
}

func (o *memOutbox) Delivered(id uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.items, id)
	return nil
}

func (o *memOutbox) Retry(id uint64, notBefore time.Time, errText string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	it, ok := o.items[id]
	if !ok {
		return fmt.Errorf("retry %d: not found", id)
	}
	it.NotBefore, it.LastError = notBefore, errText
	it.Attempts++
	return nil
}

func (o *memOutbox) OutboxLen() (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items), nil
}

func (o *memOutbox) item(t *testing.T, id uint64) OutboxItem {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	it, ok := o.items[id]
	if !ok {
		t.Fatalf("outbox item %d not found", id)
	}
	return *it
}

func (o *memOutbox) len() int {
	n, _ := o.OutboxLen()
	return n
}

// memHolds is a HoldStore in memory, shared by a dispatcher and its
// restarted successor as the store's meta bucket would be.
type memHolds struct {
	mu   sync.Mutex
	h    Hold
	sets int
}

func (m *memHolds) Hold() (Hold, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.h, nil
}

func (m *memHolds) SetHold(h Hold) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.h = h
	m.sets++
	return nil
}

func (m *memHolds) get() Hold {
	h, _ := m.Hold()
	return h
}

// memThreads is Threads as the actions package will implement it over the
// store's Incident: one thread per (subaccount, rule), valid only for the
// incident opened at that time.
type memThreads struct {
	mu sync.Mutex
	m  map[string]memThread
}

type memThread struct {
	opened time.Time
	ts     string
}

func newThreads() *memThreads { return &memThreads{m: map[string]memThread{}} }

func (th *memThreads) Thread(sub, rule string, opened time.Time) (string, error) {
	th.mu.Lock()
	defer th.mu.Unlock()
	t := th.m[sub+"/"+rule]
	if !t.opened.Equal(opened) {
		return "", nil
	}
	return t.ts, nil
}

func (th *memThreads) SetThread(sub, rule string, opened time.Time, ts string) error {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.m[sub+"/"+rule] = memThread{opened: opened, ts: ts}
	return nil
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// request is one request a fake Slack received.
type request struct {
	Path      string
	Token     string // bot: the form's token
	Channel   string
	ThreadTS  string
	Broadcast bool
	Text      string
	Blocks    string // JSON
}

// fakeSlack is a Slack that answers through respond, which sees the request
// and its 1-based number. It records every request.
type fakeSlack struct {
	mu      sync.Mutex
	reqs    []request
	respond func(n int, r request) (status int, header http.Header, body string)
	// down makes the transport refuse connections, as when Slack is
	// unreachable.
	down bool
}

func (f *fakeSlack) setRespond(fn func(n int, r request) (int, http.Header, string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.respond = fn
}

func (f *fakeSlack) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeSlack) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *fakeSlack) handle(w http.ResponseWriter, r *http.Request, parse func(*http.Request) (request, error)) {
	req, err := parse(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	n, respond := len(f.reqs), f.respond
	f.mu.Unlock()
	status, header, body := http.StatusOK, http.Header(nil), ""
	if respond != nil {
		status, header, body = respond(n, req)
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// newHTTPClient returns a client whose dialer refuses while f is down, and
// whose idle connections are closed at the end of the test (for goleak).
func (f *fakeSlack) newHTTPClient(t *testing.T) *http.Client {
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			f.mu.Lock()
			down := f.down
			f.mu.Unlock()
			if down {
				return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
			}
			return dialer.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// newWebhook starts a fake incoming webhook at testWebhookPath and returns a
// Client posting to it. A webhook answers 200 "ok" by default.
func newWebhook(t *testing.T) (*fakeSlack, *Client) {
	t.Helper()
	f := &fakeSlack{}
	f.respond = func(int, request) (int, http.Header, string) { return http.StatusOK, nil, "ok" }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.handle(w, r, func(r *http.Request) (request, error) {
			var m struct {
				Text     string          `json:"text"`
				ThreadTS string          `json:"thread_ts"`
				Blocks   json.RawMessage `json:"blocks"`
			}
			if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
				return request{}, err
			}
			return request{Path: r.URL.Path, Text: m.Text, ThreadTS: m.ThreadTS, Blocks: string(m.Blocks)}, nil
		})
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(Config{WebhookURL: srv.URL + testWebhookPath, HTTPClient: f.newHTTPClient(t)})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return f, c
}

// newBot starts slack-go's slacktest server with chat.postMessage answered
// by f (ts "1700000000.00000n" for the n-th request) and returns a bot Client
// posting to channel C0COMPLIANCE.
func newBot(t *testing.T) (*fakeSlack, *Client) {
	t.Helper()
	f := &fakeSlack{}
	f.respond = func(n int, r request) (int, http.Header, string) {
		return http.StatusOK, nil, fmt.Sprintf(`{"ok":true,"channel":%q,"ts":"1700000000.%06d"}`, r.Channel, n)
	}
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			f.handle(w, r, func(r *http.Request) (request, error) {
				if err := r.ParseForm(); err != nil {
					return request{}, err
				}
				return request{
					Path: r.URL.Path, Token: r.PostForm.Get("token"), Channel: r.PostForm.Get("channel"),
					ThreadTS: r.PostForm.Get("thread_ts"), Broadcast: r.PostForm.Get("reply_broadcast") == "true",
					Text: r.PostForm.Get("text"), Blocks: r.PostForm.Get("blocks"),
				}, nil
			})
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	c, err := NewClient(Config{BotToken: testToken, Channel: "C0COMPLIANCE", APIURL: srv.GetAPIURL(), HTTPClient: f.newHTTPClient(t)})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return f, c
}

func slackError(code string) func(int, request) (int, http.Header, string) {
	return func(int, request) (int, http.Header, string) {
		return http.StatusOK, nil, fmt.Sprintf(`{"ok":false,"error":%q}`, code)
	}
}

// newDispatcher returns a dispatcher over a fresh memOutbox with clock c,
// its registry and its log.
func newDispatcher(t *testing.T, p Poster, th Threads, c *clock, opt Options) (*Dispatcher, *memOutbox, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	ob := newOutbox()
	reg := prometheus.NewPedanticRegistry()
	logger, buf := newLogger()
	opt.Now = c.Now
	opt.Registerer = reg
	d, err := NewDispatcher(ob, p, th, logger, opt)
	if err != nil {
		t.Fatalf("NewDispatcher: %v", err)
	}
	return d, ob, reg, buf
}

// metric returns the value of a counter or gauge, optionally with one
// label value (result), from reg.
func metric(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != result) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s{result=%q} not found", name, result)
	return 0
}

// blockTexts returns every "text" string in a JSON blocks array, in order.
func blockTexts(t *testing.T, blocksJSON string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(blocksJSON), &v); err != nil {
		t.Fatalf("blocks are not JSON: %v\n%s", err, blocksJSON)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["text"].(string); ok {
				out = append(out, s)
			}
			for _, k := range []string{"text", "fields", "elements"} {
				walk(v[k])
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// noSecret fails if s holds any part of the test secrets.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{testSecretPart, testToken, testWebhookPath, url.PathEscape(testWebhookPath)} {
		if strings.Contains(s, secret) {
			t.Errorf("%s holds a secret (%q):\n%s", what, secret, s)
		}
	}
}

// suspendedEvent is a complete event as the actions package produces it.
func suspendedEvent() Event {
	return Event{
		Kind:        KindSuspended,
		Severity:    SeverityCritical,
		Subaccount:  "AC0123456789abcdef0123456789abcdef",
		Name:        "Acme Corp",
		Rule:        "carrier-filtering",
		Opened:      t0,
		Signal:      "30007 rate",
		Unit:        UnitRatio,
		Value:       0.125,
		Threshold:   0.05,
		Numerator:   25,
		Denominator: 200,
		From:        t0.Add(-time.Hour),
		To:          t0,
		Examples:    []string{"SM00000000000000000000000000000001", "SM00000000000000000000000000000002"},
		Action:      "suspended",
		Reinstate:   `sentinel -reinstate AC0123456789abcdef0123456789abcdef -reason "..."`,
		At:          t0.Add(5 * time.Minute),
	}
}
