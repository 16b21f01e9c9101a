package slack

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// slackAnswer is one answer of the fake Slack of FuzzPostResponse.
type slackAnswer struct {
	status     int
	retryAfter string
	body       string
}

var retrySeconds = regexp.MustCompile(`^[0-9]{1,6}$`)

// FuzzPostResponse answers a post, through the Web API (bot token) or an
// incoming webhook, with an arbitrary status, Retry-After and body. Post
// must return a ts or a *DeliveryError whose class is known and follows the
// status (408, 429 and 5xx: unavailable; 400 and 413: rejected; any other
// refusal: config); the same answer must be classified the same way again;
// Retry-After counts only on a 429 and is what it says when it is a plain
// number of seconds; and no error down the chain quotes a secret.
func FuzzPostResponse(f *testing.F) {
	for _, a := range []slackAnswer{
		{200, "", `{"ok":true,"channel":"C0COMPLIANCE","ts":"1700000000.000001"}`},
		{200, "", `{"ok":false,"error":"channel_not_found"}`},
		{200, "", `{"ok":false,"error":"invalid_auth","warning":"missing_charset","response_metadata":{"warnings":["missing_charset"]}}`},
		{200, "", `{"ok":false,"error":"invalid_blocks","errors":["invalid additional property: x [json-pointer:/blocks/0]"]}`},
		{200, "", `{"ok":false,"error":"ratelimited"}`},
		{200, "", `{"ok":false}`},
		{200, "", `{"ok":true,"ts":5}`},
		{200, "", "ok"},
		{200, "", "<html><body>captive portal</body></html>"},
		{429, "30", `{"ok":false,"error":"ratelimited"}`},
		{429, "", "rate_limited"},
		{429, "Wed, 21 Oct 2026 07:28:00 GMT", ""},
		{429, "-5", ""},
		{400, "", "invalid_payload"},
		{403, "", "action_prohibited"},
		{404, "", "no_service"},
		{410, "", "channel_is_archived"},
		{413, "", "request_too_long"},
		{500, "", "rollup_error"},
		{502, "", "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>502 Bad Gateway</body>\r\n</html>\r\n"},
		{503, "", `{"ok":false,"error":"service_unavailable"}`},
	} {
		f.Add(false, uint16(a.status-200), a.retryAfter, a.body)
		f.Add(true, uint16(a.status-200), a.retryAfter, a.body)
	}

	var mu sync.Mutex
	var ans slackAnswer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		a := ans
		mu.Unlock()
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	f.Cleanup(srv.Close)
	tr := &http.Transport{}
	f.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	bot, err := NewClient(Config{BotToken: testToken, Channel: "C0COMPLIANCE", APIURL: srv.URL + "/api/", HTTPClient: hc})
	if err != nil {
		f.Fatal(err)
	}
	hook, err := NewClient(Config{WebhookURL: srv.URL + testWebhookPath, HTTPClient: hc})
	if err != nil {
		f.Fatal(err)
	}
	msg := Render(suspendedEvent())

	f.Fuzz(func(t *testing.T, viaBot bool, s uint16, retryAfter, body string) {
		if strings.ContainsFunc(retryAfter, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return // not a header value that reaches the client as it was sent
		}
		status := 200 + int(s)%400
		mu.Lock()
		ans = slackAnswer{status, retryAfter, body}
		mu.Unlock()
		c, op := hook, "post webhook: "
		if viaBot {
			c, op = bot, "post message: "
		}

		ts, err := c.Post(context.Background(), msg, "")
		if err == nil {
			if status != http.StatusOK {
				t.Fatalf("HTTP %d accepted", status)
			}
			if !viaBot && ts != "" {
				t.Fatalf("webhook post returned ts %q", ts)
			}
			return
		}
		if ts != "" {
			t.Fatalf("ts %q with error %v", ts, err)
		}
		var de *DeliveryError
		if !errors.As(err, &de) {
			t.Fatalf("error %v (%T) is not a *DeliveryError", err, err)
		}
		if de.Class.String() == "unknown" {
			t.Fatalf("class %d", de.Class)
		}
		if !strings.HasPrefix(de.Error(), op) {
			t.Fatalf("error %q does not name the operation %q", de, op)
		}
		for e := error(de); e != nil; e = errors.Unwrap(e) {
			if strings.Contains(e.Error(), testSecretPart) {
				t.Fatalf("error chain quotes a secret: %q", e)
			}
		}
		if !viaBot && status == http.StatusOK {
			t.Fatalf("webhook post answered 200 failed: %v", err)
		}

		switch {
		case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
			if de.Class != ClassUnavailable {
				t.Fatalf("HTTP %d: class %s, want unavailable", status, de.Class)
			}
		case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
			if de.Class != ClassRejected || de.Status != status {
				t.Fatalf("HTTP %d: class %s, status %d; want rejected", status, de.Class, de.Status)
			}
		case status != http.StatusOK:
			if de.Class != ClassConfig || de.Status != status {
				t.Fatalf("HTTP %d: class %s, status %d; want config", status, de.Class, de.Status)
			}
		case de.Code != "":
			// A Web API error: its code decides.
			want := ClassRejected
			if unavailableCodes[de.Code] {
				want = ClassUnavailable
			} else if configCodes[de.Code] {
				want = ClassConfig
			}
			if de.Class != want {
				t.Fatalf("code %q: class %s, want %s", de.Code, de.Class, want)
			}
		}
		if status != http.StatusTooManyRequests && de.RetryAfter != 0 {
			t.Fatalf("HTTP %d: retry after %v", status, de.RetryAfter)
		}
		if v := strings.TrimSpace(retryAfter); status == http.StatusTooManyRequests && retrySeconds.MatchString(v) {
			n, _ := strconv.Atoi(v)
			if want := time.Duration(n) * time.Second; de.RetryAfter != want {
				t.Fatalf("Retry-After %q: retry after %v, want %v", retryAfter, de.RetryAfter, want)
			}
		}

		// The same answer again is classified the same way.
		_, again := c.Post(context.Background(), msg, "")
		var de2 *DeliveryError
		if !errors.As(again, &de2) {
			t.Fatalf("second post: %v, first %v", again, err)
		}
		if de2.Class != de.Class || de2.Status != de.Status || de2.Code != de.Code || de2.RetryAfter != de.RetryAfter || de2.Error() != de.Error() {
			t.Fatalf("same answer classified twice differently:\n%+v\n%+v", de, de2)
		}
	})
}
