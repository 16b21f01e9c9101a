package ingest

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

const (
	parentSID   = "ACffffffffffffffffffffffffffffffff"
	parentToken = "parent-token-0123456789abcdef0123"
	subSID      = acctA
	subToken    = "sub-token-0123456789abcdef01234567"
	publicURL   = "https://sentinel.example.net/hooks"
)

type env struct {
	t       *testing.T
	st      *store.Store
	srv     *Server
	h       http.Handler
	reg     *prometheus.Registry
	mu      sync.Mutex
	stored  []map[string]time.Time
	streams []bool // Stored's stream, call by call
	fetches int
	token   string // what Twilio answers for the subaccount's token
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvAt(t, filepath.Join(t.TempDir(), "s.db"))
}

// newEnvAt is newEnv with its store at path.
func newEnvAt(t *testing.T, path string) *env {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, reg: prometheus.NewRegistry(), token: subToken}
	known := map[string]bool{parentSID: true, subSID: true}
	e.srv, err = New(Config{
		Username: "twilio", Password: "s3cret-events",
		URL: publicURL, Parent: parentSID, Token: parentToken,
		SubaccountToken: func(ctx context.Context, sid string) (string, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.fetches++
			return e.token, nil
		},
		Known:   func(sid string) (bool, error) { return known[sid], nil },
		Store:   st,
		Decoder: decoder(t),
		Stored: func(accts map[string]time.Time, stream bool) {
			e.mu.Lock()
			e.stored = append(e.stored, accts)
			e.streams = append(e.streams, stream)
			e.mu.Unlock()
		},
		Registerer: e.reg,
		Log:        slog.New(slog.DiscardHandler),
		Now:        func() time.Time { return received },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = e.srv.Handler()
	return e
}

func (e *env) post(path, body string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func basic(user, pass string) http.Header {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.SetBasicAuth(user, pass)
	return http.Header{"Authorization": r.Header["Authorization"], "Content-Type": {"application/json"}}
}

// sign is Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL and the
// form's parameters sorted by name, each name followed by its value.
func sign(token, u string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		u += k + form.Get(k)
	}
	h := hmac.New(sha1.New, []byte(token))
	h.Write([]byte(u))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func (e *env) stored1(sid string) traffic.Message {
	e.t.Helper()
	m, err := e.st.Message(acctA, sid)
	if err != nil {
		e.t.Fatalf("message %s: %v", sid, err)
	}
	return m
}

func (e *env) count(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := true
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				ok = ok && found
			}
			if ok {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestEventsEndpoint(t *testing.T) {
	e := newEnv(t)
	auth := basic("twilio", "s3cret-events")
	delivered := ce("EZ2", "com.twilio.messaging.message.delivered", outboundData("delivered", "null"))
	sent := ce("EZ1", "com.twilio.messaging.message.sent", strings.Replace(outboundData("sent", "null"), "10:00:01.250", "10:00:00.100", 1))

	// Out of order, with a retry of the first in the same batch.
	if w := e.post(EventsPath, "["+delivered+","+sent+","+delivered+"]", auth); w.Code != http.StatusOK {
		t.Fatalf("batch: %d %s", w.Code, w.Body)
	}
	if m := e.stored1(msgA); m.Status != "delivered" {
		t.Errorf("after delivered then an older sent: %s", m.Status)
	}
	if n := e.count("sentinel_events_duplicate_total"); n != 1 {
		t.Errorf("duplicates = %v, want 1", n)
	}
	if len(e.streams) != 1 || !e.streams[0] {
		t.Errorf("Stored told stream %v, want the Event Streams request counted as the stream", e.streams)
	}
	if len(e.stored) != 1 || e.stored[0][acctA].IsZero() {
		t.Errorf("Stored told %v, want the account with its latest event's time", e.stored)
	}
	// The same batch again, as Twilio retries: nothing new, Stored not told.
	if w := e.post(EventsPath, "["+delivered+","+sent+"]", auth); w.Code != http.StatusOK || len(e.stored) != 1 {
		t.Errorf("retried batch: %d; Stored told %d times", w.Code, len(e.stored))
	}

	before, _ := e.st.Buckets(acctA, received.Add(-time.Hour), received.Add(time.Hour))
	for _, tc := range []struct {
		name   string
		body   string
		header http.Header
		code   int
		reason string
	}{
		{"no credentials", delivered, http.Header{}, http.StatusUnauthorized, "unauthorized"},
		{"wrong password", delivered, basic("twilio", "guess"), http.StatusUnauthorized, "unauthorized"},
		{"wrong user", delivered, basic("root", "s3cret-events"), http.StatusUnauthorized, "unauthorized"},
		{"malformed", `[{"specversion":"1.0","id":"EZ9"`, auth, http.StatusBadRequest, "malformed"},
		{"too large", "[" + strings.Repeat(" ", MaxBody) + "]", auth, http.StatusRequestEntityTooLarge, "too_large"},
		{"forged signature", ce("EZ7", "com.twilio.messaging.message.failed", outboundData("failed", "30007")),
			func() http.Header {
				h := basic("twilio", "s3cret-events")
				h.Set("X-Twilio-Signature", "Zm9yZ2Vk")
				return h
			}(),
			http.StatusForbidden, "bad_signature"},
	} {
		w := e.post(EventsPath, tc.body, tc.header)
		if w.Code != tc.code || strings.Contains(w.Body.String(), "s3cret") {
			t.Errorf("%s: %d %q, want %d", tc.name, w.Code, w.Body, tc.code)
		}
		if tc.code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", tc.name)
		}
		if n := e.count("sentinel_events_rejected_total", "reason", tc.reason); n < 1 {
			t.Errorf("%s: rejected{reason=%q} = %v", tc.name, tc.reason, n)
		}
	}
	after, _ := e.st.Buckets(acctA, received.Add(-time.Hour), received.Add(time.Hour))
	if !reflect.DeepEqual(before, after) {
		t.Errorf("a refused request changed the store: %+v -> %+v", before, after)
	}

	// A signature Twilio made: over the URL, the body's hash in its query.
	body := ce("EZ8", "com.twilio.messaging.message.failed", outboundData("failed", "30007"))
	sum := sha256.Sum256([]byte(body))
	q := "bodySHA256=" + fmt.Sprintf("%x", sum)
	h := basic("twilio", "s3cret-events")
	h.Set("X-Twilio-Signature", sign(parentToken, publicURL+EventsPath+"?"+q, nil))
	if w := e.post(EventsPath+"?"+q, body, h); w.Code != http.StatusOK {
		t.Errorf("signed batch: %d %s", w.Code, w.Body)
	}
	if m := e.stored1(msgA); m.Status != "failed" || m.ErrorCode != 30007 {
		t.Errorf("after the failure: %+v", m)
	}
	// The same signature with another body.
	if w := e.post(EventsPath+"?"+q, strings.Replace(body, "EZ8", "EZ9", 1), h); w.Code != http.StatusForbidden {
		t.Errorf("signature of another body: %d", w.Code)
	}
	// An account not of this fleet: acknowledged, not stored.
	other := strings.ReplaceAll(ce("EZ10", "com.twilio.messaging.message.sent", outboundData("sent", "null")), acctA, "AC"+strings.Repeat("1", 32))
	if w := e.post(EventsPath, other, auth); w.Code != http.StatusOK || e.count("sentinel_events_ignored_total", "reason", "unknown_account") != 1 {
		t.Errorf("unknown account: %d", w.Code)
	}
	if n := testutil.ToFloat64(e.srv.m.stored.WithLabelValues("new")); n != 1 {
		t.Errorf("stored{result=new} = %v, want 1 (one message)", n)
	}
}

func TestStatusEndpoint(t *testing.T) {
	e := newEnv(t)
	form := url.Values{"MessageSid": {msgA}, "AccountSid": {subSID}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30007"},
		"To": {"+12025550123"}, "From": {"+15550001000"}}
	post := func(form url.Values, sig string) int {
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		if sig != "" {
			h.Set("X-Twilio-Signature", sig)
		}
		return e.post(StatusPath, form.Encode(), h).Code
	}
	// Signed with the parent's token: not the subaccount's.
	if code := post(form, sign(parentToken, publicURL+StatusPath, form)); code != http.StatusForbidden {
		t.Errorf("signed with another account's token: %d", code)
	}
	if code := post(form, ""); code != http.StatusForbidden {
		t.Errorf("unsigned: %d", code)
	}
	if _, err := e.st.Message(acctA, msgA); err == nil {
		t.Fatal("a refused callback was stored")
	}
	// Signed by the subaccount, about a message sentinel has never seen:
	// acknowledged, not stored (its owner could invent messages).
	if code := post(form, sign(subToken, publicURL+StatusPath, form)); code != http.StatusOK {
		t.Fatalf("signed with the subaccount's token: %d", code)
	}
	if _, err := e.st.Message(acctA, msgA); err == nil {
		t.Fatal("a subaccount's callback about an unknown message was stored")
	}
	if n := e.count("sentinel_events_ignored_total", "reason", "unknown_message"); n != 1 {
		t.Errorf("ignored unknown_message = %v, want 1", n)
	}
	// Once a poll has read the message, the callback moves it along.
	if _, err := e.st.PutMessages(acctA, []traffic.Message{{SID: msgA, AccountSID: acctA, Direction: traffic.OutboundAPI,
		Status: "sent", Time: received.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if code := post(form, sign(subToken, publicURL+StatusPath, form)); code != http.StatusOK {
		t.Fatalf("signed with the subaccount's token: %d", code)
	}
	if n := len(e.streams); n == 0 || e.streams[n-1] {
		t.Errorf("Stored told stream %v after a status callback, want false: callbacks are not the stream", e.streams)
	}
	if m := e.stored1(msgA); m.Status != "undelivered" || m.ErrorCode != 30007 {
		t.Errorf("stored: %+v", m)
	}
	if e.fetches != 1 {
		t.Errorf("the token was read %d times; want once, then held", e.fetches)
	}
	// The token is rotated: a callback signed with the new one validates
	// after one more read.
	e.mu.Lock()
	e.token = "rotated-token-0123456789abcdef0123"
	e.mu.Unlock()
	form.Set("MessageStatus", "failed")
	e.srv.mu.Lock()
	tk := e.srv.tokens[subSID]
	tk.at = tk.at.Add(-2 * tokenRefresh)
	e.srv.tokens[subSID] = tk
	e.srv.mu.Unlock()
	if code := post(form, sign("rotated-token-0123456789abcdef0123", publicURL+StatusPath, form)); code != http.StatusOK || e.fetches != 2 {
		t.Errorf("after a rotation: %d, %d reads", code, e.fetches)
	}
	// Forged signatures do not make sentinel read the token again and again.
	for range 5 {
		post(form, "Zm9yZ2Vk")
	}
	if e.fetches != 2 {
		t.Errorf("forged callbacks made %d token reads", e.fetches-2)
	}
	// An account not of this fleet is refused without asking Twilio.
	form.Set("AccountSid", "AC"+strings.Repeat("2", 32))
	if code := post(form, sign(subToken, publicURL+StatusPath, form)); code != http.StatusForbidden || e.fetches != 2 {
		t.Errorf("unknown account: %d, %d reads", code, e.fetches)
	}
	// The parent's own callbacks are the parent's evidence: a new message
	// is stored.
	pform := url.Values{"MessageSid": {"SM" + strings.Repeat("9", 32)}, "AccountSid": {parentSID}, "MessageStatus": {"sent"},
		"To": {"+12025550123"}, "From": {"+15550001000"}}
	if code := post(pform, sign(parentToken, publicURL+StatusPath, pform)); code != http.StatusOK {
		t.Errorf("parent's callback: %d", code)
	}
	if _, err := e.st.Message(parentSID, pform.Get("MessageSid")); err != nil {
		t.Errorf("parent's callback not stored: %v", err)
	}
	if code := e.post(StatusPath, "%zz", http.Header{"X-Twilio-Signature": {"x"}}).Code; code != http.StatusBadRequest {
		t.Errorf("not a form: %d", code)
	}
}

// A subaccount's own sink presents credentials of its own: they vouch for
// that subaccount's events alone, and those move only messages sentinel
// knows along (its owner can read the sink, credentials included).
func TestSubaccountSink(t *testing.T) {
	e := newEnv(t)
	own := basic(subSID, SubaccountPassword("s3cret-events", subSID))
	failed := ce("EZ5", "com.twilio.messaging.message.failed", outboundData("failed", "30007"))

	// A message sentinel has not seen: acknowledged, not stored.
	if w := e.post(EventsPath, "["+failed+"]", own); w.Code != http.StatusOK {
		t.Fatalf("own event: %d %s", w.Code, w.Body)
	}
	if _, err := e.st.Message(acctA, msgA); err == nil {
		t.Fatal("a subaccount's own sink created a message")
	}
	if n := e.count("sentinel_events_ignored_total", "reason", "unknown_message"); n != 1 {
		t.Errorf("ignored unknown_message = %v, want 1", n)
	}
	// Once polled, its receipt is taken.
	if _, err := e.st.PutMessages(acctA, []traffic.Message{{SID: msgA, AccountSID: acctA, Direction: traffic.OutboundAPI,
		Status: "sent", Time: received.Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if w := e.post(EventsPath, "["+failed+"]", own); w.Code != http.StatusOK {
		t.Fatalf("own event of a known message: %d %s", w.Code, w.Body)
	}
	if m := e.stored1(msgA); m.Status != "failed" || m.ErrorCode != 30007 {
		t.Errorf("after its receipt: %+v", m)
	}
	if n := len(e.streams); n == 0 || e.streams[n-1] {
		t.Errorf("Stored told stream %v after a subaccount's own sink, want false", e.streams)
	}
	// Another account's event through a subaccount's credentials: refused
	// whole, nothing stored.
	other := strings.ReplaceAll(ce("EZ6", "com.twilio.messaging.message.failed", outboundData("failed", "30007")), acctA, parentSID)
	if w := e.post(EventsPath, "["+other+"]", own); w.Code != http.StatusForbidden {
		t.Errorf("another account's event: %d, want 403", w.Code)
	}
	if _, err := e.st.Message(parentSID, msgA); err == nil {
		t.Error("a subaccount's sink stored another account's message")
	}
	// The parent's SID, a wrong derivation, or another subaccount's
	// password: 401.
	for _, h := range []http.Header{
		basic(parentSID, SubaccountPassword("s3cret-events", parentSID)),
		basic(subSID, SubaccountPassword("other-password", subSID)),
		basic(subSID, SubaccountPassword("s3cret-events", "AC"+strings.Repeat("1", 32))),
	} {
		if w := e.post(EventsPath, "["+failed+"]", h); w.Code != http.StatusUnauthorized {
			t.Errorf("credentials %v: %d, want 401", h, w.Code)
		}
	}
}

// When the account list cannot be read, nothing is stored and Twilio is
// asked to send the request again (503), rather than the events being
// acknowledged and dropped as another fleet's.
func TestKnownFails(t *testing.T) {
	e := newEnv(t)
	e.srv.cfg.Known = func(string) (bool, error) { return false, errors.New("store: disk on fire") }
	delivered := ce("EZ2", "com.twilio.messaging.message.delivered", outboundData("delivered", "null"))
	if w := e.post(EventsPath, "["+delivered+"]", basic("twilio", "s3cret-events")); w.Code != http.StatusServiceUnavailable {
		t.Errorf("events: %d, want 503", w.Code)
	}
	form := url.Values{"MessageSid": {msgA}, "AccountSid": {subSID}, "MessageStatus": {"failed"}, "ErrorCode": {"30007"}}
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {sign(subToken, publicURL+StatusPath, form)}}
	if w := e.post(StatusPath, form.Encode(), h); w.Code != http.StatusServiceUnavailable {
		t.Errorf("status callback: %d, want 503", w.Code)
	}
	if _, err := e.st.Message(acctA, msgA); err == nil {
		t.Error("stored while the account list could not be read")
	}
}
