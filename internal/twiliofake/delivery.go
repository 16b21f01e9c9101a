package twiliofake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Signing says how a delivery is signed.
type Signing int

const (
	// SignBodySHA256 appends bodySHA256 (the hex SHA-256 of the JSON body)
	// to the destination's query and sends X-Twilio-Signature: base64
	// HMAC-SHA1 of that URL, without its user info, keyed with the sink's
	// account's auth token. It is how Twilio signs webhooks with JSON
	// bodies (its error 57012 and twilio-go's RequestValidator.ValidateBody
	// say so); that Event Streams does exactly this is not confirmed (?).
	SignBodySHA256 Signing = iota
	// SignWithUserInfo is SignBodySHA256 over the URL with the sink's user
	// info left in (?).
	SignWithUserInfo
	// SignNone sends no signature and no bodySHA256.
	SignNone
)

// DeliveryOptions configure how the fake delivers events to webhook sinks.
// The zero value is usable.
type DeliveryOptions struct {
	// Client sends the deliveries; default one with Twilio's 5 s deadline
	// for a sink's answer.
	Client *http.Client
	// MaxAttempts is how often a request is tried before its events are
	// dropped (Twilio keeps trying for 4 hours); default 5.
	MaxAttempts int
	// Backoff is the wait before the first retry, doubled for each next
	// one up to MaxBackoff; defaults 100ms and 2s.
	Backoff, MaxBackoff time.Duration
	// BatchSize is the most events in one request to a sink whose
	// batch_events is true; default 100 (Twilio's figure is not
	// published (?)).
	BatchSize int
	Signing   Signing
	// DuplicateEvery sends every n-th event twice, with the same id, as
	// at-least-once delivery may: in the same batch, or as a request of
	// its own without batching. 0: never.
	DuplicateEvery int
	// Reorder shuffles the events of each batch (deterministically from
	// Options.Seed): Twilio does not promise any order.
	Reorder bool
}

// DeliveryStats counts deliveries since the server started.
type DeliveryStats struct {
	// Requests counts the HTTP requests made, retries included; Retries
	// the requests that were a retry.
	Requests, Retries int
	// Delivered counts the events of requests answered 2xx (duplicates
	// included); Failed the events dropped after the last attempt, or
	// because the server closed.
	Delivered, Failed int
	// Pending counts the events waiting or in flight.
	Pending int
}

// DeliveryRecord is one delivery request.
type DeliveryRecord struct {
	At      time.Time
	Sink    string
	Attempt int
	// URL is the URL requested, without user info.
	URL       string
	Signature string
	// Status is the HTTP status answered, 0 if none; Err why not.
	Status int
	Err    string
	// Events are the ids of the events sent, in order.
	Events []string
	Body   []byte
}

// maxDeliveryRecords bounds the delivery record (oldest dropped first).
const maxDeliveryRecords = 10000

// event is one CloudEvent, rendered once and shared by every sink that
// gets it.
type event struct {
	id  string
	raw json.RawMessage
}

// target is what a delivery needs of its sink, copied when the events are
// raised: a sink deleted or changed later still gets what it was owed.
type target struct {
	sink       string
	dest       *url.URL // without user info
	user, pass string
	auth       bool
	method     string
	batch      bool
	token      string // the sink's account's auth token, for the signature
}

// outbound is the events one sink gets from one change.
type outbound struct {
	to     target
	events []event
}

// delivery is one request to make.
type delivery struct {
	to      target
	events  []event
	attempt int // attempts made
	due     time.Time
}

// deliverer runs the delivery queue on one goroutine, started with the
// first delivery and stopped by Close.
type deliverer struct {
	mu      sync.Mutex
	opts    DeliveryOptions
	rng     *rand.Rand
	queue   []*delivery
	busy    int // events in flight
	seen    int // events queued so far, for DuplicateEvery
	stats   DeliveryStats
	records []DeliveryRecord
	changed chan struct{} // closed and replaced at every change
	wake    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
	closed  bool
}

func newDeliverer(opts DeliveryOptions, seed uint64) *deliverer {
	return &deliverer{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(seed, seed^0xde11)),
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
}

