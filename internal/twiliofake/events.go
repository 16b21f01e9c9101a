package twiliofake

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// eventsHost is where Twilio serves the Event Streams API; the URLs in its
// answers (url, links, meta) name it whatever host the request reached.
const eventsHost = "https://events.twilio.com"

// Most sinks and subscriptions one account may hold, as Twilio's Event
// Streams documentation states.
const (
	maxSinks         = 100
	maxSubscriptions = 100
)

// eventType is a type one can subscribe to: the schema its data follows and
// the schema's newest version.
type eventType struct {
	schema string
	latest int
	// status is the message status that raises it; "" for the inbound type.
	status string
}

// Message event types, with the schema versions that Twilio's published
// examples of these types name (Messaging.MessageStatus/8,
// Messaging.InboundMessageV1/6); Twilio adds versions over time (?).
const (
	typeInbound     = "com.twilio.messaging.inbound-message.received"
	typePrefix      = "com.twilio.messaging.message."
	typeTestEvent   = "com.twilio.eventstreams.test-event"
	schemaStatus    = "Messaging.MessageStatus"
	schemaInbound   = "Messaging.InboundMessageV1"
	schemaTestEvent = "EventStreams.TestSink"
)

var eventTypes = map[string]eventType{
	typePrefix + "queued":      {schemaStatus, 8, "queued"},
	typePrefix + "sent":        {schemaStatus, 8, "sent"},
	typePrefix + "delivered":   {schemaStatus, 8, "delivered"},
	typePrefix + "undelivered": {schemaStatus, 8, "undelivered"},
	typePrefix + "failed":      {schemaStatus, 8, "failed"},
	typePrefix + "read":        {schemaStatus, 8, "read"},
	typeInbound:                {schemaInbound, 6, ""},
}

