package twilioapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
	events "github.com/twilio/twilio-go/rest/events/v1"
)

// endpointEvents labels every Event Streams request. Only -events-setup
// makes them, so the daemon's metrics do not list it from the start.
const endpointEvents = "events"

var (
	sinkSIDPattern         = regexp.MustCompile(`^DG[0-9a-fA-F]{32}$`)
	subscriptionSIDPattern = regexp.MustCompile(`^DF[0-9a-fA-F]{32}$`)
)

// Sink is an Event Streams sink as sentinel needs it.
type Sink struct {
	SID, Description string
	// Type is webhook, kinesis, segment or email.
	Type string
	// Destination, Method and Batch are a webhook's configuration.
	// Destination is as Twilio shows it: whether Twilio shows the Basic
	// credentials of its user info is not documented (?). Batch is
	// batch_events, true when Twilio shows none (batching is what Event
	// Streams does by default (?)).
	Destination string
	Method      string
	Batch       bool
	Status      string
	Created     time.Time
}

// Subscription is an Event Streams subscription as sentinel needs it.
type Subscription struct {
	SID, SinkSID, Description string
	// Subaccounts is receive_events_from_subaccounts: the parent's
	// subscription receives its subaccounts' events too. SubaccountsShown
	// says whether Twilio showed the field at all.
	Subaccounts, SubaccountsShown bool
	Created                       time.Time
}

// Events is the Event Streams API (events.twilio.com) as one account sees
// it: sinks and subscriptions belong to the account whose credentials
// create them, and each account lists only its own.
type Events struct {
	c    *Client
	cred credentials
}

// Events returns the parent's Event Streams API.
func (c *Client) Events() *Events { return &Events{c: c, cred: c.parent()} }

// EventsAs returns the Event Streams API of the account sid with its own
// auth token (a subaccount's, read from the parent's account list). The
// token is held in memory only and never shown.
func (c *Client) EventsAs(sid, token string) (*Events, error) {
	if !sidPattern.MatchString(sid) || !tokenPattern.MatchString(token) {
		return nil, fmt.Errorf("events of %s: the account SID or its token is malformed", truncate(sid, 40))
	}
	return &Events{c: c, cred: credentials{sid, token}}, nil
}

// Account returns the SID of the account whose API this is.
func (e *Events) Account() string { return e.cred.sid }

// call runs op as e's account.
func (e *Events) call(ctx context.Context, idempotent bool, op func(api *events.ApiService) error) error {
	return e.c.call(ctx, endpointEvents, e.cred, idempotent, func(h *client.RequestHandler) error {
		return op(events.NewApiService(h))
	})
}

