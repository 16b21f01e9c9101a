package twilioapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sentinel/internal/traffic"
)

// The targets below that go through HTTP share one fuzzServer and one
// Client per target: each iteration tells the server what to answer and
// reads back what it was asked, so that an iteration costs a few loopback
// round trips rather than a server start.

// answer is what the fuzz server sends for request n (from 1) of an
// iteration.
type answer func(n int, r *http.Request) (status int, header http.Header, body string)

// fuzzServer is a Twilio stand-in whose answers are set per iteration.
type fuzzServer struct {
	*httptest.Server
	mu     sync.Mutex
	answer answer
	reqs   []*url.URL // each request of this iteration, as received
	bodies []string   // the body sent for each
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	s := &fuzzServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		u := *r.URL
		u.RawPath = r.URL.EscapedPath() // what was sent, to tell "/a%2Fb" from "/a/b"
		s.reqs = append(s.reqs, &u)
		n, ans := len(s.reqs), s.answer
		s.mu.Unlock()
		status, header, body := ans(n, r)
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		s.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	tb.Cleanup(s.Close)
	return s
}

// reset starts an iteration: a answers from now on.
func (s *fuzzServer) reset(a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer, s.reqs, s.bodies = a, nil, nil
}

// seen returns the requests of this iteration and the bodies sent for them.
func (s *fuzzServer) seen() ([]*url.URL, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs), slices.Clone(s.bodies)
}

// numbered answers every request with 200 and body, in which "{n}" stands
// for the request's number: a page can then point at a next page that was
// never seen before, as far as paging goes.
func numbered(body string) answer {
	return func(n int, _ *http.Request) (int, http.Header, string) {
		return http.StatusOK, nil, strings.ReplaceAll(body, "{n}", strconv.Itoa(n))
	}
}

