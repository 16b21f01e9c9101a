package twilioapi

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twilio/twilio-go/client"
)

func TestNewValidates(t *testing.T) {
	ok := Config{AccountSID: parentSID, AuthToken: testToken}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"short sid", func(c *Config) { c.AccountSID = "AC123" }, "account SID"},
		{"not AC", func(c *Config) { c.AccountSID = "SK" + parentSID[2:] }, "account SID"},
		{"empty token", func(c *Config) { c.AuthToken = "" }, "auth token"},
		{"token with symbols", func(c *Config) { c.AuthToken = "secret-value!" }, "auth token"},
		{"base URL with path", func(c *Config) { c.BaseURL = "http://127.0.0.1:1/api" }, "base URL"},
		{"base URL with user info", func(c *Config) { c.BaseURL = "https://user:hunter2@example.com" }, "base URL"},
		{"base URL scheme", func(c *Config) { c.BaseURL = "ftp://example.com" }, "base URL"},
		{"page size", func(c *Config) { c.PageSize = 1001 }, "page size"},
		{"backoff order", func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, "backoff"},
		{"negative rate", func(c *Config) { c.RateLimit = -1 }, "rate limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: got %v, want an error about %q", err, tt.want)
			}
			for _, secret := range []string{"secret-value", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks a secret", err)
				}
			}
		})
	}
	c, err := New(ok)
	if err != nil {
		t.Fatalf("New(valid): %v", err)
	}
	if got := c.ParentSID(); got != parentSID {
		t.Errorf("ParentSID: got %q, want %q", got, parentSID)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, header string
		want         time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"http date", now.Add(9 * time.Second).Format(http.TimeFormat), 9 * time.Second},
		// Capped at 4*MaxBackoff (MaxBackoff is 1ms here).
		{"huge", "86400", 4 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 0 {
					w.Header().Set("Retry-After", tt.header)
					writeJSON(w, 429, twilioError(429, 20429))
					return
				}
				writeJSON(w, 200, accountJSON(subSID, "active"))
			})
			tc := newTestClient(t, srv.URL, func(c *Config) { c.MaxBackoff = time.Hour })
			tc.now = func() time.Time { return now }

			a, err := tc.FetchAccount(context.Background(), subSID)
			if err != nil {
				t.Fatalf("FetchAccount: %v", err)
			}
			if a.SID != subSID {
				t.Errorf("SID: got %q, want %q", a.SID, subSID)
			}
			if diff := cmp.Diff([]time.Duration{tt.want}, tc.sleeps.got()); diff != "" {
				t.Errorf("sleeps (-want +got):\n%s", diff)
			}
			if got := len(srv.requests()); got != 2 {
				t.Errorf("requests: got %d, want 2", got)
			}
			if got := tc.counter(t, "sentinel_twilio_retries_total", map[string]string{"endpoint": "account"}); got != 1 {
				t.Errorf("retries_total: got %v, want 1", got)
			}
			for code, want := range map[string]float64{"429": 1, "200": 1} {
				got := tc.counter(t, "sentinel_twilio_requests_total", map[string]string{"endpoint": "account", "code": code})
				if got != want {
					t.Errorf("requests_total{code=%s}: got %v, want %v", code, got, want)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 3 ", 3 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute, true},
		{"99999999999999999999", 0, false},
		{"999999999", 24 * time.Hour, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q): got %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	c, err := New(Config{AccountSID: parentSID, AuthToken: testToken, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for n := range 70 {
		ceiling := min(100*time.Millisecond<<min(n, 20), time.Second)
		for range 20 {
			if d := c.backoff(n, ""); d < 0 || d > ceiling {
				t.Fatalf("backoff(%d): %v outside [0, %v]", n, d, ceiling)
			}
		}
	}
	// Retry-After raises the delay but no further than 4*MaxBackoff.
	if d := c.backoff(0, "2"); d != 2*time.Second {
		t.Errorf("backoff with Retry-After 2: got %v, want 2s", d)
	}
	if d := c.backoff(0, "3600"); d != 4*time.Second {
		t.Errorf("backoff with Retry-After 3600: got %v, want 4s", d)
	}
}

func TestRetriesServerErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		ctype  string
	}{
		{"json 500", 500, twilioError(500, 20500), "application/json"},
		{"json 503", 503, twilioError(503, 20503), "application/json"},
		{"html 502", 502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"},
		{"empty 504", 504, "", "text/plain"},
		{"html 429", 429, "<html>slow down</html>", "text/html"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 0 {
					w.Header().Set("Content-Type", tt.ctype)
					w.WriteHeader(tt.status)
					io.WriteString(w, tt.body)
					return
				}
				writeJSON(w, 200, accountJSON(subSID, "active"))
			})
			tc := newTestClient(t, srv.URL, nil)
			if _, err := tc.FetchAccount(context.Background(), subSID); err != nil {
				t.Fatalf("FetchAccount: %v", err)
			}
			if got := len(srv.requests()); got != 2 {
				t.Errorf("requests: got %d, want 2", got)
			}
			if got := len(tc.sleeps.got()); got != 1 {
				t.Errorf("sleeps: got %d, want 1", got)
			}
		})
	}
}