// Sinks lists the account's sinks, reading every page.
func (e *Events) Sinks(ctx context.Context) ([]Sink, error) {
	var out []Sink
	err := walkEvents(ctx, e,
		func(api *events.ApiService) (*events.ListSinkResponse, error) {
			return api.PageSink((&events.ListSinkParams{}).SetPageSize(e.c.cfg.PageSize), "", "")
		},
		func(p *events.ListSinkResponse) *string { return p.Meta.NextPageUrl },
		func(p *events.ListSinkResponse) error {
			for i := range p.Sinks {
				sk, err := convertSink(&p.Sinks[i])
				if err != nil {
					return err
				}
				out = append(out, sk)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list sinks of %s: %w", e.cred.sid, err)
	}
	return out, nil
}

// CreateSink creates a webhook sink. It is retried only after a 429: a
// retry after a lost answer could create a second sink.
func (e *Events) CreateSink(ctx context.Context, description, destination, method string, batch bool) (Sink, error) {
	params := (&events.CreateSinkParams{}).SetDescription(description).SetSinkType("webhook").
		SetSinkConfiguration(map[string]any{"destination": destination, "method": method, "batch_events": batch})
	var raw *events.EventsV1Sink
	err := e.call(ctx, false, func(api *events.ApiService) (err error) {
		raw, err = api.CreateSink(params)
		return err
	})
	if err != nil {
		return Sink{}, fmt.Errorf("create sink for %s: %w", e.cred.sid, err)
	}
	sk, err := convertSink(raw)
	if err != nil {
		return Sink{}, fmt.Errorf("create sink for %s: %w", e.cred.sid, err)
	}
	return sk, nil
}

// DeleteSink deletes a sink; one already gone counts as deleted.
func (e *Events) DeleteSink(ctx context.Context, sid string) error {
	if !sinkSIDPattern.MatchString(sid) {
		return fmt.Errorf("delete sink %q: not a sink SID", truncate(sid, 40))
	}
	err := e.call(ctx, true, func(api *events.ApiService) error { return api.DeleteSink(sid) })
	if err != nil && Code(err) != 20404 {
		return fmt.Errorf("delete sink %s of %s: %w", sid, e.cred.sid, err)
	}
	return nil
}

// subscriptionJSON is a subscription as Twilio sends it. twilio-go v1.31.0
// dropped receive_events_from_subaccounts from its model, so subscriptions
// are read here.
type subscriptionJSON struct {
	SID         *string `json:"sid"`
	SinkSID     *string `json:"sink_sid"`
	Description *string `json:"description"`
	DateCreated *string `json:"date_created"`
	Subaccounts *bool   `json:"receive_events_from_subaccounts"`
}

type subscriptionPage struct {
	Subscriptions []subscriptionJSON `json:"subscriptions"`
	Meta          struct {
		NextPageURL *string `json:"next_page_url"`
	} `json:"meta"`
}

// Subscriptions lists the account's subscriptions, reading every page.
func (e *Events) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var out []Subscription
	err := walkEvents(ctx, e,
		func(api *events.ApiService) (*subscriptionPage, error) {
			var p subscriptionPage
			q := url.Values{"PageSize": {strconv.Itoa(e.c.cfg.PageSize)}}
			return &p, getEventsJSON(api, DefaultEventsURL+"/v1/Subscriptions", q, &p)
		},
		func(p *subscriptionPage) *string { return p.Meta.NextPageURL },
		func(p *subscriptionPage) error {
			for i := range p.Subscriptions {
				sub, err := convertSubscription(&p.Subscriptions[i])
				if err != nil {
					return err
				}
				out = append(out, sub)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list subscriptions of %s: %w", e.cred.sid, err)
	}
	return out, nil
}

// CreateSubscription subscribes a sink to types, each at the latest schema
// version (Twilio's default when none is given). With subaccounts it asks
// that the subscription receive the account's subaccounts' events too
// (ReceiveEventsFromSubaccounts, a beta parameter twilio-go v1.31.0 no
// longer sends, so it is sent here): the answer's Subaccounts and
// SubaccountsShown tell whether Twilio did. It is retried only after a
// 429.
func (e *Events) CreateSubscription(ctx context.Context, sinkSID, description string, types []string, subaccounts bool) (Subscription, error) {
	form := url.Values{"Description": {description}, "SinkSid": {sinkSID}}
	for _, t := range types {
		b, err := json.Marshal(map[string]string{"type": t})
		if err != nil {
			return Subscription{}, err
		}
		form.Add("Types", string(b))
	}
	if subaccounts {
		form.Set("ReceiveEventsFromSubaccounts", "true")
	}
	var raw subscriptionJSON
	err := e.call(ctx, false, func(api *events.ApiService) error {
		resp, err := api.RequestHandler().Post(DefaultEventsURL+"/v1/Subscriptions", form,
			map[string]any{"Content-Type": "application/x-www-form-urlencoded"}, "")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&raw)
	})
	if err != nil {
		return Subscription{}, fmt.Errorf("subscribe sink %s of %s: %w", sinkSID, e.cred.sid, err)
	}
	sub, err := convertSubscription(&raw)
	if err != nil {
		return Subscription{}, fmt.Errorf("subscribe sink %s of %s: %w", sinkSID, e.cred.sid, err)
	}
	return sub, nil
}

// Types lists the event types a subscription selects.
func (e *Events) Types(ctx context.Context, subscriptionSID string) ([]string, error) {
	if !subscriptionSIDPattern.MatchString(subscriptionSID) {
		return nil, fmt.Errorf("event types of %q: not a subscription SID", truncate(subscriptionSID, 40))
	}
	var out []string
	err := walkEvents(ctx, e,
		func(api *events.ApiService) (*events.ListSubscribedEventResponse, error) {
			return api.PageSubscribedEvent(subscriptionSID, (&events.ListSubscribedEventParams{}).SetPageSize(e.c.cfg.PageSize), "", "")
		},
		func(p *events.ListSubscribedEventResponse) *string { return p.Meta.NextPageUrl },
		func(p *events.ListSubscribedEventResponse) error {
			for _, t := range p.Types {
				if t.Type == nil || *t.Type == "" {
					return fmt.Errorf("%w: subscribed event without a type", ErrMalformed)
				}
				out = append(out, *t.Type)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("event types of subscription %s of %s: %w", subscriptionSID, e.cred.sid, err)
	}
	return out, nil
}

// AddType adds an event type to a subscription, at the latest schema
// version. Adding one it has changes nothing, so it is retried like a read.
func (e *Events) AddType(ctx context.Context, subscriptionSID, typ string) error {
	if !subscriptionSIDPattern.MatchString(subscriptionSID) {
		return fmt.Errorf("add event type to %q: not a subscription SID", truncate(subscriptionSID, 40))
	}
	err := e.call(ctx, true, func(api *events.ApiService) error {
		_, err := api.CreateSubscribedEvent(subscriptionSID, (&events.CreateSubscribedEventParams{}).SetType(typ))
		return err
	})
	if err != nil {
		return fmt.Errorf("add %s to subscription %s of %s: %w", typ, subscriptionSID, e.cred.sid, err)
	}
	return nil
}

// DeleteSubscription deletes a subscription; one already gone counts as
// deleted.
func (e *Events) DeleteSubscription(ctx context.Context, sid string) error {
	if !subscriptionSIDPattern.MatchString(sid) {
		return fmt.Errorf("delete subscription %q: not a subscription SID", truncate(sid, 40))
	}
	err := e.call(ctx, true, func(api *events.ApiService) error { return api.DeleteSubscription(sid) })
	if err != nil && Code(err) != 20404 {
		return fmt.Errorf("delete subscription %s of %s: %w", sid, e.cred.sid, err)
	}
	return nil
}

// walkEvents reads an Events listing page by page, as walk does for the
// 2010 API: the next page is meta.next_page_url, an absolute URL on
// events.twilio.com requested as it is. Paging stops with ErrPageLoop when
// a URL repeats, ErrTooManyPages past MaxPages, and ErrMalformed at a URL
// on another host or that is not a plain URL.
func walkEvents[P any](ctx context.Context, e *Events, first func(api *events.ApiService) (*P, error), next func(*P) *string, fn func(*P) error) error {
	var page *P
	err := e.call(ctx, true, func(api *events.ApiService) (err error) {
		page, err = first(api)
		return err
	})
	if err != nil {
		return fmt.Errorf("page 1: %w", err)
	}
	seen := map[string]bool{}
	for n := 1; ; n++ {
		if err := fn(page); err != nil {
			return fmt.Errorf("page %d: %w", n, err)
		}
		uri := next(page)
		if uri == nil || *uri == "" {
			return nil
		}
		path, ok := eventsPath(*uri)
		switch {
		case !ok:
			return fmt.Errorf("page %d: %w: next_page_url is not a URL on events.twilio.com", n, ErrMalformed)
		case seen[path]:
			return fmt.Errorf("page %d: %w", n, ErrPageLoop)
		case n >= e.c.cfg.MaxPages:
			return fmt.Errorf("%w: more than %d", ErrTooManyPages, e.c.cfg.MaxPages)
		}
		seen[path] = true
		var p P
		err = e.call(ctx, true, func(api *events.ApiService) error {
			return getEventsJSON(api, DefaultEventsURL+path, nil, &p)
		})
		if err != nil {
			return fmt.Errorf("page %d: %w", n+1, err)
		}
		page = &p
	}
}

// eventsPath returns the path and query of a next_page_url: an absolute
// https URL on events.twilio.com (or an edge or region of it) whose path
// and query are plain (see isPath).
func eventsPath(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Fragment != "" ||
		!strings.HasPrefix(u.Host, "events.") || !strings.HasSuffix(u.Host, ".twilio.com") {
		return "", false
	}
	rest := raw[strings.Index(raw, u.Host)+len(u.Host):]
	if !isPath(rest) {
		return "", false
	}
	return rest, true
}

// getEventsJSON GETs an Events URL and decodes its answer. With no query
// of its own, the URL's query (a next page's PageToken) goes out as
// Twilio wrote it.
func getEventsJSON(api *events.ApiService, u string, q url.Values, v any) error {
	resp, err := api.RequestHandler().Get(u, q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// convertSink keeps what sentinel needs of a sink. Its SID is checked, as
// it goes into request paths.
func convertSink(raw *events.EventsV1Sink) (Sink, error) {
	if raw == nil || raw.Sid == nil || !sinkSIDPattern.MatchString(*raw.Sid) {
		return Sink{}, fmt.Errorf("%w: sink without a sink SID", ErrMalformed)
	}
	sk := Sink{SID: *raw.Sid, Description: deref(raw.Description), Type: deref(raw.SinkType), Status: deref(raw.Status), Batch: true}
	if raw.DateCreated != nil {
		sk.Created = *raw.DateCreated
	}
	if raw.SinkConfiguration == nil {
		return sk, nil
	}
	cfg, ok := (*raw.SinkConfiguration).(map[string]any)
	if !ok {
		return Sink{}, fmt.Errorf("%w: sink %s: sink_configuration is not an object", ErrMalformed, sk.SID)
	}
	sk.Destination, _ = cfg["destination"].(string)
	sk.Method, _ = cfg["method"].(string)
	switch b := cfg["batch_events"].(type) {
	case bool:
		sk.Batch = b
	case string:
		// Written as a string by someone's hand-made sink, perhaps.
		sk.Batch = !strings.EqualFold(b, "false")
	}
	return sk, nil
}

// convertSubscription keeps what sentinel needs of a subscription.
func convertSubscription(raw *subscriptionJSON) (Subscription, error) {
	if raw.SID == nil || !subscriptionSIDPattern.MatchString(*raw.SID) {
		return Subscription{}, fmt.Errorf("%w: subscription without a subscription SID", ErrMalformed)
	}
	sub := Subscription{SID: *raw.SID, SinkSID: deref(raw.SinkSID), Description: deref(raw.Description)}
	if raw.Subaccounts != nil {
		sub.Subaccounts, sub.SubaccountsShown = *raw.Subaccounts, true
	}
	if t, err := time.Parse(time.RFC3339, deref(raw.DateCreated)); err == nil {
		sub.Created = t
	}
	return sub, nil
}

// Credential is an account's SID, status and own auth token. Its String
// and GoString show the SID only: the token must never reach a log or an
// error.
type Credential struct {
	SID, Status string
	Token       string
}

func (c Credential) String() string   { return c.SID }
func (c Credential) GoString() string { return "twilioapi.Credential{" + c.SID + "}" }

// SubaccountCredentials lists every subaccount with its own auth token,
// which the parent's credentials can read: what setting up a subaccount's
// own sink needs. The caller holds the tokens in memory only.
func (c *Client) SubaccountCredentials(ctx context.Context) ([]Credential, error) {
	var out []Credential
	err := walk(ctx, c, endpointAccounts,
		func(api *openapi.ApiService) (*openapi.ListAccountResponse, error) {
			return api.PageAccount((&openapi.ListAccountParams{}).SetPageSize(c.cfg.PageSize), "", "")
		},
		func(p *openapi.ListAccountResponse) *string { return p.NextPageUri },
		func(p *openapi.ListAccountResponse, _ int) (bool, error) {
			for _, a := range p.Accounts {
				sid := deref(a.Sid)
				if !sidPattern.MatchString(sid) {
					return false, fmt.Errorf("%w: account without an account SID", ErrMalformed)
				}
				if strings.EqualFold(sid, c.cfg.AccountSID) {
					continue
				}
				out = append(out, Credential{SID: sid, Status: deref(a.Status), Token: deref(a.AuthToken)})
			}
			return true, nil
		})
	if err != nil {
		return nil, fmt.Errorf("list subaccounts: %w", err)
	}
	return out, nil
}
