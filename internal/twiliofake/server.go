package twiliofake

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// ParentSID and ParentToken are the parent's credentials; generated
	// from Seed when empty. Both must be alphanumeric (twilio-go refuses
	// anything else before sending).
	ParentSID, ParentToken string
	// ParentName is the parent's friendly_name; default "sentinel parent".
	ParentName string
	// HideParent leaves the parent out of the account list. Twilio appears
	// to list it (?), so the default includes it.
	HideParent bool
	// StrictDateSent drops messages whose date_sent is null from any
	// listing filtered by DateSent (?); by default they match by date_created.
	StrictDateSent bool
	// Now is the clock: "today" for usage, date_updated on changes, the
	// default date_created. Default time.Now.
	Now func() time.Time
	// Seed makes generated SIDs and tokens deterministic.
	Seed uint64
	// UsageLag is how far usage records' as_of trails Now; default 0.
	UsageLag time.Duration
	// MaxRecorded bounds the request record (oldest dropped first);
	// default 10000.
	MaxRecorded int
	// Latency delays every request; it honours the request's context.
	Latency time.Duration
	// ConcurrencyLimit is the account's pool of concurrent requests (0:
	// none): a request that would take the requests in flight, the
	// Background ones included, past it is answered 429 with 20429, as
	// Twilio does. Twilio does not publish its figure (?: third parties
	// cite about 100).
	ConcurrencyLimit int
	// SubaccountEvents says whether the Event Streams API honours a
	// subscription's ReceiveEventsFromSubaccounts (default: it does).
	SubaccountEvents SubaccountEvents
	// RedactSinkCredentials leaves the user info out of the destination
	// of a webhook sink's sink_configuration in the API's answers: whether
	// Twilio shows the credentials it holds is not documented (?).
	RedactSinkCredentials bool
	// Delivery configures the delivery of events to webhook sinks; see
	// also SetDelivery.
	Delivery DeliveryOptions
	// ReportConcurrency sends Twilio-Concurrent-Requests on every response:
	// the requests in flight when it arrived, itself and Background
	// included (?: Twilio does not document the header's meaning; see
	// ../shared/twilio/NOTES.md).
	ReportConcurrency bool
}

// Server is the fake. Its exported methods are safe for concurrent use,
// also while it serves requests.
type Server struct {
	opts Options

	mu       sync.RWMutex // guards the data below
	parent   *account
	accounts map[string]*account
	index    map[[16]byte]msgRef
	strs     *interner
	seq      uint64
	changes  []StatusChange
	sinks    map[string]*sink         // Event Streams sinks by SID
	subs     map[string]*subscription // Event Streams subscriptions by SID

	dl *deliverer // the delivery of events to webhook sinks

	fmu      sync.Mutex // guards the fields below
	faults   []*faultState
	faultSeq int
	loops    map[string]int
	requests []Request
	stats    Stats

	imu        sync.Mutex // guards the fields below
	inFlight   int        // requests being served
	background int        // other traffic's requests in flight (SetBackground)

	ts *httptest.Server
}

// New returns a Server holding only the parent account. It panics on
// credentials twilio-go could not send, like httptest does on bad setup.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRecorded <= 0 {
		opts.MaxRecorded = 10000
	}
	if opts.ParentName == "" {
		opts.ParentName = "sentinel parent"
	}
	s := &Server{
		opts:     opts,
		accounts: map[string]*account{},
		index:    map[[16]byte]msgRef{},
		strs:     newInterner(),
		loops:    map[string]int{},
		stats:    Stats{ByStatus: map[int]int{}},
		sinks:    map[string]*sink{},
		subs:     map[string]*subscription{},
		dl:       newDeliverer(opts.Delivery, opts.Seed),
	}
	if s.opts.ParentSID == "" {
		s.opts.ParentSID = s.newSID("AC")
	}
	if s.opts.ParentToken == "" {
		s.opts.ParentToken = s.newToken()
	}
	if !accountSIDRe.MatchString(s.opts.ParentSID) || !tokenRe.MatchString(s.opts.ParentToken) {
		panic("twiliofake: ParentSID must be AC and 32 lowercase hex digits, ParentToken 32 alphanumerics")
	}
	now := s.now()
	s.parent = s.newAccount(Account{
		SID: s.opts.ParentSID, Token: s.opts.ParentToken, FriendlyName: opts.ParentName,
		Status: StatusActive, Parent: true, Created: now, Updated: now,
	})
	s.accounts[s.parent.SID] = s.parent
	return s
}

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

