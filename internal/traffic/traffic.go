// Package traffic holds sentinel's view of a subaccount's messaging: one
// Message per Twilio message SID in its latest known state, the Counts that a
// message contributes to its time bucket, and the Coverage that says which
// stretch of a message log is known to be complete.
//
// The package is the contract between the poller (which turns Twilio
// responses into Messages), the store (which keeps Messages and maintains
// bucketed Counts as they change) and the policies (which judge windows of
// Counts). It does no I/O.
//
// Message bodies are never kept: at ingest a body is reduced to a Keyword
// (opt-out, opt-in or none), which is all the rules need.
package traffic

import (
	"sort"
	"strings"
	"time"
)

// BucketWidth is the resolution of stored aggregates. Rule windows are
// aligned to it: a "1h" window evaluated at 10:32 covers the buckets that
// start at 09:35 through 10:30 (see WindowStart).
const BucketWidth = 5 * time.Minute

// BucketStart returns the start of the bucket that holds t, in UTC.
func BucketStart(t time.Time) time.Time {
	return t.UTC().Truncate(BucketWidth)
}

// WindowStart returns the start of the first whole bucket at or after
// now-window. Counting from there never reaches back further than window,
// which matters when the start is also bounded by a reinstatement: traffic
// that a person has already reviewed is never counted again.
func WindowStart(now time.Time, window time.Duration) time.Time {
	return CeilBucket(now.Add(-window))
}

// CeilBucket returns t rounded up to a bucket boundary, in UTC.
func CeilBucket(t time.Time) time.Time {
	b := BucketStart(t)
	if b.Before(t) {
		b = b.Add(BucketWidth)
	}
	return b
}

// Direction is Twilio's message direction.
type Direction string

// Directions as Twilio names them.
const (
	Inbound       Direction = "inbound"
	OutboundAPI   Direction = "outbound-api"
	OutboundCall  Direction = "outbound-call"
	OutboundReply Direction = "outbound-reply"
)

// Outbound reports whether d is one of Twilio's outbound directions.
func (d Direction) Outbound() bool { return strings.HasPrefix(string(d), "outbound") }

// Keyword is what an inbound body means for consent.
type Keyword uint8

// Keywords.
const (
	NoKeyword Keyword = iota
	OptOut
	OptIn
)

// Ignored says why an inbound opt-out does not count toward opt-out rates.
// It is decided once, when the store first keeps the opt-out (see
// store.PutMessages), and kept with the message.
type Ignored uint8

// Reasons an opt-out is ignored.
const (
	// Counted: the opt-out counts.
	Counted Ignored = iota
	// Repeated: the same number's opt-out was already counted within the
	// consent window (the raw message retention): one number is one
	// opt-out, however often it texts STOP.
	Repeated
	// Unsolicited: the subaccount has not messaged that number within the
	// consent window, so the opt-out says nothing about its list.
	Unsolicited
)

// String names r as metrics and -status do.
func (r Ignored) String() string {
	switch r {
	case Counted:
		return "counted"
	case Repeated:
		return "repeated"
	case Unsolicited:
		return "unsolicited"
	}
	return "unknown"
}

