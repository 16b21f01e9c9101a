package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/twiliofake"
)

// fakeClient is a Client of a started fake, as the parent.
func fakeClient(t *testing.T, opts twiliofake.Options, mod func(*Config)) (*twiliofake.Server, *testClient) {
	t.Helper()
	opts.ParentSID, opts.ParentToken = parentSID, testToken
	s := twiliofake.New(opts)
	s.Start()
	t.Cleanup(s.Close)
	return s, newTestClient(t, s.URL(), mod)
}

func TestEventsURL(t *testing.T) {
	for _, tc := range []struct {
		name, base, events, want string
	}{
		{"Twilio's", "", "", "https://events.twilio.com"},
		{"Twilio's, spelled out", "https://api.twilio.com", "", "https://events.twilio.com"},
		{"a fake serves both", "http://127.0.0.1:8080", "", "http://127.0.0.1:8080"},
		{"given", "http://127.0.0.1:8080", "https://events.proxy.example", "https://events.proxy.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{BaseURL: tc.base, EventsURL: tc.events, AccountSID: parentSID, AuthToken: testToken})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.eventsBase.String(); got != tc.want {
				t.Errorf("events go to %s, want %s", got, tc.want)
			}
		})
	}
	if _, err := New(Config{EventsURL: "https://u:p@events.example", AccountSID: parentSID, AuthToken: testToken}); err == nil || strings.Contains(err.Error(), "u:p") {
		t.Errorf("events URL with user info: %v, want an error without them", err)
	}
}

