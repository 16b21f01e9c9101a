package twilioapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/traffic"
)

func TestMessagesQuery(t *testing.T) {
	next := messagesPath(subSID) + "?PageSize=1000&Page=1&PageToken=PASM2"
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			writeJSON(w, 200, messagesPage(next, messageJSON("SM1")))
			return
		}
		writeJSON(w, 200, messagesPage("", messageJSON("SM2")))
	})
	tc := newTestClient(t, srv.URL, nil)
	var pages [][]string
	if err := tc.Messages(context.Background(), subSID, MessageList{}, collect(&pages)); err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if diff := cmp.Diff([][]string{{"SM1"}, {"SM2"}}, pages); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	reqs := srv.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests: got %d, want 2", len(reqs))
	}
	first := reqs[0]
	if first.Method != http.MethodGet || first.Path != messagesPath(subSID) {
		t.Errorf("first request: got %s %s", first.Method, first.Path)
	}
	// No DateSent filter: messages without date_sent are listed whether or
	// not Twilio's filter would list them.
	if got, want := first.RawQuery, "PageSize=1000"; got != want {
		t.Errorf("raw query: got %q, want %q", got, want)
	}
	// The follow-up is next_page_uri exactly as Twilio wrote it.
	if got := reqs[1].Path + "?" + reqs[1].RawQuery; got != next {
		t.Errorf("follow-up: got %q, want %q", got, next)
	}
	if !reqs[1].AuthOK || reqs[1].User != parentSID {
		t.Errorf("follow-up basic auth: got user %q", reqs[1].User)
	}
}

// A small first page (a quiet account) is followed by full pages.
func TestMessagesFirstPageSize(t *testing.T) {
	next := messagesPath(subSID) + "?PageSize=20&Page=1&PageToken=PASM2"
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			writeJSON(w, 200, messagesPage(next, messageJSON("SM1")))
			return
		}
		writeJSON(w, 200, messagesPage("", messageJSON("SM2")))
	})
	tc := newTestClient(t, srv.URL, nil)
	if err := tc.Messages(context.Background(), subSID, MessageList{FirstPage: 20}, collect(new([][]string))); err != nil {
		t.Fatalf("Messages: %v", err)
	}
	reqs := srv.requests()
	if got := reqs[0].Query.Get("PageSize"); got != "20" {
		t.Errorf("first PageSize = %q, want 20", got)
	}
	if got := reqs[1].Query; got.Get("PageSize") != "1000" || got.Get("PageToken") != "PASM2" {
		t.Errorf("follow-up query = %v, want PageSize 1000 and the page token", got)
	}
	for _, bad := range []int{-1, 1001} {
		if err := tc.Messages(context.Background(), subSID, MessageList{FirstPage: bad}, collect(new([][]string))); err == nil {
			t.Errorf("FirstPage %d: no error", bad)
		}
	}
}

func TestMessagesPaging(t *testing.T) {
	uri := func(token string) string { return messagesPath(subSID) + "?PageSize=1000&PageToken=" + token }
	tests := []struct {
		name     string
		maxPages int
		// nextOf gives the next_page_uri of page n (from 0).
		nextOf   func(n int) string
		fn       func(pages int) (bool, error)
		wantErr  error
		wantReqs int
	}{
		{
			name:     "same next_page_uri again",
			nextOf:   func(int) string { return uri("PA1") },
			wantErr:  ErrPageLoop,
			wantReqs: 2,
		},
		{
			name: "cycle through two pages",
			nextOf: func(n int) string {
				if n%2 == 0 {
					return uri("PA1")
				}
				return uri("PA2")
			},
			wantErr:  ErrPageLoop,
			wantReqs: 3,
		},
		{
			name:     "more than MaxPages",
			maxPages: 3,
			nextOf:   func(n int) string { return uri(fmt.Sprint("PA", n+1)) },
			wantErr:  ErrTooManyPages,
			wantReqs: 3,
		},
		{
			name:     "exactly MaxPages",
			maxPages: 3,
			nextOf: func(n int) string {
				if n == 2 {
					return ""
				}
				return uri(fmt.Sprint("PA", n+1))
			},
			wantReqs: 3,
		},
		{
			name:     "fn stops",
			nextOf:   func(n int) string { return uri(fmt.Sprint("PA", n+1)) },
			fn:       func(pages int) (bool, error) { return pages < 2, nil },
			wantReqs: 2,
		},
		{
			name:     "fn fails",
			nextOf:   func(n int) string { return uri(fmt.Sprint("PA", n+1)) },
			fn:       func(int) (bool, error) { return false, errStop },
			wantErr:  errStop,
			wantReqs: 1,
		},
		{
			name:     "next_page_uri is a URL",
			nextOf:   func(int) string { return "https://evil.example/steal" },
			wantErr:  ErrMalformed,
			wantReqs: 1,
		},
		{
			name:     "next_page_uri is scheme-relative",
			nextOf:   func(int) string { return "//evil.example/steal" },
			wantErr:  ErrMalformed,
			wantReqs: 1,
		},
		{
			name:     "next_page_uri does not parse",
			nextOf:   func(int) string { return "/2010-04-01/Accounts%zz.json?PageToken=PA1" },
			wantErr:  ErrMalformed,
			wantReqs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, messagesPage(tt.nextOf(n), messageJSON(fmt.Sprint("SM", n))))
			})
			tc := newTestClient(t, srv.URL, func(c *Config) { c.MaxPages = tt.maxPages })
			pages := 0
			err := tc.Messages(context.Background(), subSID, MessageList{}, func(*Page) (bool, error) {
				pages++
				if tt.fn != nil {
					return tt.fn(pages)
				}
				return true, nil
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Messages: got %v, want %v", err, tt.wantErr)
			}
			if got := len(srv.requests()); got != tt.wantReqs {
				t.Errorf("requests: got %d, want %d", got, tt.wantReqs)
			}
		})
	}
}