// newFuzzClient is a Client pointed at baseURL whose retries do not wait;
// the delays it asks for are recorded in the returned sleeps.
func newFuzzClient(tb testing.TB, baseURL string, mod func(*Config)) (*Client, *sleeps) {
	tb.Helper()
	s := &sleeps{}
	cfg := Config{
		BaseURL:    baseURL,
		AccountSID: parentSID,
		AuthToken:  testToken,
		MinBackoff: time.Millisecond,
		MaxBackoff: time.Millisecond,
		Sleep:      s.sleep,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(c.transport.CloseIdleConnections)
	return c, s
}

// fuzzMaxPages bounds the listings of the paging targets, so that a page
// that always points further reaches the bound quickly.
const fuzzMaxPages = 4

// nextOf returns the next_page_uri of a served page body the way the
// client reads it (the first JSON value; trailing bytes are not read), and
// whether the body had one.
func nextOf(body string) (string, bool) {
	var p struct {
		Next *string `json:"next_page_uri"`
	}
	if json.NewDecoder(strings.NewReader(body)).Decode(&p) != nil || p.Next == nil || *p.Next == "" {
		return "", false
	}
	return *p.Next, true
}

// looksLikePath is the test's own idea of what a client may follow: a
// URI-reference that parses and is an absolute path, not a network-path
// ("//host/...") and not an absolute URI.
func looksLikePath(uri string) bool {
	if !strings.HasPrefix(uri, "/") || strings.HasPrefix(uri, "//") {
		return false
	}
	_, err := url.Parse(uri)
	return err == nil
}

// checkPaging asserts what must hold of one listing whatever its pages
// said: at most fuzzMaxPages requests, each after the first to a
// next_page_uri that the page before it gave and that is a path, never the
// same request twice, and an error (if any) that names why it stopped.
// keep says whether the next page's query must be the next_page_uri's,
// byte for byte.
func checkPaging(t *testing.T, first string, reqs []*url.URL, bodies []string, err error, keep bool) {
	t.Helper()
	if len(reqs) == 0 || len(reqs) > fuzzMaxPages {
		t.Fatalf("%d requests, want 1..%d", len(reqs), fuzzMaxPages)
	}
	if reqs[0].Path != first {
		t.Fatalf("first request to %q, want %q", reqs[0].Path, first)
	}
	asked := map[string]bool{}
	for i, r := range reqs {
		uri := r.RawPath + "?" + r.RawQuery
		if asked[uri] {
			t.Fatalf("request %d repeats %s", i+1, uri)
		}
		asked[uri] = true
		if i == 0 {
			continue
		}
		next, ok := nextOf(bodies[i-1])
		if !ok || !looksLikePath(next) {
			t.Fatalf("request %d to %s follows page %d, whose next_page_uri %q is not a path", i+1, uri, i, next)
		}
		u, _ := url.Parse(next)
		if r.Path != u.Path {
			t.Fatalf("request %d: path %q, but next_page_uri %q", i+1, r.Path, next)
		}
		if keep && r.RawQuery != u.RawQuery {
			t.Fatalf("request %d: query %q, but next_page_uri %q", i+1, r.RawQuery, next)
		}
	}
	last := bodies[len(bodies)-1]
	next, more := nextOf(last)
	switch {
	case err == nil:
		if more {
			t.Fatalf("listing ended without error after %d pages, but the last one points to %q", len(reqs), next)
		}
	case errors.Is(err, ErrTooManyPages):
		if len(reqs) != fuzzMaxPages {
			t.Fatalf("%v after %d requests, want %d", err, len(reqs), fuzzMaxPages)
		}
	case errors.Is(err, ErrPageLoop), errors.Is(err, ErrMalformed):
	default:
		t.Fatalf("listing failed with %v, which is neither malformed, a loop nor too many pages", err)
	}
	if more && !looksLikePath(next) && len(reqs) < fuzzMaxPages && !errors.Is(err, ErrMalformed) {
		t.Fatalf("next_page_uri %q is not a path, but the error is %v", next, err)
	}
}

// FuzzMessagesPaging serves arbitrary message pages to Messages, every page
// the same but for "{n}", which stands for the request's number. Whatever
// the pages say, the listing follows only next_page_uris that are paths,
// never asks for the same page twice, stops at MaxPages, asks for the full
// page size after a small first page, and fails only for a reason it
// names.
func FuzzMessagesPaging(f *testing.F) {
	path := messagesPath(subSID)
	f.Add(messagesPage("", messageJSON("SM1")))
	f.Add(messagesPage(path+"?PageSize=50&Page={n}&PageToken=PASM{n}", messageJSON("SM{n}")))
	f.Add(messagesPage(path+"?PageSize=20&Page=1&PageToken=PASM1", messageJSON("SM1")))
	f.Add(messagesPage(path+"?PageSize=20&Page={n}&PageToken=PASM{n}#top", messageJSON("SM{n}")))
	f.Add(messagesPage("https://api.twilio.com"+path+"?PageToken=PASM{n}", messageJSON("SM2")))
	f.Add(messagesPage("//evil.example" + path + "?PageToken=PASM{n}"))
	f.Add(messagesPage("Messages.json?PageToken=PASM{n}"))
	f.Add(messagesPage("/%zz?PageToken={n}"))
	f.Add(`{"messages": [{"sid": 1}, {"sid": "SM{n}", "date_sent": "yesterday"}], "next_page_uri": "/p?{n}"}`)
	f.Add(`{"messages": null, "next_page_uri": 7}`)
	f.Add(`{"messages": [], "next_page_uri": "/p?Page={n}"} trailing`)
	f.Add(`<html><body>502 Bad Gateway</body></html>`)
	srv := newFuzzServer(f)
	c, _ := newFuzzClient(f, srv.URL, func(cfg *Config) { cfg.MaxPages, cfg.PageSize = fuzzMaxPages, 50 })
	f.Fuzz(func(t *testing.T, body string) {
		srv.reset(numbered(body))
		pages := 0
		err := c.Messages(context.Background(), subSID, MessageList{FirstPage: 20}, func(p *Page) (bool, error) {
			pages++
			if p.Number != pages {
				t.Fatalf("page %d numbered %d", pages, p.Number)
			}
			for _, s := range p.Skipped {
				if !errors.Is(s.Err, ErrMalformed) {
					t.Fatalf("skipped message %q: %v does not wrap ErrMalformed", s.SID, s.Err)
				}
			}
			for _, m := range p.Messages {
				if m.SID == "" || m.Time.IsZero() || m.PriceMicros < 0 {
					t.Fatalf("message %+v", m)
				}
			}
			return true, nil
		})
		reqs, bodies := srv.seen()
		checkPaging(t, path, reqs, bodies, err, false)
		if got := reqs[0].Query().Get("PageSize"); got != "20" {
			t.Fatalf("first page size %q, want 20", got)
		}
		for _, r := range reqs[1:] {
			if got := r.Query().Get("PageSize"); got != "50" {
				t.Fatalf("%s: page size %q, want 50", r, got)
			}
		}
		if err == nil && pages != len(reqs) {
			t.Fatalf("%d pages delivered for %d requests", pages, len(reqs))
		}
	})
}

// FuzzNextPage checks what Messages would request for any next_page_uri:
// either an error that says why not, or a path on which the page size is
// the full one and every other parameter is the next_page_uri's own.
func FuzzNextPage(f *testing.F) {
	path := messagesPath(subSID)
	for _, s := range []string{
		path + "?PageSize=20&Page=1&PageToken=PASM2", path + "?PageSize=50&Page=1&PageToken=PASM2",
		path + "?PageToken=PASM2&PageSize=20&PageSize=50", path + "?PageToken=a%2Bb&To=%2B15005550006",
		"/seen", "https://api.twilio.com" + path, "//evil.example/x", "relative", "/x#frag", "/x?a=%zz", "",
	} {
		f.Add(s, uint8(1))
	}
	f.Add(path+"?PageToken=x", uint8(fuzzMaxPages))
	c := &Client{cfg: Config{MaxPages: fuzzMaxPages, PageSize: 50}}
	f.Fuzz(func(t *testing.T, next string, n uint8) {
		page := int(n%(fuzzMaxPages+2)) + 1
		uri, err := c.nextPage(page, next, map[string]bool{"/seen": true})
		if err != nil {
			switch {
			case errors.Is(err, ErrPageLoop):
				if next != "/seen" {
					t.Fatalf("nextPage(%q): %v, but it was not seen", next, err)
				}
			case errors.Is(err, ErrTooManyPages):
				if page < fuzzMaxPages {
					t.Fatalf("nextPage(%q) on page %d: %v", next, page, err)
				}
			case errors.Is(err, ErrMalformed):
				if looksLikePath(next) && isPath(next) {
					t.Fatalf("nextPage(%q): %v, but it is a path", next, err)
				}
			default:
				t.Fatalf("nextPage(%q): %v names no reason", next, err)
			}
			return
		}
		if page >= fuzzMaxPages || next == "/seen" || !looksLikePath(next) {
			t.Fatalf("nextPage(%q) on page %d = %q, want an error", next, page, uri)
		}
		if !isPath(uri) || !looksLikePath(uri) {
			t.Fatalf("nextPage(%q) = %q, not a path", next, uri)
		}
		u, _ := url.Parse(uri)
		orig, _ := url.Parse(next)
		if u.Path != orig.Path {
			t.Fatalf("nextPage(%q) = %q: path changed", next, uri)
		}
		q, want := u.Query(), orig.Query()
		if got := q["PageSize"]; !slices.Equal(got, []string{"50"}) {
			t.Fatalf("nextPage(%q) = %q: PageSize %q, want [50]", next, uri, got)
		}
		for k, v := range want {
			if k != "PageSize" && !slices.Equal(q[k], v) {
				t.Fatalf("nextPage(%q) = %q: %s is %q, want %q", next, uri, k, q[k], v)
			}
		}
		// It goes out as it is written.
		if r, err := http.NewRequest(http.MethodGet, DefaultBaseURL+uri, nil); err != nil || r.URL.RequestURI() != uri {
			t.Fatalf("nextPage(%q) = %q, which does not go out as written: %v", next, uri, err)
		}
	})
}

// FuzzAccounts serves arbitrary account pages to Accounts, numbered like
// FuzzMessagesPaging's. Paging holds to the same rules (next_page_uri
// requested as written), and every account listed has a SID and a
// date_updated that is either unknown or UTC.
func FuzzAccounts(f *testing.F) {
	const path = "/2010-04-01/Accounts.json"
	f.Add(accountsPage("", accountJSON(parentSID, "active"), accountJSON(subSID, "suspended")))
	f.Add(accountsPage(path+"?PageSize=1000&Page={n}&PageToken=PA{n}", accountJSON(subSID, "closed")))
	f.Add(accountsPage(path+"?PageSize=1000&Page=1&PageToken=PA1", accountJSON(subSID, "active")))
	f.Add(accountsPage(path+"?PageToken=PA{n}#x", accountJSON(subSID, "active")))
	f.Add(accountsPage("https://evil.example"+path, accountJSON(subSID, "active")))
	f.Add(accountsPage("", `{"sid": "AC1", "date_updated": "Fri, 24 May 2019 17:44:50 +0000"}`, `{"sid": "AC2", "date_updated": "2019-05-24"}`))
	f.Add(accountsPage("", `{"sid": null, "status": "active"}`))
	f.Add(accountsPage("", `{"sid": 5}`))
	f.Add(`{"accounts": [], "next_page_uri": "/a?{n}"} {"x": 1}`)
	f.Add(`{"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}`)
	srv := newFuzzServer(f)
	c, _ := newFuzzClient(f, srv.URL, func(cfg *Config) { cfg.MaxPages = fuzzMaxPages })
	f.Fuzz(func(t *testing.T, body string) {
		srv.reset(numbered(body))
		accts, err := c.Accounts(context.Background())
		reqs, bodies := srv.seen()
		checkPaging(t, path, reqs, bodies, err, true)
		if err != nil && accts != nil {
			t.Fatalf("Accounts returned %d accounts with %v", len(accts), err)
		}
		for _, a := range accts {
			if a.SID == "" {
				t.Fatalf("account without SID: %+v", a)
			}
			if !a.Updated.IsZero() && a.Updated.Location() != time.UTC {
				t.Fatalf("account %s updated %v, not UTC", a.SID, a.Updated)
			}
		}
	})
}

var dayRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

// FuzzUsage serves arbitrary usage pages to UsageToday and UsageDaily;
// "{cat}" in a page stands for the category asked for, "{n}" for the
// request's number. A listing either fails with a reason it names
// (ErrMalformed above all) or yields days written YYYY-MM-DD, within the
// range asked for, each once and in order, with counts that are not
// negative and a price that is a number.
func FuzzUsage(f *testing.F) {
	const from, to = "2026-03-01", "2026-03-03"
	f.Add(usagePage(usageRecordJSON("{cat}", "2026-03-02", "1500", `"12.34"`, "2026-03-02T10:00:00+00:00")))
	f.Add(usagePage(usageRecordJSON("{cat}", "2026-03-01", "7", `11.85`, ""), usageRecordJSON("{cat}", "2026-03-03", "0", `null`, "2026-03-03T23:59:59Z")))
	f.Add(usagePage(usageRecordJSON("{cat}", "2026-02-28", "1", "1", ""), usageRecordJSON("sms", "2026-03-04", "1", "1", "")))
	f.Add(usagePage(usageRecordJSON("{cat}", "2026-03-02", "-1", `"-0.5"`, "")))
	f.Add(usagePage(usageRecordJSON("{cat}", "2026-3-2", "1", "1", "")))
	f.Add(usagePage(usageRecordJSON("{cat}", "2026-03-02", "1e3", `"NaN"`, "yesterday")))
	f.Add(usagePage(usageRecordJSON("{cat}", "2026-03-02", "9223372036854775808", `1e39`, "")))
	f.Add(`{"usage_records": [{"category": "{cat}", "start_date": "2026-03-02", "count": "{n}"}], "next_page_uri": "/2010-04-01/Accounts/` + subSID + `/Usage/Records/Daily.json?Category={cat}&Page={n}"}`)
	f.Add(`{"usage_records": [{"category": "{cat}", "start_date": null, "count": 3}]}`)
	f.Add(`{"usage_records": {}, "next_page_uri": null}`)
	f.Add(`<html><body>502 Bad Gateway</body></html>`)
	srv := newFuzzServer(f)
	c, _ := newFuzzClient(f, srv.URL, func(cfg *Config) { cfg.MaxPages = fuzzMaxPages })
	f.Fuzz(func(t *testing.T, body string) {
		srv.reset(func(n int, r *http.Request) (int, http.Header, string) {
			b := strings.ReplaceAll(body, "{cat}", r.URL.Query().Get("Category"))
			return http.StatusOK, nil, strings.ReplaceAll(b, "{n}", strconv.Itoa(n))
		})
		check := func(what string, u traffic.Usage) {
			t.Helper()
			if _, err := time.Parse(time.DateOnly, u.Day); err != nil || !dayRE.MatchString(u.Day) {
				t.Fatalf("%s: day %q is not YYYY-MM-DD", what, u.Day)
			}
			if u.SMS < 0 || u.MMS < 0 {
				t.Fatalf("%s: negative count in %+v", what, u)
			}
			if math.IsNaN(u.TotalPrice) || math.IsInf(u.TotalPrice, 0) {
				t.Fatalf("%s: price %v", what, u.TotalPrice)
			}
			if !u.AsOf.IsZero() && u.AsOf.Location() != time.UTC {
				t.Fatalf("%s: as of %v, not UTC", what, u.AsOf)
			}
			if u.Currency != strings.ToUpper(strings.TrimSpace(u.Currency)) {
				t.Fatalf("%s: currency %q", what, u.Currency)
			}
		}
		reason := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPageLoop) && !errors.Is(err, ErrTooManyPages) &&
				!strings.Contains(err.Error(), "records span") {
				t.Fatalf("%s: %v names no reason", what, err)
			}
		}

		today, err := c.UsageToday(context.Background(), subSID)
		if err != nil {
			reason("UsageToday", err)
		} else {
			check("UsageToday", today)
		}
		reqs, _ := srv.seen()
		if len(reqs) > 3*fuzzMaxPages {
			t.Fatalf("UsageToday: %d requests for 3 listings of at most %d pages", len(reqs), fuzzMaxPages)
		}

		srv.reset(func(n int, r *http.Request) (int, http.Header, string) {
			b := strings.ReplaceAll(body, "{cat}", r.URL.Query().Get("Category"))
			return http.StatusOK, nil, strings.ReplaceAll(b, "{n}", strconv.Itoa(n))
		})
		days, err := c.UsageDaily(context.Background(), subSID, from, to)
		if err != nil {
			reason("UsageDaily", err)
			if days != nil {
				t.Fatalf("UsageDaily returned %d days with %v", len(days), err)
			}
		}
		for i, u := range days {
			check("UsageDaily", u)
			if u.Day < from || u.Day > to {
				t.Fatalf("UsageDaily: day %s outside %s..%s", u.Day, from, to)
			}
			if i > 0 && u.Day <= days[i-1].Day {
				t.Fatalf("UsageDaily: day %s after %s", u.Day, days[i-1].Day)
			}
		}
		if reqs, _ := srv.seen(); len(reqs) > 3*fuzzMaxPages {
			t.Fatalf("UsageDaily: %d requests for 3 listings of at most %d pages", len(reqs), fuzzMaxPages)
		}
	})
}