// Start serves the fake on a new 127.0.0.1:0 listener until Close.
func (s *Server) Start() {
	s.ts = httptest.NewServer(s)
}

// URL returns the base URL (scheme and host) after Start.
func (s *Server) URL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL
}

// Close stops the listener started by Start and the delivery of events;
// deliveries still queued are dropped.
func (s *Server) Close() {
	s.closeDeliveries()
	if s.ts != nil {
		s.ts.Close()
	}
}

// Transport returns a RoundTripper that sends every request, whatever its
// scheme and host (api.twilio.com, or an edge/region variant), to the
// started server. It is what a twilio-go client needs to reach the fake.
func (s *Server) Transport() http.RoundTripper {
	if s.ts == nil {
		panic("twiliofake: Transport before Start")
	}
	target, _ := url.Parse(s.URL())
	return rewrite{target: target, next: s.ts.Client().Transport}
}

type rewrite struct {
	target *url.URL
	next   http.RoundTripper
}

func (rt rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = rt.target.Scheme, rt.target.Host, rt.target.Host
	return rt.next.RoundTrip(r)
}

// ParentSID returns the parent's SID.
func (s *Server) ParentSID() string { return s.opts.ParentSID }

// ParentToken returns the parent's auth token.
func (s *Server) ParentToken() string { return s.opts.ParentToken }

func (s *Server) newAccount(a Account) *account {
	return &account{Account: a, usage: map[usageKey]UsageRecord{}, agg: map[int64]*dayAgg{}}
}

// AddSubaccount adds a subaccount and returns it with its generated fields.
func (s *Server) AddSubaccount(a Account) (Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.SID == "" {
		a.SID = s.newSID("AC")
	}
	if a.Token == "" {
		a.Token = s.newToken()
	}
	if a.Status == "" {
		a.Status = StatusActive
	}
	switch {
	case !accountSIDRe.MatchString(a.SID):
		return Account{}, fmt.Errorf("add subaccount %q: sid: %w", a.SID, ErrInvalid)
	case !tokenRe.MatchString(a.Token):
		return Account{}, fmt.Errorf("add subaccount %s: token: %w", a.SID, ErrInvalid)
	case !validAccountStatus(a.Status):
		return Account{}, fmt.Errorf("add subaccount %s: status %q: %w", a.SID, a.Status, ErrInvalid)
	case s.accounts[a.SID] != nil:
		return Account{}, fmt.Errorf("add subaccount %s: exists: %w", a.SID, ErrInvalid)
	}
	if a.FriendlyName == "" {
		a.FriendlyName = "Subaccount " + a.SID[len(a.SID)-6:]
	}
	if a.Created.IsZero() {
		a.Created = s.now()
	}
	a.Created = a.Created.UTC().Truncate(time.Second)
	if a.Updated.IsZero() {
		a.Updated = a.Created
	}
	a.Parent = false
	if a.Status != StatusSuspended {
		a.SuspendedByTwilio = false
	}
	s.accounts[a.SID] = s.newAccount(a)
	return a, nil
}

// Account returns an account's current state.
func (s *Server) Account(sid string) (Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.accounts[sid]
	if a == nil {
		return Account{}, fmt.Errorf("account %s: %w", sid, ErrNoAccount)
	}
	return a.Account, nil
}

// Accounts returns every account, the parent first, then by SID.
func (s *Server) Accounts() []Account {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		if !a.Parent {
			out = append(out, a.Account)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SID < out[j].SID })
	return append([]Account{s.parent.Account}, out...)
}