// TestEventsRouting checks that the same RoundTripper sends each API to its
// host: events.twilio.com's requests to EventsURL, the rest to BaseURL.
func TestEventsRouting(t *testing.T) {
	api := newServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		writeJSON(w, http.StatusOK, accountJSON(parentSID, "active"))
	})
	ev := newServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		writeJSON(w, http.StatusOK, `{"sinks": [], "meta": {"next_page_url": null, "key": "sinks"}}`)
	})
	c := newTestClient(t, api.URL, func(cfg *Config) { cfg.EventsURL = ev.URL })
	if _, err := c.FetchAccount(context.Background(), parentSID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Events().Sinks(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.requests(); len(got) != 1 || !strings.HasPrefix(got[0].Path, "/2010-04-01/") {
		t.Errorf("api server saw %+v, want the account fetch only", got)
	}
	got := ev.requests()
	if len(got) != 1 || got[0].Path != "/v1/Sinks" || got[0].User != parentSID || got[0].Pass != testToken {
		t.Errorf("events server saw %+v, want the parent's sink listing", got)
	}
	if n := c.counter(t, "sentinel_twilio_requests_total", map[string]string{"endpoint": "events", "code": "200"}); n != 1 {
		t.Errorf("requests_total{events,200} = %v, want 1", n)
	}
}

func TestEventsAgainstFake(t *testing.T) {
	s, c := fakeClient(t, twiliofake.Options{}, func(cfg *Config) { cfg.PageSize = 2 })
	ctx := context.Background()
	ev := c.Events()
	var made []string
	for i := range 3 {
		sk, err := ev.CreateSink(ctx, fmt.Sprintf("sink %d", i), "https://u:pw@h.example/twilio/events", "POST", true)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, sk.SID)
	}
	sinks, err := ev.Sinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, sk := range sinks {
		listed = append(listed, sk.SID)
		if sk.Destination != "https://u:pw@h.example/twilio/events" || sk.Method != "POST" || !sk.Batch || sk.Type != "webhook" {
			t.Errorf("sink %+v", sk)
		}
	}
	sort.Strings(made)
	if diff := cmp.Diff(made, listed); diff != "" {
		t.Errorf("sinks over pages of 2 (-want +got):\n%s", diff)
	}

	types := twiliofake.MessagingEventTypes()
	sub, err := ev.CreateSubscription(ctx, made[0], "sentinel", types[:5], true)
	if err != nil {
		t.Fatal(err)
	}
	if !sub.Subaccounts || !sub.SubaccountsShown || sub.SinkSID != made[0] {
		t.Errorf("subscription %+v, want the subaccounts' events on %s", sub, made[0])
	}
	for _, typ := range types[5:] {
		if err := ev.AddType(ctx, sub.SID, typ); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ev.Types(ctx, sub.SID)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if diff := cmp.Diff(types, got); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
	subs, err := ev.Subscriptions(ctx)
	if err != nil || len(subs) != 1 || subs[0] != sub {
		t.Errorf("subscriptions %+v, %v; want %+v", subs, err, sub)
	}
	if err := ev.DeleteSubscription(ctx, sub.SID); err != nil {
		t.Fatal(err)
	}
	if err := ev.DeleteSubscription(ctx, sub.SID); err != nil {
		t.Errorf("deleting it again: %v, want nothing to do", err)
	}
	if err := ev.DeleteSink(ctx, made[0]); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Sinks(parentSID)); n != 2 {
		t.Errorf("%d sinks left, want 2", n)
	}

	// A subaccount's own API sees its own sinks only.
	a, err := s.AddSubaccount(twiliofake.Account{})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := c.SubaccountCredentials(ctx)
	if err != nil || len(creds) != 1 || creds[0].SID != a.SID || creds[0].Token != a.Token || creds[0].Status != "active" {
		t.Fatalf("credentials %v, %v; want the one subaccount with its token", creds, err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(format, creds[0]); strings.Contains(out, a.Token) {
			t.Errorf("%s shows the token: %s", format, out)
		}
	}
	own, err := c.EventsAs(a.SID, a.Token)
	if err != nil {
		t.Fatal(err)
	}
	if sinks, err := own.Sinks(ctx); err != nil || len(sinks) != 0 {
		t.Errorf("the subaccount lists %d sinks (%v), want none of the parent's", len(sinks), err)
	}
	if _, err := c.EventsAs(a.SID, "not a token!"); err == nil || strings.Contains(err.Error(), "not a token") {
		t.Errorf("a malformed token: %v, want an error that does not show it", err)
	}
}

// TestEventsCreateRetries checks that a create is retried after a 429 (not
// processed) but not after a 5xx (perhaps processed: a retry would make a
// second sink).
func TestEventsCreateRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		code     int
		attempts int
	}{
		{"5xx", http.StatusInternalServerError, 20500, 1},
		{"429", http.StatusTooManyRequests, 20429, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n < 2 {
					writeJSON(w, tc.status, twilioError(tc.status, tc.code))
					return
				}
				writeJSON(w, http.StatusCreated, `{"sid": "DG00000000000000000000000000000001", "sink_type": "webhook",
					"sink_configuration": {"destination": "https://h.example/e", "method": "POST", "batch_events": true}}`)
			})
			c := newTestClient(t, srv.URL, nil)
			_, err := c.Events().CreateSink(context.Background(), "d", "https://h.example/e", "POST", true)
			if got := len(srv.requests()); got != tc.attempts {
				t.Errorf("%d attempts, want %d (err %v)", got, tc.attempts, err)
			}
			if (tc.attempts == 1) != (err != nil) {
				t.Errorf("err %v", err)
			}
			if tc.attempts == 1 && Code(err) != tc.code {
				t.Errorf("code %d, want %d", Code(err), tc.code)
			}
		})
	}
}

func TestEventsPaging(t *testing.T) {
	sink := func(n int) string {
		return fmt.Sprintf(`{"sid": "DG%032x", "sink_type": "webhook", "sink_configuration": {"destination": "https://h.example/e", "method": "POST"}}`, n)
	}
	for _, tc := range []struct {
		name string
		next func(n int) string // the next_page_url of page n (from 0)
		want error
	}{
		{"another host", func(int) string { return `"https://evil.example/v1/Sinks?Page=1"` }, ErrMalformed},
		{"not https", func(int) string { return `"http://events.twilio.com/v1/Sinks?Page=1"` }, ErrMalformed},
		{"a loop", func(int) string { return `"https://events.twilio.com/v1/Sinks?Page=1&PageToken=PA1"` }, ErrPageLoop},
		{"endless", func(n int) string {
			return fmt.Sprintf(`"https://events.twilio.com/v1/Sinks?Page=%d&PageToken=PA%d"`, n+1, n)
		}, ErrTooManyPages},
		{"two pages", func(n int) string {
			if n == 0 {
				return `"https://events.twilio.com/v1/Sinks?PageSize=1&Page=1&PageToken=PADG1"`
			}
			return "null"
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, http.StatusOK, fmt.Sprintf(`{"sinks": [%s], "meta": {"next_page_url": %s}}`, sink(n+1), tc.next(n)))
			})
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.MaxPages = 4 })
			sinks, err := c.Events().Sinks(context.Background())
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				reqs := srv.requests()
				if len(sinks) != 2 || reqs[1].RawQuery != "PageSize=1&Page=1&PageToken=PADG1" {
					t.Errorf("%d sinks; second request %q, want the next_page_url's query as written", len(sinks), reqs[1].RawQuery)
				}
			}
		})
	}
}

