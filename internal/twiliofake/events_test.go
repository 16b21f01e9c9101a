package twiliofake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twilio/twilio-go/client"
	events "github.com/twilio/twilio-go/rest/events/v1"

	"sentinel/internal/twiliofake"
)

// eventsClient builds twilio-go's Event Streams client for the account sid
// with token: it addresses https://events.twilio.com, which the fake's
// transport sends to the fake.
func eventsClient(s *twiliofake.Server, sid, token string) *events.ApiService {
	c := &client.Client{Credentials: client.NewCredentials(sid, token), HTTPClient: &http.Client{Transport: s.Transport()}}
	c.SetAccountSid(sid)
	return events.NewApiServiceWithClient(c)
}

var (
	sinkSIDRe  = regexp.MustCompile(`^DG[0-9a-f]{32}$`)
	subSIDRe   = regexp.MustCompile(`^DF[0-9a-f]{32}$`)
	webhookCfg = map[string]any{"destination": "https://user:secretsecretsecret1@sink.example/twilio/events", "method": "POST", "batch_events": true}
)

func createSink(t *testing.T, ev *events.ApiService, desc string, cfg map[string]any) *events.EventsV1Sink {
	t.Helper()
	sk, err := ev.CreateSink((&events.CreateSinkParams{}).SetDescription(desc).SetSinkType("webhook").SetSinkConfiguration(cfg))
	if err != nil {
		t.Fatalf("create sink: %v", err)
	}
	return sk
}

func messageTypes(types ...string) []any {
	out := make([]any, len(types))
	for i, typ := range types {
		out[i] = map[string]any{"type": typ}
	}
	return out
}

func TestEventsSinks(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	ev := eventsClient(s, parentSID, parentToken)

	sk := createSink(t, ev, "sentinel", webhookCfg)
	if !sinkSIDRe.MatchString(*sk.Sid) || *sk.Status != "active" || *sk.SinkType != "webhook" {
		t.Errorf("created sink %s status %s type %s, want DG…, active, webhook", *sk.Sid, *sk.Status, *sk.SinkType)
	}
	if !sk.DateCreated.Equal(epoch) {
		t.Errorf("date_created %v, want the clock's %v", sk.DateCreated, epoch)
	}
	if want := "https://events.twilio.com/v1/Sinks/" + *sk.Sid; *sk.Url != want {
		t.Errorf("url %s, want %s", *sk.Url, want)
	}
	if diff := cmp.Diff(webhookCfg, *sk.SinkConfiguration); diff != "" {
		t.Errorf("sink_configuration (-want +got):\n%s", diff)
	}

	got, err := ev.FetchSink(*sk.Sid)
	if err != nil || *got.Description != "sentinel" {
		t.Fatalf("fetch: %v, %v", got, err)
	}
	upd, err := ev.UpdateSink(*sk.Sid, (&events.UpdateSinkParams{}).SetDescription("renamed"))
	if err != nil || *upd.Description != "renamed" {
		t.Fatalf("update: %v, %v", upd, err)
	}
	if err := ev.DeleteSink(*sk.Sid); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = ev.FetchSink(*sk.Sid)
	if re := restErr(t, err); re.Status != http.StatusNotFound || re.Code != 20404 {
		t.Errorf("fetch after delete: %d/%d, want 404/20404", re.Status, re.Code)
	}

	t.Run("redacted credentials", func(t *testing.T) {
		s := mustStart(t, twiliofake.Options{RedactSinkCredentials: true})
		ev := eventsClient(s, parentSID, parentToken)
		sk := createSink(t, ev, "sentinel", webhookCfg)
		cfg := (*sk.SinkConfiguration).(map[string]any)
		if cfg["destination"] != "https://sink.example/twilio/events" {
			t.Errorf("destination %v, want it without user info", cfg["destination"])
		}
		if got := s.Sinks(parentSID)[0].Destination; !strings.Contains(got, "secretsecretsecret1@") {
			t.Errorf("stored destination %q lost its credentials", got)
		}
	})
}

