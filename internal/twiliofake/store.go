package twiliofake

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors returned by the knobs.
var (
	ErrNoAccount = errors.New("no such account")
	ErrNoMessage = errors.New("no such message")
	ErrInvalid   = errors.New("invalid value")
)

var (
	accountSIDRe = regexp.MustCompile(`^AC[0-9a-f]{32}$`)
	messageSIDRe = regexp.MustCompile(`^(SM|MM)[0-9a-f]{32}$`)
	serviceSIDRe = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	tokenRe      = regexp.MustCompile(`^[A-Za-z0-9]{32}$`)

	sinkSIDRe         = regexp.MustCompile(`^DG[0-9a-fA-F]{32}$`)
	subscriptionSIDRe = regexp.MustCompile(`^DF[0-9a-fA-F]{32}$`)
)

// Account statuses as Twilio names them.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusClosed    = "closed"
)

func validAccountStatus(s string) bool {
	return s == StatusActive || s == StatusSuspended || s == StatusClosed
}

// Account is an account as a test sees and sets it.
type Account struct {
	// SID is "AC" and 32 lowercase hex digits; generated when empty.
	SID string
	// Token is the account's own auth token, 32 alphanumerics; generated
	// when empty.
	Token        string
	FriendlyName string
	// Status is active (the default), suspended or closed.
	Status string
	// SuspendedByTwilio marks a suspension that only Twilio support can lift:
	// the parent's updates get 21478.
	SuspendedByTwilio bool
	Parent            bool
	// Created defaults to the server's clock.
	Created time.Time
	Updated time.Time
}

// StatusChange records one change of an account's status.
type StatusChange struct {
	SID, From, To string
	At            time.Time
	// By is "api" for a change made through the REST API, "twilio" for
	// SuspendByTwilio and "knob" for SetStatus.
	By string
}

// account is the stored account. It is guarded by Server.mu.
type account struct {
	Account
	msgs  []msg // oldest first by (key, sid)
	usage map[usageKey]UsageRecord
	agg   map[int64]*dayAgg // UTC day number -> usage derived from msgs
	phone string            // the account's sending number in generated traffic
	svc   string            // the account's Messaging Service in generated traffic
}

// msg is one stored message, kept small: strings are interned (0 is null),
// times are Unix seconds (0 is null), the SID is its 16 bytes.
type msg struct {
	sid                      [16]byte
	key                      int64 // date_sent, or date_created when date_sent is null
	created, sent, updated   int64
	from, to, body           uint32
	price, errMsg, svc, unit uint32
	errCode                  int32
	segments, media          uint16
	dir, status              uint8
	mms                      bool
}

func (m *msg) before(key int64, sid [16]byte) bool {
	if m.key != key {
		return m.key < key
	}
	return bytes.Compare(m.sid[:], sid[:]) < 0
}

// msgRef finds a message: its account and its immutable sort key.
type msgRef struct {
	acct *account
	key  int64
}

// Directions and statuses, in the spec's enum order; stored as indexes.
var (
	directions = []string{"inbound", "outbound-api", "outbound-call", "outbound-reply"}
	statuses   = []string{"queued", "sending", "sent", "failed", "delivered", "undelivered", "receiving",
		"received", "accepted", "scheduled", "read", "partially_delivered", "canceled"}
)

// errorMessages gives error_message for the codes sentinel cares about;
// other codes get a null error_message, which Twilio also does at times.
var errorMessages = map[int]string{
	21610: "Attempt to send to unsubscribed recipient",
	30002: "Account suspended",
	30003: "Unreachable destination handset",
	30004: "Message blocked",
	30005: "Unknown destination handset",
	30006: "Landline or unreachable carrier",
	30007: "Message filtered",
	30008: "Unknown error",
	30034: "Message from an unregistered number",
}