// FuzzRetryAfter checks the delay a Retry-After header makes the client
// wait before retry n: never negative, never more than 4*MaxBackoff, at
// least what the header asks for when that is within the cap, and, for
// delay-seconds, what they say (capped at a day).
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{
		"", "0", "7", " 30 ", "-1", "+5", "1.5", "86401", "9223372036854775807", "99999999999999999999",
		"Wed, 21 Oct 2026 07:28:00 GMT", "Mon, 02 Mar 2026 12:00:30 GMT", "Sun, 06 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Fri, 31 Dec 9999 23:59:59 GMT", "soon",
	} {
		f.Add(s, uint8(0))
	}
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	c := &Client{cfg: Config{MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff}, now: func() time.Time { return now }}
	limit := 4 * DefaultMaxBackoff
	f.Fuzz(func(t *testing.T, v string, n uint8) {
		ra, ok := parseRetryAfter(v, now)
		if ra < 0 || (!ok && ra != 0) {
			t.Fatalf("parseRetryAfter(%q) = %v, %v", v, ra, ok)
		}
		if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			want := time.Duration(min(secs, 86400)) * time.Second
			if secs < 0 {
				want = 0
			}
			if ra != want || ok != (secs >= 0) {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %v", v, ra, ok, want)
			}
		}
		d := c.backoff(int(n), v)
		if d < 0 || d > limit {
			t.Fatalf("backoff(%d, %q) = %v, want 0..%v", n, v, d, limit)
		}
		if ok && d < min(ra, limit) {
			t.Fatalf("backoff(%d, %q) = %v, shorter than the %v asked for", n, v, d, ra)
		}
	})
}