// SetStatus sets any account's status as Twilio or the console would,
// bypassing the API's rules (use it to suspend the parent, or to close an
// account), and clears a Twilio suspension.
func (s *Server) SetStatus(sid, status string) error {
	if !validAccountStatus(status) {
		return fmt.Errorf("set status %s: %q: %w", sid, status, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[sid]
	if a == nil {
		return fmt.Errorf("set status %s: %w", sid, ErrNoAccount)
	}
	a.SuspendedByTwilio = false
	s.setStatus(a, status, "knob")
	return nil
}

// SuspendByTwilio suspends a subaccount the way Twilio does for fraud or
// non-payment: the parent can no longer change its status (21478).
func (s *Server) SuspendByTwilio(sid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[sid]
	if a == nil {
		return fmt.Errorf("suspend by twilio %s: %w", sid, ErrNoAccount)
	}
	a.SuspendedByTwilio = true
	s.setStatus(a, StatusSuspended, "twilio")
	return nil
}

// setStatus records a change. The caller holds s.mu.
func (s *Server) setStatus(a *account, status, by string) {
	now := s.now()
	a.Updated = now
	if a.Status == status {
		return
	}
	s.changes = append(s.changes, StatusChange{SID: a.SID, From: a.Status, To: status, At: now, By: by})
	a.Status = status
}

// StatusChanges returns every status change so far, oldest first.
func (s *Server) StatusChanges() []StatusChange {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.changes)
}

// AppendMessages adds messages (to any accounts) and returns their SIDs.
// It is cheapest when each account's messages arrive oldest first, as live
// traffic does; an older message is inserted in place. Nothing is added if
// any message is invalid.
//
// Messages appended while a webhook sink subscribes to their events raise
// those events: an outbound message every status it has passed through
// (queued, sent, delivered...), an inbound one its reception.
func (s *Server) AppendMessages(msgs ...Message) ([]string, error) {
	sids, out, err := s.appendMessages(msgs)
	s.deliver(out)
	return sids, err
}

func (s *Server) appendMessages(msgs []Message) ([]string, []outbound, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type item struct {
		acct *account
		m    msg
	}
	items := make([]item, 0, len(msgs))
	seen := make(map[[16]byte]bool, len(msgs))
	sids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		a := s.accounts[m.AccountSID]
		if a == nil {
			return nil, nil, fmt.Errorf("append message: account %s: %w", m.AccountSID, ErrNoAccount)
		}
		sm, err := s.toMsg(m)
		if err != nil {
			return nil, nil, fmt.Errorf("append message: %w", err)
		}
		if _, dup := s.index[sm.sid]; dup || seen[sm.sid] {
			return nil, nil, fmt.Errorf("append message %s: duplicate sid: %w", formatSID(sm.sid, sm.mms), ErrInvalid)
		}
		seen[sm.sid] = true
		items = append(items, item{a, sm})
		sids = append(sids, formatSID(sm.sid, sm.mms))
	}
	// Grow each log once, to size, rather than by append's doubling: a
	// million messages would otherwise carry a quarter more in spare room.
	grow := map[*account]int{}
	for _, it := range items {
		grow[it.acct]++
	}
	for a, n := range grow {
		a.msgs = slices.Grow(a.msgs, n)
	}
	for _, it := range items {
		a := it.acct
		if n := len(a.msgs); n == 0 || a.msgs[n-1].before(it.m.key, it.m.sid) {
			a.msgs = append(a.msgs, it.m)
		} else {
			// Late arrivals (or same-second ties) go in place: the move is
			// as long as the distance from the newest end, usually short.
			a.msgs = slices.Insert(a.msgs, search(a.msgs, it.m.key, it.m.sid), it.m)
		}
		s.index[it.m.sid] = msgRef{acct: a, key: it.m.key}
		a.addUsage(&it.m, 1, s.strs)
	}
	if !s.hasSubscriptions() {
		return sids, nil, nil
	}
	var evs []pendingEvent
	for _, it := range items {
		evs = append(evs, s.messageEvents(nil, s.toMessage(it.acct.SID, &it.m))...)
	}
	return sids, s.fanOut(evs), nil
}

