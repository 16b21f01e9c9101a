package twiliofake

import (
	"net/http"
	"slices"
	"strconv"
)

type messageJSON struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                *string           `json:"body"`
	DateCreated         *string           `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         *string           `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                *string           `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           *string           `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  *string           `json:"to"`
	URI                 string            `json:"uri"`
}

type messagePage struct {
	envelope
	Messages []messageJSON `json:"messages"`
}

// messageJSON renders a stored message. The caller holds s.mu.
func (s *Server) messageJSON(acct string, m *msg) messageJSON {
	str := func(id uint32) *string {
		if v, ok := s.strs.str(id); ok {
			return &v
		}
		return nil
	}
	date := func(secs int64) *string {
		if secs == 0 {
			return nil
		}
		v := timeOrZero(secs).Format(rfc2822)
		return &v
	}
	sid := formatSID(m.sid, m.mms)
	base := "/2010-04-01/Accounts/" + acct + "/Messages/" + sid
	out := messageJSON{
		AccountSID:          acct,
		APIVersion:          "2010-04-01",
		Body:                str(m.body),
		DateCreated:         date(m.created),
		DateSent:            date(m.sent),
		DateUpdated:         date(m.updated),
		Direction:           directions[m.dir],
		ErrorMessage:        str(m.errMsg),
		From:                str(m.from),
		MessagingServiceSID: str(m.svc),
		NumMedia:            strconv.Itoa(int(m.media)),
		NumSegments:         strconv.Itoa(int(m.segments)),
		Price:               str(m.price),
		PriceUnit:           str(m.unit),
		SID:                 sid,
		Status:              statuses[m.status],
		SubresourceURIs:     map[string]string{"media": base + "/Media.json", "feedback": base + "/Feedback.json"},
		To:                  str(m.to),
		URI:                 base + ".json",
	}
	if m.errCode != 0 {
		c := int(m.errCode)
		out.ErrorCode = &c
	}
	return out
}

// listMessages serves one page of an account's log, newest first.
func (s *Server) listMessages(w http.ResponseWriter, r *http.Request, a *account) {
	q, e := parseMessageQuery(r.URL.Query())
	if e != nil {
		writeAPIError(w, e)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	page, next, prev := s.pageMessages(a, &q)
	out := messagePage{envelope: s.newEnvelope(r, q.filters, q.paging, len(page), next, prev), Messages: make([]messageJSON, 0, len(page))}
	for _, m := range page {
		out.Messages = append(out.Messages, s.messageJSON(a.SID, m))
	}
	writeJSON(w, http.StatusOK, out)
}

// pageMessages finds one page newest first and the tokens of its
// neighbours. It binary-searches the log for the date range and the token
// and then walks only as far as the page needs (plus the items skipped by
// To/From filters). The caller holds s.mu.
func (s *Server) pageMessages(a *account, q *msgQuery) (page []*msg, next, prev string) {
	msgs := a.msgs
	lo, hi := 0, len(msgs)
	if q.hasLo {
		lo = searchKey(msgs, q.lo)
	}
	if q.hasHi {
		hi = searchKey(msgs, q.hi)
	}
	var to, from uint32
	if q.to != "" {
		if to = s.strs.ids[q.to]; to == 0 {
			return nil, "", ""
		}
	}
	if q.from != "" {
		if from = s.strs.ids[q.from]; from == 0 {
			return nil, "", ""
		}
	}
	strict := s.opts.StrictDateSent && (q.hasLo || q.hasHi)
	match := func(m *msg) bool {
		return (to == 0 || m.to == to) && (from == 0 || m.from == from) && (!strict || m.sent != 0)
	}
	keyOf := func(m *msg) string { return msgKey{key: m.key, sid: m.sid, mms: m.mms}.String() }

	if q.token != "" && q.tok.back {
		// PB: the page of items just newer than the token, walking up.
		i := max(lo, search(msgs, q.pos.key, q.pos.sid))
		if i < hi && msgs[i].key == q.pos.key && msgs[i].sid == q.pos.sid {
			i++
		}
		for ; i < hi && len(page) < q.size; i++ {
			if m := &msgs[i]; match(m) {
				page = append(page, m)
			}
		}
		more := false
		for ; i < hi && !more; i++ {
			more = match(&msgs[i])
		}
		for l, r := 0, len(page)-1; l < r; l, r = l+1, r-1 {
			page[l], page[r] = page[r], page[l]
		}
		if len(page) > 0 {
			next = pageToken{key: keyOf(page[len(page)-1])}.String()
			if more {
				prev = pageToken{back: true, key: keyOf(page[0])}.String()
			}
		}
		return page, next, prev
	}

	// First page or PA: walk down from the newest item older than the token.
	i := hi - 1
	if q.token != "" {
		i = min(hi, search(msgs, q.pos.key, q.pos.sid)) - 1
	}
	for ; i >= lo && len(page) < q.size; i-- {
		if m := &msgs[i]; match(m) {
			page = append(page, m)
		}
	}
	more := false
	for ; i >= lo && !more; i-- {
		more = match(&msgs[i])
	}
	if len(page) > 0 {
		if more {
			next = pageToken{key: keyOf(page[len(page)-1])}.String()
		}
		prev = pageToken{back: true, key: keyOf(page[0])}.String()
	}
	return page, next, prev
}

// inFlight are the statuses of a message Twilio is still handling: queued
// or scheduled to go out, being handed over, or coming in.
var inFlight = map[string]bool{"queued": true, "sending": true, "accepted": true, "scheduled": true, "receiving": true}

// messageIn returns the message sid of account a; nil (after answering
// 404) if there is none: a message is reached only under its own account's
// path. The caller holds s.mu.
func (s *Server) messageIn(w http.ResponseWriter, r *http.Request, a *account, sid string) *msg {
	m, owner, err := s.find(sid)
	if err != nil || owner != a {
		notFound(w, r.URL.Path)
		return nil
	}
	return m
}

// fetchMessage serves one message.
func (s *Server) fetchMessage(w http.ResponseWriter, r *http.Request, a *account, sid string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.messageIn(w, r, a, sid)
	if m == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.messageJSON(a.SID, m))
}