var errStop = errors.New("stop here")

func TestMessagesMalformedPages(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // substrings the error must name
	}{
		{"truncated JSON", `{"messages": [{"sid": "SM1", "status": "deliv`, []string{"malformed", "unexpected EOF"}},
		{"not JSON", `<html>ok</html>`, []string{"malformed", "invalid character"}},
		{"messages is not a list", `{"messages": {"sid": "SM1"}}`, []string{"malformed"}},
		{"next_page_uri is a number", `{"next_page_uri": 7, "messages": []}`, []string{"malformed", "next_page_uri"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, tt.body)
			})
			tc := newTestClient(t, srv.URL, nil)
			err := tc.Messages(context.Background(), subSID, MessageList{}, func(p *Page) (bool, error) {
				if len(p.Messages) > 0 {
					t.Error("fn saw messages of a malformed page")
				}
				return true, nil
			})
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Messages: got %v, want ErrMalformed", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if got := len(srv.requests()); got != 1 {
				t.Errorf("requests: got %d, want 1 (malformed answers are not retried)", got)
			}
		})
	}
}

// One message that does not convert is skipped, named, and the rest of its
// page is delivered.
func TestMessagesSkipsBadMessages(t *testing.T) {
	const date = `"date_sent": "Fri, 24 May 2019 17:44:50 +0000"`
	tests := []struct {
		name string
		msg  string
		sid  string
		want []string // substrings the skip's error must name
	}{
		{"sid is a number", `{"sid": 5, ` + date + `}`, "", []string{"sid", "a number"}},
		{"error_code is text", `{"sid": "SMbad", "error_code": "thirty", ` + date + `}`, "SMbad", []string{"SMbad", "error_code", "a string"}},
		{"error_code is an object", `{"sid": "SMbad", "error_code": {}, ` + date + `}`, "SMbad", []string{"error_code", "an object"}},
		{"status is a number", `{"sid": "SMbad", "status": 3, ` + date + `}`, "SMbad", []string{"status", "a number"}},
		{"bad date_sent", `{"sid": "SMbad", "date_sent": "2024-05-01T10:00:00Z"}`, "SMbad", []string{"SMbad", "date_sent", "2024-05-01T10:00:00Z"}},
		{"no dates", `{"sid": "SMbad", "date_sent": null, "date_created": null}`, "SMbad", []string{"date_sent"}},
		{"no sid", `{"sid": null, ` + date + `}`, "", []string{"without sid"}},
		{"bad price", `{"sid": "SMbad", "price": "-0,0075", ` + date + `}`, "SMbad", []string{"SMbad", "price"}},
		{"price is a number", `{"sid": "SMbad", "price": -0.0075, ` + date + `}`, "SMbad", []string{"price", "a number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, messagesPage("", messageJSON("SM1"), tt.msg, messageJSON("SM2")))
			})
			tc := newTestClient(t, srv.URL, nil)
			var got []string
			var skipped []Skipped
			err := tc.Messages(context.Background(), subSID, MessageList{}, func(p *Page) (bool, error) {
				for _, m := range p.Messages {
					got = append(got, m.SID)
				}
				skipped = append(skipped, p.Skipped...)
				return true, nil
			})
			if err != nil {
				t.Fatalf("Messages: %v", err)
			}
			if diff := cmp.Diff([]string{"SM1", "SM2"}, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if len(skipped) != 1 || skipped[0].SID != tt.sid || !errors.Is(skipped[0].Err, ErrMalformed) {
				t.Fatalf("skipped = %+v, want one, SID %q, ErrMalformed", skipped, tt.sid)
			}
			for _, s := range tt.want {
				if !strings.Contains(skipped[0].Err.Error(), s) {
					t.Errorf("skip error %q does not mention %q", skipped[0].Err, s)
				}
			}
		})
	}
}