// Message returns a message's current state.
func (s *Server) Message(sid string) (Message, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, a, err := s.find(sid)
	if err != nil {
		return Message{}, err
	}
	return s.toMessage(a.SID, m), nil
}

// find returns the stored message. The caller holds s.mu.
func (s *Server) find(sid string) (*msg, *account, error) {
	b, err := parseSID(sid)
	if err != nil {
		return nil, nil, fmt.Errorf("message %s: %w", sid, ErrNoMessage)
	}
	ref, ok := s.index[b]
	if !ok {
		return nil, nil, fmt.Errorf("message %s: %w", sid, ErrNoMessage)
	}
	i := search(ref.acct.msgs, ref.key, b)
	return &ref.acct.msgs[i], ref.acct, nil
}

// UpdateMessage changes a message in place, as a late delivery receipt or
// billing does: edit sets the new Status, ErrorCode, Price, DateSent and so
// on. DateUpdated becomes the clock's now unless edit sets it. The SID,
// account and listing position (the date_sent, or date_created, it was
// appended with) do not change; setting a null DateSent later keeps the
// message where date_created placed it.
//
// A change of status raises the events of the statuses the message has
// newly passed through, for the webhook sinks that subscribe to them.
func (s *Server) UpdateMessage(sid string, edit func(*Message)) error {
	out, err := s.updateMessageKnob(sid, edit)
	s.deliver(out)
	return err
}

func (s *Server) updateMessageKnob(sid string, edit func(*Message)) ([]outbound, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, a, err := s.find(sid)
	if err != nil {
		return nil, fmt.Errorf("update message: %w", err)
	}
	cur := s.toMessage(a.SID, m)
	next := cur
	next.DateUpdated = time.Time{}
	edit(&next)
	if next.SID != cur.SID || next.AccountSID != cur.AccountSID {
		return nil, fmt.Errorf("update message %s: sid and account are fixed: %w", sid, ErrInvalid)
	}
	if next.DateUpdated.IsZero() {
		next.DateUpdated = s.now()
	}
	if next.ErrorCode != cur.ErrorCode && next.ErrorMessage == cur.ErrorMessage {
		next.ErrorMessage = ""
	}
	nm, err := s.toMsg(next)
	if err != nil {
		return nil, fmt.Errorf("update message %s: %w", sid, err)
	}
	nm.key = m.key
	a.addUsage(m, -1, s.strs)
	*m = nm
	a.addUsage(m, 1, s.strs)
	if !s.hasSubscriptions() {
		return nil, nil
	}
	return s.fanOut(s.messageEvents(&cur, s.toMessage(a.SID, m))), nil
}

// MessageCount returns how many messages an account holds.
func (s *Server) MessageCount(accountSID string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if a := s.accounts[accountSID]; a != nil {
		return len(a.msgs)
	}
	return 0
}

// Messages returns an account's messages, newest first as Twilio lists
// them; nil for an unknown account.
func (s *Server) Messages(accountSID string) []Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.accounts[accountSID]
	if a == nil {
		return nil
	}
	out := make([]Message, 0, len(a.msgs))
	for i := len(a.msgs) - 1; i >= 0; i-- {
		out = append(out, s.toMessage(accountSID, &a.msgs[i]))
	}
	return out
}

// LoopPages makes list responses for path (exact, e.g.
// "/2010-04-01/Accounts/AC.../Messages.json") from page atPage on return
// their own URI as next_page_uri: a client that follows next_page_uri
// without a bound fetches the same page forever. atPage < 0 removes it.
func (s *Server) LoopPages(path string, atPage int) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if atPage < 0 {
		delete(s.loops, path)
		return
	}
	s.loops[path] = atPage
}

func (s *Server) loopAt(path string) (int, bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	n, ok := s.loops[path]
	return n, ok
}

