package twiliofake_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twilio/twilio-go/client"
	"go.uber.org/goleak"

	"sentinel/internal/ingest"
	"sentinel/internal/traffic"
	"sentinel/internal/twiliofake"
)

// received is one request a sink received.
type received struct {
	method, path, rawQuery string
	user, pass             string
	auth                   bool
	signature              string
	contentType            string
	body                   []byte
}

// sinkServer is a webhook sink: it records what arrives and answers with
// status(n) for request n (from 1), 200 when status is nil.
type sinkServer struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	status func(n int) int
}

func newSinkServer(t *testing.T, status func(n int) int) *sinkServer {
	t.Helper()
	k := &sinkServer{status: status}
	k.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u, p, ok := r.BasicAuth()
		k.mu.Lock()
		k.got = append(k.got, received{
			method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery, user: u, pass: p, auth: ok,
			signature: r.Header.Get("X-Twilio-Signature"), contentType: r.Header.Get("Content-Type"), body: body,
		})
		n := len(k.got)
		k.mu.Unlock()
		code := http.StatusOK
		if k.status != nil {
			code = k.status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(k.Close)
	return k
}

func (k *sinkServer) requests() []received {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.got)
}

// destination is the sink's URL with Basic credentials as user info.
func (k *sinkServer) destination() string {
	u, _ := url.Parse(k.URL + "/twilio/events")
	u.User = url.UserPassword("sentinel", "pushpushpushpush42")
	return u.String()
}

// wait waits for every delivery to be answered or given up.
func wait(t *testing.T, s *twiliofake.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
}

// ce is a CloudEvent as a test reads it.
type ce struct {
	SpecVersion     string         `json:"specversion"`
	Type            string         `json:"type"`
	Source          string         `json:"source"`
	ID              string         `json:"id"`
	DataSchema      string         `json:"dataschema"`
	DataContentType string         `json:"datacontenttype"`
	Time            string         `json:"time"`
	Data            map[string]any `json:"data"`
}

func decodeBody(t *testing.T, body []byte) []ce {
	t.Helper()
	var out []ce
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("batch %s: %v", body, err)
		}
		return out
	}
	var one ce
	if err := json.Unmarshal(body, &one); err != nil {
		t.Fatalf("event %s: %v", body, err)
	}
	return []ce{one}
}

// stream gives account a webhook sink to k and a subscription to every
// message event type; subaccounts asks for the subaccounts' events too.
func stream(t *testing.T, s *twiliofake.Server, account, dest string, batch, subaccounts bool) twiliofake.Sink {
	t.Helper()
	sk, err := s.AddSink(account, twiliofake.Sink{Destination: dest, BatchEvents: batch})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, typ := range twiliofake.MessagingEventTypes() {
		types[typ] = 0
	}
	if _, err := s.AddSubscription(account, twiliofake.Subscription{SinkSID: sk.SID, Types: types, Subaccounts: subaccounts}); err != nil {
		t.Fatal(err)
	}
	return sk
}

var eventIDRe = regexp.MustCompile(`^EZ[0-9a-f]{32}$`)

