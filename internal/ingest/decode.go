package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// Event types sentinel stores: every status of an outbound message, and an
// inbound message (an opt-out is one). Other types are acknowledged and
// counted, not stored.
const (
	typePrefix  = "com.twilio.messaging.message."
	typeInbound = "com.twilio.messaging.inbound-message.received"
)

// outboundStatuses are the statuses whose events are stored, by the type's
// last part.
var outboundStatuses = map[string]bool{
	"queued": true, "sent": true, "delivered": true, "undelivered": true, "failed": true, "read": true,
}

// ErrMalformed marks a body that is not what Twilio sends: nothing of it is
// stored.
var ErrMalformed = errors.New("malformed")

// Event is one Event Streams CloudEvent as sentinel reads it.
type Event struct {
	ID   string
	Type string
	// Account is the account whose message it is; empty for a type that
	// is not stored.
	Account string
	// Report is what it says about the message, for a type that is stored.
	Report store.Report
	// At is when it happened (data.timestamp, else the CloudEvent's time);
	// zero if neither is given.
	At time.Time
}

// Stored reports whether the event is of a type sentinel stores.
func (e *Event) Stored() bool { return e.Account != "" }

// cloudEvent is the CloudEvents 1.0 JSON envelope.
type cloudEvent struct {
	SpecVersion string          `json:"specversion"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Source      string          `json:"source"`
	Time        string          `json:"time"`
	Data        json.RawMessage `json:"data"`
}

// eventData is the data of the messaging events sentinel stores.
type eventData struct {
	MessageSID          string          `json:"messageSid"`
	AccountSID          string          `json:"accountSid"`
	MessageStatus       string          `json:"messageStatus"`
	ErrorCode           json.RawMessage `json:"errorCode"`
	Timestamp           string          `json:"timestamp"`
	From                string          `json:"from"`
	To                  string          `json:"to"`
	MessagingServiceSID string          `json:"messagingServiceSid"`
	Body                *string         `json:"body"`
}

// Decoder turns pushed bodies into reports: inbound bodies become a consent
// keyword and numbers their keyed hash, as the poller does; neither is kept.
type Decoder struct {
	Classifier *traffic.Classifier
	Peers      *traffic.Peers
}

// maxEvents bounds the events of one body (a 1 MiB body holds a few
// thousand).
const maxEvents = 10000

// Events decodes an Event Streams body: one CloudEvent, or a JSON array of
// them. A body that is not, or an event of a stored type whose data is not
// what Twilio sends, fails the whole body with an error wrapping
// ErrMalformed that says which event and field, in one line. received is
// when the body arrived: the time of a message whose event gives none.
func (d *Decoder) Events(body []byte, received time.Time) ([]Event, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		// One pass over a well-formed body; a malformed one is read again,
		// event by event, for an error that names the event.
		var ces []cloudEvent
		if json.Unmarshal(body, &ces) == nil && len(ces) > 0 && len(ces) <= maxEvents {
			out := make([]Event, 0, len(ces))
			for i := range ces {
				ev, err := d.fromCloudEvent(&ces[i], received)
				if err != nil {
					return nil, fmt.Errorf("%w: event %d: %w", ErrMalformed, i, err)
				}
				out = append(out, ev)
			}
			return out, nil
		}
	}
	var raws []json.RawMessage
	switch {
	case len(body) == 0:
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	case body[0] == '[':
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("%w: not a JSON array of CloudEvents: %s", ErrMalformed, oneLine(err))
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("%w: an empty array", ErrMalformed)
		}
	case body[0] == '{':
		raws = []json.RawMessage{body}
	default:
		return nil, fmt.Errorf("%w: want a CloudEvent object or an array of them", ErrMalformed)
	}
	if len(raws) > maxEvents {
		return nil, fmt.Errorf("%w: %d events in one body, at most %d", ErrMalformed, len(raws), maxEvents)
	}
	out := make([]Event, 0, len(raws))
	for i, raw := range raws {
		ev, err := d.event(raw, received)
		if err != nil {
			if len(raws) > 1 {
				return nil, fmt.Errorf("%w: event %d: %w", ErrMalformed, i, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func (d *Decoder) event(raw json.RawMessage, received time.Time) (Event, error) {
	var ce cloudEvent
	if err := json.Unmarshal(raw, &ce); err != nil {
		return Event{}, fmt.Errorf("not a CloudEvent: %s", oneLine(err))
	}
	return d.fromCloudEvent(&ce, received)
}

// fromCloudEvent checks and converts one decoded CloudEvent.
func (d *Decoder) fromCloudEvent(ce *cloudEvent, received time.Time) (Event, error) {
	switch {
	case ce.SpecVersion != "1.0":
		return Event{}, fmt.Errorf("specversion %q, want \"1.0\"", clip(ce.SpecVersion))
	case ce.ID == "":
		return Event{}, errors.New("no id")
	case len(ce.ID) > 256:
		return Event{}, errors.New("id longer than 256 bytes")
	case ce.Type == "":
		return Event{}, fmt.Errorf("event %s: no type", clip(ce.ID))
	}
	ev := Event{ID: ce.ID, Type: ce.Type}
	status, inbound := "", false
	switch {
	case ce.Type == typeInbound:
		status, inbound = "received", true
	case strings.HasPrefix(ce.Type, typePrefix) && outboundStatuses[strings.TrimPrefix(ce.Type, typePrefix)]:
		status = strings.TrimPrefix(ce.Type, typePrefix)
	default:
		return ev, nil // acknowledged, counted, not stored
	}
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("event %s: data.%s: %s", clip(ce.ID), field, fmt.Sprintf(format, args...))
	}
	var data eventData
	if len(ce.Data) == 0 || string(ce.Data) == "null" {
		return Event{}, fmt.Errorf("event %s: no data", clip(ce.ID))
	}
	if err := json.Unmarshal(ce.Data, &data); err != nil {
		return Event{}, fmt.Errorf("event %s: data: %s", clip(ce.ID), oneLine(err))
	}
	if !traffic.IsMessageSID(data.MessageSID) {
		return Event{}, bad("messageSid", "%q is not a message SID", clip(data.MessageSID))
	}
	if !traffic.IsAccountSID(data.AccountSID) {
		return Event{}, bad("accountSid", "%q is not an account SID", clip(data.AccountSID))
	}
	// The type decides the status; messageStatus, when given, must agree.
	if s := strings.ToLower(data.MessageStatus); s != "" && s != status {
		return Event{}, bad("messageStatus", "%q, but the type says %s", clip(data.MessageStatus), status)
	}
	code, err := errorCode(data.ErrorCode)
	if err != nil {
		return Event{}, bad("errorCode", "%s", err)
	}
	for _, t := range []struct{ field, v string }{{"timestamp", data.Timestamp}, {"time", ce.Time}} {
		if t.v == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, t.v)
		// A time outside 1678 to 2262 no store keeps: failing the store
		// would fail the whole batch on every retry.
		if err != nil || !time.Unix(0, at.UnixNano()).Equal(at) {
			if t.field == "time" {
				return Event{}, fmt.Errorf("event %s: time %q is not an RFC 3339 time from 1678 to 2262", clip(ce.ID), clip(t.v))
			}
			return Event{}, bad("timestamp", "%q is not an RFC 3339 time from 1678 to 2262", clip(t.v))
		}
		if ev.At.IsZero() {
			ev.At = at.UTC()
		}
	}
	m := traffic.Message{
		SID:              data.MessageSID,
		AccountSID:       data.AccountSID,
		Direction:        traffic.OutboundAPI,
		Status:           status,
		ErrorCode:        code,
		Time:             ev.At,
		Updated:          ev.At,
		MessagingService: data.MessagingServiceSID != "",
	}
	if m.Time.IsZero() {
		m.Time = received.UTC()
	}
	if inbound {
		m.Direction = traffic.Inbound
		if data.Body != nil && d.Classifier != nil {
			m.Keyword = d.Classifier.Classify(*data.Body)
		}
		m.Peer = d.hash(data.From)
	} else {
		m.Peer = d.hash(data.To)
	}
	ev.Account = data.AccountSID
	ev.Report = store.Report{ID: ce.ID, Message: m}
	return ev, nil
}

func (d *Decoder) hash(number string) uint64 {
	if d.Peers == nil {
		return 0
	}
	return d.Peers.Hash(number)
}

// errorCode reads an errorCode: absent or null (0), a number, or a number
// in a string.
func errorCode(raw json.RawMessage) (int, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "" || s == "null" || s == `""`:
		return 0, nil
	case s[0] == '"':
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return 0, errors.New("not a number")
		}
		s = str
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 999999 {
		return 0, fmt.Errorf("%q is not an error code", clip(s))
	}
	return n, nil
}

// StatusCallback decodes a Messaging status callback's form: the report
// it makes (no id: a callback has none) and the account it names. Twilio
// sends MessageStatus (older callbacks SmsStatus). received is when it
// arrived: the time of a message no poll has read yet, since a callback
// carries none; its Updated stays unknown, so that it orders against other
// reports by status alone.
func (d *Decoder) StatusCallback(form url.Values, received time.Time) (store.Report, error) {
	get := func(k string) string { return strings.TrimSpace(form.Get(k)) }
	sid, acct := get("MessageSid"), get("AccountSid")
	if sid == "" {
		sid = get("SmsSid")
	}
	status := strings.ToLower(get("MessageStatus"))
	if status == "" {
		status = strings.ToLower(get("SmsStatus"))
	}
	switch {
	case !traffic.IsMessageSID(sid):
		return store.Report{}, fmt.Errorf("%w: MessageSid %q is not a message SID", ErrMalformed, clip(sid))
	case !traffic.IsAccountSID(acct):
		return store.Report{}, fmt.Errorf("%w: AccountSid %q is not an account SID", ErrMalformed, clip(acct))
	case status == "":
		return store.Report{}, fmt.Errorf("%w: no MessageStatus", ErrMalformed)
	case !traffic.KnownStatus(status):
		return store.Report{}, fmt.Errorf("%w: MessageStatus %q is not a status Twilio documents", ErrMalformed, clip(status))
	}
	code, err := errorCode(json.RawMessage(strconv.Quote(get("ErrorCode"))))
	if err != nil {
		return store.Report{}, fmt.Errorf("%w: ErrorCode: %s", ErrMalformed, err)
	}
	m := traffic.Message{
		SID: sid, AccountSID: acct, Direction: traffic.OutboundAPI, Status: status, ErrorCode: code,
		Time: received.UTC(), MessagingService: get("MessagingServiceSid") != "", Peer: d.hash(get("To")),
	}
	if status == "received" || status == "receiving" {
		m.Direction, m.Peer = traffic.Inbound, d.hash(get("From"))
		if body := form.Get("Body"); d.Classifier != nil {
			m.Keyword = d.Classifier.Classify(body)
		}
	}
	return store.Report{Message: m}, nil
}

// clip cuts what a sender wrote to a length fit for an error message, on
// one line.
func clip(s string) string { return cut(s, 40) }

func oneLine(err error) string { return cut(err.Error(), 120) }

// cut keeps at most n runes of s, drops control characters and marks a cut
// with an ellipsis.
func cut(s string, n int) string {
	var b strings.Builder
	for _, r := range s { // invalid UTF-8 reads as U+FFFD
		if n == 0 {
			b.WriteString("…")
			break
		}
		if r < ' ' || r == 0x7f {
			continue
		}
		b.WriteRune(r)
		n--
	}
	return b.String()
}