func TestRetriesTransportError(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			// Drop the connection without an answer.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		writeJSON(w, 200, accountJSON(subSID, "active"))
	})
	tc := newTestClient(t, srv.URL, nil)
	if _, err := tc.FetchAccount(context.Background(), subSID); err != nil {
		t.Fatalf("FetchAccount: %v", err)
	}
	if got := len(srv.requests()); got != 2 {
		t.Errorf("requests: got %d, want 2", got)
	}
	if got := tc.counter(t, "sentinel_twilio_requests_total", map[string]string{"endpoint": "account", "code": "error"}); got != 1 {
		t.Errorf(`requests_total{code="error"}: got %v, want 1`, got)
	}
}

func TestRetriesTimeout(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			<-r.Context().Done() // never answer; the client gives up
			return
		}
		writeJSON(w, 200, accountJSON(subSID, "active"))
	})
	tc := newTestClient(t, srv.URL, func(c *Config) { c.Timeout = 50 * time.Millisecond })
	if _, err := tc.FetchAccount(context.Background(), subSID); err != nil {
		t.Fatalf("FetchAccount: %v", err)
	}
	if got := len(srv.requests()); got != 2 {
		t.Errorf("requests: got %d, want 2", got)
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	tests := []struct {
		name         string
		status, code int
	}{
		{"bad request", 400, 21211},
		{"auth", 401, 20003},
		{"forbidden", 403, 20403},
		{"not found", 404, 20404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, tt.status, twilioError(tt.status, tt.code))
			})
			tc := newTestClient(t, srv.URL, nil)
			_, err := tc.FetchAccount(context.Background(), subSID)
			var rest *client.TwilioRestError
			if !errors.As(err, &rest) || rest.Status != tt.status {
				t.Fatalf("FetchAccount: got %v, want a TwilioRestError with status %d", err, tt.status)
			}
			if got := Code(err); got != tt.code {
				t.Errorf("Code: got %d, want %d", got, tt.code)
			}
			if errors.Is(err, ErrExhausted) {
				t.Errorf("error %v wraps ErrExhausted, want a final error", err)
			}
			if got := len(srv.requests()); got != 1 {
				t.Errorf("requests: got %d, want exactly 1", got)
			}
			if got := len(tc.sleeps.got()); got != 0 {
				t.Errorf("sleeps: got %d, want 0", got)
			}
		})
	}
}

func TestExhausted(t *testing.T) {
	t.Run("429", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 429, twilioError(429, 20429))
		})
		tc := newTestClient(t, srv.URL, func(c *Config) { c.MaxRetries = 2 })
		_, err := tc.FetchAccount(context.Background(), subSID)
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("FetchAccount: got %v, want ErrExhausted", err)
		}
		var rest *client.TwilioRestError
		if !errors.As(err, &rest) || rest.Code != 20429 || rest.Status != 429 {
			t.Errorf("errors.As: got %+v, want code 20429 status 429", rest)
		}
		if got := Code(err); got != 20429 {
			t.Errorf("Code: got %d, want 20429", got)
		}
		if got := len(srv.requests()); got != 3 {
			t.Errorf("requests: got %d, want 3 (1 + MaxRetries)", got)
		}
		if got := tc.counter(t, "sentinel_twilio_retries_total", map[string]string{"endpoint": "account"}); got != 2 {
			t.Errorf("retries_total: got %v, want 2", got)
		}
	})
	t.Run("html 502", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			io.WriteString(w, "<html>Bad Gateway</html>")
		})
		tc := newTestClient(t, srv.URL, func(c *Config) { c.MaxRetries = 1 })
		_, err := tc.FetchAccount(context.Background(), subSID)
		if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "HTTP 502") {
			t.Fatalf("FetchAccount: got %v, want ErrExhausted naming HTTP 502", err)
		}
		if got := Code(err); got != 0 {
			t.Errorf("Code: got %d, want 0", got)
		}
	})
	t.Run("no retries", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 503, twilioError(503, 20503))
		})
		tc := newTestClient(t, srv.URL, func(c *Config) { c.MaxRetries = -1 })
		_, err := tc.FetchAccount(context.Background(), subSID)
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("FetchAccount: got %v, want ErrExhausted", err)
		}
		if got := len(srv.requests()); got != 1 {
			t.Errorf("requests: got %d, want 1", got)
		}
	})
}