// Request is one request the server answered.
type Request struct {
	At     time.Time
	Method string
	Path   string
	// RawQuery is the query as sent; Query its decoded form.
	RawQuery string
	Query    url.Values
	// Form is the decoded POST body.
	Form url.Values
	// User is the basic-auth user (an Account SID), "" if none.
	User string
	// Status is the HTTP status served; 499 if the client gave up during
	// a delay, -1 if FaultDrop closed the connection.
	Status int
	// Fault is the injected fault that answered, FaultNone if none.
	Fault FaultKind
	// InFlight is how many requests were being served when it arrived,
	// itself included and Background traffic not.
	InFlight int
}

// Stats counts requests since the last Reset.
type Stats struct {
	Requests int
	ByStatus map[int]int
	// Faults counts requests answered by an injected fault (not Delay).
	Faults int
	// MaxInFlight is the most requests served at once (Background not
	// included); Throttled counts the 429s ConcurrencyLimit answered.
	MaxInFlight int
	Throttled   int
}

// SetBackground sets how many requests other clients of the account (the
// ISV's own production traffic) have in flight: they count against
// ConcurrencyLimit and in Twilio-Concurrent-Requests.
func (s *Server) SetBackground(n int) {
	s.imu.Lock()
	defer s.imu.Unlock()
	s.background = max(0, n)
}

// enter counts a request in flight and returns the requests in flight
// with it: its own and all of the account's.
func (s *Server) enter() (own, all int) {
	s.imu.Lock()
	defer s.imu.Unlock()
	s.inFlight++
	return s.inFlight, s.inFlight + s.background
}

func (s *Server) leave() {
	s.imu.Lock()
	defer s.imu.Unlock()
	s.inFlight--
}

// Requests returns the recorded requests, oldest first.
func (s *Server) Requests() []Request {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return slices.Clone(s.requests)
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	st := s.stats
	st.ByStatus = make(map[int]int, len(s.stats.ByStatus))
	for k, v := range s.stats.ByStatus {
		st.ByStatus[k] = v
	}
	return st
}

// Reset clears the request record and counters (not faults or data).
func (s *Server) Reset() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.requests = nil
	s.stats = Stats{ByStatus: map[int]int{}}
}

func (s *Server) record(r Request) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if len(s.requests) >= s.opts.MaxRecorded {
		n := copy(s.requests, s.requests[len(s.requests)-s.opts.MaxRecorded+1:])
		s.requests = s.requests[:n]
	}
	s.requests = append(s.requests, r)
	s.stats.Requests++
	s.stats.ByStatus[r.Status]++
	s.stats.MaxInFlight = max(s.stats.MaxInFlight, r.InFlight)
	if r.Fault != FaultNone && r.Fault != FaultDelay {
		s.stats.Faults++
	}
}

// statusWriter remembers the status a handler wrote and hands it to done
// once, before any of the response is passed on: a request is recorded
// before its client can see the answer, so a test that reads Requests
// after a call returns finds the call there.
type statusWriter struct {
	http.ResponseWriter
	status int
	done   func(status int)
}

func (w *statusWriter) setStatus(code int) {
	if w.status == 0 {
		w.status = code
		w.done(code)
	}
}

func (w *statusWriter) WriteHeader(code int) {
	w.setStatus(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.setStatus(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// ServeHTTP answers one request: latency, injected faults, then the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{At: s.now(), Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Query: r.URL.Query()}
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err == nil {
			rec.Form = r.PostForm
		}
	}
	rec.User, _, _ = r.BasicAuth()
	own, all := s.enter()
	defer s.leave()
	rec.InFlight = own
	sw := &statusWriter{ResponseWriter: w, done: func(status int) {
		rec.Status = status
		s.record(rec)
	}}
	// A handler that writes nothing answers 200.
	defer sw.setStatus(http.StatusOK)
	if s.opts.ReportConcurrency {
		w.Header().Set("Twilio-Concurrent-Requests", strconv.Itoa(all))
	}
	if s.opts.ConcurrencyLimit > 0 && all > s.opts.ConcurrencyLimit {
		s.fmu.Lock()
		s.stats.Throttled++
		s.fmu.Unlock()
		writeError(sw, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	}

	f, delay := s.pickFault(r)
	if d := s.opts.Latency + delay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			rec.Fault = FaultDelay
			sw.setStatus(499) // client gave up, as nginx logs it
			return
		}
		rec.Fault = FaultDelay
	}
	if f != nil {
		rec.Fault = f.Kind
		if s.serveFault(sw, r, f) {
			return
		}
	}
	s.route(sw, r)
}