func TestDeliveryBatched(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	k := newSinkServer(t, nil)
	stream(t, s, parentSID, k.destination(), true, true)

	svc := "MG" + strings.Repeat("a", 32)
	sids, err := s.AppendMessages(
		twiliofake.Message{AccountSID: sub.SID, From: "+15550001", To: "+15550002", Status: "delivered", MessagingServiceSID: svc,
			DateCreated: epoch.Add(-3 * time.Second), DateSent: epoch.Add(-2 * time.Second), DateUpdated: epoch},
		twiliofake.Message{AccountSID: sub.SID, From: "+15550001", To: "+15550003", Status: "failed", ErrorCode: 30007, DateCreated: epoch},
		twiliofake.Message{AccountSID: sub.SID, From: "+15550004", To: "+15550001", Direction: "inbound", Body: "STOP", DateSent: epoch},
	)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, s)

	reqs := k.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want one batch", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != "/twilio/events" || r.contentType != "application/json" {
		t.Errorf("%s %s (%s), want POST /twilio/events of JSON", r.method, r.path, r.contentType)
	}
	if !r.auth || r.user != "sentinel" || r.pass != "pushpushpushpush42" {
		t.Errorf("Basic credentials %q/%q (%v), want the destination's user info", r.user, r.pass, r.auth)
	}
	// The signature is over the URL Twilio called, bodySHA256 included,
	// with the parent's token: twilio-go's validator must accept it.
	rv := client.NewRequestValidator(parentToken)
	if !rv.ValidateBody(k.URL+r.path+"?"+r.rawQuery, r.body, r.signature) {
		t.Errorf("X-Twilio-Signature %q does not validate over %s?%s", r.signature, r.path, r.rawQuery)
	}
	if rv := client.NewRequestValidator(sub.Token); rv.ValidateBody(k.URL+r.path+"?"+r.rawQuery, r.body, r.signature) {
		t.Error("the signature validates with the subaccount's token: the parent's sink signs with the parent's")
	}

	evs := decodeBody(t, r.body)
	type brief struct{ Type, Message, Status, Body string }
	var got []brief
	ids := map[string]bool{}
	for _, e := range evs {
		if e.SpecVersion != "1.0" || !eventIDRe.MatchString(e.ID) || e.DataContentType != "application/json" ||
			!strings.HasPrefix(e.DataSchema, "https://events-schemas.twilio.com/Messaging.") {
			t.Errorf("envelope %+v", e)
		}
		if ids[e.ID] {
			t.Errorf("id %s twice", e.ID)
		}
		ids[e.ID] = true
		if _, err := time.Parse(time.RFC3339, e.Time); err != nil {
			t.Errorf("time %q: %v", e.Time, err)
		}
		if e.Data["accountSid"] != sub.SID {
			t.Errorf("accountSid %v, want %s", e.Data["accountSid"], sub.SID)
		}
		status, _ := e.Data["messageStatus"].(string)
		body, _ := e.Data["body"].(string)
		got = append(got, brief{e.Type, e.Data["messageSid"].(string), status, body})
	}
	want := []brief{
		{"com.twilio.messaging.message.queued", sids[0], "QUEUED", ""},
		{"com.twilio.messaging.message.sent", sids[0], "SENT", ""},
		{"com.twilio.messaging.message.delivered", sids[0], "DELIVERED", ""},
		{"com.twilio.messaging.message.queued", sids[1], "QUEUED", ""},
		{"com.twilio.messaging.message.failed", sids[1], "FAILED", ""},
		{"com.twilio.messaging.inbound-message.received", sids[2], "", "STOP"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if evs[2].Data["messagingServiceSid"] != svc || evs[2].Data["timestamp"] != "2024-03-10T12:00:00.000Z" {
		t.Errorf("delivered data %v, want the service and the update's time", evs[2].Data)
	}
	if evs[4].Data["errorCode"] != float64(30007) || evs[3].Data["errorCode"] != nil {
		t.Errorf("errorCode: failed %v, queued %v; want 30007 and null", evs[4].Data["errorCode"], evs[3].Data["errorCode"])
	}

	// What sentinel's receiver makes of it.
	dec := ingest.Decoder{Classifier: traffic.NewClassifier()}
	decoded, err := dec.Events(r.body, epoch)
	if err != nil {
		t.Fatalf("the receiver's decoder refuses the batch: %v", err)
	}
	if len(decoded) != len(want) || !decoded[5].Stored() || decoded[5].Account != sub.SID {
		t.Errorf("decoded %d events, the last %+v", len(decoded), decoded[len(decoded)-1])
	}

	if st := s.DeliveryStats(); st.Requests != 1 || st.Delivered != 6 || st.Pending != 0 || st.Failed != 0 {
		t.Errorf("stats %+v, want one request delivering 6 events", st)
	}
}

func TestDeliveryOnePerRequest(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	k := newSinkServer(t, nil)
	stream(t, s, parentSID, k.destination(), false, false)
	sids, err := s.AppendMessages(twiliofake.Message{AccountSID: parentSID, Status: "sent"})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, s)
	if err := s.UpdateMessage(sids[0], func(m *twiliofake.Message) { m.Status, m.ErrorCode = "undelivered", 30007 }); err != nil {
		t.Fatal(err)
	}
	// Another change that passes no new status raises nothing.
	if err := s.UpdateMessage(sids[0], func(m *twiliofake.Message) { m.Price = "-0.00790" }); err != nil {
		t.Fatal(err)
	}
	wait(t, s)
	var types []string
	for _, r := range k.requests() {
		if r.body[0] != '{' {
			t.Errorf("body %s: want one object, batching is off", r.body)
		}
		e := decodeBody(t, r.body)[0]
		types = append(types, strings.TrimPrefix(e.Type, "com.twilio.messaging.message."))
		if e.Type == "com.twilio.messaging.message.undelivered" && e.Data["errorCode"] != float64(30007) {
			t.Errorf("undelivered errorCode %v", e.Data["errorCode"])
		}
	}
	if diff := cmp.Diff([]string{"queued", "sent", "undelivered"}, types); diff != "" {
		t.Errorf("events in order of requests (-want +got):\n%s", diff)
	}
}