// MessagingEventTypes returns the message event types the fake raises: an
// outbound message's statuses and an inbound message, the types sentinel
// subscribes to.
func MessagingEventTypes() []string {
	out := make([]string, 0, len(eventTypes))
	for t := range eventTypes {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// SubaccountEvents says what the fake does with a subscription's
// ReceiveEventsFromSubaccounts, a beta parameter that Twilio's API
// description carried in 2025 and dropped again (twilio-go had it from
// 1.23.11 to 1.26.0): whether Twilio still honours it is not known (?).
type SubaccountEvents int

const (
	// SubaccountEventsOn honours it: the parent's subscription receives
	// every subaccount's events, and subscriptions report
	// receive_events_from_subaccounts.
	SubaccountEventsOn SubaccountEvents = iota
	// SubaccountEventsIgnored ignores it, as Twilio does unknown
	// parameters (?): the field is never reported.
	SubaccountEventsIgnored
	// SubaccountEventsRefused answers 400 to it.
	SubaccountEventsRefused
)

// Sink is an Event Streams sink as a test sees and sets it.
type Sink struct {
	// SID is "DG" and 32 hex digits; generated when empty.
	SID string
	// Account owns the sink: the account whose credentials created it.
	Account     string
	Description string
	// Type is webhook (the default), kinesis, segment or email.
	Type string
	// Destination, Method and BatchEvents are a webhook's
	// sink_configuration; Destination may carry Basic credentials as user
	// info. Method defaults to POST; BatchEvents to true (?).
	Destination string
	Method      string
	BatchEvents bool
	// Configuration is the sink_configuration of other types, or extra
	// keys of a webhook's.
	Configuration map[string]any
	// Status is active: Twilio no longer validates sinks.
	Status           string
	Created, Updated time.Time
}

// Subscription is an Event Streams subscription as a test sees and sets it.
type Subscription struct {
	// SID is "DF" and 32 hex digits; generated when empty.
	SID         string
	Account     string
	SinkSID     string
	Description string
	// Types maps each subscribed type to its schema version (0: the
	// latest).
	Types map[string]int
	// Subaccounts is receive_events_from_subaccounts: a parent's
	// subscription then receives its subaccounts' events too.
	Subaccounts      bool
	Created, Updated time.Time
}

// sink and subscription are stored under Server.mu.
type sink struct{ Sink }

type subscription struct{ Subscription }

// parseSinkConfig checks a SinkConfiguration for a sink type and fills
// the webhook fields of sk.
func parseSinkConfig(sinkType, raw string, sk *Sink) *apiError {
	var cfg map[string]any
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil || cfg == nil {
		return badParam("SinkConfiguration must be a JSON object")
	}
	str := func(k string) (string, bool) { v, ok := cfg[k].(string); return v, ok }
	switch sinkType {
	case "webhook":
		dest, ok := str("destination")
		if !ok {
			return badParam("SinkConfiguration: destination is required for a webhook sink")
		}
		u, err := url.Parse(dest)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return badParam("SinkConfiguration: destination must be an absolute http(s) URL")
		}
		method, ok := str("method")
		if !ok || (strings.ToUpper(method) != http.MethodPost && strings.ToUpper(method) != http.MethodGet) {
			return badParam("SinkConfiguration: method must be POST or GET")
		}
		sk.BatchEvents = true
		if v, ok := cfg["batch_events"]; ok {
			b, isBool := v.(bool)
			if !isBool {
				return badParam("SinkConfiguration: batch_events must be true or false")
			}
			sk.BatchEvents = b
		}
		sk.Destination, sk.Method = dest, strings.ToUpper(method)
		delete(cfg, "destination")
		delete(cfg, "method")
		delete(cfg, "batch_events")
	case "kinesis":
		for _, k := range []string{"arn", "role_arn", "external_id"} {
			if _, ok := str(k); !ok {
				return badParam("SinkConfiguration: %s is required for a kinesis sink", k)
			}
		}
	case "segment":
		if _, ok := str("write_key"); !ok {
			return badParam("SinkConfiguration: write_key is required for a segment sink")
		}
	}
	if len(cfg) > 0 {
		sk.Configuration = cfg
	}
	return nil
}

// configJSON is a sink's sink_configuration. redact drops a webhook's user
// info (Options.RedactSinkCredentials).
func (sk *Sink) configJSON(redact bool) map[string]any {
	out := make(map[string]any, len(sk.Configuration)+3)
	maps.Copy(out, sk.Configuration)
	if sk.Type == "webhook" {
		dest := sk.Destination
		if u, err := url.Parse(dest); redact && err == nil && u.User != nil {
			u.User = nil
			dest = u.String()
		}
		out["destination"], out["method"], out["batch_events"] = dest, sk.Method, sk.BatchEvents
	}
	return out
}

// Event Streams JSON shapes, after Twilio's API description of Events v1.

type sinkJSON struct {
	DateCreated       string            `json:"date_created"`
	DateUpdated       string            `json:"date_updated"`
	Description       string            `json:"description"`
	SID               string            `json:"sid"`
	SinkConfiguration map[string]any    `json:"sink_configuration"`
	SinkType          string            `json:"sink_type"`
	Status            string            `json:"status"`
	URL               string            `json:"url"`
	Links             map[string]string `json:"links"`
}

type subscriptionJSON struct {
	AccountSID  string            `json:"account_sid"`
	DateCreated string            `json:"date_created"`
	DateUpdated string            `json:"date_updated"`
	Description string            `json:"description"`
	SID         string            `json:"sid"`
	SinkSID     string            `json:"sink_sid"`
	URL         string            `json:"url"`
	Links       map[string]string `json:"links"`
	// Reported only while the fake honours the beta parameter.
	Subaccounts *bool `json:"receive_events_from_subaccounts,omitempty"`
}

type subscribedEventJSON struct {
	AccountSID      string `json:"account_sid"`
	Type            string `json:"type"`
	SchemaVersion   int    `json:"schema_version"`
	SubscriptionSID string `json:"subscription_sid"`
	URL             string `json:"url"`
}

// meta is the paging part of an Events list: absolute URLs, Page numbers
// and a PageToken on every page but the first.
type meta struct {
	FirstPageURL    string  `json:"first_page_url"`
	Key             string  `json:"key"`
	NextPageURL     *string `json:"next_page_url"`
	Page            int     `json:"page"`
	PageSize        int     `json:"page_size"`
	PreviousPageURL *string `json:"previous_page_url"`
	URL             string  `json:"url"`
}

func eventsDate(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *Server) sinkJSON(sk *Sink) sinkJSON {
	u := eventsHost + "/v1/Sinks/" + sk.SID
	return sinkJSON{
		DateCreated:       eventsDate(sk.Created),
		DateUpdated:       eventsDate(sk.Updated),
		Description:       sk.Description,
		SID:               sk.SID,
		SinkConfiguration: sk.configJSON(s.opts.RedactSinkCredentials),
		SinkType:          sk.Type,
		Status:            sk.Status,
		URL:               u,
		Links:             map[string]string{"sink_test": u + "/Test", "sink_validate": u + "/Validate"},
	}
}

func (s *Server) subscriptionJSON(sub *Subscription) subscriptionJSON {
	u := eventsHost + "/v1/Subscriptions/" + sub.SID
	out := subscriptionJSON{
		AccountSID:  sub.Account,
		DateCreated: eventsDate(sub.Created),
		DateUpdated: eventsDate(sub.Updated),
		Description: sub.Description,
		SID:         sub.SID,
		SinkSID:     sub.SinkSID,
		URL:         u,
		Links:       map[string]string{"subscribed_events": u + "/SubscribedEvents"},
	}
	if s.opts.SubaccountEvents == SubaccountEventsOn {
		v := sub.Subaccounts
		out.Subaccounts = &v
	}
	return out
}

func subscribedEventJSONOf(sub *Subscription, typ string) subscribedEventJSON {
	return subscribedEventJSON{
		AccountSID:      sub.Account,
		Type:            typ,
		SchemaVersion:   schemaVersion(typ, sub.Types[typ]),
		SubscriptionSID: sub.SID,
		URL:             eventsHost + "/v1/Subscriptions/" + sub.SID + "/SubscribedEvents/" + url.PathEscape(typ),
	}
}

// schemaVersion is the version a subscription to typ uses: v, or the
// latest when v is 0, which is what Twilio does when none is asked for.
func schemaVersion(typ string, v int) int {
	if v == 0 {
		return eventTypes[typ].latest
	}
	return v
}

// eventsMeta fills the paging metadata of an Events list page.
func eventsMeta(path, key string, filters url.Values, p paging, next, prev string) meta {
	pageURL := func(page int, token string) string {
		return eventsHost + pageURI(path, filters, p.size, page, token)
	}
	m := meta{FirstPageURL: pageURL(0, ""), Key: key, Page: p.page, PageSize: p.size, URL: pageURL(p.page, p.token)}
	if next != "" {
		u := pageURL(p.page+1, next)
		m.NextPageURL = &u
	}
	if prev != "" && p.page > 0 {
		u := pageURL(p.page-1, prev)
		m.PreviousPageURL = &u
	}
	return m
}

// routeEvents serves the Event Streams API (/v1/...). Its resources belong
// to the account whose credentials call: the parent's credentials see the
// parent's sinks only, a subaccount's its own.
func (s *Server) routeEvents(w http.ResponseWriter, r *http.Request) {
	user, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			writeAPIError(w, badParam("Invalid form body"))
			return
		}
	}
	segs := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	method := func(allowed ...string) bool {
		if slices.Contains(allowed, r.Method) {
			return true
		}
		methodNotAllowed(w, r.Method)
		return false
	}
	switch {
	case len(segs) == 1 && segs[0] == "Sinks":
		if method(http.MethodGet, http.MethodPost) {
			if r.Method == http.MethodGet {
				s.listSinks(w, r, user)
			} else {
				s.createSink(w, r, user)
			}
		}
	case len(segs) == 2 && segs[0] == "Sinks":
		if method(http.MethodGet, http.MethodPost, http.MethodDelete) {
			s.sinkInstance(w, r, user, segs[1])
		}
	case len(segs) == 3 && segs[0] == "Sinks" && (segs[2] == "Test" || segs[2] == "Validate"):
		if method(http.MethodPost) {
			s.sinkAction(w, r, user, segs[1], segs[2])
		}
	case len(segs) == 1 && segs[0] == "Subscriptions":
		if method(http.MethodGet, http.MethodPost) {
			if r.Method == http.MethodGet {
				s.listSubscriptions(w, r, user)
			} else {
				s.createSubscription(w, r, user)
			}
		}
	case len(segs) == 2 && segs[0] == "Subscriptions":
		if method(http.MethodGet, http.MethodPost, http.MethodDelete) {
			s.subscriptionInstance(w, r, user, segs[1])
		}
	case len(segs) == 3 && segs[0] == "Subscriptions" && segs[2] == "SubscribedEvents":
		if method(http.MethodGet, http.MethodPost) {
			s.subscribedEvents(w, r, user, segs[1])
		}
	case len(segs) == 4 && segs[0] == "Subscriptions" && segs[2] == "SubscribedEvents":
		if method(http.MethodGet, http.MethodPost, http.MethodDelete) {
			s.subscribedEvent(w, r, user, segs[1], segs[3])
		}
	default:
		notFound(w, r.URL.Path)
	}
}

