package twiliofake

import (
	"net/http"
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