// Message is a message as a test sees and sets it. Empty strings and zero
// times stand for Twilio's nulls where the field is nullable.
type Message struct {
	// SID is "SM" (or "MM" with media) and 32 lowercase hex digits;
	// generated when empty.
	SID        string
	AccountSID string
	From, To   string
	Body       string
	// Direction defaults to outbound-api.
	Direction string
	// Status defaults to sent (outbound) or received (inbound).
	Status string
	// ErrorCode is 0 for null. ErrorMessage defaults to Twilio's text for
	// well-known codes.
	ErrorCode    int
	ErrorMessage string
	// Price is Twilio's negative decimal string, e.g. "-0.00790"; "" is
	// null (not billed yet). PriceUnit defaults to USD.
	Price     string
	PriceUnit string
	// NumSegments defaults to 1.
	NumSegments, NumMedia int
	// MessagingServiceSID is "" when no Messaging Service was used.
	MessagingServiceSID string
	// DateCreated defaults to DateSent, or the server's clock.
	DateCreated time.Time
	// DateSent zero is null: never handed to a carrier.
	DateSent time.Time
	// DateUpdated defaults to the later of DateCreated and DateSent.
	DateUpdated time.Time
}

// interner maps strings to small numbers; 0 is reserved for null.
type interner struct {
	ids  map[string]uint32
	strs []string
}

func newInterner() *interner {
	return &interner{ids: map[string]uint32{}, strs: []string{""}}
}

// id interns s; nullEmpty makes "" null.
func (in *interner) id(s string, nullEmpty bool) uint32 {
	if s == "" && nullEmpty {
		return 0
	}
	if id, ok := in.ids[s]; ok {
		return id
	}
	id := uint32(len(in.strs))
	in.strs = append(in.strs, s)
	in.ids[s] = id
	return id
}

