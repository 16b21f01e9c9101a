package twilioapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
