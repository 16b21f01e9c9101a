package twiliofake

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	testSID   = "AC0123456789abcdef0123456789abcdef"
	testToken = "0123456789abcdef0123456789abcdef"
	msgSID    = "SM0123456789abcdef0123456789abcdef"
)

func TestParsePaging(t *testing.T) {
	for _, tc := range []struct {
		query   string
		want    paging
		wantErr string
	}{
		{"", paging{size: 50}, ""},
		{"PageSize=1", paging{size: 1}, ""},
		{"PageSize=1000&Page=3&PageToken=PAx", paging{size: 1000, page: 3, token: "PAx"}, ""},
		{"PageSize=0", paging{}, "PageSize"},
		{"PageSize=1001", paging{}, "PageSize"},
		{"PageSize=-5", paging{}, "PageSize"},
		{"PageSize=ten", paging{}, "PageSize"},
		{"PageSize=", paging{}, "PageSize"},
		{"PageSize=1e3", paging{}, "PageSize"},
		{"Page=-1", paging{}, "Page must"},
		{"Page=one", paging{}, "Page must"},
		{"Page=2", paging{}, "PageToken"},
		{"PageToken=", paging{}, "PageToken"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			got, err := parsePaging(q)
			if tc.wantErr != "" {
				if err == nil || err.Status != 400 || err.Code != 70002 || !strings.Contains(err.Message, tc.wantErr) {
					t.Fatalf("err = %v, want 400/70002 mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(paging{})); diff != "" {
				t.Errorf("paging (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMessageQuery(t *testing.T) {
	d := func(s string) int64 { t, _ := time.Parse("2006-01-02", s); return t.Unix() }
	for _, tc := range []struct {
		query        string
		lo, hi       int64
		hasLo, hasHi bool
		wantErr      bool
	}{
		{query: "DateSent=2024-03-10", lo: d("2024-03-10"), hi: d("2024-03-11"), hasLo: true, hasHi: true},
		{query: "DateSent%3E=2024-03-10T23:59:59Z", lo: d("2024-03-10"), hasLo: true},
		{query: "DateSent>=2024-03-10", lo: d("2024-03-10"), hasLo: true},
		{query: "DateSent%3C=2024-03-10T00:00:00%2B05:00", hi: d("2024-03-11"), hasHi: true},
		{query: "DateSent%3E=Wed,+19+Jun+2019+22:04:00+-0000", lo: d("2019-06-19"), hasLo: true},
		{query: "DateSent%3E=2019-06-11+22:05:25.000", lo: d("2019-06-11"), hasLo: true},
		{query: "DateSent%3E=2024-03-01&DateSent%3C=2024-03-05&DateSent=2024-03-03", lo: d("2024-03-03"), hi: d("2024-03-04"), hasLo: true, hasHi: true},
		{query: "DateSent=2024-13-01", wantErr: true},
		{query: "DateSent=yesterday", wantErr: true},
		{query: "DateSent%3E=2024-03-10T25:00:00Z", wantErr: true},
		{query: "DateSent%3C=", wantErr: true},
		{query: "DateSent%3E=06/11/2019+22:05:25+MST", wantErr: true},
		{query: "PageToken=XX", wantErr: true},
		{query: "PageToken=PA", wantErr: true},
		{query: "PageToken=PAnot-a-sid_1", wantErr: true},
		{query: "PageToken=PA" + msgSID, wantErr: true},
		{query: "PageToken=PA" + msgSID + "_-1", wantErr: true},
		{query: "PageToken=PA" + msgSID + "_01", wantErr: true},
		{query: "PageToken=PA" + strings.ToUpper(msgSID) + "_1", wantErr: true},
		{query: "PageToken=PC" + msgSID + "_1", wantErr: true},
		{query: "PageToken=PA" + msgSID + "_99999999999999999999", wantErr: true},
		{query: "PageToken=PA" + msgSID + "_1"},
		{query: "PageToken=PB" + msgSID + "_1700000000"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, e := parseMessageQuery(q)
			if tc.wantErr {
				if e == nil || e.Status != 400 || e.Code != 70002 {
					t.Fatalf("err = %v, want 400/70002", e)
				}
				return
			}
			if e != nil {
				t.Fatal(e)
			}
			if got.lo != tc.lo || got.hi != tc.hi || got.hasLo != tc.hasLo || got.hasHi != tc.hasHi {
				t.Errorf("range = [%d(%v), %d(%v)), want [%d(%v), %d(%v))", got.lo, got.hasLo, got.hi, got.hasHi, tc.lo, tc.hasLo, tc.hi, tc.hasHi)
			}
		})
	}
}

// TestMalformedRequests sends bad parameters over HTTP and checks Twilio's
// 400 error body.
func TestMalformedRequests(t *testing.T) {
	s := New(Options{ParentSID: testSID, ParentToken: testToken, Now: func() time.Time { return time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC) }})
	base := "/2010-04-01/Accounts/" + testSID
	for _, target := range []string{
		"/2010-04-01/Accounts.json?PageSize=0",
		"/2010-04-01/Accounts.json?Status=paused",
		"/2010-04-01/Accounts.json?PageToken=PAnope",
		"/2010-04-01/Accounts.json?Page=1",
		base + "/Messages.json?PageSize=1001",
		base + "/Messages.json?DateSent=2024-02-30",
		base + "/Messages.json?PageToken=garbage",
		base + "/Usage/Records/Daily.json?StartDate=March",
		base + "/Usage/Records/Daily.json?EndDate=%2B30weeks",
		base + "/Usage/Records/Daily.json?StartDate=1900-01-01",
		base + "/Usage/Records/Today.json?IncludeSubaccounts=maybe",
		base + "/Usage/Records/Today.json?PageToken=PA2024-03-10_calls",
		base + "/Usage/Records/Today.json?PageToken=PAyesterday_sms",
	} {
		t.Run(target, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.SetBasicAuth(testSID, testToken)
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			var body apiError
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if w.Code != 400 || body.Status != 400 || body.Code != 70002 || body.MoreInfo != "https://www.twilio.com/docs/errors/70002" {
				t.Errorf("got %d %+v, want 400 with code 70002", w.Code, body)
			}
		})
	}
}

func TestPreviousPage(t *testing.T) {
	now := time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)
	s := New(Options{ParentSID: testSID, ParentToken: testToken, Now: func() time.Time { return now }})
	if _, err := s.Generate(Traffic{AccountSID: testSID, N: 25, From: now.Add(-time.Hour), To: now}); err != nil {
		t.Fatal(err)
	}
	get := func(target string) messagePage {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.SetBasicAuth(testSID, testToken)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		var p messagePage
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || w.Code != 200 {
			t.Fatalf("%s: %d %s", target, w.Code, w.Body)
		}
		return p
	}
	sids := func(p messagePage) []string {
		var out []string
		for _, m := range p.Messages {
			out = append(out, m.SID)
		}
		return out
	}
	first := get("/2010-04-01/Accounts/" + testSID + "/Messages.json?PageSize=10")
	if first.PreviousPageURI != nil {
		t.Errorf("page 0 previous_page_uri = %s, want null", *first.PreviousPageURI)
	}
	second := get(*first.NextPageURI)
	if second.Page != 1 || second.Start != 10 || second.End != 19 {
		t.Errorf("page 1: page %d start %d end %d", second.Page, second.Start, second.End)
	}
	back := get(*second.PreviousPageURI)
	if diff := cmp.Diff(sids(first), sids(back)); diff != "" {
		t.Errorf("previous of page 1 (-page 0 +got):\n%s", diff)
	}
	third := get(*second.NextPageURI)
	if len(third.Messages) != 5 || third.NextPageURI != nil {
		t.Errorf("last page: %d messages, next %v", len(third.Messages), third.NextPageURI)
	}
}

// FuzzMessageQuery checks that no query makes the parser panic, that what
// it accepts is in range, and that an accepted PageToken round-trips.
func FuzzMessageQuery(f *testing.F) {
	for _, seed := range []string{
		"", "PageSize=1000", "PageSize=0", "Page=1&PageToken=PA" + msgSID + "_1700000000",
		"PageToken=PB" + msgSID + "_0", "DateSent%3E=2024-03-10T00:00:00Z&DateSent%3C=2024-03-11",
		"DateSent=Wed,+19+Jun+2019+22:04:00+-0000", "To=%2B15550001111&From=x", "PageToken=PA_", "%zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		mq, e := parseMessageQuery(q)
		if e != nil {
			if e.Status != 400 || e.Code != 70002 {
				t.Fatalf("error %+v, want 400/70002", e)
			}
			return
		}
		if mq.size < 1 || mq.size > maxPageSize || mq.page < 0 {
			t.Fatalf("accepted size %d page %d", mq.size, mq.page)
		}
		if mq.token != "" && mq.tok.String() != mq.token[:2]+mq.pos.String() {
			t.Fatalf("token %q re-encodes as %q", mq.token, mq.tok.String())
		}
	})
}

// FuzzPageToken checks the token parsers directly: accepted tokens format
// back to themselves.
func FuzzPageToken(f *testing.F) {
	for _, seed := range []string{"PA" + msgSID + "_1", "PB" + msgSID + "_1700000000", "PAAC0123", "PB2024-03-10_sms", "P", "PA", "PAMM_1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, e := parseToken(s)
		if e != nil {
			return
		}
		if tok.String() != s {
			t.Fatalf("token %q formats as %q", s, tok.String())
		}
		if k, ok := parseMsgKey(tok.key); ok && k.String() != tok.key {
			t.Fatalf("message key %q formats as %q", tok.key, k.String())
		}
	})
}