func TestContextCancelAbortsRequest(t *testing.T) {
	started := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		close(started)
		<-r.Context().Done() // a slow Twilio: answers only when the client leaves
	})
	tc := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := tc.FetchAccount(ctx, subSID)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("FetchAccount: got %v, want context.Canceled", err)
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("requests: got %d, want 1 (no retry after cancel)", got)
	}
}

func TestContextCancelledDuringBackoff(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 500, twilioError(500, 20500))
	})
	ctx, cancel := context.WithCancel(context.Background())
	tc := newTestClient(t, srv.URL, func(c *Config) {
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			cancel()
			return ctx.Err()
		}
	})
	_, err := tc.FetchAccount(ctx, subSID)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("FetchAccount: got %v, want context.Canceled", err)
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("requests: got %d, want 1", got)
	}
}

func TestRateLimiterWaitsForEveryRequest(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 0:
			writeJSON(w, 200, messagesPage("/2010-04-01/Accounts/"+subSID+"/Messages.json?PageToken=PA1", messageJSON("SM1")))
		case 1:
			writeJSON(w, 429, twilioError(429, 20429)) // a retry counts too
		default:
			writeJSON(w, 200, messagesPage("", messageJSON("SM2")))
		}
	})
	tc := newTestClient(t, srv.URL, nil)
	var waits atomic.Int64
	tc.wait = func(ctx context.Context) error {
		waits.Add(1)
		// Queueing for the limiter must not eat into the request Timeout.
		if _, ok := ctx.Deadline(); ok {
			t.Error("limiter waited under a deadline the caller did not set")
		}
		return nil
	}
	var pages [][]string
	if err := tc.Messages(context.Background(), subSID, MessageList{}, collect(&pages)); err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if got, want := waits.Load(), int64(len(srv.requests())); got != want || want != 3 {
		t.Errorf("limiter waits: got %d, want one per request (%d, expected 3)", got, want)
	}
}

func TestRateLimiterRefusalIsFinal(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, accountJSON(subSID, "active"))
	})
	// One request per ~11 days: the second cannot be granted within the
	// hour the context allows, which rate.Limiter reports at once.
	tc := newTestClient(t, srv.URL, func(c *Config) { c.RateLimit = 1e-6 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := tc.FetchAccount(ctx, subSID); err != nil {
		t.Fatalf("first FetchAccount: %v", err)
	}
	_, err := tc.FetchAccount(ctx, subSID)
	if err == nil || !strings.Contains(err.Error(), "rate limit") {
		t.Fatalf("second FetchAccount: got %v, want a rate limit error", err)
	}
	if errors.Is(err, ErrExhausted) {
		t.Errorf("got %v, want no retries", err)
	}
	// The caller's deadline is why: a poller tells its own deadline apart
	// from Twilio's failures by this.
	if !errors.Is(err, ErrDeadline) {
		t.Errorf("got %v, want ErrDeadline", err)
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("requests: got %d, want 1", got)
	}
}

// A retry that would start after the caller's deadline is not waited for:
// the call gives up at once, naming the deadline and the last failure, and
// frees whatever the caller holds while it waits.
func TestRetryDueAfterDeadlineGivesUp(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Retry-After", "60")
		writeJSON(w, 429, twilioError(429, 20429))
	})
	tc := newTestClient(t, srv.URL, func(c *Config) { c.MaxBackoff = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := tc.FetchAccount(ctx, subSID)
	if !errors.Is(err, ErrDeadline) {
		t.Fatalf("FetchAccount: got %v, want ErrDeadline", err)
	}
	if Code(err) != 20429 {
		t.Errorf("Code(%v) = %d, want the last failure's 20429", err, Code(err))
	}
	if ctx.Err() != nil {
		t.Errorf("FetchAccount returned at its deadline, want at once")
	}
	if got := tc.sleeps.got(); len(got) != 0 {
		t.Errorf("slept %v before a retry due after the deadline", got)
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("requests: got %d, want 1", got)
	}
}

func TestRequestsGoToBaseURL(t *testing.T) {
	// TWILIO_EDGE/REGION make twilio-go rewrite the host; BaseURL wins.
	t.Setenv("TWILIO_EDGE", "sydney")
	t.Setenv("TWILIO_REGION", "au1")
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, accountJSON(subSID, "active"))
	})
	tc := newTestClient(t, srv.URL, nil)
	if _, err := tc.FetchAccount(context.Background(), subSID); err != nil {
		t.Fatalf("FetchAccount: %v", err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests: got %d, want 1", len(reqs))
	}
	r := reqs[0]
	if want := strings.TrimPrefix(srv.URL, "http://"); r.Host != want {
		t.Errorf("Host: got %q, want %q", r.Host, want)
	}
	if r.Path != "/2010-04-01/Accounts/"+subSID+".json" {
		t.Errorf("path: got %q", r.Path)
	}
	if !r.AuthOK || r.User != parentSID || r.Pass != testToken {
		t.Errorf("basic auth: got %q/%v, want the parent's credentials", r.User, r.AuthOK)
	}
}

