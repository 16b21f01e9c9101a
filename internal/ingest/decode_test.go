package ingest

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"sentinel/internal/traffic"
)

const (
	acctA = "AC0123456789abcdef0123456789abcdef"
	msgA  = "SM0123456789abcdef0123456789abcdef"
)

var received = time.Date(2026, 3, 2, 10, 0, 5, 0, time.UTC)

func decoder(t testing.TB) *Decoder {
	peers, err := traffic.NewPeers(make([]byte, traffic.PeerKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return &Decoder{Classifier: traffic.NewClassifier(), Peers: peers}
}

// ce is a CloudEvent of type typ whose data is data (JSON).
func ce(id, typ, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"type":%q,"source":"/2010-04-01/Accounts/%s/Messages/%s.json","time":"2026-03-02T10:00:02Z","datacontenttype":"application/json","data":%s}`,
		id, typ, acctA, msgA, data)
}

func outboundData(status string, code string) string {
	return fmt.Sprintf(`{"messageSid":%q,"accountSid":%q,"messageStatus":%q,"errorCode":%s,"timestamp":"2026-03-02T10:00:01.250Z","from":"+15550001000","to":"+12025550123","messagingServiceSid":"MG0123456789abcdef0123456789abcdef"}`,
		msgA, acctA, strings.ToUpper(status), code)
}

func TestEvents(t *testing.T) {
	d := decoder(t)
	body := "[" + ce("EZ1", "com.twilio.messaging.message.undelivered", outboundData("undelivered", "30007")) + "," +
		ce("EZ2", "com.twilio.messaging.inbound-message.received",
			fmt.Sprintf(`{"messageSid":%q,"accountSid":%q,"from":"+12025550123","to":"+15550001000","body":" stop ","timestamp":"2026-03-02T10:00:03Z"}`, msgA, acctA)) + "," +
		ce("EZ3", "com.twilio.voice.call.completed", `{"callSid":"CA1"}`) + "]"
	evs, err := d.Events([]byte(body), received)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	out := evs[0].Report.Message
	wantAt := time.Date(2026, 3, 2, 10, 0, 1, 250e6, time.UTC)
	if !evs[0].Stored() || evs[0].Report.ID != "EZ1" || out.Status != "undelivered" || out.ErrorCode != 30007 ||
		!out.Direction.Outbound() || !out.Time.Equal(wantAt) || !out.Updated.Equal(wantAt) || !out.MessagingService || out.Peer == 0 {
		t.Errorf("outbound event: %+v", evs[0])
	}
	in := evs[1].Report.Message
	if in.Direction != traffic.Inbound || in.Status != "received" || in.Keyword != traffic.OptOut || in.Peer != out.Peer {
		t.Errorf("inbound STOP from the number messaged: %+v", in)
	}
	if evs[2].Stored() || evs[2].Type != "com.twilio.voice.call.completed" {
		t.Errorf("an event of another type is not stored: %+v", evs[2])
	}
	// One event, not in an array, with no timestamp anywhere: it happened
	// when it arrived, when it last changed is unknown.
	one := `{"specversion":"1.0","id":"EZ4","type":"com.twilio.messaging.message.sent","data":{"messageSid":"` + msgA + `","accountSid":"` + acctA + `"}}`
	evs, err = d.Events([]byte(one), received)
	if err != nil || len(evs) != 1 || !evs[0].Report.Message.Time.Equal(received) || !evs[0].Report.Message.Updated.IsZero() {
		t.Errorf("single event: %+v, %v", evs, err)
	}
}

func TestEventsMalformed(t *testing.T) {
	d := decoder(t)
	good := ce("EZ1", "com.twilio.messaging.message.sent", outboundData("sent", "null"))
	for _, tc := range []struct{ name, body, want string }{
		{"empty", "", "empty body"},
		{"not JSON", "hello", "want a CloudEvent"},
		{"truncated", good[:len(good)/2], "not a CloudEvent"},
		{"empty array", "[]", "empty array"},
		{"no id", strings.Replace(good, `"id":"EZ1",`, "", 1), "no id"},
		{"other spec", strings.Replace(good, `"specversion":"1.0"`, `"specversion":"0.3"`, 1), `specversion "0.3"`},
		{"no data", ce("EZ1", "com.twilio.messaging.message.sent", "null"), "no data"},
		{"bad message sid", ce("EZ1", "com.twilio.messaging.message.sent", `{"messageSid":"SMx","accountSid":"`+acctA+`"}`), `data.messageSid: "SMx"`},
		{"bad account sid", ce("EZ1", "com.twilio.messaging.message.sent", `{"messageSid":"`+msgA+`","accountSid":"AC1"}`), "data.accountSid"},
		{"status disagrees", ce("EZ1", "com.twilio.messaging.message.sent", outboundData("delivered", "null")), "the type says sent"},
		{"bad code", ce("EZ1", "com.twilio.messaging.message.failed", outboundData("failed", `"x1"`)), "data.errorCode"},
		{"bad timestamp", strings.Replace(good, "2026-03-02T10:00:01.250Z", "yesterday", 1), "data.timestamp"},
		{"second of two bad", "[" + good + "," + strings.Replace(good, `"id":"EZ1",`, "", 1) + "]", "event 1: no id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := d.Events([]byte(tc.body), received)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Events = %v, %v; want ErrMalformed saying %q on one line", evs, err, tc.want)
			}
		})
	}
}

func TestStatusCallback(t *testing.T) {
	d := decoder(t)
	form := url.Values{"MessageSid": {msgA}, "AccountSid": {acctA}, "MessageStatus": {"undelivered"}, "ErrorCode": {"30007"},
		"To": {"+12025550123"}, "From": {"+15550001000"}, "MessagingServiceSid": {"MG0123456789abcdef0123456789abcdef"}}
	r, err := d.StatusCallback(form, received)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Message
	if r.ID != "" || m.Status != "undelivered" || m.ErrorCode != 30007 || !m.Time.Equal(received) || !m.Updated.IsZero() || m.Peer == 0 || !m.MessagingService {
		t.Errorf("report: %+v", r)
	}
	for _, tc := range []struct {
		name   string
		change func(url.Values)
		want   string
	}{
		{"no sid", func(f url.Values) { f.Del("MessageSid") }, "MessageSid"},
		{"bad account", func(f url.Values) { f.Set("AccountSid", "AC!") }, "AccountSid"},
		{"no status", func(f url.Values) { f.Del("MessageStatus") }, "no MessageStatus"},
		{"unknown status", func(f url.Values) { f.Set("MessageStatus", "exploded") }, `"exploded"`},
		{"bad code", func(f url.Values) { f.Set("ErrorCode", "-3") }, "ErrorCode"},
	} {
		f := url.Values{}
		for k, v := range form {
			f[k] = append([]string(nil), v...)
		}
		tc.change(f)
		if _, err := d.StatusCallback(f, received); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrMalformed naming %q", tc.name, err, tc.want)
		}
	}
	// The older form name.
	f := url.Values{"SmsSid": {msgA}, "AccountSid": {acctA}, "SmsStatus": {"sent"}}
	if r, err := d.StatusCallback(f, received); err != nil || r.Message.Status != "sent" {
		t.Errorf("SmsStatus: %+v, %v", r, err)
	}
}

// FuzzEvents: any body either decodes into events that each name a valid
// message and account with a known status, or fails with ErrMalformed on
// one line; never a panic.
func FuzzEvents(f *testing.F) {
	good := ce("EZ1", "com.twilio.messaging.message.delivered", outboundData("delivered", "null"))
	for _, s := range []string{good, "[" + good + "," + good + "]", "", "[]", "{}", "null", `[{"specversion":"1.0"}]`,
		ce("EZ2", "com.twilio.messaging.inbound-message.received", `{"messageSid":"`+msgA+`","accountSid":"`+acctA+`","body":"STOP"}`)} {
		f.Add([]byte(s))
	}
	d := decoder(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := d.Events(body, received)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error %q: want ErrMalformed on one line", err)
			}
			return
		}
		for _, ev := range evs {
			if ev.ID == "" {
				t.Fatal("an event without id")
			}
			if !ev.Stored() {
				continue
			}
			m := ev.Report.Message
			if !traffic.IsMessageSID(m.SID) || !traffic.IsAccountSID(m.AccountSID) || m.AccountSID != ev.Account ||
				!traffic.KnownStatus(m.Status) || m.Time.IsZero() || m.ErrorCode < 0 {
				t.Fatalf("event %+v", ev)
			}
		}
	})
}

// FuzzStatusCallback: any form body decodes into a valid report or fails
// with ErrMalformed.
func FuzzStatusCallback(f *testing.F) {
	f.Add("MessageSid=" + msgA + "&AccountSid=" + acctA + "&MessageStatus=delivered")
	f.Add("MessageSid=" + msgA + "&AccountSid=" + acctA + "&MessageStatus=undelivered&ErrorCode=30007")
	f.Add("SmsSid=" + msgA + "&AccountSid=" + acctA + "&SmsStatus=received&Body=STOP&From=%2B1202")
	f.Add("%zz")
	d := decoder(f)
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return // the endpoint answers 400 before decoding
		}
		r, err := d.StatusCallback(form, received)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v: want ErrMalformed", err)
			}
			return
		}
		m := r.Message
		if r.ID != "" || !traffic.IsMessageSID(m.SID) || !traffic.IsAccountSID(m.AccountSID) || !traffic.KnownStatus(m.Status) || m.ErrorCode < 0 {
			t.Fatalf("report %+v", r)
		}
	})
}