func TestConvertMessage(t *testing.T) {
	sent := time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)
	created := time.Date(2019, 5, 24, 17, 44, 46, 0, time.UTC)
	const dates = `"date_created": "Fri, 24 May 2019 17:44:46 +0000", "date_sent": "Fri, 24 May 2019 17:44:50 +0000"`
	inbound := func(body string) string {
		return fmt.Sprintf(`{"sid": "SM1", "account_sid": %q, "direction": "inbound", "status": "received", "body": %q, %s}`, subSID, body, dates)
	}
	tests := []struct {
		name string
		json string
		want traffic.Message
	}{
		{
			name: "outbound delivered",
			json: messageJSON("SM1"),
			want: traffic.Message{SID: "SM1", AccountSID: subSID, Direction: traffic.OutboundAPI, Status: "delivered",
				Time: sent, PriceMicros: 7900, MessagingService: true},
		},
		{
			name: "filtered with error code",
			json: `{"sid": "SM2", "direction": "outbound-api", "status": "undelivered", "error_code": 30007, "price": "-0.00750", ` + dates + `}`,
			want: traffic.Message{SID: "SM2", Direction: traffic.OutboundAPI, Status: "undelivered", ErrorCode: 30007,
				Time: sent, PriceMicros: 7500},
		},
		{
			name: "nulls",
			json: `{"sid": "SM3", "account_sid": null, "direction": "outbound-api", "status": "queued", "error_code": null,
				"price": null, "messaging_service_sid": null, "body": null, "date_sent": null, "date_created": "Fri, 24 May 2019 17:44:46 +0000"}`,
			want: traffic.Message{SID: "SM3", Direction: traffic.OutboundAPI, Status: "queued", Time: created},
		},
		{
			name: "empty date_sent and service",
			json: `{"sid": "SM4", "direction": "outbound-api", "status": "failed", "messaging_service_sid": "", "date_sent": "", "date_created": "Fri, 24 May 2019 17:44:46 +0000"}`,
			want: traffic.Message{SID: "SM4", Direction: traffic.OutboundAPI, Status: "failed", Time: created},
		},
		{
			name: "date in another zone becomes UTC",
			json: `{"sid": "SM5", "date_sent": "Fri, 24 May 2019 19:44:50 +0200"}`,
			want: traffic.Message{SID: "SM5", Time: sent},
		},
		{
			name: "GMT zone",
			json: `{"sid": "SM6", "date_sent": "Fri, 24 May 2019 17:44:50 GMT"}`,
			want: traffic.Message{SID: "SM6", Time: sent},
		},
		{
			name: "positive price stays positive",
			json: `{"sid": "SM7", "price": "0.0400", ` + dates + `}`,
			want: traffic.Message{SID: "SM7", Time: sent, PriceMicros: 40000},
		},
		{"stop", inbound("stop"), traffic.Message{SID: "SM1", AccountSID: subSID, Direction: traffic.Inbound, Status: "received", Time: sent, Keyword: traffic.OptOut}},
		{"padded Stop", inbound(" Stop "), traffic.Message{SID: "SM1", AccountSID: subSID, Direction: traffic.Inbound, Status: "received", Time: sent, Keyword: traffic.OptOut}},
		{"Stop please", inbound("Stop please"), traffic.Message{SID: "SM1", AccountSID: subSID, Direction: traffic.Inbound, Status: "received", Time: sent}},
		{"optout", inbound("OPTOUT"), traffic.Message{SID: "SM1", AccountSID: subSID, Direction: traffic.Inbound, Status: "received", Time: sent, Keyword: traffic.OptOut}},
		{"start", inbound("start"), traffic.Message{SID: "SM1", AccountSID: subSID, Direction: traffic.Inbound, Status: "received", Time: sent, Keyword: traffic.OptIn}},
		{
			name: "outbound STOP is not an opt-out",
			json: `{"sid": "SM8", "direction": "outbound-reply", "status": "sent", "body": "STOP", ` + dates + `}`,
			want: traffic.Message{SID: "SM8", Direction: traffic.OutboundReply, Status: "sent", Time: sent},
		},
	}
	cl := traffic.NewClassifier()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw rawMessage
			if err := json.Unmarshal([]byte(tt.json), &raw); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			got, err := convertMessage(&raw, cl, nil)
			if err != nil {
				t.Fatalf("convertMessage: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("convertMessage (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConvertMessageCustomKeyword(t *testing.T) {
	var raw rawMessage
	if err := json.Unmarshal([]byte(`{"sid": "SM1", "direction": "inbound", "date_sent": "Fri, 24 May 2019 17:44:50 +0000", "body": "halt"}`), &raw); err != nil {
		t.Fatal(err)
	}
	got, err := convertMessage(&raw, traffic.NewClassifier("HALT"), nil)
	if err != nil || got.Keyword != traffic.OptOut {
		t.Errorf("convertMessage with custom keyword: got %v, %v; want OptOut", got.Keyword, err)
	}
}

// The other party's number becomes its keyed hash: to for outbound, from
// for inbound. A long body is never a keyword, and is dropped unread.
func TestConvertMessagePeersAndBodies(t *testing.T) {
	peers, err := traffic.NewPeers(make([]byte, traffic.PeerKeySize))
	if err != nil {
		t.Fatal(err)
	}
	decode := func(js string) traffic.Message {
		t.Helper()
		var raw rawMessage
		if err := json.Unmarshal([]byte(js), &raw); err != nil {
			t.Fatal(err)
		}
		m, err := convertMessage(&raw, traffic.NewClassifier(), peers)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	const date = `"date_sent": "Fri, 24 May 2019 17:44:50 +0000"`
	out := decode(`{"sid": "SM1", "direction": "outbound-api", "from": "+15550000001", "to": "+15550000002", ` + date + `}`)
	in := decode(`{"sid": "SM2", "direction": "inbound", "from": "+15550000002", "to": "+15550000001", "body": "STOP", ` + date + `}`)
	if out.Peer == 0 || out.Peer != peers.Hash("+15550000002") || in.Peer != out.Peer {
		t.Errorf("peers: outbound %x, inbound %x; want both the hash of +15550000002", out.Peer, in.Peer)
	}
	long := decode(`{"sid": "SM3", "direction": "inbound", "body": "` + strings.Repeat("STOP ", 40) + `", ` + date + `}`)
	escaped := decode(`{"sid": "SM4", "direction": "inbound", "body": "\u0053TOP", ` + date + `}`)
	if long.Keyword != traffic.NoKeyword || escaped.Keyword != traffic.OptOut {
		t.Errorf("keywords: long body %v, escaped STOP %v; want none and opt-out", long.Keyword, escaped.Keyword)
	}
}

func TestParsePriceMicros(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"", 0, false},
		{"-0.00750", 7500, false},
		{"-0.0075", 7500, false},
		{"0.0075", 7500, false},
		{"+0.0075", 7500, false},
		{"-1", 1000000, false},
		{"-12.5", 12500000, false},
		{"-0.000001", 1, false},
		{"-0.0000004", 0, false},
		{"-0.0000005", 1, false},
		{"-0.12345678", 123457, false},
		{"-.5", 500000, false},
		{"5.", 5000000, false},
		{"999999999999.999999", 999999999999999999, false},
		{"1000000000000", 0, true},
		{"-", 0, true},
		{".", 0, true},
		{"--1", 0, true},
		{"1e-3", 0, true},
		{"0x10", 0, true},
		{"-0,0075", 0, true},
		{" 1", 0, true},
		{"1.2.3", 0, true},
		{"NaN", 0, true},
	}
	for _, tt := range tests {
		got, err := parsePriceMicros(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parsePriceMicros(%q): got %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// FuzzParsePriceMicros checks the parser against big.Rat arithmetic.
func FuzzParsePriceMicros(f *testing.F) {
	for _, s := range []string{"-0.00750", "0", "-12.345678", "-0.0000005", "1.", ".5", "abc", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parsePriceMicros(s)
		if err != nil {
			return
		}
		if got < 0 {
			t.Fatalf("parsePriceMicros(%q) = %d, want >= 0", s, got)
		}
		if s == "" {
			return
		}
		r, ok := new(big.Rat).SetString(strings.TrimLeft(s, "+-"))
		if !ok {
			t.Fatalf("parsePriceMicros(%q) = %d, but it is not a number", s, got)
		}
		// Round half up to millionths.
		r.Mul(r, big.NewRat(1000000, 1))
		r.Add(r, big.NewRat(1, 2))
		want := new(big.Int).Quo(r.Num(), r.Denom())
		if !want.IsInt64() || want.Int64() != got {
			t.Fatalf("parsePriceMicros(%q) = %d, want %s", s, got, want)
		}
	})
}

// FuzzConvertMessage feeds arbitrary JSON through the page decoding and
// conversion path. Whatever comes in, conversion either fails with
// ErrMalformed or yields a message with a SID, a UTC time and a
// non-negative price.
func FuzzConvertMessage(f *testing.F) {
	f.Add(messagesPage("", messageJSON("SM1")))
	f.Add(messagesPage("/next", `{"sid": "SM2", "direction": "inbound", "body": " Stop ", "date_sent": null, "date_created": "Fri, 24 May 2019 17:44:46 +0000"}`))
	f.Add(`{"messages": [{"sid": "SM3", "price": "-0.0000005", "error_code": 30007, "date_sent": "Mon, 02 Jan 2006 15:04:05 -0700"}]}`)
	f.Add(`{"messages": [{"sid": "", "date_sent": "x"}]}`)
	f.Add(`{"messages": [{"sid": 1}]}`)
	f.Add(`{"messages": [{"sid": "SM4", "error_code": {}, "status": 7, "body": [1]}]}`)
	cl := traffic.NewClassifier()
	peers, _ := traffic.NewPeers(make([]byte, traffic.PeerKeySize))
	f.Fuzz(func(t *testing.T, body string) {
		var page messagePage
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			return
		}
		for i := range page.Messages {
			m, err := convertMessage(&page.Messages[i], cl, peers)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("convertMessage: error %v does not wrap ErrMalformed", err)
				}
				continue
			}
			if m.SID == "" || m.Time.IsZero() || m.Time.Location() != time.UTC || m.PriceMicros < 0 {
				t.Fatalf("convertMessage: got %+v", m)
			}
			if m.Direction != traffic.Inbound && m.Keyword != traffic.NoKeyword {
				t.Fatalf("convertMessage: keyword %v on a %q message", m.Keyword, m.Direction)
			}
		}
	})
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time // zero for an error
	}{
		{"Fri, 24 May 2019 17:44:50 +0000", time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)},
		{"Fri, 24 May 2019 19:44:50 +0200", time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)},
		{"Fri, 24 May 2019 12:14:50 -0530", time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)},
		{"Thu, 29 Feb 2024 00:00:00 +0000", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"Mon, 01 Jan 0001 00:00:01 +0000", time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)},
		{"Sat, 31 Dec 9999 23:59:59 -2359", time.Date(10000, 1, 1, 23, 58, 59, 0, time.UTC)},
		// time.Parse ignores the weekday.
		{"Mon, 24 May 2019 17:44:50 +0000", time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)},
		// Left to time.Parse, which accepts them.
		{"Fri, 24 May 2019 17:44:50 GMT", time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)},
		{"fri, 24 may 2019 17:44:50 +0000", time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)},
		{"Fri, 24 May 2019 17:44:50.5 +0000", time.Date(2019, 5, 24, 17, 44, 50, 5e8, time.UTC)},
		{"Fri,  24 May 2019 17:44:50 +0000", time.Date(2019, 5, 24, 17, 44, 50, 0, time.UTC)},
		{"Fri, 24 May 2019 7:44:50 +0000", time.Date(2019, 5, 24, 7, 44, 50, 0, time.UTC)},
		{"Fri, 24 May 2019 17:44:50 +2400", time.Date(2019, 5, 23, 17, 44, 50, 0, time.UTC)},
		// Errors.
		{"", time.Time{}},
		{"Mon, 01 Jan 0001 00:00:00 +0000", time.Time{}},
		{"Fri, 29 Feb 2019 17:44:50 +0000", time.Time{}},
		{"Fri, 31 Apr 2019 17:44:50 +0000", time.Time{}},
		{"Fri, 00 May 2019 17:44:50 +0000", time.Time{}},
		{"Fri, 24 May 2019 24:00:00 +0000", time.Time{}},
		{"Fri, 24 May 2019 17:60:50 +0000", time.Time{}},
		{"Fri, 24 May 2019 17:44:60 +0000", time.Time{}},
		{"Fri, 24 Mai 2019 17:44:50 +0000", time.Time{}},
		{"Fre, 24 May 2019 17:44:50 +0000", time.Time{}},
		{"Fri, 24 May 2019 17:44:50 *0000", time.Time{}},
		{"Fri, 24 May 2019 17:44:50 +00x0", time.Time{}},
		{"Fri, 24 May 20x9 17:44:50 +0000", time.Time{}},
		{"2019-05-24T17:44:50Z", time.Time{}},
	}
	for _, tt := range tests {
		got, err := parseDate(tt.in)
		if tt.want.IsZero() {
			if err == nil {
				t.Errorf("parseDate(%q): got %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseDate(%q): got %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestParseDateSweep compares parseDate with time.Parse on every day of
// spans that hold leap days, century and era boundaries, at several times
// and offsets.
func TestParseDateSweep(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("", -(23*3600 + 59*60)), time.FixedZone("", 5*3600+30*60), time.FixedZone("", -1)}
	spans := [][2]int{{0, 2}, {99, 101}, {399, 401}, {1899, 1901}, {1968, 2110}, {9998, 9999}}
	for _, span := range spans {
		for d := time.Date(span[0], 1, 1, 0, 0, 0, 0, time.UTC); d.Year() <= span[1]; d = d.AddDate(0, 0, 1) {
			for i, loc := range zones {
				at := time.Date(d.Year(), d.Month(), d.Day(), 23*(i%2), 59*(i%2), 59*(i%2), 0, loc)
				s := at.Format(time.RFC1123Z)
				got, err := parseDate(s)
				want, wantErr := parseDateSlow(s)
				if (err != nil) != (wantErr != nil) || got != want {
					t.Fatalf("parseDate(%q) = %v, %v; time.Parse gives %v, %v", s, got, err, want, wantErr)
				}
			}
		}
	}
}

// FuzzParseDate checks that parseDate, whose fast path parses Twilio's own
// form by hand, agrees with time.Parse (parseDateSlow) on any input: the same
// time, location included, or an error from both.
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{
		"Fri, 24 May 2019 17:44:50 +0000", "Thu, 29 Feb 2024 23:59:59 -1130", "Sun, 29 Feb 2100 00:00:00 +0000",
		"Mon, 01 Jan 0001 00:00:00 +0000", "Mon, 01 Jan 0001 00:00:00 -0001", "Fri, 24 May 2019 17:44:50 GMT",
		"Fri, 24 May 2019 17:44:50 +2460", "Fri, 31 Dec 9999 23:59:59 -2359", "Fri, 24 May 2019 17:44:50.123 +0000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseDate(s)
		want, wantErr := parseDateSlow(s)
		if (err != nil) != (wantErr != nil) || got != want {
			t.Fatalf("parseDate(%q) = %v, %v; time.Parse gives %v, %v", s, got, err, want, wantErr)
		}
	})
}

// FuzzParseDateInstants formats instants and offsets the way Twilio does,
// which exercises the fast path far more than FuzzParseDate's mutations of
// strings, and checks it against time.Parse and the instant itself.
func FuzzParseDateInstants(f *testing.F) {
	f.Add(int64(1558719890), int16(0))
	f.Add(int64(-62135596800), int16(0))
	f.Add(int64(-62135596801), int16(-1))
	f.Add(int64(253402300799), int16(1439))
	f.Add(int64(951782400), int16(-330))
	f.Fuzz(func(t *testing.T, sec int64, offMin int16) {
		at := time.Unix(sec, 0).In(time.FixedZone("", int(offMin)*60))
		s := at.Format(time.RFC1123Z)
		got, err := parseDate(s)
		want, wantErr := parseDateSlow(s)
		if (err != nil) != (wantErr != nil) || got != want {
			t.Fatalf("parseDate(%q) = %v, %v; time.Parse gives %v, %v", s, got, err, want, wantErr)
		}
		if err == nil && len(s) == len(time.RFC1123Z) && !got.Equal(at) {
			t.Fatalf("parseDate(%q) = %v, want %v", s, got, at)
		}
	})
}

func BenchmarkParseDate(b *testing.B) {
	const s = "Fri, 24 May 2019 17:44:50 +0000"
	b.Run("Fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseDate(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("TimeParse", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseDateSlow(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