// TestDeliveryWho checks which subscriptions select which accounts' events
// and whose token signs.
func TestDeliveryWho(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	a := mustAdd(t, s, twiliofake.Account{})
	b := mustAdd(t, s, twiliofake.Account{})
	parentSink := newSinkServer(t, nil)
	aSink := newSinkServer(t, nil)
	stream(t, s, parentSID, parentSink.destination(), true, false) // the parent's own events only
	stream(t, s, a.SID, aSink.destination(), true, false)
	for _, acct := range []string{parentSID, a.SID, b.SID} {
		if _, err := s.AppendMessages(twiliofake.Message{AccountSID: acct, Status: "queued"}); err != nil {
			t.Fatal(err)
		}
	}
	wait(t, s)
	accounts := func(k *sinkServer) []string {
		var out []string
		for _, r := range k.requests() {
			for _, e := range decodeBody(t, r.body) {
				out = append(out, e.Data["accountSid"].(string))
			}
		}
		return out
	}
	if diff := cmp.Diff([]string{parentSID}, accounts(parentSink)); diff != "" {
		t.Errorf("the parent's sink without subaccounts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{a.SID}, accounts(aSink)); diff != "" {
		t.Errorf("a's own sink (-want +got):\n%s", diff)
	}
	r := aSink.requests()[0]
	if rv := client.NewRequestValidator(a.Token); !rv.ValidateBody(aSink.URL+r.path+"?"+r.rawQuery, r.body, r.signature) {
		t.Error("a subaccount's sink is not signed with the subaccount's token")
	}
}

func TestDeliveryRetries(t *testing.T) {
	s := mustStart(t, twiliofake.Options{Delivery: twiliofake.DeliveryOptions{Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}})
	k := newSinkServer(t, func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	stream(t, s, parentSID, k.destination(), true, false)
	if _, err := s.AppendMessages(twiliofake.Message{AccountSID: parentSID, Status: "sent"}); err != nil {
		t.Fatal(err)
	}
	wait(t, s)
	reqs := k.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 2 failures and a success", len(reqs))
	}
	for _, r := range reqs[1:] {
		if string(r.body) != string(reqs[0].body) {
			t.Errorf("a retry sent %s, want the same events (same ids) %s", r.body, reqs[0].body)
		}
	}
	if st := s.DeliveryStats(); st.Requests != 3 || st.Retries != 2 || st.Delivered != 2 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	var attempts []int
	for _, d := range s.Deliveries() {
		attempts = append(attempts, d.Attempt)
		if strings.Contains(d.URL, "pushpushpush") {
			t.Errorf("the record's URL %s carries the credentials", d.URL)
		}
	}
	if diff := cmp.Diff([]int{1, 2, 3}, attempts); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}

	t.Run("gives up", func(t *testing.T) {
		s := mustStart(t, twiliofake.Options{Delivery: twiliofake.DeliveryOptions{MaxAttempts: 3, Backoff: time.Millisecond}})
		k := newSinkServer(t, func(int) int { return http.StatusUnauthorized })
		stream(t, s, parentSID, k.destination(), true, false)
		if _, err := s.AppendMessages(twiliofake.Message{AccountSID: parentSID, Status: "queued"}); err != nil {
			t.Fatal(err)
		}
		wait(t, s)
		if st := s.DeliveryStats(); st.Requests != 3 || st.Failed != 1 || st.Delivered != 0 {
			t.Errorf("stats %+v, want 3 attempts and the event dropped", st)
		}
	})
}