// route dispatches to the API handlers after authenticating.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	const base = "/2010-04-01/Accounts"
	p := r.URL.Path
	if strings.HasPrefix(p, "/v1/") {
		// events.twilio.com, reached through the same rewriting transport.
		s.routeEvents(w, r)
		return
	}
	if !strings.HasPrefix(p, base) {
		notFound(w, p)
		return
	}
	user, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	rest := strings.TrimPrefix(p, base)
	if rest == ".json" {
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r.Method)
			return
		}
		s.listAccounts(w, r, user)
		return
	}
	if !strings.HasPrefix(rest, "/") {
		notFound(w, p)
		return
	}
	segs := strings.Split(rest[1:], "/")
	sid := strings.TrimSuffix(segs[0], ".json")
	if len(segs) == 1 && !strings.HasSuffix(segs[0], ".json") {
		notFound(w, p)
		return
	}
	acct, ok := s.authorize(w, user, sid, p)
	if !ok {
		return
	}
	switch {
	case len(segs) == 1:
		switch r.Method {
		case http.MethodGet:
			s.fetchAccount(w, acct)
		case http.MethodPost:
			s.updateAccount(w, r, user, acct)
		default:
			methodNotAllowed(w, r.Method)
		}
	case len(segs) == 2 && segs[1] == "Messages.json":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r.Method)
			return
		}
		s.listMessages(w, r, acct)
	case len(segs) == 3 && segs[1] == "Messages" && strings.HasSuffix(segs[2], ".json"):
		sid := strings.TrimSuffix(segs[2], ".json")
		switch r.Method {
		case http.MethodGet:
			s.fetchMessage(w, r, acct, sid)
		case http.MethodPost:
			s.updateMessage(w, r, acct, sid)
		case http.MethodDelete:
			s.deleteMessage(w, r, acct, sid)
		default:
			methodNotAllowed(w, r.Method)
		}
	case len(segs) == 4 && segs[1] == "Usage" && segs[2] == "Records" && (segs[3] == "Today.json" || segs[3] == "Daily.json"):
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r.Method)
			return
		}
		s.listUsage(w, r, acct, strings.TrimSuffix(segs[3], ".json"))
	default:
		notFound(w, p)
	}
}

// authenticate checks basic auth against the parent and every
// subaccount's own credentials and returns the caller's SID.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	user, pass, ok := r.BasicAuth()
	if ok {
		s.mu.RLock()
		a := s.accounts[user]
		good := a != nil && a.Token == pass && pass != ""
		active := good && (a.Parent || a.Status == StatusActive)
		s.mu.RUnlock()
		if good && !active {
			// A suspended or closed subaccount's own credentials stop
			// working (Twilio error 10001); the status code is not documented (?).
			writeError(w, http.StatusUnauthorized, 10001, "Account is not active")
			return "", false
		}
		if good {
			return user, true
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
	writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
	return "", false
}

// authorize resolves the account in the path: the parent may reach every
// account, a subaccount only itself.
func (s *Server) authorize(w http.ResponseWriter, user, sid, path string) (*account, bool) {
	s.mu.RLock()
	a := s.accounts[sid]
	s.mu.RUnlock()
	if user != s.opts.ParentSID && user != sid {
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return nil, false
	}
	if a == nil {
		notFound(w, path)
		return nil, false
	}
	return a, true
}