// FuzzEventsPath checks the check of a next_page_url: what it accepts is
// an https URL on an events host whose path and query go out as written.
func FuzzEventsPath(f *testing.F) {
	for _, s := range []string{
		"https://events.twilio.com/v1/Sinks?PageSize=50&Page=1&PageToken=PADG1",
		"https://events.dublin.ie1.twilio.com/v1/Subscriptions?Page=1",
		"https://events.twilio.com.evil.example/v1/Sinks", "https://u:p@events.twilio.com/v1",
		"http://events.twilio.com/v1", "https://events.twilio.com/v1/Sinks#x", "https://events.twilio.com",
		"https://events.twilio.com//evil.example/x", "https://events.twilio.com/v1/ Sinks", "/v1/Sinks", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		path, ok := eventsPath(raw)
		if !ok {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || !strings.HasPrefix(u.Host, "events.") || !strings.HasSuffix(u.Host, ".twilio.com") {
			t.Fatalf("eventsPath(%q) accepted a URL off the events hosts", raw)
		}
		if !isPath(path) || !strings.HasSuffix(raw, path) {
			t.Fatalf("eventsPath(%q) = %q, not the URL's own path", raw, path)
		}
		r, err := http.NewRequest(http.MethodGet, DefaultEventsURL+path, nil)
		if err != nil || r.URL.Host != "events.twilio.com" || r.URL.RequestURI() != path {
			t.Fatalf("eventsPath(%q) = %q, which does not go out as written: %v", raw, path, err)
		}
	})
}

// FuzzEventsSinks serves arbitrary sink pages, numbered like
// FuzzAccounts'. Listing fails or yields sinks whose SIDs are sink SIDs.
func FuzzEventsSinks(f *testing.F) {
	f.Add(`{"sinks": [{"sid": "DG00000000000000000000000000000001", "sink_type": "webhook", "sink_configuration": {"destination": "https://u:p@h/e", "method": "POST", "batch_events": false}}], "meta": {"next_page_url": null}}`)
	f.Add(`{"sinks": [{"sid": "DG00000000000000000000000000000001", "sink_configuration": "x"}], "meta": {}}`)
	f.Add(`{"sinks": [{"sid": "DG1/../x"}], "meta": {}}`)
	f.Add(`{"sinks": [{"sid": "DG00000000000000000000000000000001", "date_created": "yesterday"}]}`)
	f.Add(`{"sinks": [], "meta": {"next_page_url": "https://events.twilio.com/v1/Sinks?Page={n}&PageToken=PA{n}"}}`)
	f.Add(`{"sinks": [], "meta": {"next_page_url": 5}}`)
	srv := newFuzzServer(f)
	c, _ := newFuzzClient(f, srv.URL, func(cfg *Config) { cfg.MaxPages = fuzzMaxPages })
	f.Fuzz(func(t *testing.T, body string) {
		srv.reset(numbered(body))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sinks, err := c.Events().Sinks(ctx)
		if err != nil {
			if sinks != nil {
				t.Fatalf("Sinks returned %d sinks with %v", len(sinks), err)
			}
			return
		}
		for _, sk := range sinks {
			if !sinkSIDPattern.MatchString(sk.SID) {
				t.Fatalf("sink SID %q", sk.SID)
			}
		}
		if reqs, _ := srv.seen(); len(reqs) > fuzzMaxPages {
			t.Fatalf("%d requests, more than MaxPages", len(reqs))
		}
	})
}
