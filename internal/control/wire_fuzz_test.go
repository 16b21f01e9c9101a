package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/actions"
	"sentinel/internal/control"
	"sentinel/internal/store"
)

// fuzzActions is an Actions that is never asked anything by the history
// endpoint; the manual ones succeed.
type fuzzActions struct{}

func (fuzzActions) Reinstate(context.Context, string, string, string) error { return nil }
func (fuzzActions) Suspend(context.Context, string, string, string) error   { return nil }
func (fuzzActions) Status(context.Context) ([]actions.StatusRow, error)     { return nil, nil }

var fuzzSIDPattern = regexp.MustCompile(`^AC[0-9a-f]{32}$`)

// FuzzHistoryQuery sends GET /history with an arbitrary query. Whatever
// the sid parameter says once trimmed, the answer is 400 for what is not
// an account SID, 200 for the account the store knows and 404 for another,
// always with a JSON body. A second endpoint over a closed store answers
// the same 400s: what is not a SID never reaches the store (a read would
// fail there with 502).
func FuzzHistoryQuery(f *testing.F) {
	known := "AC" + strings.Repeat("b", 32)
	for _, q := range []string{
		"sid=" + known, "sid=AC" + strings.Repeat("e", 32), "sid=%20" + known + "%0A", "", "sid=", "sid=%20",
		"sid=acme", "sid=AC" + strings.Repeat("B", 32), "sid=ac" + strings.Repeat("b", 32), "sid=" + known + "0",
		"sid=" + known + "&sid=acme", "sid=acme&sid=" + known, "sid=%zz", "sid=" + known + "%00", "sid=AC1",
		"sid=..%2F..%2Fmeta", "sid=" + strings.Repeat("A", 300), "SID=" + known, "sid;=" + known, "sid=AC%2B" + strings.Repeat("b", 31),
	} {
		f.Add(q)
	}
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	open := func(name string) *store.Store {
		st, err := store.Open(filepath.Join(f.TempDir(), name), store.Options{})
		if err != nil {
			f.Fatal(err)
		}
		return st
	}
	st := open("sentinel.db")
	f.Cleanup(func() { st.Close() })
	if _, err := st.SyncAccounts([]store.Account{{SID: known, FriendlyName: "acme", Status: "active"}}, at); err != nil {
		f.Fatal(err)
	}
	closed := open("closed.db")
	if err := closed.Close(); err != nil {
		f.Fatal(err)
	}
	handler := func(st *store.Store) http.Handler {
		srv, err := control.New(control.Socket{Path: filepath.Join(f.TempDir(), "s.sock")}, fuzzActions{}, st, nil, func() time.Time { return at })
		if err != nil {
			f.Fatal(err)
		}
		return srv.Handler()
	}
	h, hClosed := handler(st), handler(closed)
	get := func(h http.Handler, rawQuery string) *httptest.ResponseRecorder {
		// Built by hand: httptest.NewRequest refuses what a client may
		// still send.
		r := (&http.Request{
			Method: http.MethodGet, URL: &url.URL{Path: "/history", RawQuery: rawQuery},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Body: http.NoBody,
			Host: "sentinel", RequestURI: "/history?" + rawQuery,
		}).WithContext(context.Background())
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, control.WithCaller(r, control.Cred{UID: uint32(os.Getuid())}))
		return rec
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		sid := strings.TrimSpace((&url.URL{RawQuery: rawQuery}).Query().Get("sid"))
		rec := get(h, rawQuery)
		want := http.StatusBadRequest
		switch {
		case sid == known:
			want = http.StatusOK
		case fuzzSIDPattern.MatchString(sid):
			want = http.StatusNotFound
		}
		if rec.Code != want {
			t.Fatalf("GET /history?%s (sid %q) = %d %s, want %d", rawQuery, sid, rec.Code, rec.Body, want)
		}
		if want == http.StatusOK {
			var h []actions.HistoryEntry
			if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
				t.Fatalf("GET /history?%s: %v in %s", rawQuery, err, rec.Body)
			}
			return
		}
		var r struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Error == "" {
			t.Fatalf("GET /history?%s = %d %s: no JSON error (%v)", rawQuery, rec.Code, rec.Body, err)
		}
		if want == http.StatusBadRequest {
			if rec := get(hClosed, rawQuery); rec.Code != http.StatusBadRequest {
				t.Fatalf("GET /history?%s over a closed store = %d %s: sid %q reached the store", rawQuery, rec.Code, rec.Body, sid)
			}
		}
	})
}

// reply is what the fake daemon of FuzzClientReply answers.
type reply struct {
	status int
	body   string
}