// TestEventsPaging follows meta.next_page_url as twilio-go does: absolute
// URLs on events.twilio.com with a PageToken.
func TestEventsPaging(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	ev := eventsClient(s, parentSID, parentToken)
	want := map[string]bool{}
	for range 5 {
		want[*createSink(t, ev, "x", webhookCfg).Sid] = true
	}
	s.Reset()
	got, err := ev.ListSink((&events.ListSinkParams{}).SetPageSize(2))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sk := range got {
		if seen[*sk.Sid] {
			t.Errorf("%s listed twice", *sk.Sid)
		}
		seen[*sk.Sid] = true
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("sinks (-want +got):\n%s", diff)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("%d requests, want 3 pages", n)
	}

	page, err := ev.PageSink((&events.ListSinkParams{}).SetPageSize(2), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if page.Meta.Key != "sinks" || page.Meta.Page != 0 || page.Meta.PageSize != 2 || page.Meta.PreviousPageUrl != nil {
		t.Errorf("meta %+v, want key sinks, page 0 of size 2, no previous page", page.Meta)
	}
	next, err := url.Parse(*page.Meta.NextPageUrl)
	if err != nil || next.Host != "events.twilio.com" || next.Query().Get("Page") != "1" || !strings.HasPrefix(next.Query().Get("PageToken"), "PADG") {
		t.Errorf("next_page_url %s, want events.twilio.com, Page=1 and a PageToken", *page.Meta.NextPageUrl)
	}

	// In use: a sink with a subscription.
	sids := make([]string, 0, len(want))
	for sid := range want {
		sids = append(sids, sid)
	}
	sort.Strings(sids)
	if _, err := ev.CreateSubscription((&events.CreateSubscriptionParams{}).SetDescription("d").SetSinkSid(sids[0]).
		SetTypes(messageTypes("com.twilio.messaging.message.sent"))); err != nil {
		t.Fatal(err)
	}
	used, err := ev.ListSink((&events.ListSinkParams{}).SetInUse(true))
	if err != nil || len(used) != 1 || *used[0].Sid != sids[0] {
		t.Errorf("in use: %d sinks, %v; want only %s", len(used), err, sids[0])
	}
}

func TestEventsAuth(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	parent := eventsClient(s, parentSID, parentToken)
	own := eventsClient(s, sub.SID, sub.Token)
	psk := createSink(t, parent, "parent's", webhookCfg)
	ssk := createSink(t, own, "subaccount's", webhookCfg)

	got, err := own.ListSink(nil)
	if err != nil || len(got) != 1 || *got[0].Sid != *ssk.Sid {
		t.Errorf("the subaccount lists %d sinks (%v), want only its own", len(got), err)
	}
	if _, err := own.FetchSink(*psk.Sid); restErr(t, err).Status != http.StatusNotFound {
		t.Errorf("the subaccount fetched the parent's sink: %v", err)
	}
	if _, err := parent.FetchSink(*ssk.Sid); restErr(t, err).Status != http.StatusNotFound {
		t.Errorf("the parent fetched the subaccount's sink: %v", err)
	}
	if _, err := eventsClient(s, parentSID, strings.Repeat("x", 32)).ListSink(nil); restErr(t, err).Code != 20003 {
		t.Errorf("wrong token: %v, want 20003", err)
	}
	if err := s.SetStatus(sub.SID, twiliofake.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if _, err := own.ListSink(nil); restErr(t, err).Code != 10001 {
		t.Errorf("suspended subaccount's credentials: %v, want 10001", err)
	}
}

func TestEventsSubscriptions(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	ev := eventsClient(s, parentSID, parentToken)
	sk := createSink(t, ev, "sentinel", webhookCfg)
	sub, err := ev.CreateSubscription((&events.CreateSubscriptionParams{}).SetDescription("sentinel").SetSinkSid(*sk.Sid).
		SetTypes([]any{
			map[string]any{"type": "com.twilio.messaging.message.delivered", "schema_version": 3},
			map[string]any{"type": "com.twilio.messaging.inbound-message.received"},
		}))
	if err != nil {
		t.Fatal(err)
	}
	if !subSIDRe.MatchString(*sub.Sid) || *sub.SinkSid != *sk.Sid || *sub.AccountSid != parentSID {
		t.Errorf("subscription %s of %s by %s", *sub.Sid, *sub.SinkSid, *sub.AccountSid)
	}
	versions := func() map[string]int {
		t.Helper()
		got, err := ev.ListSubscribedEvent(*sub.Sid, (&events.ListSubscribedEventParams{}).SetPageSize(1))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, se := range got {
			out[*se.Type] = se.SchemaVersion
		}
		return out
	}
	if diff := cmp.Diff(map[string]int{"com.twilio.messaging.message.delivered": 3, "com.twilio.messaging.inbound-message.received": 6}, versions()); diff != "" {
		t.Errorf("subscribed events, with the latest version for none asked (-want +got):\n%s", diff)
	}

	// Adding a type is 201, adding it again 200.
	for _, want := range []int{http.StatusCreated, http.StatusOK} {
		resp, err := ev.CreateSubscribedEventWithMetadata(*sub.Sid, (&events.CreateSubscribedEventParams{}).SetType("com.twilio.messaging.message.failed"))
		if err != nil || resp.GetStatusCode() != want {
			t.Errorf("add type: %v, want HTTP %d", err, want)
		}
	}
	if err := ev.DeleteSubscribedEvent(*sub.Sid, "com.twilio.messaging.message.delivered"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"com.twilio.messaging.message.failed": 8, "com.twilio.messaging.inbound-message.received": 6}, versions()); diff != "" {
		t.Errorf("after adding and removing (-want +got):\n%s", diff)
	}

	// A sink in use cannot go; once its subscription has, it can.
	if err := ev.DeleteSink(*sk.Sid); restErr(t, err).Status != http.StatusBadRequest {
		t.Errorf("deleting a sink in use: %v, want 400", err)
	}
	if err := ev.DeleteSubscription(*sub.Sid); err != nil {
		t.Fatal(err)
	}
	if err := ev.DeleteSink(*sk.Sid); err != nil {
		t.Errorf("deleting the unused sink: %v", err)
	}
}

// postForm sends a form to the fake as the parent, outside twilio-go, to
// say exactly what is malformed.
func postForm(t *testing.T, s *twiliofake.Server, method, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "https://events.twilio.com"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(parentSID, parentToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Transport: s.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
		}
	}
	return resp.StatusCode, out
}

