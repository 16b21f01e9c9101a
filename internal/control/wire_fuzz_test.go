package control_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
		srv, err := control.New(filepath.Join(f.TempDir(), "s.sock"), fuzzActions{}, st, nil, func() time.Time { return at })
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
		h.ServeHTTP(rec, r)
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
