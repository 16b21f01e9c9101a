package poller

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sentinel/internal/twiliofake"
)

// rewriting wraps the fake so that every message list it serves has old
// replaced by new: a way to make Twilio say what the fake will not.
func rewriting(old, new string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if strings.HasSuffix(r.URL.Path, "/Messages.json") {
				body = bytes.ReplaceAll(body, []byte(old), []byte(new))
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

// One message that does not decode is skipped, counted and logged once by
// SID; the rest of its page is stored and the account's coverage advances.
func TestUndecodableMessageSkipped(t *testing.T) {
	e := newEnv(t, envOptions{handler: rewriting(`"price":"-0.01234"`, `"price":{"amount":"-0.01234"}`)})
	sub := e.addSub("")
	e.generate(sub, 50, t0.Add(-2*time.Hour), t0.Add(-time.Minute))
	bad := e.append(twiliofake.Message{AccountSID: sub, Status: "delivered", DateSent: t0.Add(-30 * time.Minute), Price: "-0.01234"})[0]
	e.mustSucceed()
	e.clock.Advance(time.Minute)
	e.mustSucceed() // read again: counted again, logged once

	if got := e.sum(sub).Outbound + e.sum(sub).Inbound; got != 50 {
		t.Errorf("stored %d messages, want the 50 that decode", got)
	}
	if cov := e.coverage(sub); !cov.Until.Equal(e.clock.Now()) {
		t.Errorf("coverage ends %v, want %v: one bad message blinded the account", cov.Until, e.clock.Now())
	}
	if n := e.metric("sentinel_messages_undecodable_total", nil); n != 2 {
		t.Errorf("undecodable metric = %v, want 2 (two reads)", n)
	}
	if n := strings.Count(e.logs.String(), "message skipped"); n != 1 || !strings.Contains(e.logs.String(), "message="+bad) {
		t.Errorf("the bad message is logged %d times, want once, by SID %s:\n%s", n, bad, e.logs.String())
	}
}

// A status Twilio does not document is counted apart, in its own metric,
// logged once per status, and in no rate.
func TestUnknownStatusCountedApart(t *testing.T) {
	e := newEnv(t, envOptions{handler: rewriting(`"status":"read"`, `"status":"pending_review"`)})
	sub := e.addSub("")
	e.append(
		twiliofake.Message{AccountSID: sub, Status: "read", DateSent: t0.Add(-30 * time.Minute), ErrorCode: 30007},
		twiliofake.Message{AccountSID: sub, Status: "read", DateSent: t0.Add(-20 * time.Minute)},
		twiliofake.Message{AccountSID: sub, Status: "delivered", DateSent: t0.Add(-10 * time.Minute)},
	)
	e.mustSucceed()
	c := e.sum(sub)
	if c.UnknownStatus != 2 || c.Outbound != 1 || c.Finished != 1 || c.ErrorCount(30007) != 0 {
		t.Errorf("counts %+v, want 2 of unknown status apart and only the delivered one in rates", c)
	}
	if n := e.metric("sentinel_messages_unknown_status_total", map[string]string{"status": "pending_review"}); n != 2 {
		t.Errorf("unknown status metric = %v, want 2", n)
	}
	if n := strings.Count(e.logs.String(), "pending_review"); n != 1 {
		t.Errorf("pending_review logged %d times, want once:\n%s", n, e.logs.String())
	}
}