// SetDelivery replaces the delivery options; queued deliveries keep the
// batching they were queued with.
func (s *Server) SetDelivery(opts DeliveryOptions) {
	s.dl.mu.Lock()
	defer s.dl.mu.Unlock()
	s.dl.opts = opts
}

func (o *DeliveryOptions) withDefaults() DeliveryOptions {
	out := *o
	if out.Client == nil {
		out.Client = &http.Client{
			Timeout: 5 * time.Second,
			// A redirect is an answer: Twilio's sink does not follow one
			// with the credentials (?).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if out.MaxAttempts <= 0 {
		out.MaxAttempts = 5
	}
	if out.Backoff <= 0 {
		out.Backoff = 100 * time.Millisecond
	}
	if out.MaxBackoff < out.Backoff {
		out.MaxBackoff = max(out.Backoff, 2*time.Second)
	}
	if out.BatchSize <= 0 {
		out.BatchSize = 100
	}
	return out
}

// DeliveryStats returns the delivery counters.
func (s *Server) DeliveryStats() DeliveryStats {
	s.dl.mu.Lock()
	defer s.dl.mu.Unlock()
	st := s.dl.stats
	st.Pending = s.dl.pending()
	return st
}

// Deliveries returns the delivery requests made, oldest first.
func (s *Server) Deliveries() []DeliveryRecord {
	s.dl.mu.Lock()
	defer s.dl.mu.Unlock()
	return slices.Clone(s.dl.records)
}

// WaitDeliveries waits until no delivery is waiting or in flight (each has
// been answered 2xx or given up), or ctx ends.
func (s *Server) WaitDeliveries(ctx context.Context) error {
	for {
		s.dl.mu.Lock()
		idle, changed := s.dl.pending() == 0, s.dl.changed
		s.dl.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for deliveries: %d events pending: %w", s.DeliveryStats().Pending, ctx.Err())
		}
	}
}

// pending counts the events waiting or in flight. The caller holds d.mu.
func (d *deliverer) pending() int {
	n := d.busy
	for _, q := range d.queue {
		n += len(q.events)
	}
	return n
}

// notify tells waiters that something changed. The caller holds d.mu.
func (d *deliverer) notify() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// deliver queues what a change raised: batched as each sink asks, with
// the duplicates and reordering of the options. The caller must not hold
// s.mu.
func (s *Server) deliver(out []outbound) {
	if len(out) == 0 {
		return
	}
	d := s.dl
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		for _, o := range out {
			d.stats.Failed += len(o.events)
		}
		return
	}
	opts := d.opts.withDefaults()
	for _, o := range out {
		// The duplicates follow the events they repeat.
		evs := slices.Clone(o.events)
		for _, ev := range o.events {
			d.seen++
			if opts.DuplicateEvery > 0 && d.seen%opts.DuplicateEvery == 0 {
				evs = append(evs, ev)
			}
		}
		if !o.to.batch {
			for _, ev := range evs {
				d.queue = append(d.queue, &delivery{to: o.to, events: []event{ev}})
			}
			continue
		}
		for len(evs) > 0 {
			n := min(len(evs), opts.BatchSize)
			batch := slices.Clone(evs[:n])
			evs = evs[n:]
			if opts.Reorder {
				d.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			}
			d.queue = append(d.queue, &delivery{to: o.to, events: batch})
		}
	}
	if d.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		d.stop, d.done = cancel, make(chan struct{})
		go s.runDeliveries(ctx)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
	d.notify()
}

// closeDeliveries stops the delivery goroutine; what is still queued is
// dropped (counted as Failed).
func (s *Server) closeDeliveries() {
	d := s.dl
	d.mu.Lock()
	d.closed = true
	stop, done := d.stop, d.done
	d.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.queue {
		d.stats.Failed += len(q.events)
	}
	d.queue = nil
	d.notify()
}