// twilioStatus maps a fuzzed number to an HTTP status a server can send as
// the final answer: 200 to 599.
func twilioStatus(s uint16) int { return 200 + int(s)%400 }

// FuzzErrorClassification answers every attempt of FetchAccount with the
// same status, Retry-After and body. Whatever they are, the call ends: a
// success with a SID, or an error. It is retried (to MaxRetries) exactly
// when the HTTP status is 429 or 5xx, whatever the body claims; retries
// wait no more than the backoff cap and at least what Retry-After asks
// within it; a 2xx that does not decode is ErrMalformed; and no error
// quotes the auth token.
func FuzzErrorClassification(f *testing.F) {
	for _, s := range []struct {
		status     int
		retryAfter string
		body       string
	}{
		{200, "", accountJSON(subSID, "active")},
		{200, "", `{"sid": null}`},
		{200, "", `{"sid": "` + subSID + `", "status": 1}`},
		{200, "", ""},
		{429, "", `{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}`},
		{429, "3", `{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}`},
		{429, "Wed, 21 Oct 2026 07:28:00 GMT", ``},
		{404, "", `{"code":20404,"message":"The requested resource /2010-04-01/Accounts/` + subSID + `.json was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}`},
		{401, "", `{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}`},
		{400, "", `{"code":21479,"message":"Account is closed","status":400}`},
		{400, "", `{"code":20429,"message":"Too Many Requests","status":400}`},
		{404, "", `{"code":20404,"message":"not found","status":500}`},
		{503, "", `{"code":20503,"message":"Service Unavailable","status":400}`},
		{500, "", `{"code":20500,"message":"Internal Server Error","more_info":"https://www.twilio.com/docs/errors/20500","status":500}`},
		{502, "", "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body>\r\n</html>\r\n"},
		{503, "120", `upstream connect error or disconnect/reset before headers`},
		{302, "", ``},
		{204, "", ``},
	} {
		f.Add(uint16(s.status-200), s.retryAfter, s.body)
	}
	const maxRetries = 2
	srv := newFuzzServer(f)
	c, sl := newFuzzClient(f, srv.URL, func(cfg *Config) {
		cfg.MaxRetries, cfg.MinBackoff, cfg.MaxBackoff = maxRetries, time.Millisecond, 10*time.Millisecond
	})
	f.Fuzz(func(t *testing.T, s uint16, retryAfter, body string) {
		if strings.ContainsFunc(retryAfter, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return // not a header value that reaches the client as it was sent
		}
		status := twilioStatus(s)
		header := http.Header{}
		if retryAfter != "" {
			header.Set("Retry-After", retryAfter)
		}
		srv.reset(func(int, *http.Request) (int, http.Header, string) { return status, header, body })
		sl.reset()
		a, err := c.FetchAccount(context.Background(), subSID)
		reqs, _ := srv.seen()
		retryable := status == http.StatusTooManyRequests || status >= 500
		switch {
		case retryable:
			if len(reqs) != maxRetries+1 || !errors.Is(err, ErrExhausted) {
				t.Fatalf("HTTP %d: %d requests, %v; want %d and ErrExhausted", status, len(reqs), err, maxRetries+1)
			}
		case len(reqs) != 1:
			t.Fatalf("HTTP %d retried: %d requests (%v)", status, len(reqs), err)
		case err == nil:
			if a.SID == "" {
				t.Fatalf("HTTP %d: account without SID", status)
			}
		case status < 300 && !errors.Is(err, ErrMalformed):
			t.Fatalf("HTTP %d: %v does not wrap ErrMalformed", status, err)
		}
		if err != nil && a != (Account{}) {
			t.Fatalf("HTTP %d: account %+v with error %v", status, a, err)
		}
		if err != nil && strings.Contains(err.Error(), testToken) && !strings.Contains(body+retryAfter, testToken) {
			t.Fatalf("error quotes the auth token: %v", err)
		}
		ra, ok := parseRetryAfter(header.Get("Retry-After"), time.Now())
		limit := 4 * 10 * time.Millisecond
		for _, d := range sl.got() {
			if d < 0 || d > limit {
				t.Fatalf("HTTP %d, Retry-After %q: waited %v, want 0..%v", status, retryAfter, d, limit)
			}
			// An HTTP date is relative to a clock that moved meanwhile.
			if _, err := strconv.Atoi(strings.TrimSpace(retryAfter)); err == nil && ok && d < min(ra, limit) {
				t.Fatalf("HTTP %d, Retry-After %q: waited %v", status, retryAfter, d)
			}
		}
	})
}

func (s *sleeps) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = nil
}