// FuzzClientReply has the CLI's control client read arbitrary answers from
// a daemon. It never panics; a 2xx is never a daemon error and decodes or
// says it could not; any other status is a *control.Error with that status,
// that matches the error the CLI branches on, and whose message is the
// daemon's error text, or when there is none, the status and at most 200
// bytes of the body.
func FuzzClientReply(f *testing.F) {
	sid := "AC" + strings.Repeat("b", 32)
	for _, r := range []reply{
		{200, `[{"at":"2026-03-02T11:00:00Z","kind":"incident","rule":"carrier-filtering","state":"suspended"}]`},
		{200, `[]`},
		{200, `null`},
		{200, `{"message":"` + sid + ` reinstated"}`},
		{200, `[{"at":"yesterday"}]`},
		{200, ``},
		{204, ``},
		{400, `{"error":"missing sid"}`},
		{404, `{"error":"account ` + sid + `: not found"}` + "\n"},
		{409, `{"error":"refused: ` + sid + ` is the parent account"}`},
		{409, `{"error":""}`},
		{500, `{"error":"store: database not open"}`},
		{502, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>502 Bad Gateway</body>\r\n</html>\r\n"},
		{404, "404 page not found\n"},
		{405, "Method Not Allowed\n"},
		{400, `{"error":42}`},
		{503, strings.Repeat("é", 150)},
	} {
		f.Add(uint16(r.status-200), r.body)
	}

	dir, err := os.MkdirTemp("", "ctlfz") // unix socket paths are short
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	var mu sync.Mutex
	var ans reply
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		a := ans
		mu.Unlock()
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	f.Cleanup(func() { srv.Close(); <-done })
	c, err := control.Dial(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })

	f.Fuzz(func(t *testing.T, s uint16, body string) {
		status := 200 + int(s)%400
		mu.Lock()
		ans = reply{status, body}
		mu.Unlock()
		sent := body
		if status == http.StatusNoContent || status == http.StatusNotModified {
			sent = "" // a server sends no body with these
		}
		ctx := context.Background()
		h, herr := c.History(ctx, sid)
		rerr := c.Reinstate(ctx, sid, "fuzz", "fuzzing")

		if status/100 == 2 {
			var ce *control.Error
			if errors.As(herr, &ce) || errors.As(rerr, &ce) {
				t.Fatalf("HTTP %d is a daemon error: %v", status, ce)
			}
			if rerr != nil {
				t.Fatalf("HTTP %d: reinstate: %v", status, rerr)
			}
			var want []actions.HistoryEntry
			if err := json.Unmarshal([]byte(sent), &want); err != nil {
				if herr == nil || !strings.Contains(herr.Error(), "decode reply") {
					t.Fatalf("HTTP %d %q: history %v, want a decoding error", status, sent, herr)
				}
				return
			}
			if herr != nil {
				t.Fatalf("HTTP %d %q: %v", status, sent, herr)
			}
			if diff := cmp.Diff(want, h); diff != "" {
				t.Fatalf("HTTP %d: history (-want +got):\n%s", status, diff)
			}
			return
		}

		var daemon struct {
			Error string `json:"error"`
		}
		own := json.Unmarshal([]byte(sent), &daemon) == nil && daemon.Error != ""
		prefix := fmt.Sprintf("HTTP %d: ", status)
		for _, err := range []error{herr, rerr} {
			var ce *control.Error
			if !errors.As(err, &ce) {
				t.Fatalf("HTTP %d: %v (%T) is not a *control.Error", status, err, err)
			}
			if ce.Status != status || ce.Error() != "daemon: "+ce.Message {
				t.Fatalf("HTTP %d: error %+v", status, ce)
			}
			switch {
			case own:
				if ce.Message != daemon.Error {
					t.Fatalf("HTTP %d: message %q, want the daemon's %q", status, ce.Message, daemon.Error)
				}
			case !strings.HasPrefix(ce.Message+" ", prefix) || len(ce.Message) > len(prefix)+200:
				t.Fatalf("HTTP %d %q: message %q, want %q and at most 200 bytes", status, sent, ce.Message, prefix)
			}
			for code, target := range map[int]error{
				http.StatusBadRequest: actions.ErrInvalid, http.StatusNotFound: actions.ErrUnknownAccount, http.StatusConflict: actions.ErrRefused,
			} {
				if errors.Is(err, target) != (status == code) {
					t.Fatalf("HTTP %d: errors.Is(%v, %v) = %v", status, err, target, !(status == code))
				}
			}
		}
		if h != nil {
			t.Fatalf("HTTP %d: history %v with an error", status, h)
		}
	})
}
