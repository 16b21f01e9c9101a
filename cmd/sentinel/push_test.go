package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sentinel/internal/slack/slackfake"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twiliofake"
)

// Push credentials of the tests: the password is a secret, like the
// tokens.
const (
	eventsUser     = "twilio-sink"
	eventsPassword = "events-SECRET-0123456789abcdef"
	eventsURL      = "https://sentinel.example.net"
)

// forOnePolicy suspends on 30007 over 5% of at least 20 finished messages
// in the last hour, on the first evaluation over it.
const forOnePolicy = `
rules:
  - name: filtered-now
    description: Carriers filter over 5% of finished messages in the last hour; suspended at once.
    signal: error_rate
    codes: [30007]
    window: 1h
    min_volume: 20
    trip: 5%
    resolve: 2.5%
    for: 1
    severity: critical
    action: suspend
`

// pushEnv is w's environment with the sink's credentials.
func (w *world) pushEnv() []string {
	return append(w.environ(), envEventsUsername+"="+eventsUser, envEventsPassword+"="+eventsPassword)
}

// cloudEvent is one Event Streams CloudEvent about a message of acct.
func cloudEvent(id, acct, msg, status string, code int, at time.Time) string {
	typ := "com.twilio.messaging.message." + status
	ec := "null"
	if code != 0 {
		ec = fmt.Sprint(code)
	}
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"type":%q,"source":"/2010-04-01/Accounts/%s/Messages/%s.json","time":%q,`+
		`"datacontenttype":"application/json","data":{"messageSid":%q,"accountSid":%q,"messageStatus":%q,"errorCode":%s,`+
		`"timestamp":%q,"from":"+15550001000","to":"+12025550123","messagingServiceSid":"MG0123456789abcdef0123456789abcdef"}}`,
		id, typ, acct, msg, at.Format(time.RFC3339Nano), msg, acct, strings.ToUpper(status), ec, at.Format(time.RFC3339Nano))
}

func randomSID(t testing.TB, prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// post sends body to the daemon's events listener.
func postTo(t testing.TB, u, contentType, body string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// twilioSignature is X-Twilio-Signature of a form POSTed to u: base64
// HMAC-SHA1 of u and the parameters sorted by name, with the token.
func twilioSignature(token, u string, form url.Values) string {
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

var eventsListenRe = regexp.MustCompile(`msg="push ingest on" events_listen=(\S+)`)

// The daemon with -events-listen: batches with duplicates and reordering,
// a wrong password, a malformed body, status callbacks signed and forged;
// the offender is suspended within 5 s of its events under a `for: 1`
// rule, by the push alone (no poll runs meanwhile), and nobody else is
// touched.
func TestPushSuspendsWithinSeconds(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	_, steady := w.fleet(t, 4, false)
	offender := steady[0]
	policies := t.TempDir()
	if err := os.WriteFile(filepath.Join(policies, "push.yaml"), []byte(forOnePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := append(w.secrets(), eventsPassword)
	// One poll at start; the next is ten minutes away.
	d := startEnv(t, w.pushEnv(), secrets, w.args("-policies", policies, "-messages-schedule", "@every 10m",
		"-events-listen", "127.0.0.1:0", "-events-url", eventsURL)...)
	addr := d.addr(t)
	events := "http://" + d.waitFor(t, eventsListenRe, false, 10*time.Second)
	waitReady(t, d, addr)
	if got := statusPosts(w.fake, "suspended"); len(got) != 0 {
		t.Fatalf("suspended before any push: %v", got)
	}
	auth := func(user, pass string) http.Header {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	good := auth(eventsUser, eventsPassword)

	now := time.Now().UTC()
	var evs []string
	var msgs []string
	for i := range 40 {
		msg := randomSID(t, "SM")
		msgs = append(msgs, msg)
		at := now.Add(-time.Duration(40-i) * time.Second)
		failed := cloudEvent(fmt.Sprintf("EZoff%02dfail", i), offender, msg, "undelivered", 30007, at.Add(2*time.Second))
		sent := cloudEvent(fmt.Sprintf("EZoff%02dsent", i), offender, msg, "sent", 0, at)
		// Out of order (the receipt before the send), and the receipt
		// delivered twice.
		evs = append(evs, failed, sent, failed)
	}
	// The other accounts' traffic, all delivered.
	for _, sid := range steady[1:] {
		for i := range 10 {
			msg := randomSID(t, "SM")
			evs = append(evs, cloudEvent(fmt.Sprintf("EZ%s%02d", sid[2:10], i), sid, msg, "delivered", 0, now.Add(-time.Second)))
		}
	}
	batch := "[" + strings.Join(evs, ",") + "]"

	// Refused, storing nothing: a wrong password, no credentials, a
	// malformed body.
	if code := postTo(t, events+"/twilio/events", "application/json", batch, auth(eventsUser, "guess")); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code := postTo(t, events+"/twilio/events", "application/json", batch, nil); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if code := postTo(t, events+"/twilio/events", "application/json", batch[:len(batch)/2], good); code != http.StatusBadRequest {
		t.Errorf("malformed body: %d, want 400", code)
	}
	time.Sleep(2 * time.Second) // a refused request must not have judged anything either
	if got := statusPosts(w.fake, "suspended"); len(got) != 0 {
		t.Fatalf("suspended after refused requests: %v", got)
	}

	// Status callbacks: one of a message the first poll read, signed with
	// its subaccount's token; one forged.
	other := steady[1]
	acct, err := w.fake.Account(other)
	if err != nil {
		t.Fatal(err)
	}
	known := w.fake.Messages(other)[0]
	form := url.Values{"MessageSid": {known.SID}, "AccountSid": {other}, "MessageStatus": {"delivered"},
		"To": {known.To}, "From": {known.From}, "ApiVersion": {"2010-04-01"}}
	sig := twilioSignature(acct.Token, eventsURL+"/twilio/status", form)
	if code := postTo(t, events+"/twilio/status", "application/x-www-form-urlencoded", form.Encode(),
		http.Header{"X-Twilio-Signature": {sig}}); code != http.StatusOK {
		t.Errorf("signed status callback: %d, want 200", code)
	}
	forged := url.Values{"MessageSid": {known.SID}, "AccountSid": {other}, "MessageStatus": {"failed"}, "ErrorCode": {"30007"}}
	if code := postTo(t, events+"/twilio/status", "application/x-www-form-urlencoded", forged.Encode(),
		http.Header{"X-Twilio-Signature": {twilioSignature("not-the-token", eventsURL+"/twilio/status", forged)}}); code != http.StatusForbidden {
		t.Errorf("forged status callback: %d, want 403", code)
	}

	// The batch, then the same batch again (Twilio retries).
	start := time.Now()
	if code := postTo(t, events+"/twilio/events", "application/json", batch, good); code != http.StatusOK {
		t.Fatalf("batch: %d, want 200", code)
	}
	acked := time.Since(start)
	if code := postTo(t, events+"/twilio/events", "application/json", batch, good); code != http.StatusOK {
		t.Fatalf("batch again: %d, want 200", code)
	}
	eventually(t, 5*time.Second-acked, "the offender's suspension", func() bool {
		return slices.Contains(statusPosts(w.fake, "suspended"), offender)
	})
	t.Logf("suspension POST %v after the batch was sent (acknowledged in %v)", time.Since(start).Round(time.Millisecond), acked.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	if got := statusPosts(w.fake, "suspended"); !slices.Equal(got, []string{offender}) {
		t.Errorf("suspended %v, want only %s", got, offender)
	}
	for sid, st := range statusOf(t, w.fake, steady...) {
		if want := map[bool]string{true: "suspended", false: "active"}[sid == offender]; st != want {
			t.Errorf("%s is %s, want %s", sid, st, want)
		}
	}
	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`sentinel_events_rejected_total{reason="unauthorized"} 2`,
		`sentinel_events_rejected_total{reason="malformed"} 1`,
		`sentinel_events_rejected_total{reason="bad_signature"} 1`,
		`sentinel_events_configured 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !regexp.MustCompile(`sentinel_events_duplicate_total (1[6-9]\d|[2-9]\d\d)\b`).Match(metrics) {
		t.Errorf("duplicates not counted (want 40 in the batch and all 160 of its retry):\n%s", grepLines(string(metrics), "sentinel_events_"))
	}

	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.stderr)
	}
	// Each message stayed undelivered (the send after the receipt did not
	// move it back), and the aggregates equal a recount.
	st, err := store.Open(w.db, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, msg := range msgs {
		m, err := st.Message(offender, msg)
		if err != nil || m.Status != "undelivered" || m.ErrorCode != 30007 {
			t.Fatalf("message %s: %+v, %v; want undelivered 30007", msg, m, err)
		}
	}
	for _, sid := range steady {
		from, to := now.Add(-25*time.Hour), now.Add(time.Hour)
		got, err := st.Buckets(sid, from, to)
		if err != nil {
			t.Fatal(err)
		}
		want, err := st.Recount(sid, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(traffic.Sum(want, from, to), traffic.Sum(got, from, to), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: aggregates differ from a recount (-recount +aggregates):\n%s", sid, diff)
		}
	}
}

// With SLACK_SIGNING_SECRET and no Socket Mode, Slack's interactions come
// to POST /slack/interactions on the -events-listen listener: a request
// whose signature does not match, or whose timestamp is over 5 minutes
// old, is refused (401); a signed one is taken.
func TestSlackInteractionsOnEventsListener(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 2, false)
	fake := slackfake.New(slackfake.Options{BotToken: buttonsBotToken, AppToken: buttonsAppToken})
	t.Cleanup(fake.Close)
	env := append(w.pushEnv()[:0:0], w.pushEnv()...)
	for i, kv := range env {
		if strings.HasPrefix(kv, "SLACK_WEBHOOK_URL=") {
			env = append(env[:i], env[i+1:]...)
			break
		}
	}
	env = append(env, "SLACK_BOT_TOKEN="+buttonsBotToken, "SLACK_SIGNING_SECRET="+buttonsSigning)
	secrets := append(w.secrets(), eventsPassword, buttonsBotToken, buttonsSigning)
	d := startEnv(t, env, secrets, w.args("-messages-schedule", "@every 10m", "-slack-channel", "#compliance",
		"-slack-api-url", fake.URL(), "-slack-deciders", "U0ANA", "-events-listen", "127.0.0.1:0", "-events-url", eventsURL)...)
	d.addr(t)
	events := "http://" + d.waitFor(t, eventsListenRe, false, 10*time.Second)
	if strings.Contains(d.stderr.String(), "no listener serves POST /slack/interactions") {
		t.Errorf("the daemon warns that nothing serves the interactions:\n%s", d.stderr)
	}
	body := "payload=" + url.QueryEscape(`{"type":"block_actions","user":{"id":"U0EVE"},"actions":[]}`)
	sign := func(ts int64, secret string) http.Header {
		mac := hmac.New(sha256.New, []byte(secret))
		fmt.Fprintf(mac, "v0:%d:%s", ts, body)
		return http.Header{"X-Slack-Request-Timestamp": {fmt.Sprint(ts)}, "X-Slack-Signature": {"v0=" + hex.EncodeToString(mac.Sum(nil))}}
	}
	post := func(h http.Header) int {
		return postTo(t, events+"/slack/interactions", "application/x-www-form-urlencoded", body, h)
	}
	now := time.Now().Unix()
	if code := post(sign(now, "not-the-secret")); code != http.StatusUnauthorized {
		t.Errorf("bad signature: %d, want 401", code)
	}
	if code := post(sign(now-6*60, buttonsSigning)); code != http.StatusUnauthorized {
		t.Errorf("a timestamp 6 minutes old: %d, want 401", code)
	}
	if code := post(sign(now, buttonsSigning)); code != http.StatusOK {
		t.Errorf("signed: %d, want 200", code)
	}
}
