package twiliofake

import (
	"encoding/hex"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	defaultPageSize = 50
	maxPageSize     = 1000
	day             = 24 * time.Hour
)

// paging is the parsed PageSize, Page and PageToken of a list request.
type paging struct {
	size  int
	page  int
	token string // raw PageToken, "" for the first page
}

func parsePaging(q url.Values) (paging, *apiError) {
	p := paging{size: defaultPageSize}
	if v, ok := q["PageSize"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > maxPageSize {
			return p, badParam("PageSize must be an integer from 1 to %d, got %q", maxPageSize, v[0])
		}
		p.size = n
	}
	if v, ok := q["Page"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 {
			return p, badParam("Page must be a non-negative integer, got %q", v[0])
		}
		p.page = n
	}
	p.token = q.Get("PageToken")
	if _, ok := q["PageToken"]; ok && p.token == "" {
		return p, badParam("PageToken must not be empty")
	}
	if p.page > 0 && p.token == "" {
		return p, badParam("Paged requests must include a PageToken")
	}
	return p, nil
}

// pageToken is a parsed PageToken: "PA" (after) or "PB" (before) and a key.
type pageToken struct {
	back bool
	key  string
}

func parseToken(s string) (pageToken, *apiError) {
	if len(s) < 3 || s[0] != 'P' || (s[1] != 'A' && s[1] != 'B') {
		return pageToken{}, badParam("Invalid PageToken %q", s)
	}
	return pageToken{back: s[1] == 'B', key: s[2:]}, nil
}

func (t pageToken) String() string {
	if t.back {
		return "PB" + t.key
	}
	return "PA" + t.key
}

// msgKey is a position in a message log: sort key and SID.
type msgKey struct {
	key int64
	sid [16]byte
	mms bool
}

// parseMsgKey parses "<SID>_<unix seconds>", the key of a message token.
func parseMsgKey(s string) (msgKey, bool) {
	sidStr, secs, ok := strings.Cut(s, "_")
	if !ok || !messageSIDRe.MatchString(sidStr) {
		return msgKey{}, false
	}
	n, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != secs {
		return msgKey{}, false
	}
	var k msgKey
	if _, err := hex.Decode(k.sid[:], []byte(sidStr[2:])); err != nil {
		return msgKey{}, false
	}
	k.key, k.mms = n, sidStr[0] == 'M'
	return k, true
}

func (k msgKey) String() string {
	return formatSID(k.sid, k.mms) + "_" + strconv.FormatInt(k.key, 10)
}

// msgQuery is a parsed message list request.
type msgQuery struct {
	paging
	tok      pageToken
	pos      msgKey
	to, from string
	// lo and hi bound the sort key to [lo, hi) in Unix seconds; hasLo and
	// hasHi say whether a DateSent filter set them.
	lo, hi       int64
	hasLo, hasHi bool
	// filters are the filter parameters as sent, echoed into page URIs.
	filters url.Values
}

func parseMessageQuery(q url.Values) (msgQuery, *apiError) {
	var mq msgQuery
	p, e := parsePaging(q)
	if e != nil {
		return mq, e
	}
	mq.paging = p
	if p.token != "" {
		if mq.tok, e = parseToken(p.token); e != nil {
			return mq, e
		}
		k, ok := parseMsgKey(mq.tok.key)
		if !ok {
			return mq, badParam("Invalid PageToken %q", p.token)
		}
		mq.pos = k
	}
	mq.filters = url.Values{}
	for _, name := range []string{"To", "From"} {
		if v, ok := q[name]; ok {
			mq.filters.Set(name, v[0])
		}
	}
	mq.to, mq.from = q.Get("To"), q.Get("From")
	for _, name := range []string{"DateSent", "DateSent>", "DateSent<"} {
		v, ok := q[name]
		if !ok {
			continue
		}
		d, err := parseDay(v[0])
		if err != nil {
			return mq, badParam("Invalid %s %q: want YYYY-MM-DD", name, v[0])
		}
		mq.filters.Set(name, v[0])
		lo, hi := d.Unix(), d.Add(day).Unix()
		if name != "DateSent<" && (!mq.hasLo || lo > mq.lo) {
			mq.lo, mq.hasLo = lo, true
		}
		if name != "DateSent>" && (!mq.hasHi || hi < mq.hi) {
			mq.hi, mq.hasHi = hi, true
		}
	}
	return mq, nil
}

// dayLayouts are the forms a DateSent value may take: Twilio documents
// YYYY-MM-DD; twilio-go sends RFC 3339; the spec's examples add RFC 2822
// and "YYYY-MM-DD hh:mm:ss.sss".
var dayLayouts = []string{"2006-01-02", time.RFC3339Nano, time.RFC1123Z, time.RFC1123, "2006-01-02 15:04:05.999999999"}

// parseDay returns 00:00 UTC of the date written in v. The time of day
// and any offset are ignored: Twilio documents the filters as
// dates, so a time must be converted to UTC before it is sent (?). A client that
// sends 2024-03-11T01:00:00+10:00 therefore asks for March 11, not for the
// UTC day of that instant, March 10.
func parseDay(v string) (time.Time, error) {
	var err error
	for _, layout := range dayLayouts {
		var t time.Time
		if t, err = time.Parse(layout, v); err == nil {
			return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
		}
	}
	return time.Time{}, err
}

var dayOffsetRe = regexp.MustCompile(`^([+-])(\d{1,5})days$`)

// parseUsageDate parses StartDate/EndDate: YYYY-MM-DD or an offset from
// today such as -30days or +30days, as the spec documents.
func parseUsageDate(v string, today time.Time) (time.Time, bool) {
	if m := dayOffsetRe.FindStringSubmatch(v); m != nil {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "-" {
			n = -n
		}
		return today.AddDate(0, 0, n), true
	}
	t, err := time.Parse("2006-01-02", v)
	return t, err == nil
}

// pageURI builds a list URI: path, the filters, PageSize, Page and an
// optional PageToken.
func pageURI(path string, filters url.Values, size, page int, token string) string {
	q := url.Values{}
	for k, v := range filters {
		q[k] = v
	}
	q.Set("PageSize", strconv.Itoa(size))
	q.Set("Page", strconv.Itoa(page))
	if token != "" {
		q.Set("PageToken", token)
	}
	return path + "?" + q.Encode()
}