func TestDeliveryDuplicatesAndOrder(t *testing.T) {
	s := mustStart(t, twiliofake.Options{Seed: 7, Delivery: twiliofake.DeliveryOptions{DuplicateEvery: 3, Reorder: true}})
	k := newSinkServer(t, nil)
	stream(t, s, parentSID, k.destination(), true, false)
	var msgs []twiliofake.Message
	for range 10 {
		msgs = append(msgs, twiliofake.Message{AccountSID: parentSID, Status: "sent"})
	}
	if _, err := s.AppendMessages(msgs...); err != nil {
		t.Fatal(err)
	}
	wait(t, s)
	evs := decodeBody(t, k.requests()[0].body)
	count := map[string]int{}
	var types []string
	for _, e := range evs {
		count[e.ID]++
		types = append(types, e.Type)
	}
	dups := 0
	for _, n := range count {
		if n == 2 {
			dups++
		}
	}
	if len(count) != 20 || dups != 6 || len(evs) != 26 {
		t.Errorf("%d events, %d distinct, %d twice; want 20 distinct, every third (6) twice", len(evs), len(count), dups)
	}
	ordered := true
	for i := 0; i+1 < len(types); i += 2 {
		ordered = ordered && strings.HasSuffix(types[i], ".queued") && strings.HasSuffix(types[i+1], ".sent")
	}
	if ordered {
		t.Error("the batch is in the order raised: Reorder did nothing")
	}
}

func TestDeliverySigning(t *testing.T) {
	for _, tc := range []struct {
		name     string
		signing  twiliofake.Signing
		userinfo bool
	}{
		{"body hash", twiliofake.SignBodySHA256, false},
		{"with user info", twiliofake.SignWithUserInfo, true},
		{"none", twiliofake.SignNone, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustStart(t, twiliofake.Options{Delivery: twiliofake.DeliveryOptions{Signing: tc.signing}})
			k := newSinkServer(t, nil)
			stream(t, s, parentSID, k.destination(), true, false)
			if _, err := s.AppendMessages(twiliofake.Message{AccountSID: parentSID}); err != nil {
				t.Fatal(err)
			}
			wait(t, s)
			r := k.requests()[0]
			if tc.signing == twiliofake.SignNone {
				if r.signature != "" || r.rawQuery != "" {
					t.Errorf("signature %q, query %q; want neither", r.signature, r.rawQuery)
				}
				return
			}
			u, _ := url.Parse(k.URL + r.path + "?" + r.rawQuery)
			if tc.userinfo {
				u.User = url.UserPassword(r.user, r.pass)
			}
			if rv := client.NewRequestValidator(parentToken); !rv.ValidateBody(u.String(), r.body, r.signature) {
				t.Errorf("signature does not validate over %s", u.Redacted())
			}
		})
	}
}

// TestSinkTest sends the test event a sink's Test asks for.
func TestSinkTest(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	k := newSinkServer(t, nil)
	sk, err := s.AddSink(parentSID, twiliofake.Sink{Destination: k.destination(), BatchEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := eventsClient(s, parentSID, parentToken)
	res, err := ev.CreateSinkTest(sk.SID)
	if err != nil || *res.Result != "submitted" {
		t.Fatalf("test: %v, %v", res, err)
	}
	wait(t, s)
	e := decodeBody(t, k.requests()[0].body)[0]
	if e.Type != "com.twilio.eventstreams.test-event" || e.Data["test_id"] == "" {
		t.Errorf("test event %+v", e)
	}
}

// TestDeliveryClose checks that Close stops the delivery goroutine and
// drops what waits.
func TestDeliveryClose(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	s := twiliofake.New(twiliofake.Options{ParentSID: parentSID, ParentToken: parentToken,
		Delivery: twiliofake.DeliveryOptions{Backoff: time.Hour, MaxBackoff: time.Hour}})
	s.Start()
	k := newSinkServer(t, func(int) int { return http.StatusInternalServerError })
	stream(t, s, parentSID, k.destination(), true, false)
	if _, err := s.AppendMessages(twiliofake.Message{AccountSID: parentSID, Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(k.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s.Close()
	if st := s.DeliveryStats(); st.Pending != 0 || st.Failed != 1 {
		t.Errorf("after Close: %+v, want the waiting retry dropped", st)
	}
	k.Close()
	goleak.VerifyNone(t, leaks, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}