func (in *interner) str(id uint32) (string, bool) {
	if id == 0 {
		return "", false
	}
	return in.strs[id], true
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func parseSID(sid string) ([16]byte, error) {
	var b [16]byte
	if !messageSIDRe.MatchString(sid) {
		return b, fmt.Errorf("message sid %q: %w", sid, ErrInvalid)
	}
	_, err := hex.Decode(b[:], []byte(sid[2:]))
	return b, err
}

func formatSID(b [16]byte, mms bool) string {
	p := "SM"
	if mms {
		p = "MM"
	}
	return p + hex.EncodeToString(b[:])
}

// toMsg validates m and converts it for storage. The caller holds s.mu.
func (s *Server) toMsg(m Message) (msg, error) {
	var out msg
	if m.Direction == "" {
		m.Direction = "outbound-api"
	}
	dir := slices.Index(directions, m.Direction)
	if dir < 0 {
		return out, fmt.Errorf("direction %q: %w", m.Direction, ErrInvalid)
	}
	if m.Status == "" {
		m.Status = "sent"
		if m.Direction == "inbound" {
			m.Status = "received"
		}
	}
	st := slices.Index(statuses, m.Status)
	if st < 0 {
		return out, fmt.Errorf("status %q: %w", m.Status, ErrInvalid)
	}
	if m.Price != "" {
		if _, err := strconv.ParseFloat(m.Price, 64); err != nil || strings.ContainsAny(m.Price, "eEnN") {
			return out, fmt.Errorf("price %q: %w", m.Price, ErrInvalid)
		}
	}
	if m.MessagingServiceSID != "" && !serviceSIDRe.MatchString(m.MessagingServiceSID) {
		return out, fmt.Errorf("messaging service sid %q: %w", m.MessagingServiceSID, ErrInvalid)
	}
	if m.NumSegments < 0 || m.NumSegments > math.MaxUint16 || m.NumMedia < 0 || m.NumMedia > math.MaxUint16 {
		return out, fmt.Errorf("segments/media %d/%d: %w", m.NumSegments, m.NumMedia, ErrInvalid)
	}
	if m.ErrorCode < 0 || m.ErrorCode > math.MaxInt32 {
		return out, fmt.Errorf("error code %d: %w", m.ErrorCode, ErrInvalid)
	}
	if m.NumSegments == 0 {
		m.NumSegments = 1
	}
	if m.DateCreated.IsZero() {
		m.DateCreated = m.DateSent
		if m.DateCreated.IsZero() {
			m.DateCreated = s.now()
		}
	}
	if m.DateUpdated.IsZero() {
		m.DateUpdated = m.DateCreated
		if m.DateSent.After(m.DateUpdated) {
			m.DateUpdated = m.DateSent
		}
	}
	if m.PriceUnit == "" {
		m.PriceUnit = "USD"
	}
	if m.ErrorMessage == "" && m.ErrorCode != 0 {
		m.ErrorMessage = errorMessages[m.ErrorCode]
	}
	if m.SID == "" {
		m.SID = s.newSID("SM")
		if m.NumMedia > 0 {
			m.SID = "MM" + m.SID[2:]
		}
	}
	sid, err := parseSID(m.SID)
	if err != nil {
		return out, err
	}
	out = msg{
		sid:      sid,
		mms:      strings.HasPrefix(m.SID, "MM"),
		created:  m.DateCreated.Unix(),
		sent:     unixOrZero(m.DateSent),
		updated:  m.DateUpdated.Unix(),
		from:     s.strs.id(m.From, true),
		to:       s.strs.id(m.To, true),
		body:     s.strs.id(m.Body, false),
		price:    s.strs.id(m.Price, true),
		unit:     s.strs.id(m.PriceUnit, true),
		errMsg:   s.strs.id(m.ErrorMessage, true),
		svc:      s.strs.id(m.MessagingServiceSID, true),
		errCode:  int32(m.ErrorCode),
		segments: uint16(m.NumSegments),
		media:    uint16(m.NumMedia),
		dir:      uint8(dir),
		status:   uint8(st),
	}
	out.key = out.sent
	if out.key == 0 {
		out.key = out.created
	}
	return out, nil
}

// toMessage converts a stored message back. The caller holds s.mu.
func (s *Server) toMessage(acct string, m *msg) Message {
	str := func(id uint32) string { v, _ := s.strs.str(id); return v }
	return Message{
		SID:                 formatSID(m.sid, m.mms),
		AccountSID:          acct,
		From:                str(m.from),
		To:                  str(m.to),
		Body:                str(m.body),
		Direction:           directions[m.dir],
		Status:              statuses[m.status],
		ErrorCode:           int(m.errCode),
		ErrorMessage:        str(m.errMsg),
		Price:               str(m.price),
		PriceUnit:           str(m.unit),
		NumSegments:         int(m.segments),
		NumMedia:            int(m.media),
		MessagingServiceSID: str(m.svc),
		DateCreated:         timeOrZero(m.created),
		DateSent:            timeOrZero(m.sent),
		DateUpdated:         timeOrZero(m.updated),
	}
}

// search returns the index of the first message at or after (key, sid).
func search(msgs []msg, key int64, sid [16]byte) int {
	i, _ := slices.BinarySearchFunc(msgs, struct {
		key int64
		sid [16]byte
	}{key, sid}, func(m msg, t struct {
		key int64
		sid [16]byte
	}) int {
		if m.key != t.key {
			if m.key < t.key {
				return -1
			}
			return 1
		}
		return bytes.Compare(m.sid[:], t.sid[:])
	})
	return i
}

// searchKey returns the index of the first message whose key is >= key.
func searchKey(msgs []msg, key int64) int {
	i, _ := slices.BinarySearchFunc(msgs, key, func(m msg, k int64) int {
		switch {
		case m.key < k:
			return -1
		case m.key > k:
			return 1
		}
		return 0
	})
	// BinarySearchFunc finds some equal element's leftmost position.
	return i
}

// splitmix64 is a tiny deterministic mixer for generated SIDs and tokens.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// newSID returns prefix and 32 hex digits, deterministic for a given seed
// and call order. The caller holds s.mu.
func (s *Server) newSID(prefix string) string {
	s.seq++
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], splitmix64(s.opts.Seed^s.seq))
	binary.BigEndian.PutUint64(b[8:], splitmix64(s.opts.Seed+s.seq*0x51))
	return prefix + hex.EncodeToString(b[:])
}

func (s *Server) newToken() string {
	return s.newSID("")
}