// DefaultOptOutKeywords are Twilio's default opt-out keywords (REVOKE and
// OPTOUT since 2025-04-29). Source: Twilio's "Advanced Opt-Out" docs.
var DefaultOptOutKeywords = []string{"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}

// DefaultOptInKeywords are Twilio's default opt-in keywords.
var DefaultOptInKeywords = []string{"START", "YES", "UNSTOP"}

// Classifier reduces an inbound body to a Keyword. Twilio treats a message as
// an opt-out only when the whole trimmed body equals a keyword, ignoring case:
// "Stop please" is not an opt-out.
type Classifier struct {
	optOut map[string]bool
	optIn  map[string]bool
}

// NewClassifier returns a Classifier for Twilio's default keywords plus
// extraOptOut (for example custom keywords configured in Advanced Opt-Out).
func NewClassifier(extraOptOut ...string) *Classifier {
	c := &Classifier{optOut: map[string]bool{}, optIn: map[string]bool{}}
	for _, k := range append(append([]string(nil), DefaultOptOutKeywords...), extraOptOut...) {
		if k = strings.ToUpper(strings.TrimSpace(k)); k != "" {
			c.optOut[k] = true
		}
	}
	for _, k := range DefaultOptInKeywords {
		c.optIn[k] = true
	}
	return c
}

// Classify returns the Keyword of an inbound body.
func (c *Classifier) Classify(body string) Keyword {
	k := strings.ToUpper(strings.TrimSpace(body))
	switch {
	case c.optOut[k]:
		return OptOut
	case c.optIn[k]:
		return OptIn
	}
	return NoKeyword
}

// Message is one Twilio message in its latest known state.
type Message struct {
	SID        string
	AccountSID string
	Direction  Direction
	Status     string
	// ErrorCode is Twilio's error_code; 0 when null.
	ErrorCode int
	// Time is date_sent, or date_created when Twilio has not set date_sent
	// (messages that failed before hand-off or are still queued). It decides
	// the message's bucket, and it does not change once set by Twilio.
	Time time.Time
	// PriceMicros is the billed price in millionths of price_unit, as a
	// positive number (Twilio reports it negative); 0 until billed.
	PriceMicros int64
	// MessagingService reports whether messaging_service_sid was set.
	MessagingService bool
	// Keyword is the consent meaning of an inbound body.
	Keyword Keyword
	// Ignored says whether an opt-out counts (see Ignored); always Counted
	// for anything else.
	Ignored Ignored
	// Peer is the keyed hash (see Peers) of the other party's number: to
	// for outbound messages, from for inbound ones; 0 when Twilio gave none
	// or masked it. Raw numbers are never kept.
	Peer uint64
	// Updated is when the message last changed as its source says: the
	// listing's date_updated, or a pushed event's timestamp; zero when
	// unknown. It orders what two sources (a poll, a pushed event, a late
	// retry of one) say about the same message: an older report never
	// moves the message back (see Merge).
	Updated time.Time
}

// StatusClass is how a message status counts.
type StatusClass uint8

// Status classes.
const (
	// StatusUnknown is a status Twilio does not document (or not yet): it
	// is counted apart (Counts.UnknownStatus) and never in a rate, neither
	// as volume nor as a failure.
	StatusUnknown StatusClass = iota
	// StatusInFlight: queued, sending, accepted, scheduled, receiving. The
	// message may yet be filtered: outbound volume, not finished.
	StatusInFlight
	// StatusFinished: sent, delivered, undelivered, failed, read,
	// partially_delivered, received. "sent" counts as finished: many
	// carriers never return a delivery receipt.
	StatusFinished
	// StatusCanceled: a scheduled message canceled before it left Twilio.
	// It counts nowhere.
	StatusCanceled
)

// statusClasses maps every message status Twilio documents (the
// Message resource's status enum in the 2010-04-01 API) to its class.
var statusClasses = map[string]StatusClass{
	"queued": StatusInFlight, "sending": StatusInFlight, "accepted": StatusInFlight,
	"scheduled": StatusInFlight, "receiving": StatusInFlight,
	"sent": StatusFinished, "delivered": StatusFinished, "undelivered": StatusFinished,
	"failed": StatusFinished, "read": StatusFinished, "partially_delivered": StatusFinished,
	"received": StatusFinished,
	"canceled": StatusCanceled,
}

// ClassOf returns the class of a message status.
func ClassOf(status string) StatusClass { return statusClasses[status] }

// KnownStatus reports whether Twilio documents status.
func KnownStatus(status string) bool { return ClassOf(status) != StatusUnknown }

// Finished reports whether an outbound message has reached a state a rate
// may be judged on (StatusFinished).
func (m Message) Finished() bool {
	return m.Direction.Outbound() && ClassOf(m.Status) == StatusFinished
}

// Failed reports whether an outbound message ended failed or undelivered.
func (m Message) Failed() bool {
	return m.Direction.Outbound() && (m.Status == "failed" || m.Status == "undelivered")
}

// statusRanks orders a message's statuses along its life: a report of a
// lower rank than what is known is older news (Merge). Statuses of one rank
// succeed each other only by time (delivered, then undelivered when the
// carrier changes its mind). Unknown statuses rank with the final ones.
var statusRanks = map[string]int{
	"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "receiving": 2,
	"sent": 3, "delivered": 4, "undelivered": 4, "failed": 4, "partially_delivered": 4,
	"received": 4, "canceled": 4, "read": 5,
}

// pushedStatuses are the statuses Twilio's Event Streams report, one event
// type each (com.twilio.messaging.message.* and inbound-message.received).
var pushedStatuses = map[string]bool{
	"queued": true, "sent": true, "delivered": true, "undelivered": true, "failed": true, "read": true, "received": true,
}

// Pushed reports whether a message's status is one that pushed events
// report: a status such as "sending" or "accepted" is only ever read.
func Pushed(status string) bool { return pushedStatuses[status] }

func statusRank(status string) int {
	if r, ok := statusRanks[status]; ok {
		return r
	}
	return 4
}

// Older reports whether next is older news about a message than prev: it
// was last updated before prev (to the second, the listing's precision),
// or, when that does not tell (same second, or a time unknown), it stands
// at an earlier point of a message's life (queued before sent before
// delivered before read). Pushed events arrive unordered and a poll can
// read a message a moment before an event about it is stored.
func Older(next, prev Message) bool {
	if !next.Updated.IsZero() && !prev.Updated.IsZero() {
		n, p := next.Updated.Unix(), prev.Updated.Unix()
		if n != p {
			return n < p
		}
	}
	return statusRank(next.Status) < statusRank(prev.Status)
}

// Merge returns what sentinel keeps of a message it had stored as prev and
// now reads as next: next, except where next would erase evidence. A
// subaccount's owner holds its credentials and can redact a body (Twilio
// accepts an empty Body on a message) or mask numbers after the fact; so
//
//   - an opt-out stays an opt-out, with the decision whether it counts
//     (Ignored) made when it was first kept;
//   - a message seen failed or undelivered stays so, with its error code,
//     and an error code once seen is kept when a later read has none;
//   - the other party's hash is kept when a later read masks the number;
//   - a report older than what is known (Older) does not move the status
//     back: the status, error code and Updated stay prev's, while what
//     only it says (a price, a date_sent) is taken.
//
// A message that disappears from the log is simply never read again: the
// store keeps it as it was.
func Merge(prev, next Message) Message {
	if Older(next, prev) {
		next.Status, next.ErrorCode, next.Updated = prev.Status, prev.ErrorCode, prev.Updated
	}
	if prev.Keyword == OptOut {
		next.Keyword, next.Ignored = OptOut, prev.Ignored
	}
	if prev.Failed() && !next.Failed() {
		next.Status = prev.Status
	}
	if prev.ErrorCode != 0 && next.ErrorCode == 0 {
		next.ErrorCode = prev.ErrorCode
	}
	if next.Peer == 0 {
		next.Peer = prev.Peer
	}
	return next
}

// Counts are the aggregates of the messages in one bucket. Every field is
// derived from the messages alone, so adding a message's Contribution and
// later subtracting it leaves Counts as they were.
type Counts struct {
	// Outbound counts outbound messages, in flight or finished, except
	// canceled ones and those whose status is unknown.
	Outbound int64
	// Finished counts outbound messages in a final state (see Finished).
	Finished int64
	// Failed counts finished outbound messages that failed or were undelivered.
	Failed int64
	// NoService counts outbound messages sent without a Messaging Service.
	NoService int64
	// Inbound counts inbound messages; OptOuts and OptIns those among them
	// that were consent keywords. OptOuts counts only the opt-outs that
	// count (Ignored == Counted); RepeatedOptOuts and UnsolicitedOptOuts
	// the others, so that an attack is seen rather than silent.
	Inbound            int64
	OptOuts            int64
	OptIns             int64
	RepeatedOptOuts    int64
	UnsolicitedOptOuts int64
	// UnknownStatus counts outbound messages whose status Twilio does not
	// document: they are in no rate.
	UnknownStatus int64
	// Pending counts outbound messages that can still change: in flight,
	// or "sent" and waiting for a delivery receipt. The poller re-reads a
	// log back to the oldest of them, not a whole settle window.
	Pending int64
	// Errors counts finished outbound messages by error code.
	Errors map[int]int64
}

// Contribution returns what m adds to its bucket's Counts.
func Contribution(m Message) Counts {
	var c Counts
	switch {
	case m.Direction.Outbound():
		switch ClassOf(m.Status) {
		case StatusCanceled:
			return c
		case StatusUnknown:
			c.UnknownStatus = 1
			return c
		}
		c.Outbound = 1
		if ClassOf(m.Status) == StatusInFlight || m.Status == "sent" {
			c.Pending = 1
		}
		if !m.MessagingService {
			c.NoService = 1
		}
		if m.Finished() {
			c.Finished = 1
			if m.Failed() {
				c.Failed = 1
			}
			if m.ErrorCode != 0 {
				c.Errors = map[int]int64{m.ErrorCode: 1}
			}
		}
	case m.Direction == Inbound:
		c.Inbound = 1
		switch m.Keyword {
		case OptOut:
			switch m.Ignored {
			case Repeated:
				c.RepeatedOptOuts = 1
			case Unsolicited:
				c.UnsolicitedOptOuts = 1
			default:
				c.OptOuts = 1
			}
		case OptIn:
			c.OptIns = 1
		}
	}
	return c
}

// Add adds o to c.
func (c *Counts) Add(o Counts) { c.add(o, 1) }

// Sub subtracts o from c, dropping error codes whose count reaches zero.
func (c *Counts) Sub(o Counts) { c.add(o, -1) }

func (c *Counts) add(o Counts, sign int64) {
	c.Outbound += sign * o.Outbound
	c.Finished += sign * o.Finished
	c.Failed += sign * o.Failed
	c.NoService += sign * o.NoService
	c.Inbound += sign * o.Inbound
	c.OptOuts += sign * o.OptOuts
	c.OptIns += sign * o.OptIns
	c.RepeatedOptOuts += sign * o.RepeatedOptOuts
	c.UnsolicitedOptOuts += sign * o.UnsolicitedOptOuts
	c.UnknownStatus += sign * o.UnknownStatus
	c.Pending += sign * o.Pending
	for code, n := range o.Errors {
		if c.Errors == nil {
			c.Errors = map[int]int64{}
		}
		c.Errors[code] += sign * n
		if c.Errors[code] == 0 {
			delete(c.Errors, code)
		}
	}
}

// Zero reports whether c counts nothing.
func (c Counts) Zero() bool {
	return c.Outbound == 0 && c.Inbound == 0 && c.UnknownStatus == 0 && len(c.Errors) == 0
}

// ErrorCount returns how many finished outbound messages carry any of codes.
func (c Counts) ErrorCount(codes ...int) int64 {
	var n int64
	for _, code := range codes {
		n += c.Errors[code]
	}
	return n
}

// Bucket is the Counts of the messages whose Time falls in
// [Start, Start+Width), plus up to MaxSamples example SIDs per signal.
type Bucket struct {
	Start time.Time
	// Width is a multiple of BucketWidth; zero means BucketWidth, the
	// resolution at which aggregates are kept. A read may return a wider
	// bucket, the sum of the BucketWidth buckets in it (see Span).
	Width time.Duration
	Counts
	// Samples holds example message SIDs behind the counts, keyed by
	// SampleKey: error code for finished outbound errors, SampleOptOut for
	// opt-outs, SampleNoService for outbound without a Messaging Service.
	Samples map[int][]string
}

// MaxSamples bounds the example SIDs kept per bucket and signal.
const MaxSamples = 3

// Sample keys that are not error codes.
const (
	SampleOptOut    = -1
	SampleNoService = -2
	SampleFailed    = -3
)

// SampleKeys returns the sample keys that m is an example of.
func SampleKeys(m Message) []int {
	var keys []int
	c := Contribution(m)
	for code := range c.Errors {
		keys = append(keys, code)
	}
	if c.OptOuts > 0 {
		keys = append(keys, SampleOptOut)
	}
	if c.NoService > 0 {
		keys = append(keys, SampleNoService)
	}
	if c.Failed > 0 {
		keys = append(keys, SampleFailed)
	}
	return keys
}

// Sum adds up the buckets that lie in the window of bucket starts
// [from, to) (see Bucket.Within).
func Sum(buckets []Bucket, from, to time.Time) Counts {
	var c Counts
	for _, b := range buckets {
		if b.Within(from, to) {
			c.Add(b.Counts)
		}
	}
	return c
}

// Examples returns up to n sample SIDs for any of keys from buckets that lie
// in the window of bucket starts [from, to) (see Bucket.Within), newest
// bucket first, sorted within a bucket for stable output.
func Examples(buckets []Bucket, from, to time.Time, n int, keys ...int) []string {
	var out []string
	for i := len(buckets) - 1; i >= 0 && len(out) < n; i-- {
		b := &buckets[i]
		if !b.Within(from, to) {
			continue
		}
		var sids []string
		for _, k := range keys {
			sids = append(sids, b.Samples[k]...)
		}
		sort.Strings(sids)
		for _, s := range sids {
			if len(out) == n {
				break
			}
			out = append(out, s)
		}
	}
	return out
}

// Coverage is the stretch of time over which a message log is known to be
// completely ingested: every message whose Time is in [From, Until] is
// stored. The zero Coverage covers nothing.
type Coverage struct {
	From, Until time.Time
}

// Covers reports whether [from, to] lies inside c.
func (c Coverage) Covers(from, to time.Time) bool {
	return !c.Until.IsZero() && !from.Before(c.From) && !to.After(c.Until)
}

// Usage is one UTC day of a subaccount's usage as Twilio reports it.
type Usage struct {
	// Day is the UTC day, "2006-01-02".
	Day string
	// TotalPrice is the day's spend in Currency across all categories
	// (category totalprice).
	TotalPrice float64
	// SMS and MMS are message counts from the sms and mms categories.
	SMS, MMS int64
	// AsOf is when Twilio last updated the record; usage lags by minutes.
	AsOf time.Time
	// Currency is the record's price_unit (ISO 4217, e.g. "USD"); empty
	// when Twilio gave none.
	Currency string
}

// IsAccountSID reports whether s is an account SID as Twilio writes them:
// AC and 32 lower-case hex digits.
func IsAccountSID(s string) bool { return isSID(s, "AC") }

// IsMessageSID reports whether s is a message SID: SM (SMS) or MM (MMS) and
// 32 lower-case hex digits.
func IsMessageSID(s string) bool { return isSID(s, "SM") || isSID(s, "MM") }

func isSID(s, prefix string) bool {
	if len(s) != 34 || s[:2] != prefix {
		return false
	}
	for i := 2; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