// TestErrorsKeepSecrets checks that no error carries the auth token, the
// basic-auth header or a URL with user info, whatever went wrong.
func TestErrorsKeepSecrets(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte(parentSID + ":" + testToken))
	check := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("got no error")
		}
		for _, s := range []string{testToken, basic, "Basic ", "@"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains %q", err, s)
			}
		}
	}
	t.Run("bad credentials", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 401, twilioError(401, 20003))
		})
		tc := newTestClient(t, srv.URL, nil)
		_, err := tc.Accounts(context.Background())
		check(t, err)
		if Code(err) != 20003 {
			t.Errorf("Code: got %d, want 20003", Code(err))
		}
		_, err = tc.SetStatus(context.Background(), subSID, StatusSuspended)
		check(t, err)
	})
	t.Run("transport error", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {})
		url := srv.URL
		srv.Close()
		tc := newTestClient(t, url, func(c *Config) { c.MaxRetries = 1 })
		err := tc.Messages(context.Background(), subSID, MessageList{}, collect(new([][]string)))
		check(t, err)
		if !errors.Is(err, ErrExhausted) {
			t.Errorf("got %v, want ErrExhausted", err)
		}
	})
	t.Run("html error", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.WriteHeader(403)
			io.WriteString(w, "<html>denied</html>")
		})
		tc := newTestClient(t, srv.URL, nil)
		_, err := tc.UsageToday(context.Background(), subSID)
		check(t, err)
	})
}

func TestMetricsShareRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	for range 2 {
		if _, err := New(Config{AccountSID: parentSID, AuthToken: testToken, Registerer: reg}); err != nil {
			t.Fatalf("New on a shared registry: %v", err)
		}
	}
}

func TestMetricsLabelsAreBounded(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 404, twilioError(404, 20404))
	})
	tc := newTestClient(t, srv.URL, nil)
	tc.FetchAccount(context.Background(), subSID)
	tc.Messages(context.Background(), subSID, MessageList{}, collect(new([][]string)))
	families, err := tc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "AC") || strings.Contains(l.GetValue(), " ") {
					t.Errorf("%s label %s=%q looks unbounded", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	if m := tc.metric(t, "sentinel_twilio_request_duration_seconds", map[string]string{"endpoint": "messages"}); m.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("duration histogram for messages: got %v samples, want 1", m.GetHistogram().GetSampleCount())
	}
}

// An error names the URL that was called, not the Twilio host that
// twilio-go builds every URL on.
func TestErrorNamesCalledURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every request fails to connect
	tc := newTestClient(t, "http://"+addr, func(c *Config) { c.MaxRetries = -1 })
	_, err = tc.FetchAccount(context.Background(), subSID)
	if err == nil {
		t.Fatal("FetchAccount: no error")
	}
	if msg := err.Error(); strings.Contains(msg, "api.twilio.com") || !strings.Contains(msg, addr) {
		t.Errorf("error %q names the wrong host, want %s", msg, addr)
	}
}