// required returns a required form parameter.
func required(form url.Values, name string) (string, *apiError) {
	v, ok := form[name]
	if !ok || v[0] == "" {
		return "", badParam("Missing required parameter %s in the post body", name)
	}
	return v[0], nil
}

func (s *Server) listSinks(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	p, e := parsePaging(q)
	filters := url.Values{}
	var inUse *bool
	if v, ok := q["InUse"]; ok && e == nil {
		b, err := strconv.ParseBool(v[0])
		if err != nil {
			e = badParam("InUse must be true or false, got %q", v[0])
		}
		inUse = &b
		filters.Set("InUse", v[0])
	}
	status, hasStatus := q["Status"]
	if hasStatus && e == nil {
		if !slices.Contains([]string{"initialized", "validating", "active", "failed"}, status[0]) {
			e = badParam("Status must be initialized, validating, active or failed, got %q", status[0])
		}
		filters.Set("Status", status[0])
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	s.mu.RLock()
	used := map[string]bool{}
	for _, sub := range s.subs {
		used[sub.SinkSID] = true
	}
	var items []Sink
	for _, sk := range s.sinks {
		switch {
		case sk.Account != user:
		case inUse != nil && used[sk.SID] != *inUse:
		case hasStatus && sk.Status != status[0]:
		default:
			items = append(items, sk.Sink)
		}
	}
	s.mu.RUnlock()
	// Listed by SID (?): the order Twilio lists sinks in is not documented.
	sort.Slice(items, func(i, j int) bool { return items[i].SID < items[j].SID })
	page, next, prev, e := pageByKey(items, func(sk Sink) string { return sk.SID }, p.size, p.token)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	out := struct {
		Sinks []sinkJSON `json:"sinks"`
		Meta  meta       `json:"meta"`
	}{Sinks: make([]sinkJSON, 0, len(page)), Meta: eventsMeta(r.URL.Path, "sinks", filters, p, next, prev)}
	for i := range page {
		out.Sinks = append(out.Sinks, s.sinkJSON(&page[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createSink(w http.ResponseWriter, r *http.Request, user string) {
	form := r.PostForm
	desc, e := required(form, "Description")
	var typ, raw string
	if e == nil {
		typ, e = required(form, "SinkType")
	}
	if e == nil {
		raw, e = required(form, "SinkConfiguration")
	}
	if e == nil && !slices.Contains([]string{"webhook", "kinesis", "segment", "email"}, typ) {
		e = badParam("SinkType must be kinesis, webhook, segment or email, got %q", typ)
	}
	sk := Sink{Account: user, Description: desc, Type: typ}
	if e == nil {
		e = parseSinkConfig(typ, raw, &sk)
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.countOwned(user, true) >= maxSinks {
		writeAPIError(w, badParam("An account can have at most %d sinks", maxSinks))
		return
	}
	created := s.addSink(sk)
	writeJSON(w, http.StatusCreated, s.sinkJSON(&created.Sink))
}

// countOwned counts an account's sinks (or subscriptions). The caller
// holds s.mu.
func (s *Server) countOwned(acct string, sinks bool) int {
	n := 0
	if sinks {
		for _, sk := range s.sinks {
			if sk.Account == acct {
				n++
			}
		}
		return n
	}
	for _, sub := range s.subs {
		if sub.Account == acct {
			n++
		}
	}
	return n
}

// addSink stores sk with its generated fields. The caller holds s.mu.
func (s *Server) addSink(sk Sink) *sink {
	if sk.SID == "" {
		sk.SID = s.newSID("DG")
	}
	if sk.Type == "" {
		sk.Type = "webhook"
	}
	if sk.Status == "" {
		sk.Status = "active"
	}
	if sk.Created.IsZero() {
		sk.Created = s.now()
	}
	if sk.Updated.IsZero() {
		sk.Updated = sk.Created
	}
	st := &sink{Sink: sk}
	s.sinks[sk.SID] = st
	return st
}

// ownedSink finds a sink of user's; nil (after answering 404) if there is
// none.
func (s *Server) ownedSink(w http.ResponseWriter, r *http.Request, user, sid string) *sink {
	sk := s.sinks[sid]
	if sk == nil || sk.Account != user {
		notFound(w, r.URL.Path)
		return nil
	}
	return sk
}

func (s *Server) sinkInstance(w http.ResponseWriter, r *http.Request, user, sid string) {
	var desc string
	if r.Method == http.MethodPost {
		var e *apiError
		if desc, e = required(r.PostForm, "Description"); e != nil {
			writeAPIError(w, e)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.ownedSink(w, r, user, sid)
	if sk == nil {
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.sinkJSON(&sk.Sink))
	case http.MethodPost:
		// Only the description can change: a sink's configuration is
		// fixed once created.
		sk.Description, sk.Updated = desc, s.now()
		writeJSON(w, http.StatusOK, s.sinkJSON(&sk.Sink))
	case http.MethodDelete:
		for _, sub := range s.subs {
			if sub.SinkSID == sid {
				// Whether Twilio deletes a sink in use is not documented
				// (?); refusing is the stricter answer.
				writeAPIError(w, badParam("Sink %s is used by subscription %s: delete the subscription first", sid, sub.SID))
				return
			}
		}
		delete(s.sinks, sid)
		w.WriteHeader(http.StatusNoContent)
	}
}

// sinkAction serves a sink's Test (a test event is sent to it) and
// Validate (always valid: Twilio no longer validates sinks).
func (s *Server) sinkAction(w http.ResponseWriter, r *http.Request, user, sid, action string) {
	if action == "Validate" {
		if _, e := required(r.PostForm, "TestId"); e != nil {
			writeAPIError(w, e)
			return
		}
	}
	s.mu.Lock()
	sk := s.ownedSink(w, r, user, sid)
	if sk == nil {
		s.mu.Unlock()
		return
	}
	if action == "Validate" {
		s.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]string{"result": "valid"})
		return
	}
	out := s.testDelivery(&sk.Sink)
	s.mu.Unlock()
	s.deliver(out)
	writeJSON(w, http.StatusCreated, map[string]string{"result": "submitted"})
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	p, e := parsePaging(q)
	filters := url.Values{}
	sinkSID, bySink := q["SinkSid"]
	if bySink && e == nil {
		if !sinkSIDRe.MatchString(sinkSID[0]) {
			e = badParam("SinkSid must be DG and 32 hex digits, got %q", sinkSID[0])
		}
		filters.Set("SinkSid", sinkSID[0])
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	items := slices.DeleteFunc(s.Subscriptions(user), func(sub Subscription) bool {
		return bySink && sub.SinkSID != sinkSID[0]
	})
	page, next, prev, e := pageByKey(items, func(sub Subscription) string { return sub.SID }, p.size, p.token)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	out := struct {
		Subscriptions []subscriptionJSON `json:"subscriptions"`
		Meta          meta               `json:"meta"`
	}{Subscriptions: make([]subscriptionJSON, 0, len(page)), Meta: eventsMeta(r.URL.Path, "subscriptions", filters, p, next, prev)}
	for i := range page {
		out.Subscriptions = append(out.Subscriptions, s.subscriptionJSON(&page[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// parseTypes reads a subscription's Types: each a JSON object with a type
// and, optionally, a schema_version (the latest when left out).
func parseTypes(values []string) (map[string]int, *apiError) {
	if len(values) == 0 {
		return nil, badParam("Missing required parameter Types in the post body")
	}
	out := make(map[string]int, len(values))
	for _, v := range values {
		var t struct {
			Type          *string          `json:"type"`
			SchemaVersion *json.RawMessage `json:"schema_version"`
		}
		if err := json.Unmarshal([]byte(v), &t); err != nil || t.Type == nil {
			return nil, badParam("Types: each must be a JSON object with a type, got %q", truncate(v, 80))
		}
		version := 0
		if t.SchemaVersion != nil {
			n, err := strconv.Atoi(strings.TrimSpace(string(*t.SchemaVersion)))
			if err != nil {
				return nil, badParam("Types: schema_version of %s must be an integer", truncate(*t.Type, 80))
			}
			version = n
		}
		if e := checkType(*t.Type, version); e != nil {
			return nil, e
		}
		out[*t.Type] = version
	}
	return out, nil
}

// checkType checks an event type and schema version (0: the latest).
func checkType(typ string, version int) *apiError {
	et, ok := eventTypes[typ]
	switch {
	case !ok:
		return badParam("Event type %q does not exist or cannot be subscribed to", truncate(typ, 80))
	case version < 0 || version > et.latest:
		return badParam("Schema version %d of %s does not exist (1 to %d)", version, typ, et.latest)
	}
	return nil
}

// subaccountsParam reads ReceiveEventsFromSubaccounts under the fake's
// SubaccountEvents mode: whether it asks for subaccounts' events.
func (s *Server) subaccountsParam(form url.Values, user string) (bool, bool, *apiError) {
	v, ok := form["ReceiveEventsFromSubaccounts"]
	if !ok {
		return false, false, nil
	}
	switch s.opts.SubaccountEvents {
	case SubaccountEventsIgnored:
		return false, false, nil
	case SubaccountEventsRefused:
		return false, false, badParam("Unknown parameter ReceiveEventsFromSubaccounts")
	}
	b, err := strconv.ParseBool(v[0])
	switch {
	case err != nil:
		return false, false, badParam("ReceiveEventsFromSubaccounts must be true or false, got %q", v[0])
	case b && user != s.opts.ParentSID:
		return false, false, badParam("Only a parent account's subscription can receive its subaccounts' events")
	}
	return b, true, nil
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request, user string) {
	form := r.PostForm
	desc, e := required(form, "Description")
	var sinkSID string
	var types map[string]int
	var subaccounts bool
	if e == nil {
		sinkSID, e = required(form, "SinkSid")
	}
	if e == nil && !sinkSIDRe.MatchString(sinkSID) {
		e = badParam("SinkSid must be DG and 32 hex digits, got %q", truncate(sinkSID, 40))
	}
	if e == nil {
		types, e = parseTypes(form["Types"])
	}
	if e == nil {
		subaccounts, _, e = s.subaccountsParam(form, user)
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.sinks[sinkSID]
	switch {
	case sk == nil || sk.Account != user:
		writeAPIError(w, badParam("Sink %s not found", sinkSID))
		return
	case sk.Status != "active":
		writeAPIError(w, badParam("Sink %s is not active", sinkSID))
		return
	case s.countOwned(user, false) >= maxSubscriptions:
		writeAPIError(w, badParam("An account can have at most %d subscriptions", maxSubscriptions))
		return
	}
	sub := s.addSubscription(Subscription{Account: user, SinkSID: sinkSID, Description: desc, Types: types, Subaccounts: subaccounts})
	writeJSON(w, http.StatusCreated, s.subscriptionJSON(&sub.Subscription))
}

// addSubscription stores sub with its generated fields. The caller holds
// s.mu.
func (s *Server) addSubscription(sub Subscription) *subscription {
	if sub.SID == "" {
		sub.SID = s.newSID("DF")
	}
	if sub.Created.IsZero() {
		sub.Created = s.now()
	}
	if sub.Updated.IsZero() {
		sub.Updated = sub.Created
	}
	sub.Types = cloneTypes(sub.Types)
	st := &subscription{Subscription: sub}
	s.subs[sub.SID] = st
	return st
}

// cloneTypes copies m, never nil: adding a type writes into it.
func cloneTypes(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	maps.Copy(out, m)
	return out
}

func (s *Server) ownedSubscription(w http.ResponseWriter, r *http.Request, user, sid string) *subscription {
	sub := s.subs[sid]
	if sub == nil || sub.Account != user {
		notFound(w, r.URL.Path)
		return nil
	}
	return sub
}

func (s *Server) subscriptionInstance(w http.ResponseWriter, r *http.Request, user, sid string) {
	var subaccounts, setSubaccounts bool
	if r.Method == http.MethodPost {
		var e *apiError
		if subaccounts, setSubaccounts, e = s.subaccountsParam(r.PostForm, user); e != nil {
			writeAPIError(w, e)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.ownedSubscription(w, r, user, sid)
	if sub == nil {
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.subscriptionJSON(&sub.Subscription))
	case http.MethodPost:
		if d, ok := r.PostForm["Description"]; ok {
			sub.Description = d[0]
		}
		if setSubaccounts {
			sub.Subaccounts = subaccounts
		}
		sub.Updated = s.now()
		writeJSON(w, http.StatusOK, s.subscriptionJSON(&sub.Subscription))
	case http.MethodDelete:
		delete(s.subs, sid)
		w.WriteHeader(http.StatusNoContent)
	}
}

// subscribedEvents lists a subscription's types or adds one.
func (s *Server) subscribedEvents(w http.ResponseWriter, r *http.Request, user, sid string) {
	var p paging
	var e *apiError
	var typ string
	version := 0
	if r.Method == http.MethodGet {
		p, e = parsePaging(r.URL.Query())
	} else {
		typ, e = required(r.PostForm, "Type")
		if v, ok := r.PostForm["SchemaVersion"]; ok && e == nil {
			if version, e = atoiParam("SchemaVersion", v[0]); e == nil && version < 1 {
				e = badParam("SchemaVersion must be at least 1")
			}
		}
		if e == nil {
			e = checkType(typ, version)
		}
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.ownedSubscription(w, r, user, sid)
	if sub == nil {
		return
	}
	if r.Method == http.MethodPost {
		// Adding a type the subscription has answers 200 rather than 201,
		// as Twilio's API description shows (?).
		status := http.StatusCreated
		if _, has := sub.Types[typ]; has {
			status = http.StatusOK
		}
		if _, has := sub.Types[typ]; !has || version != 0 {
			sub.Types[typ] = version
		}
		sub.Updated = s.now()
		writeJSON(w, status, subscribedEventJSONOf(&sub.Subscription, typ))
		return
	}
	types := make([]string, 0, len(sub.Types))
	for t := range sub.Types {
		types = append(types, t)
	}
	sort.Strings(types)
	page, next, prev, e := pageByKey(types, func(t string) string { return t }, p.size, p.token)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	out := struct {
		Types []subscribedEventJSON `json:"types"`
		Meta  meta                  `json:"meta"`
	}{Types: make([]subscribedEventJSON, 0, len(page)), Meta: eventsMeta(r.URL.Path, "types", nil, p, next, prev)}
	for _, t := range page {
		out.Types = append(out.Types, subscribedEventJSONOf(&sub.Subscription, t))
	}
	writeJSON(w, http.StatusOK, out)
}

func atoiParam(name, v string) (int, *apiError) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, badParam("%s must be an integer, got %q", name, truncate(v, 40))
	}
	return n, nil
}

// subscribedEvent fetches, updates (SchemaVersion) or removes one type of
// a subscription.
func (s *Server) subscribedEvent(w http.ResponseWriter, r *http.Request, user, sid, rawType string) {
	typ, err := url.PathUnescape(rawType)
	if err != nil {
		notFound(w, r.URL.Path)
		return
	}
	version := 0
	if r.Method == http.MethodPost {
		var e *apiError
		if v, ok := r.PostForm["SchemaVersion"]; ok {
			version, e = atoiParam("SchemaVersion", v[0])
		}
		if e == nil && version != 0 {
			e = checkType(typ, version)
		}
		if e != nil {
			writeAPIError(w, e)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.ownedSubscription(w, r, user, sid)
	if sub == nil {
		return
	}
	if _, has := sub.Types[typ]; !has {
		notFound(w, r.URL.Path)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, subscribedEventJSONOf(&sub.Subscription, typ))
	case http.MethodPost:
		if version != 0 {
			sub.Types[typ] = version
		}
		sub.Updated = s.now()
		writeJSON(w, http.StatusOK, subscribedEventJSONOf(&sub.Subscription, typ))
	case http.MethodDelete:
		delete(sub.Types, typ)
		sub.Updated = s.now()
		w.WriteHeader(http.StatusNoContent)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Knobs: what the console, or a test, does to sinks and subscriptions.

// AddSink adds a sink owned by account, as creating it with that account's
// credentials would, and returns it with its generated fields. A webhook
// needs a Destination.
func (s *Server) AddSink(account string, sk Sink) (Sink, error) {
	if sk.Type == "" {
		sk.Type = "webhook"
	}
	if sk.Method == "" {
		sk.Method = http.MethodPost
	}
	if sk.Type == "webhook" {
		if u, err := url.Parse(sk.Destination); err != nil || u.Host == "" {
			return Sink{}, fmt.Errorf("add sink: destination %q: %w", truncate(redactURL(sk.Destination), 80), ErrInvalid)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accounts[account] == nil {
		return Sink{}, fmt.Errorf("add sink: account %s: %w", account, ErrNoAccount)
	}
	if sk.SID != "" && (!sinkSIDRe.MatchString(sk.SID) || s.sinks[sk.SID] != nil) {
		return Sink{}, fmt.Errorf("add sink %s: %w", sk.SID, ErrInvalid)
	}
	sk.Account = account
	return s.addSink(sk).Sink, nil
}

// AddSubscription adds a subscription owned by account to one of its
// sinks and returns it with its generated fields.
func (s *Server) AddSubscription(account string, sub Subscription) (Subscription, error) {
	for t, v := range sub.Types {
		if e := checkType(t, v); e != nil {
			return Subscription{}, fmt.Errorf("add subscription: %s: %w", e.Message, ErrInvalid)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.sinks[sub.SinkSID]
	switch {
	case s.accounts[account] == nil:
		return Subscription{}, fmt.Errorf("add subscription: account %s: %w", account, ErrNoAccount)
	case sk == nil || sk.Account != account:
		return Subscription{}, fmt.Errorf("add subscription: sink %s of %s: %w", sub.SinkSID, account, ErrInvalid)
	case sub.SID != "" && (!subscriptionSIDRe.MatchString(sub.SID) || s.subs[sub.SID] != nil):
		return Subscription{}, fmt.Errorf("add subscription %s: %w", sub.SID, ErrInvalid)
	}
	sub.Account = account
	return s.addSubscription(sub).Subscription, nil
}

// EditSink changes a sink in place, as only the console or Twilio could
// (the API changes nothing but the description): a test tampers with a
// sink this way. The SID and account are fixed.
func (s *Server) EditSink(sid string, edit func(*Sink)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.sinks[sid]
	if sk == nil {
		return fmt.Errorf("edit sink %s: %w", sid, ErrInvalid)
	}
	next := sk.Sink
	next.Configuration = maps.Clone(sk.Configuration)
	edit(&next)
	if next.SID != sk.SID || next.Account != sk.Account {
		return fmt.Errorf("edit sink %s: sid and account are fixed: %w", sid, ErrInvalid)
	}
	next.Updated = s.now()
	sk.Sink = next
	return nil
}

// Sinks returns an account's sinks by SID; every account's for "".
func (s *Server) Sinks(account string) []Sink {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Sink
	for _, sk := range s.sinks {
		if account == "" || sk.Account == account {
			c := sk.Sink
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SID < out[j].SID })
	return out
}

// Subscriptions returns an account's subscriptions by SID; every
// account's for "".
func (s *Server) Subscriptions(account string) []Subscription {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Subscription
	for _, sub := range s.subs {
		if account == "" || sub.Account == account {
			c := sub.Subscription
			c.Types = cloneTypes(sub.Types)
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SID < out[j].SID })
	return out
}

// redactURL drops the user info of a URL for an error message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	return u.String()
}