// updateMessage redacts a message's body (Body empty) or cancels a
// scheduled message (Status=canceled), the two updates Twilio offers.
// Everything else about the message stays; date_updated moves.
func (s *Server) updateMessage(w http.ResponseWriter, r *http.Request, a *account, sid string) {
	if err := r.ParseForm(); err != nil {
		writeAPIError(w, badParam("Invalid form body"))
		return
	}
	body, hasBody := r.PostForm["Body"]
	status, hasStatus := r.PostForm["Status"]
	// 30400 is Twilio's error for an update request it cannot act on; its
	// page lists exactly these causes.
	switch {
	case !hasBody && !hasStatus:
		writeError(w, http.StatusBadRequest, 30400, "Parameters are not valid: Body or Status is required")
		return
	case hasBody && hasStatus:
		writeError(w, http.StatusBadRequest, 30400, "Parameters are not valid: cannot cancel and redact a message at once")
		return
	case hasBody && body[0] != "":
		writeError(w, http.StatusBadRequest, 30400, "Parameters are not valid: Body must be empty to redact a message")
		return
	case hasStatus && status[0] != "canceled":
		writeError(w, http.StatusBadRequest, 30400, "Parameters are not valid: Status must be canceled")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messageIn(w, r, a, sid)
	if m == nil {
		return
	}
	cur := statuses[m.status]
	switch {
	case hasStatus && cur != "scheduled":
		writeError(w, http.StatusBadRequest, 30409, "This message cannot be canceled")
		return
	case hasStatus:
		m.status = uint8(slices.Index(statuses, "canceled"))
	case inFlight[cur]:
		// Twilio redacts post-flight messages only and documents no code
		// for the others: 20409 is its generic conflict with the state of
		// the resource (?).
		writeError(w, http.StatusConflict, 20409, "Cannot redact a message that is "+cur)
		return
	default:
		m.body = s.strs.id("", false)
	}
	m.updated = s.now().Unix()
	writeJSON(w, http.StatusOK, s.messageJSON(a.SID, m))
}

// deleteMessage removes a message from its account's log. Its usage
// stays: deleting a record refunds nothing (?).
func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request, a *account, sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messageIn(w, r, a, sid)
	if m == nil {
		return
	}
	// A sent message still awaits its delivery receipt: Twilio has
	// answered "Cannot delete message in state SENT" (?).
	if cur := statuses[m.status]; inFlight[cur] || cur == "sent" {
		writeError(w, http.StatusBadRequest, 20009, "Cannot delete this resource before it is complete")
		return
	}
	key, b := m.key, m.sid
	i := search(a.msgs, key, b)
	a.msgs = slices.Delete(a.msgs, i, i+1)
	delete(s.index, b)
	w.WriteHeader(http.StatusNoContent)
}
