package twilioapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	parentSID = "AC00000000000000000000000000000001"
	subSID    = "AC0123456789abcdef0123456789abcdef"
	testToken = "t0kenT0KENt0kenT0KENt0kenT0KEN12"
)

// request is what the test server saw of one request.
type request struct {
	Method, Path, RawQuery string
	Query, Form            url.Values
	User, Pass             string
	AuthOK                 bool
	Host                   string
}

// server is a tiny Twilio stand-in: handle answers request n (from 0).
type server struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		u, p, ok := r.BasicAuth()
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, request{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Query: r.URL.Query(), Form: r.PostForm, User: u, Pass: p, AuthOK: ok, Host: r.Host,
		})
		s.mu.Unlock()
		handle(w, r, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// sleeps records the delays the Client asked for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// testClient is a Client pointed at srv, with retries that do not wait and a
// registry to read metrics from.
type testClient struct {
	*Client
	sleeps *sleeps
	reg    *prometheus.Registry
}

func newTestClient(t *testing.T, baseURL string, mod func(*Config)) *testClient {
	t.Helper()
	s := &sleeps{}
	reg := prometheus.NewPedanticRegistry()
	cfg := Config{
		BaseURL:    baseURL,
		AccountSID: parentSID,
		AuthToken:  testToken,
		MinBackoff: time.Millisecond,
		MaxBackoff: time.Millisecond,
		Sleep:      s.sleep,
		Registerer: reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.transport.CloseIdleConnections)
	return &testClient{Client: c, sleeps: s, reg: reg}
}

// counter returns the value of the counter name with exactly labels, or 0.
func (tc *testClient) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	m := tc.metric(t, name, labels)
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func (tc *testClient) metric(t *testing.T, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := tc.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func twilioError(status, code int) string {
	return fmt.Sprintf(`{"code": %d, "message": "error %d", "more_info": "https://www.twilio.com/docs/errors/%d", "status": %d}`,
		code, code, code, status)
}

func accountJSON(sid, status string) string {
	return fmt.Sprintf(`{"sid": %q, "friendly_name": "shop %s", "status": %q, "owner_account_sid": %q,
		"auth_token": "ffffffffffffffffffffffffffffffff", "type": "Full",
		"date_created": "Fri, 24 May 2019 17:44:50 +0000"}`, sid, sid[len(sid)-4:], status, parentSID)
}

// messagesPage is a page of messages with the given next_page_uri ("" for
// null).
func messagesPage(next string, msgs ...string) string {
	nextJSON := "null"
	if next != "" {
		nextJSON = fmt.Sprintf("%q", next)
	}
	body := "["
	for i, m := range msgs {
		if i > 0 {
			body += ","
		}
		body += m
	}
	return fmt.Sprintf(`{"first_page_uri": "/x", "next_page_uri": %s, "previous_page_uri": null,
		"page": 0, "page_size": 1000, "start": 0, "end": 0, "uri": "/x", "messages": %s]}`, nextJSON, body)
}

// messageJSON is an outbound, delivered message with sid.
func messageJSON(sid string) string {
	return fmt.Sprintf(`{"sid": %q, "account_sid": %q, "direction": "outbound-api", "status": "delivered",
		"error_code": null, "price": "-0.00790", "price_unit": "USD",
		"date_created": "Fri, 24 May 2019 17:44:46 +0000", "date_sent": "Fri, 24 May 2019 17:44:50 +0000",
		"messaging_service_sid": "MG00000000000000000000000000000001", "body": "hello", "num_segments": "1"}`, sid, subSID)
}

func messagesPath(sid string) string { return "/2010-04-01/Accounts/" + sid + "/Messages.json" }

// collect returns an fn for Messages that keeps every page's SIDs.
func collect(pages *[][]string) func(*Page) (bool, error) {
	return func(p *Page) (bool, error) {
		var sids []string
		for _, m := range p.Messages {
			sids = append(sids, m.SID)
		}
		*pages = append(*pages, sids)
		return true, nil
	}
}
