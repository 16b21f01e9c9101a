package twilioapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/traffic"
)

// MessageList is how Messages lists a log.
type MessageList struct {
	// FirstPage is the page size of the first request, 1..1000, at most
	// Config.PageSize; zero means Config.PageSize. Every later page is
	// Config.PageSize. A poll that
	// expects few new messages asks for a small first page: the listing is
	// not filtered by date (see Messages), so a quiet account's first page
	// is old messages, and a small one is cheap to send and decode.
	FirstPage int
}

// Page is one page of a message log, converted.
type Page struct {
	// Messages are the page's messages that converted, in the page's
	// order (newest first).
	Messages []traffic.Message
	// Skipped are the page's messages that did not convert: an odd price,
	// a date in another form, a field of another type. One such message
	// must not blind sentinel to the rest of its page or its account.
	Skipped []Skipped
	// Number counts pages from 1.
	Number int
}

// Skipped is a message that Messages could not convert.
type Skipped struct {
	SID string // "" when the message has none
	Err error  // wraps ErrMalformed
}

// Messages reads accountSID's message log newest first and calls fn with
// each page; fn returns false to stop paging, and an error to stop with
// that error. The Page and its slices are reused for the next page: fn
// must copy what it keeps.
//
// The listing has no DateSent filter. Twilio's DateSent filters are whole
// UTC days, so they never bounded a read (the caller stops paging once a
// page reaches back past what it needs), and whether a filtered listing
// includes messages whose date_sent is null, such as those refused before
// they were sent (21610), is not documented (?): unfiltered, they are
// listed either way, by date_created (the fake's Options.StrictDateSent
// models the other answer).
//
// A page that is not JSON of the expected shape fails the listing with
// ErrMalformed; a message on it that does not convert is reported in
// Page.Skipped and the rest of the page is delivered. Paging ends with
// ErrPageLoop on a repeated next_page_uri and ErrTooManyPages past
// Config.MaxPages.
func (c *Client) Messages(ctx context.Context, accountSID string, opts MessageList, fn func(*Page) (bool, error)) error {
	if err := validSID(accountSID); err != nil {
		return fmt.Errorf("list messages: %w", err)
	}
	first := opts.FirstPage
	if first == 0 {
		first = c.cfg.PageSize
	}
	if first < 1 || first > 1000 {
		return fmt.Errorf("list messages: first page size %d is not 1..1000", first)
	}
	first = min(first, c.cfg.PageSize)
	path := "/2010-04-01/Accounts/" + accountSID + "/Messages.json"
	query := url.Values{"PageSize": {strconv.Itoa(first)}}
	var page Page
	var raw messagePage
	var uri string // of the next page
	for n := 1; ; n++ {
		err := c.do(ctx, endpointMessages, func(api *openapi.ApiService) error {
			raw.reset()
			if n == 1 {
				return getPage(api, path, query, &raw)
			}
			return getPage(api, uri, nil, &raw)
		})
		if err != nil {
			return fmt.Errorf("list messages of %s: page %d: %w", accountSID, n, err)
		}
		page.Number = n
		page.Messages, page.Skipped = c.convertPage(page.Messages[:0], page.Skipped[:0], accountSID, raw.Messages)
		more, err := fn(&page)
		if err != nil {
			return fmt.Errorf("list messages of %s: page %d: %w", accountSID, n, err)
		}
		next := deref(raw.NextPageURI)
		if !more || next == "" {
			return nil
		}
		if uri, err = c.nextPage(n, next, raw.seen); err != nil {
			return fmt.Errorf("list messages of %s: %w", accountSID, err)
		}
		raw.remember(next)
	}
}

