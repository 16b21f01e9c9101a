package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/traffic"
)

// Messages reads accountSID's message log newest first, from the UTC day of
// since on, and calls fn with each page converted to traffic.Messages; fn
// returns false to stop paging, and an error to stop with that error.
//
// Twilio filters on whole UTC days (DateSent>=YYYY-MM-DD), so the pages hold
// messages from before since on its day: fn must filter by Time. A zero since
// reads the whole log. Messages that Twilio has not sent yet may come without
// date_sent; their Time is date_created.
//
// A page with a message that cannot be converted fails the listing with
// ErrMalformed before fn sees it. Paging ends with ErrPageLoop on a repeated
// next_page_uri and ErrTooManyPages past Config.MaxPages.
func (c *Client) Messages(ctx context.Context, accountSID string, since time.Time, fn func([]traffic.Message) (bool, error)) error {
	if err := validSID(accountSID); err != nil {
		return fmt.Errorf("list messages: %w", err)
	}
	params := (&openapi.ListMessageParams{}).SetPathAccountSid(accountSID).SetPageSize(c.cfg.PageSize)
	if !since.IsZero() {
		params.SetDateSentAfter(utcDay(since))
	}
	err := walk(ctx, c, endpointMessages,
		func(api *openapi.ApiService) (*openapi.ListMessageResponse, error) {
			return api.PageMessage(params, "", "")
		},
		func(p *openapi.ListMessageResponse) *string { return p.NextPageUri },
		func(p *openapi.ListMessageResponse, _ int) (bool, error) {
			msgs, err := c.convertMessages(p.Messages)
			if err != nil {
				return false, err
			}
			return fn(msgs)
		})
	if err != nil {
		return fmt.Errorf("list messages of %s: %w", accountSID, err)
	}
	return nil
}

// utcDay returns midnight UTC of t's UTC day. twilio-go formats the filter
// in the time's own location, so it must be UTC already.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func (c *Client) convertMessages(raw []openapi.ApiV2010Message) ([]traffic.Message, error) {
	out := make([]traffic.Message, 0, len(raw))
	for i := range raw {
		m, err := convertMessage(&raw[i], c.classifier)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// convertMessage turns one message resource into a traffic.Message. The body
// is reduced to a keyword, for inbound messages only, and not kept.
func convertMessage(raw *openapi.ApiV2010Message, cl *traffic.Classifier) (traffic.Message, error) {
	sid := deref(raw.Sid)
	if sid == "" {
		return traffic.Message{}, fmt.Errorf("%w: message without sid", ErrMalformed)
	}
	bad := func(field string, err error) error {
		return fmt.Errorf("%w: message %s: %s: %w", ErrMalformed, truncate(sid, 40), field, err)
	}
	m := traffic.Message{
		SID:              sid,
		AccountSID:       deref(raw.AccountSid),
		Direction:        traffic.Direction(deref(raw.Direction)),
		Status:           deref(raw.Status),
		MessagingService: deref(raw.MessagingServiceSid) != "",
	}
	if raw.ErrorCode != nil {
		m.ErrorCode = *raw.ErrorCode
	}
	var err error
	switch {
	case deref(raw.DateSent) != "":
		if m.Time, err = parseDate(*raw.DateSent); err != nil {
			return traffic.Message{}, bad("date_sent", err)
		}
	case deref(raw.DateCreated) != "":
		if m.Time, err = parseDate(*raw.DateCreated); err != nil {
			return traffic.Message{}, bad("date_created", err)
		}
	default:
		return traffic.Message{}, bad("date_sent", errors.New("neither date_sent nor date_created is set"))
	}
	if m.PriceMicros, err = parsePriceMicros(deref(raw.Price)); err != nil {
		return traffic.Message{}, bad("price", err)
	}
	if m.Direction == traffic.Inbound {
		m.Keyword = cl.Classify(deref(raw.Body))
	}
	return m, nil
}

// parseDate parses Twilio's RFC 2822 dates, "Fri, 24 May 2019 17:44:50 +0000",
// into UTC.
func parseDate(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC1123Z, s)
	if err != nil {
		// Some proxies and older payloads write the zone as "GMT".
		var err2 error
		if t, err2 = time.Parse(time.RFC1123, s); err2 != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 2822 date", truncate(s, 40))
		}
	}
	if t.IsZero() {
		// Indistinguishable from "no time" downstream.
		return time.Time{}, fmt.Errorf("%q is the zero time", truncate(s, 40))
	}
	return t.UTC(), nil
}

// maxPriceDigits bounds the integer digits of a price so that micro-units fit
// comfortably in an int64.
const maxPriceDigits = 12

// parsePriceMicros parses a decimal price such as "-0.00750" into positive
// millionths (7500) without going through a float. Empty means not billed
// yet: 0. Digits beyond the sixth decimal are rounded half up.
func parsePriceMicros(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	bad := fmt.Errorf("%q is not a decimal number", truncate(s, 40))
	t := s
	if t[0] == '-' || t[0] == '+' {
		t = t[1:]
	}
	whole, frac, _ := strings.Cut(t, ".")
	if whole == "" && frac == "" {
		return 0, bad
	}
	if len(strings.TrimLeft(whole, "0")) > maxPriceDigits {
		return 0, fmt.Errorf("%q is out of range", truncate(s, 40))
	}
	var micros int64
	for _, r := range whole {
		if r < '0' || r > '9' {
			return 0, bad
		}
		micros = micros*10 + int64(r-'0')
	}
	for i, r := range frac {
		if r < '0' || r > '9' {
			return 0, bad
		}
		switch {
		case i < 6:
			micros = micros*10 + int64(r-'0')
		case i == 6 && r >= '5':
			micros++ // round half up on the seventh decimal
		}
	}
	for i := len(frac); i < 6; i++ {
		micros *= 10
	}
	return micros, nil
}