// runDeliveries sends queued deliveries one at a time, each when due,
// until ctx ends.
func (s *Server) runDeliveries(ctx context.Context) {
	d := s.dl
	defer close(d.done)
	for {
		d.mu.Lock()
		next, wait := d.pick(time.Now())
		var opts DeliveryOptions
		if next != nil {
			d.busy += len(next.events)
			opts = d.opts.withDefaults()
		}
		d.mu.Unlock()
		if next == nil {
			var t *time.Timer
			var timer <-chan time.Time
			if wait > 0 {
				t = time.NewTimer(wait)
				timer = t.C
			}
			select {
			case <-ctx.Done():
			case <-d.wake:
			case <-timer:
			}
			if t != nil {
				t.Stop()
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		rec := s.send(ctx, opts.Client, next, opts.Signing)
		d.mu.Lock()
		d.busy -= len(next.events)
		next.attempt++
		d.stats.Requests++
		if next.attempt > 1 {
			d.stats.Retries++
		}
		rec.Attempt = next.attempt
		if len(d.records) >= maxDeliveryRecords {
			d.records = slices.Delete(d.records, 0, len(d.records)-maxDeliveryRecords+1)
		}
		d.records = append(d.records, rec)
		switch {
		case rec.Status >= 200 && rec.Status < 300:
			d.stats.Delivered += len(next.events)
		case ctx.Err() != nil, next.attempt >= opts.MaxAttempts:
			d.stats.Failed += len(next.events)
		default:
			backoff := opts.Backoff << (next.attempt - 1)
			if backoff <= 0 || backoff > opts.MaxBackoff {
				backoff = opts.MaxBackoff
			}
			next.due = time.Now().Add(backoff)
			d.queue = append(d.queue, next)
		}
		d.notify()
		d.mu.Unlock()
	}
}

// pick takes the delivery due first if it is due by now; otherwise it
// says how long until one is (0: none is queued). The caller holds d.mu.
func (d *deliverer) pick(now time.Time) (*delivery, time.Duration) {
	if len(d.queue) == 0 {
		return nil, 0
	}
	best := 0
	for i, q := range d.queue {
		if q.due.Before(d.queue[best].due) {
			best = i
		}
	}
	q := d.queue[best]
	if q.due.After(now) {
		return nil, q.due.Sub(now)
	}
	d.queue = slices.Delete(d.queue, best, best+1)
	return q, 0
}

// send makes one delivery request and records it. The credentials go in
// the Authorization header only: the record, and any error, carry the URL
// without them.
func (s *Server) send(ctx context.Context, client *http.Client, q *delivery, signing Signing) DeliveryRecord {
	var body []byte
	if q.to.batch {
		raws := make([]json.RawMessage, len(q.events))
		for i, ev := range q.events {
			raws[i] = ev.raw
		}
		body, _ = json.Marshal(raws)
	} else {
		body = q.events[0].raw
	}
	u := *q.to.dest
	if signing != SignNone {
		sum := sha256.Sum256(body)
		if u.RawQuery != "" {
			u.RawQuery += "&"
		}
		u.RawQuery += "bodySHA256=" + hex.EncodeToString(sum[:])
	}
	rec := DeliveryRecord{At: time.Now(), Sink: q.to.sink, URL: u.String(), Body: body}
	for _, ev := range q.events {
		rec.Events = append(rec.Events, ev.id)
	}
	req, err := http.NewRequestWithContext(ctx, q.to.method, u.String(), bytes.NewReader(body))
	if err != nil {
		rec.Err = err.Error()
		return rec
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "twiliofake-eventstreams")
	if q.to.auth {
		req.SetBasicAuth(q.to.user, q.to.pass)
	}
	if signing != SignNone {
		signed := u
		if signing == SignWithUserInfo && q.to.auth {
			signed.User = url.UserPassword(q.to.user, q.to.pass)
		}
		mac := hmac.New(sha1.New, []byte(q.to.token))
		mac.Write([]byte(signed.String()))
		rec.Signature = base64.StdEncoding.EncodeToString(mac.Sum(nil))
		req.Header.Set("X-Twilio-Signature", rec.Signature)
	}
	resp, err := client.Do(req)
	if err != nil {
		rec.Err = err.Error()
		return rec
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	rec.Status = resp.StatusCode
	return rec
}

// The events a message raises.

// pendingEvent is an event raised by a message, before it is rendered for
// the sinks that get it.
type pendingEvent struct {
	account string
	typ     string
	id      string
	msg     Message
}

// statusPath is the outbound statuses with an event type that a message
// in status has passed through, in order.
func statusPath(status string) []string {
	switch status {
	case "queued", "sending":
		return []string{"queued"}
	case "sent", "partially_delivered":
		return []string{"queued", "sent"}
	case "delivered":
		return []string{"queued", "sent", "delivered"}
	case "read":
		return []string{"queued", "sent", "delivered", "read"}
	case "undelivered":
		return []string{"queued", "sent", "undelivered"}
	case "failed":
		return []string{"queued", "failed"}
	}
	// accepted, scheduled and canceled raise no event of these types.
	return nil
}

// messageEvents returns the events of a message going from prev (nil: it
// is new) to cur: every status on cur's path that prev's did not have,
// an inbound message once, when received. The caller holds s.mu.
func (s *Server) messageEvents(prev *Message, cur Message) []pendingEvent {
	if cur.Direction == "inbound" {
		if cur.Status != "received" || (prev != nil && prev.Status == "received") {
			return nil
		}
		return []pendingEvent{{account: cur.AccountSID, typ: typeInbound, id: s.newSID("EZ"), msg: cur}}
	}
	var had []string
	if prev != nil {
		had = statusPath(prev.Status)
	}
	var out []pendingEvent
	for _, st := range statusPath(cur.Status) {
		if !slices.Contains(had, st) {
			out = append(out, pendingEvent{account: cur.AccountSID, typ: typePrefix + st, id: s.newSID("EZ"), msg: cur})
		}
	}
	return out
}

// hasSubscriptions reports whether any event could be delivered. The
// caller holds s.mu.
func (s *Server) hasSubscriptions() bool { return len(s.subs) > 0 }

// fanOut renders events for the webhook sinks whose subscriptions select
// them: a subscription of the event's account, or a parent's subscription
// that receives its subaccounts' events. A sink gets an event once even
// if several of its subscriptions select it. The caller holds s.mu.
func (s *Server) fanOut(evs []pendingEvent) []outbound {
	if len(evs) == 0 || len(s.subs) == 0 {
		return nil
	}
	subs := make([]*subscription, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].SID < subs[j].SID })
	bySink := map[string]*outbound{}
	var order []string
	for _, ev := range evs {
		got := map[string]bool{}
		for _, sub := range subs {
			fromParent := sub.Subaccounts && sub.Account == s.opts.ParentSID && ev.account != s.opts.ParentSID
			if sub.Account != ev.account && !fromParent {
				continue
			}
			version, ok := sub.Types[ev.typ]
			sk := s.sinks[sub.SinkSID]
			if !ok || sk == nil || sk.Type != "webhook" || got[sk.SID] {
				continue
			}
			o := bySink[sk.SID]
			if o == nil {
				to, ok := s.targetOf(&sk.Sink)
				if !ok {
					continue
				}
				o = &outbound{to: to}
				bySink[sk.SID] = o
				order = append(order, sk.SID)
			}
			got[sk.SID] = true
			o.events = append(o.events, event{id: ev.id, raw: renderEvent(ev, schemaVersion(ev.typ, version))})
		}
	}
	out := make([]outbound, 0, len(order))
	for _, sid := range order {
		out = append(out, *bySink[sid])
	}
	return out
}

// targetOf copies what delivering to a webhook sink needs. The caller
// holds s.mu.
func (s *Server) targetOf(sk *Sink) (target, bool) {
	u, err := url.Parse(sk.Destination)
	if err != nil || u.Host == "" {
		return target{}, false
	}
	to := target{sink: sk.SID, method: sk.Method, batch: sk.BatchEvents}
	if a := s.accounts[sk.Account]; a != nil {
		to.token = a.Token
	}
	if u.User != nil {
		to.user = u.User.Username()
		to.pass, _ = u.User.Password()
		to.auth = true
		u.User = nil
	}
	to.dest = u
	return to, true
}

// testDelivery is the test event a sink's Test sends it. The caller holds
// s.mu.
func (s *Server) testDelivery(sk *Sink) []outbound {
	to, ok := s.targetOf(sk)
	if !ok || sk.Type != "webhook" {
		return nil
	}
	id := s.newSID("EZ")
	t := s.newSID("")
	raw, _ := json.Marshal(cloudEvent{
		SpecVersion: "1.0", Type: typeTestEvent, Source: "Sink", ID: id,
		DataSchema:      "https://events-schemas.twilio.com/" + schemaTestEvent + "/1.json",
		DataContentType: "application/json", Time: eventTime(s.now()),
		Data: map[string]string{"test_id": t[:8] + "-" + t[8:12] + "-" + t[12:16] + "-" + t[16:20] + "-" + t[20:]},
	})
	return []outbound{{to: to, events: []event{{id: id, raw: raw}}}}
}

// cloudEvent is the CloudEvents 1.0 envelope Event Streams sends.
type cloudEvent struct {
	SpecVersion     string `json:"specversion"`
	Type            string `json:"type"`
	Source          string `json:"source"`
	ID              string `json:"id"`
	DataSchema      string `json:"dataschema"`
	DataContentType string `json:"datacontenttype"`
	Time            string `json:"time"`
	Data            any    `json:"data"`
}

// statusData is the data of com.twilio.messaging.message.* events, with
// the fields Twilio's documentation marks required and those sentinel
// reads. errorCode is null but on the failed and undelivered events.
type statusData struct {
	MessageSID          string `json:"messageSid"`
	Timestamp           string `json:"timestamp"`
	AccountSID          string `json:"accountSid"`
	EventName           string `json:"eventName"`
	APIVersion          string `json:"apiVersion"`
	From                string `json:"from"`
	To                  string `json:"to"`
	MessageStatus       string `json:"messageStatus"`
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`
	ErrorCode           *int   `json:"errorCode"`
	NumberOfSegments    int    `json:"numberOfSegments"`
}

// inboundData is the data of com.twilio.messaging.inbound-message.received.
type inboundData struct {
	MessageSID          string `json:"messageSid"`
	Timestamp           string `json:"timestamp"`
	AccountSID          string `json:"accountSid"`
	EventName           string `json:"eventName"`
	From                string `json:"from"`
	To                  string `json:"to"`
	NumMedia            int    `json:"numMedia"`
	Body                string `json:"body"`
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`
}

// eventTime is how Event Streams writes times: RFC 3339 in UTC with
// milliseconds.
func eventTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// renderEvent renders a pending event as the CloudEvent a sink receives.
// Its time, and data.timestamp, is when the message reached the event's
// status: created (queued), sent, or last updated.
func renderEvent(ev pendingEvent, version int) json.RawMessage {
	m := ev.msg
	et := eventTypes[ev.typ]
	at := m.DateUpdated
	switch et.status {
	case "queued":
		at = m.DateCreated
	case "sent", "":
		at = m.DateSent
		if at.IsZero() {
			at = m.DateCreated
		}
	}
	var data any
	if et.status == "" {
		data = inboundData{
			MessageSID: m.SID, Timestamp: eventTime(at), AccountSID: m.AccountSID, EventName: ev.typ,
			From: m.From, To: m.To, NumMedia: m.NumMedia, Body: m.Body, MessagingServiceSID: m.MessagingServiceSID,
		}
	} else {
		d := statusData{
			MessageSID: m.SID, Timestamp: eventTime(at), AccountSID: m.AccountSID, EventName: ev.typ,
			APIVersion: "2010-04-01", From: m.From, To: m.To, MessageStatus: strings.ToUpper(et.status),
			MessagingServiceSID: m.MessagingServiceSID, NumberOfSegments: m.NumSegments,
		}
		if (et.status == "failed" || et.status == "undelivered") && m.ErrorCode != 0 {
			c := m.ErrorCode
			d.ErrorCode = &c
		}
		data = d
	}
	raw, _ := json.Marshal(cloudEvent{
		SpecVersion: "1.0",
		Type:        ev.typ,
		// The message's REST resource (?): Twilio's published examples
		// show a placeholder.
		Source:          "/2010-04-01/Accounts/" + m.AccountSID + "/Messages/" + m.SID + ".json",
		ID:              ev.id,
		DataSchema:      fmt.Sprintf("https://events-schemas.twilio.com/%s/%d", et.schema, version),
		DataContentType: "application/json",
		Time:            eventTime(at),
		Data:            data,
	})
	return raw
}