// nextPage checks next_page_uri (see walk) and returns what to request:
// the URI with the full page size when the first page was smaller.
func (c *Client) nextPage(n int, next string, seen map[string]bool) (string, error) {
	switch {
	case seen[next]:
		return "", fmt.Errorf("page %d: %w", n, ErrPageLoop)
	case n >= c.cfg.MaxPages:
		return "", fmt.Errorf("%w: more than %d", ErrTooManyPages, c.cfg.MaxPages)
	case !isPath(next):
		return "", fmt.Errorf("page %d: %w: next_page_uri is not a path", n, ErrMalformed)
	}
	u, _ := url.Parse(next) // isPath parsed it
	q := u.Query()
	if q.Get("PageSize") == strconv.Itoa(c.cfg.PageSize) {
		return next, nil
	}
	// The page token marks where the next page starts, whatever its size
	// (?); a small first page must not make every later page small.
	q.Set("PageSize", strconv.Itoa(c.cfg.PageSize))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// getPage GETs uri, with query (nil for a next_page_uri, whose query goes
// out as Twilio wrote it, untouched by twilio-go's query encoder), and
// decodes the JSON body into v. The host is a placeholder that the
// attempt's RoundTripper replaces with Config.BaseURL.
func getPage(api *openapi.ApiService, uri string, query url.Values, v any) error {
	resp, err := api.RequestHandler().Get(DefaultBaseURL+uri, query, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// messagePage is a page of the message list, decoded leniently: the
// envelope must be well formed, but each message's fields decode into
// types that note a value of the wrong type instead of failing the page
// (see convertMessage).
type messagePage struct {
	Messages    []rawMessage `json:"messages"`
	NextPageURI *string      `json:"next_page_uri"`

	seen map[string]bool // next_page_uris requested so far
}

func (p *messagePage) reset() {
	clear(p.Messages)
	p.Messages = p.Messages[:0]
	p.NextPageURI = nil
}

func (p *messagePage) remember(uri string) {
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	p.seen[uri] = true
}

// rawMessage holds the fields of a message resource that sentinel reads.
type rawMessage struct {
	SID                 jsonString `json:"sid"`
	AccountSID          jsonString `json:"account_sid"`
	Direction           jsonString `json:"direction"`
	Status              jsonString `json:"status"`
	ErrorCode           jsonInt    `json:"error_code"`
	DateSent            jsonString `json:"date_sent"`
	DateCreated         jsonString `json:"date_created"`
	DateUpdated         jsonString `json:"date_updated"`
	Price               jsonString `json:"price"`
	From                jsonString `json:"from"`
	To                  jsonString `json:"to"`
	Body                jsonBody   `json:"body"`
	MessagingServiceSID jsonString `json:"messaging_service_sid"`
}

// jsonString is a JSON string or null (""); any other value is noted in
// bad instead of failing the decoding of the whole page.
type jsonString struct {
	s   string
	bad string // the JSON type found instead of a string
}

func (j *jsonString) UnmarshalJSON(b []byte) error {
	*j = jsonString{}
	switch {
	case string(b) == "null":
	case len(b) >= 2 && b[0] == '"':
		if bytes.IndexByte(b, '\\') < 0 {
			j.s = string(b[1 : len(b)-1])
			return nil
		}
		if err := json.Unmarshal(b, &j.s); err != nil {
			j.bad = "an invalid string"
		}
	default:
		j.bad = jsonType(b)
	}
	return nil
}

// jsonInt is a JSON integer or null (0); a string of digits is accepted as
// well, anything else is noted in bad.
type jsonInt struct {
	n   int
	bad string
}

func (j *jsonInt) UnmarshalJSON(b []byte) error {
	*j = jsonInt{}
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		j.bad = jsonType(b)
		return nil
	}
	j.n = n
	return nil
}

// maxKeyword bounds the bodies that are kept to be classified: no opt-out
// keyword is longer (Twilio's are at most 11 letters, custom ones are
// words). Longer bodies are never a keyword and are dropped at once.
const maxKeyword = 64

// jsonBody is a message body, kept only when it is short enough to be a
// consent keyword (see maxKeyword); long marks one that was not.
type jsonBody struct {
	jsonString
	long bool
}

func (j *jsonBody) UnmarshalJSON(b []byte) error {
	*j = jsonBody{}
	if len(b) > 2*maxKeyword+2 { // escapes take at most two bytes a character here
		j.long = true
		return nil
	}
	return j.jsonString.UnmarshalJSON(b)
}

// jsonType names the JSON type of a value, for errors.
func jsonType(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// convertPage appends raw, messages of accountSID, converted, to dst, and
// those that do not convert to skipped.
//
// The account SID, direction and status of a message are replaced by equal
// strings that many messages share: the decoded JSON's own copies would
// stay alive with every message of a batch, and comparing shared strings
// later (the store checks all three) stops at their pointers.
func (c *Client) convertPage(dst []traffic.Message, skipped []Skipped, accountSID string, raw []rawMessage) ([]traffic.Message, []Skipped) {
	dst = slices.Grow(dst, len(raw))
	for i := range raw {
		m, err := convertMessage(&raw[i], c.classifier, c.peers)
		if err != nil {
			skipped = append(skipped, Skipped{SID: raw[i].SID.s, Err: err})
			continue
		}
		if m.AccountSID == accountSID {
			m.AccountSID = accountSID
		}
		m.Direction = traffic.Direction(shared(directions[:], string(m.Direction)))
		m.Status = shared(statuses[:], m.Status)
		dst = append(dst, m)
	}
	return dst, skipped
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
// is reduced to a keyword, for inbound messages only, and the other party's
// number to its keyed hash; neither is kept.
func convertMessage(raw *rawMessage, cl *traffic.Classifier, peers *traffic.Peers) (traffic.Message, error) {
	sid := raw.SID.s
	if raw.SID.bad != "" {
		return traffic.Message{}, fmt.Errorf("%w: message sid is %s", ErrMalformed, raw.SID.bad)
	}
	if sid == "" {
		return traffic.Message{}, fmt.Errorf("%w: message without sid", ErrMalformed)
	}
	bad := func(field string, err error) error {
		return fmt.Errorf("%w: message %s: %s: %w", ErrMalformed, truncate(sid, 40), field, err)
	}
	for _, f := range []struct {
		name string
		bad  string
	}{
		{"account_sid", raw.AccountSID.bad}, {"direction", raw.Direction.bad}, {"status", raw.Status.bad},
		{"error_code", raw.ErrorCode.bad}, {"date_sent", raw.DateSent.bad}, {"date_created", raw.DateCreated.bad},
		{"price", raw.Price.bad}, {"from", raw.From.bad}, {"to", raw.To.bad}, {"body", raw.Body.bad},
		{"messaging_service_sid", raw.MessagingServiceSID.bad},
	} {
		if f.bad != "" {
			return traffic.Message{}, bad(f.name, fmt.Errorf("want a string or null, got %s", f.bad))
		}
	}
	m := traffic.Message{
		SID:              sid,
		AccountSID:       raw.AccountSID.s,
		Direction:        traffic.Direction(raw.Direction.s),
		Status:           raw.Status.s,
		ErrorCode:        raw.ErrorCode.n,
		MessagingService: raw.MessagingServiceSID.s != "",
	}
	var err error
	switch {
	case raw.DateSent.s != "":
		if m.Time, err = parseDate(raw.DateSent.s); err != nil {
			return traffic.Message{}, bad("date_sent", err)
		}
	case raw.DateCreated.s != "":
		if m.Time, err = parseDate(raw.DateCreated.s); err != nil {
			return traffic.Message{}, bad("date_created", err)
		}
	default:
		return traffic.Message{}, bad("date_sent", errors.New("neither date_sent nor date_created is set"))
	}
	// date_updated only orders this read against others of the message
	// (traffic.Older): one that does not parse is unknown, not a reason to
	// lose the message.
	if raw.DateUpdated.s != "" {
		if t, err := parseDate(raw.DateUpdated.s); err == nil {
			m.Updated = t
		}
	}
	if m.PriceMicros, err = parsePriceMicros(raw.Price.s); err != nil {
		return traffic.Message{}, bad("price", err)
	}
	switch {
	case m.Direction == traffic.Inbound:
		if !raw.Body.long {
			m.Keyword = cl.Classify(raw.Body.s)
		}
		if peers != nil {
			m.Peer = peers.Hash(raw.From.s)
		}
	case m.Direction.Outbound() && peers != nil:
		m.Peer = peers.Hash(raw.To.s)
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