func TestEventsMalformed(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	ev := eventsClient(s, parentSID, parentToken)
	sk := createSink(t, ev, "sentinel", webhookCfg)
	cfg := `{"destination":"https://h.example/e","method":"POST"}`
	sinkForm := func(kv ...string) url.Values {
		f := url.Values{"Description": {"d"}, "SinkType": {"webhook"}, "SinkConfiguration": {cfg}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	subForm := func(kv ...string) url.Values {
		f := url.Values{"Description": {"d"}, "SinkSid": {*sk.Sid}, "Types": {`{"type":"com.twilio.messaging.message.sent"}`}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	for _, tc := range []struct {
		name, method, path string
		form               url.Values
		status             int
		msg                string
	}{
		{"no description", "POST", "/v1/Sinks", sinkForm("Description", ""), 400, "Description"},
		{"bad sink type", "POST", "/v1/Sinks", sinkForm("SinkType", "pager"), 400, "SinkType"},
		{"configuration not JSON", "POST", "/v1/Sinks", sinkForm("SinkConfiguration", "destination=x"), 400, "JSON object"},
		{"configuration an array", "POST", "/v1/Sinks", sinkForm("SinkConfiguration", "[1]"), 400, "JSON object"},
		{"no destination", "POST", "/v1/Sinks", sinkForm("SinkConfiguration", `{"method":"POST"}`), 400, "destination"},
		{"relative destination", "POST", "/v1/Sinks", sinkForm("SinkConfiguration", `{"destination":"/e","method":"POST"}`), 400, "absolute"},
		{"method PUT", "POST", "/v1/Sinks", sinkForm("SinkConfiguration", `{"destination":"https://h.example/e","method":"PUT"}`), 400, "method"},
		{"batch_events a string", "POST", "/v1/Sinks", sinkForm("SinkConfiguration", `{"destination":"https://h.example/e","method":"POST","batch_events":"yes"}`), 400, "batch_events"},
		{"kinesis without arn", "POST", "/v1/Sinks", sinkForm("SinkType", "kinesis"), 400, "arn"},
		{"update without description", "POST", "/v1/Sinks/" + *sk.Sid, url.Values{}, 400, "Description"},
		{"validate without test id", "POST", "/v1/Sinks/" + *sk.Sid + "/Validate", url.Values{}, 400, "TestId"},
		{"page size 0", "GET", "/v1/Sinks?PageSize=0", nil, 400, "PageSize"},
		{"page without token", "GET", "/v1/Sinks?Page=2", nil, 400, "PageToken"},
		{"bad page token", "GET", "/v1/Sinks?PageToken=XYZ", nil, 400, "PageToken"},
		{"in use not a boolean", "GET", "/v1/Sinks?InUse=maybe", nil, 400, "InUse"},
		{"no types", "POST", "/v1/Subscriptions", subForm("Types", ""), 400, "Types"},
		{"type not JSON", "POST", "/v1/Subscriptions", subForm("Types", "com.twilio.messaging.message.sent"), 400, "JSON object"},
		{"type a JSON string", "POST", "/v1/Subscriptions", subForm("Types", `"com.twilio.messaging.message.sent"`), 400, "JSON object"},
		{"unknown type", "POST", "/v1/Subscriptions", subForm("Types", `{"type":"com.example.nothing"}`), 400, "does not exist"},
		{"version too high", "POST", "/v1/Subscriptions", subForm("Types", `{"type":"com.twilio.messaging.message.sent","schema_version":99}`), 400, "Schema version"},
		{"version not a number", "POST", "/v1/Subscriptions", subForm("Types", `{"type":"com.twilio.messaging.message.sent","schema_version":"2"}`), 400, "schema_version"},
		{"sink sid malformed", "POST", "/v1/Subscriptions", subForm("SinkSid", "DG123"), 400, "SinkSid"},
		{"sink unknown", "POST", "/v1/Subscriptions", subForm("SinkSid", "DG"+strings.Repeat("0", 32)), 400, "not found"},
		{"subaccounts not a boolean", "POST", "/v1/Subscriptions", subForm("ReceiveEventsFromSubaccounts", "maybe"), 400, "ReceiveEventsFromSubaccounts"},
		{"subscription sink filter malformed", "GET", "/v1/Subscriptions?SinkSid=nope", nil, 400, "SinkSid"},
		{"unknown path", "GET", "/v1/Nothing", nil, 404, "not found"},
		{"method", "PUT", "/v1/Sinks", nil, 405, "Method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postForm(t, s, tc.method, tc.path, tc.form)
			if status != tc.status {
				t.Errorf("HTTP %d, want %d: %v", status, tc.status, body)
			}
			msg, _ := body["message"].(string)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want it to mention %q", msg, tc.msg)
			}
			code, _ := body["code"].(float64)
			more, _ := body["more_info"].(string)
			if code == 0 || body["status"] != float64(tc.status) || !strings.HasPrefix(more, "https://www.twilio.com/docs/errors/") {
				t.Errorf("error body %v, want Twilio's {code, message, more_info, status}", body)
			}
		})
	}
	if n := len(s.Sinks("")); n != 1 {
		t.Errorf("%d sinks after the malformed requests, want the first only", n)
	}
	if n := len(s.Subscriptions("")); n != 0 {
		t.Errorf("%d subscriptions after the malformed requests, want none", n)
	}
}

func TestEventsSubaccountFlag(t *testing.T) {
	create := func(t *testing.T, mode twiliofake.SubaccountEvents, sid, token string) (int, map[string]any) {
		s := mustStart(t, twiliofake.Options{SubaccountEvents: mode})
		sub := mustAdd(t, s, twiliofake.Account{})
		if sid == "" {
			sid, token = sub.SID, sub.Token
		}
		sk, err := s.AddSink(sid, twiliofake.Sink{Destination: "https://h.example/e"})
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"Description": {"d"}, "SinkSid": {sk.SID}, "ReceiveEventsFromSubaccounts": {"true"},
			"Types": {`{"type":"com.twilio.messaging.message.sent"}`}}
		req, _ := http.NewRequest("POST", "https://events.twilio.com/v1/Subscriptions", strings.NewReader(form.Encode()))
		req.SetBasicAuth(sid, token)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := (&http.Client{Transport: s.Transport()}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	t.Run("on", func(t *testing.T) {
		status, body := create(t, twiliofake.SubaccountEventsOn, parentSID, parentToken)
		if status != http.StatusCreated || body["receive_events_from_subaccounts"] != true {
			t.Errorf("HTTP %d, %v; want 201 with receive_events_from_subaccounts true", status, body)
		}
	})
	t.Run("ignored", func(t *testing.T) {
		status, body := create(t, twiliofake.SubaccountEventsIgnored, parentSID, parentToken)
		if _, has := body["receive_events_from_subaccounts"]; status != http.StatusCreated || has {
			t.Errorf("HTTP %d, %v; want 201 without receive_events_from_subaccounts", status, body)
		}
	})
	t.Run("refused", func(t *testing.T) {
		if status, body := create(t, twiliofake.SubaccountEventsRefused, parentSID, parentToken); status != http.StatusBadRequest {
			t.Errorf("HTTP %d, %v; want 400", status, body)
		}
	})
	t.Run("a subaccount's", func(t *testing.T) {
		if status, body := create(t, twiliofake.SubaccountEventsOn, "", ""); status != http.StatusBadRequest {
			t.Errorf("HTTP %d, %v; want 400: only a parent has subaccounts", status, body)
		}
	})
}
