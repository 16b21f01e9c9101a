package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/traffic"
)

// Messages reads accountSID's message log newest first, from the UTC day of
// since on, and calls fn with each page converted to traffic.Messages; fn
// returns false to stop paging, and an error to stop with that error. The
// slice fn gets is reused for the next page: fn must copy what it keeps.
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
	// One slice holds every page in turn: a page is 1,000 messages, and a
	// backfill reads hundreds of pages.
	var msgs []traffic.Message
	err := walk(ctx, c, endpointMessages,
		func(api *openapi.ApiService) (*openapi.ListMessageResponse, error) {
			return api.PageMessage(params, "", "")
		},
		func(p *openapi.ListMessageResponse) *string { return p.NextPageUri },
		func(p *openapi.ListMessageResponse, _ int) (bool, error) {
			var err error
			if msgs, err = c.appendMessages(msgs[:0], accountSID, p.Messages); err != nil {
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

// appendMessages appends raw, messages of accountSID, converted, to dst.
//
// The account SID, direction and status of a message are replaced by equal
// strings that many messages share: the decoded JSON's own copies would
// stay alive with every message of a batch, and comparing shared strings
// later (the store checks all three) stops at their pointers.
func (c *Client) appendMessages(dst []traffic.Message, accountSID string, raw []openapi.ApiV2010Message) ([]traffic.Message, error) {
	dst = slices.Grow(dst, len(raw))
	for i := range raw {
		m, err := convertMessage(&raw[i], c.classifier)
		if err != nil {
			return dst, err
		}
		if m.AccountSID == accountSID {
			m.AccountSID = accountSID
		}
		m.Direction = traffic.Direction(shared(directions[:], string(m.Direction)))
		m.Status = shared(statuses[:], m.Status)
		dst = append(dst, m)
	}
	return dst, nil
}

// The directions and statuses that Twilio documents.
var (
	directions = [...]string{string(traffic.Inbound), string(traffic.OutboundAPI), string(traffic.OutboundCall), string(traffic.OutboundReply)}
	statuses   = [...]string{"queued", "sending", "sent", "failed", "delivered", "undelivered", "receiving", "received",
		"accepted", "scheduled", "read", "canceled", "partially_delivered"}
)

// shared returns table's string equal to s, or s if there is none.
func shared(table []string, s string) string {
	if i := slices.Index(table, s); i >= 0 {
		return table[i]
	}
	return s
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
	if t, ok := parseRFC1123Z(s); ok {
		return t, nil
	}
	return parseDateSlow(s)
}

// parseDateSlow is parseDate by time.Parse: what parseRFC1123Z leaves to it,
// and the reference that parseRFC1123Z is tested against.
func parseDateSlow(s string) (time.Time, error) {
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

// parseRFC1123Z parses s into UTC if it is in the exact form Twilio writes:
// time.RFC1123Z with canonical names, in range and not the zero time. A
// backfill of a large fleet parses a million such dates, and time.Parse's
// generality costs several times this. ok is false for anything else,
// including what time.Parse accepts (other spacing, a "GMT" zone, fractional
// seconds, lower case names, offsets of 24 hours): parseDateSlow decides
// those, so parseDate's results are time.Parse's (FuzzParseDate).
func parseRFC1123Z(s string) (t time.Time, ok bool) {
	// "Mon, 02 Jan 2006 15:04:05 -0700"
	if len(s) != len(time.RFC1123Z) || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
		s[16] != ' ' || s[19] != ':' || s[22] != ':' || s[25] != ' ' || (s[26] != '+' && s[26] != '-') {
		return time.Time{}, false
	}
	switch s[0:3] {
	case "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun":
		// time.Parse checks the name but not that it is the date's weekday.
	default:
		return time.Time{}, false
	}
	month := monthNumber(s[8:11])
	day, ok1 := digits(s, 5, 2)
	year, ok2 := digits(s, 12, 4)
	hour, ok3 := digits(s, 17, 2)
	minute, ok4 := digits(s, 20, 2)
	sec, ok5 := digits(s, 23, 2)
	zh, ok6 := digits(s, 27, 2)
	zm, ok7 := digits(s, 29, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || month == 0 ||
		day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 || zh > 23 || zm > 59 {
		return time.Time{}, false
	}
	offset := zh*3600 + zm*60
	if s[26] == '-' {
		offset = -offset
	}
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec-offset)
	t = time.Unix(unix, 0).UTC()
	if t.IsZero() {
		return time.Time{}, false
	}
	return t, true
}

// monthNumber returns the number, 1 to 12, of a month's English
// three-letter name, or 0.
func monthNumber(name string) int {
	switch name {
	case "Jan":
		return 1
	case "Feb":
		return 2
	case "Mar":
		return 3
	case "Apr":
		return 4
	case "May":
		return 5
	case "Jun":
		return 6
	case "Jul":
		return 7
	case "Aug":
		return 8
	case "Sep":
		return 9
	case "Oct":
		return 10
	case "Nov":
		return 11
	case "Dec":
		return 12
	}
	return 0
}

// daysIn returns the number of days of month (1 to 12) in year, proleptic
// Gregorian as in package time.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysSinceEpoch returns the days from 1970-01-01 to the given date of the
// proleptic Gregorian calendar, for years 0 to 9999 (Howard Hinnant's
// days_from_civil).
func daysSinceEpoch(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := (year+400)/400 - 1                      // year >= -1: shifted so that division rounds down
	yoe := year - era*400                          // [0, 399]
	mp := (month + 9) % 12                         // March is 0
	doy := (153*mp+2)/5 + day - 1                  // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy         // [0, 146096]
	return int64(era)*146097 + int64(doe) - 719468 // 719468: 0000-03-01 to 1970-01-01
}

// digits returns the decimal number in s[i:i+n], whose bytes must all be
// digits.
func digits(s string, i, n int) (int, bool) {
	v := 0
	for _, c := range []byte(s[i : i+n]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
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
	bad := func() error { return fmt.Errorf("%q is not a decimal number", truncate(s, 40)) }
	t := s
	if t[0] == '-' || t[0] == '+' {
		t = t[1:]
	}
	whole, frac, _ := strings.Cut(t, ".")
	if whole == "" && frac == "" {
		return 0, bad()
	}
	if len(strings.TrimLeft(whole, "0")) > maxPriceDigits {
		return 0, fmt.Errorf("%q is out of range", truncate(s, 40))
	}
	var micros int64
	for _, r := range []byte(whole) {
		if r < '0' || r > '9' {
			return 0, bad()
		}
		micros = micros*10 + int64(r-'0')
	}
	for i, r := range []byte(frac) {
		if r < '0' || r > '9' {
			return 0, bad()
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
