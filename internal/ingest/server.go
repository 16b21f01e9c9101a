package ingest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twilio/twilio-go/client"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// Paths of the endpoints, under Config.URL.
const (
	EventsPath = "/twilio/events"
	StatusPath = "/twilio/status"
)

// MaxBody is the largest body accepted; a larger one gets 413.
const MaxBody = 1 << 20

// MaxForm and MaxFormParams bound a status callback, whose body is read
// and whose signature is checked before anything says who sent it: the
// check concatenates the parameters, once per URL it may have been signed
// over, at a cost that grows with their number times the body's length.
// Twilio's callbacks are a few dozen parameters of a few kilobytes.
const (
	MaxForm       = 64 << 10
	MaxFormParams = 128
)

// AckWithin is how long Twilio waits for an answer (Event Streams gives a
// sink 5 s); a request that took longer is logged.
const AckWithin = 5 * time.Second

// Config configures a Server.
type Config struct {
	// Username and Password are the Basic credentials Event Streams sends
	// with every request (the sink URL's user info). Required.
	Username, Password string
	// URL is the public base URL Twilio calls (-events-url): signatures are
	// computed over it, the request's path and query. Required.
	URL string
	// Parent and Token are the parent account's SID and auth token.
	Parent, Token string
	// SubaccountToken returns a subaccount's auth token, read from Twilio
	// with the parent's credentials, for the signatures of its status
	// callbacks. Tokens are held in memory only.
	SubaccountToken func(ctx context.Context, sid string) (string, error)
	// Known reports whether sid is an account of the fleet (the parent
	// included). Events of other accounts are acknowledged, counted and
	// not stored; their status callbacks are refused (no token to check
	// them with). An error (the store could not be read) fails the
	// request with 503, so that Twilio sends it again.
	Known func(sid string) (bool, error)
	// Store keeps what arrives (PutReports).
	Store *store.Store
	// Decoder turns bodies into reports.
	Decoder *Decoder
	// Stored, if set, is told after each request's reports are durable
	// which accounts they brought new or changed messages of, with the
	// time of the latest event of each. stream is true for Event Streams
	// requests with the configured credentials: the complete stream of
	// every message's events, which polling can back off for. Status
	// callbacks (sent only for messages that ask for them) and a
	// subaccount's own sink (which passes only failures) are evidence,
	// not a stream to trust.
	Stored func(accounts map[string]time.Time, stream bool)
	// Registerer registers the metrics; nil for none.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server serves the push endpoints: Event Streams' webhook sink
// (EventsPath) and Messaging status callbacks (StatusPath). What arrives goes
// through the store's upsert, as polled messages do; a request is answered
// 2xx only once it is stored.
type Server struct {
	cfg Config
	m   *metrics
	url *url.URL

	mu       sync.Mutex
	tokens   map[string]token  // subaccounts' auth tokens, by SID
	fetching map[string]*fetch // reads of tokens from Twilio under way, by SID
}

type token struct {
	value string
	at    time.Time // when it was read from Twilio
}

// fetch is one read of a token from Twilio, which the requests that need
// it meanwhile wait for: value is set before done is closed.
type fetch struct {
	done  chan struct{}
	value string
}

// tokenRefresh is how often a subaccount's token may be read again when a
// signature does not validate with the one held (the token was rotated).
const tokenRefresh = time.Minute

// New returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Username == "" || cfg.Password == "":
		return nil, errors.New("ingest: the events username and password are required")
	case cfg.Store == nil || cfg.Decoder == nil || cfg.Known == nil || cfg.Log == nil:
		return nil, errors.New("ingest: store, decoder, account list and logger are required")
	case cfg.Parent == "" || cfg.Token == "":
		return nil, errors.New("ingest: the parent's credentials are required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("ingest: the events URL must be an absolute http(s) URL")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, m: m, url: u, tokens: map[string]token{}, fetching: map[string]*fetch{}}, nil
}

// Handler returns the endpoints' handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+EventsPath, s.events)
	mux.HandleFunc("POST "+StatusPath, s.status)
	return mux
}

// reject answers a request that stored nothing, counted by reason.
func (s *Server) reject(w http.ResponseWriter, code int, reason, msg string) {
	s.m.rejected.WithLabelValues(reason).Inc()
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="sentinel events"`)
	}
	http.Error(w, msg, code)
}

// body reads the request's body, at most limit bytes; ok is false once it
// has answered.
func (s *Server) body(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		s.reject(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", limit))
		return nil, false
	case err != nil:
		s.reject(w, http.StatusBadRequest, "malformed", "body could not be read")
		return nil, false
	}
	return b, true
}

// SubaccountPassword is the password of the Basic credentials a
// subaccount's own Event Streams sink presents, with the subaccount's SID
// as the user name: derived from the configured password, so that nothing
// more is kept. A subaccount's owner can read its own sinks, and with them
// these credentials; they let it push nothing but its own account's
// events, and those only as far as a subaccount's word goes (see events).
func SubaccountPassword(password, sid string) string {
	mac := hmac.New(sha256.New, []byte(password))
	mac.Write([]byte("sentinel subaccount sink\n" + sid))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// authorized compares the request's Basic credentials with the configured
// ones, and with a subaccount's own (SubaccountPassword), in constant time:
// both are compared as hashes, so that neither their contents nor their
// lengths show in the time taken. scope is "" for the configured
// credentials, the subaccount's SID for its own.
func (s *Server) authorized(r *http.Request) (scope string, ok bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	same := func(a, b string) int {
		ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
		return subtle.ConstantTimeCompare(ha[:], hb[:])
	}
	if same(user, s.cfg.Username)&same(pass, s.cfg.Password) == 1 {
		return "", true
	}
	if traffic.IsAccountSID(user) && user != s.cfg.Parent && same(pass, SubaccountPassword(s.cfg.Password, user)) == 1 {
		return user, true
	}
	return "", false
}

// signedURLs are the URLs Twilio may have signed a request to r over: the
// public URL with the request's path and query, with and without the user
// info the sink URL carries (?: Twilio does not document which for Event
// Streams; either validates).
func (s *Server) signedURLs(r *http.Request) []string {
	u := *s.url
	u.Path = strings.TrimSuffix(u.Path, "/") + r.URL.Path
	u.RawPath = ""
	u.RawQuery = r.URL.RawQuery
	urls := []string{u.String()}
	if user, pass, ok := r.BasicAuth(); ok {
		u.User = url.UserPassword(user, pass)
		urls = append(urls, u.String())
	}
	return urls
}

// events is the Event Streams webhook sink.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Now()
	scope, ok := s.authorized(r)
	if !ok {
		s.reject(w, http.StatusUnauthorized, "unauthorized", "wrong or missing credentials")
		return
	}
	body, ok := s.body(w, r, MaxBody)
	if !ok {
		return
	}
	if sig := r.Header.Get("X-Twilio-Signature"); sig != "" && !s.validJSON(r, body, sig, scope) {
		s.reject(w, http.StatusForbidden, "bad_signature", "X-Twilio-Signature does not match")
		return
	}
	evs, err := s.cfg.Decoder.Events(body, start)
	if err != nil {
		s.reject(w, http.StatusBadRequest, "malformed", oneLine(err))
		return
	}
	if scope != "" {
		// A subaccount's own sink: its events only, and only as far as a
		// subaccount's word goes.
		for i := range evs {
			if evs[i].Stored() && evs[i].Account != scope {
				s.reject(w, http.StatusForbidden, "foreign_account", "a subaccount's sink sent an event of another account")
				return
			}
		}
		var err error
		if evs, err = s.knownOnly(scope, evs); err != nil {
			s.unavailable(w, "read messages for a subaccount's events", err, "subaccount", scope)
			return
		}
	}
	byAcct := map[string][]store.Report{}
	latest := map[string]time.Time{}
	var order []string
	for i := range evs {
		ev := &evs[i]
		if !ev.Stored() {
			s.m.received.WithLabelValues(sourceEvents).Inc()
			s.m.ignored.WithLabelValues("type").Inc()
			continue
		}
		known, err := s.cfg.Known(ev.Account)
		if err != nil {
			s.unavailable(w, "read the account list for pushed events", err)
			return
		}
		s.m.received.WithLabelValues(sourceEvents).Inc()
		if !known {
			s.m.ignored.WithLabelValues("unknown_account").Inc()
			continue
		}
		if _, seen := byAcct[ev.Account]; !seen {
			order = append(order, ev.Account)
		}
		byAcct[ev.Account] = append(byAcct[ev.Account], ev.Report)
		if ev.At.After(latest[ev.Account]) {
			latest[ev.Account] = ev.At
		}
		if !ev.At.IsZero() {
			s.m.lag.Observe(start.Sub(ev.At).Seconds())
		}
	}
	if !s.store(w, order, byAcct, latest, start, scope == "") {
		return
	}
	s.done(w, start)
}

// unavailable answers 503 for a store that could not be read: nothing
// was stored, and Twilio sends the request again.
func (s *Server) unavailable(w http.ResponseWriter, what string, err error, attrs ...any) {
	s.cfg.Log.Error(what, append(attrs, "err", err)...)
	s.m.rejected.WithLabelValues("store").Inc()
	http.Error(w, "could not read the store; send the request again", http.StatusServiceUnavailable)
}

// knownOnly returns, of the events a subaccount vouches for alone (its own
// sink, whose credentials its owner can read), the failures of messages
// sentinel knows, as for its signed status callbacks (see status): its
// owner could otherwise invent messages to dilute its rates, or report a
// delivery, a read or a cancellation that outranks the carrier's verdict.
// A failure is evidence only against the subaccount itself. The others are
// counted and dropped; the poll reads them.
func (s *Server) knownOnly(acct string, evs []Event) ([]Event, error) {
	out := evs[:0]
	for _, ev := range evs {
		if !ev.Stored() {
			out = append(out, ev)
			continue
		}
		if !ev.Report.Message.Failed() {
			s.m.ignored.WithLabelValues("self_signed").Inc()
			continue
		}
		switch _, err := s.cfg.Store.Message(acct, ev.Report.Message.SID); {
		case errors.Is(err, store.ErrNotFound):
			s.m.ignored.WithLabelValues("unknown_message").Inc()
		case err != nil:
			return nil, err
		default:
			out = append(out, ev)
		}
	}
	return out, nil
}

// status is the Messaging status callback endpoint.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Now()
	body, ok := s.body(w, r, MaxForm)
	if !ok {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.reject(w, http.StatusBadRequest, "malformed", "the body is not a form")
		return
	}
	params := 0
	for _, vs := range form {
		params += len(vs)
	}
	if params > MaxFormParams {
		s.reject(w, http.StatusBadRequest, "malformed", fmt.Sprintf("%d parameters, at most %d", params, MaxFormParams))
		return
	}
	sig := r.Header.Get("X-Twilio-Signature")
	acct := strings.TrimSpace(form.Get("AccountSid"))
	known, err := s.cfg.Known(acct)
	switch {
	case sig == "":
		s.reject(w, http.StatusForbidden, "bad_signature", "no X-Twilio-Signature")
		return
	case err != nil:
		s.unavailable(w, "read the account list for a status callback", err)
		return
	case !known:
		// Without a token of the fleet's there is nothing to check the
		// signature with, and an unknown SID must not make sentinel ask
		// Twilio for it.
		s.reject(w, http.StatusForbidden, "bad_signature", "AccountSid is not an account of this fleet")
		return
	case !s.validForm(r, body, acct, sig):
		s.reject(w, http.StatusForbidden, "bad_signature", "X-Twilio-Signature does not match")
		return
	}
	rep, err := s.cfg.Decoder.StatusCallback(form, start)
	if err != nil {
		s.reject(w, http.StatusBadRequest, "malformed", oneLine(err))
		return
	}
	s.m.received.WithLabelValues(sourceStatus).Inc()
	acct = rep.Message.AccountSID
	if acct != s.cfg.Parent {
		// A subaccount's owner holds the token its callbacks are signed
		// with, and could sign callbacks for messages that never were, to
		// dilute its own rates. Its callbacks therefore only move messages
		// sentinel knows (from a poll or from Event Streams, whose
		// credentials are sentinel's own) along; the first read of a new
		// message is the poll's. And they only report failures: a
		// callback carries no time, so it orders by status alone, and a
		// signed "read" or "canceled" would outrank the carrier's verdict
		// for good, a "delivered" end the polls' re-reading of a message
		// that may yet fail. A failure is evidence only against the
		// signer. Acknowledged, so Twilio does not retry.
		if !rep.Message.Failed() {
			s.m.ignored.WithLabelValues("self_signed").Inc()
			s.done(w, start)
			return
		}
		switch _, err := s.cfg.Store.Message(acct, rep.Message.SID); {
		case errors.Is(err, store.ErrNotFound):
			s.m.ignored.WithLabelValues("unknown_message").Inc()
			s.done(w, start)
			return
		case err != nil:
			s.unavailable(w, "read a message for its status callback", err, "subaccount", acct)
			return
		}
	}
	if !s.store(w, []string{acct}, map[string][]store.Report{acct: {rep}}, map[string]time.Time{acct: start}, start, false) {
		return
	}
	s.done(w, start)
}

// store makes the reports durable and tells Config.Stored of the accounts
// whose messages changed (stream: see Config.Stored); ok is false once it
// has answered with an error.
// When some accounts' reports cannot be stored, the others still are, and
// the request fails.
func (s *Server) store(w http.ResponseWriter, order []string, byAcct map[string][]store.Report, latest map[string]time.Time, at time.Time, stream bool) bool {
	if len(order) == 0 {
		return true
	}
	batches := make([]store.Reports, len(order))
	for i, a := range order {
		batches[i] = store.Reports{Account: a, Reports: byAcct[a]}
	}
	ins, err := s.cfg.Store.PutReports(batches, at)
	stored := make([]bool, len(batches))
	if err == nil {
		for i := range stored {
			stored[i] = true
		}
	} else if len(batches) > 1 {
		// A record the store cannot read fails the account it is of, not
		// the others of the batch, which Twilio would otherwise send again
		// and again to the same end. What is stored here its retry counts
		// once (event ids).
		ins = make([]store.Ingest, len(batches))
		var errs []error
		for i, b := range batches {
			in, berr := s.cfg.Store.PutReports([]store.Reports{b}, at)
			if berr != nil {
				errs = append(errs, berr)
				continue
			}
			ins[i], stored[i] = in[0], true
		}
		err = errors.Join(errs...)
	}
	changed := map[string]time.Time{}
	for i, in := range ins {
		if !stored[i] {
			continue
		}
		s.m.duplicates.Add(float64(in.Duplicates))
		s.m.stored.WithLabelValues("new").Add(float64(in.New))
		s.m.stored.WithLabelValues("changed").Add(float64(in.Changed))
		s.m.stored.WithLabelValues("unchanged").Add(float64(in.Unchanged))
		if in.New+in.Changed > 0 {
			changed[order[i]] = latest[order[i]]
		}
	}
	if len(changed) > 0 && s.cfg.Stored != nil {
		s.cfg.Stored(changed, stream)
	}
	if err != nil {
		s.cfg.Log.Error("store pushed events", "err", err)
		s.m.rejected.WithLabelValues("store").Inc()
		http.Error(w, "could not store the events; send them again", http.StatusServiceUnavailable)
		return false
	}
	s.m.last.Set(float64(at.Unix()))
	return true
}

func (s *Server) done(w http.ResponseWriter, start time.Time) {
	took := s.cfg.Now().Sub(start)
	s.m.duration.Observe(took.Seconds())
	if took > AckWithin {
		s.cfg.Log.Warn("pushed events were stored after Twilio's deadline; Twilio will send them again", "took", took)
	}
	w.WriteHeader(http.StatusOK)
}

// validJSON checks an Event Streams request's signature: over the URL, and
// the body's hash where the URL carries one (bodySHA256), as twilio-go's
// RequestValidator does; with the parent's token, or for a subaccount's
// own sink (scope), with that subaccount's, as Twilio signs what a
// subaccount's resources send (?: not documented for Event Streams).
func (s *Server) validJSON(r *http.Request, body []byte, sig, scope string) bool {
	hashed := r.URL.Query().Get("bodySHA256") != ""
	return s.validSignature(r, scope, func(rv *client.RequestValidator, u string) bool {
		if hashed {
			return rv.ValidateBody(u, body, sig)
		}
		return rv.Validate(u, map[string]string{}, sig)
	})
}

// validForm checks a status callback's signature with the token of the
// account it names: the URL and the form's parameters.
func (s *Server) validForm(r *http.Request, body []byte, acct, sig string) bool {
	return s.validSignature(r, acct, func(rv *client.RequestValidator, u string) bool {
		return rv.ValidateBody(u, body, sig)
	})
}

// validSignature checks a request's signature (check, over each URL Twilio
// may have signed) with the token of acct: the parent's when acct is the
// parent or "", else the subaccount's (validWith).
func (s *Server) validSignature(r *http.Request, acct string, check func(rv *client.RequestValidator, u string) bool) bool {
	valid := func(tok string) bool {
		rv := client.NewRequestValidator(tok)
		for _, u := range s.signedURLs(r) {
			if check(&rv, u) {
				return true
			}
		}
		return false
	}
	if acct == "" || acct == s.cfg.Parent {
		return valid(s.cfg.Token)
	}
	return s.validWith(r.Context(), acct, valid)
}

// validWith checks a signature with subaccount acct's token (valid), read
// from Twilio when not held, and read again when it fails (a rotated
// token), at most once per tokenRefresh.
func (s *Server) validWith(ctx context.Context, acct string, valid func(token string) bool) bool {
	if s.cfg.SubaccountToken == nil {
		return false
	}
	tok, fresh, ok := s.token(ctx, acct, false)
	if !ok {
		return false
	}
	if valid(tok) {
		return true
	}
	if fresh {
		return false
	}
	// The token may have been rotated: read it again, at most once a
	// minute per account.
	tok, _, ok = s.token(ctx, acct, true)
	return ok && valid(tok)
}

// token returns acct's auth token, read from Twilio when not held or, with
// again, when held for longer than tokenRefresh. fresh says it was just
// read. Requests that need a token while it is being read wait for that
// read: anyone can post a callback naming a subaccount, and a burst of
// them must not become a burst of requests to Twilio.
func (s *Server) token(ctx context.Context, acct string, again bool) (tok string, fresh, ok bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	t, held := s.tokens[acct]
	if held && (!again || now.Sub(t.at) < tokenRefresh) {
		s.mu.Unlock()
		return t.value, false, t.value != ""
	}
	if f := s.fetching[acct]; f != nil {
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.value, true, f.value != ""
		case <-ctx.Done():
			return "", false, false
		}
	}
	f := &fetch{done: make(chan struct{})}
	s.fetching[acct] = f
	s.mu.Unlock()
	// Not cancelled with the request that started it: the others wait
	// for it, and a sender that hangs up must not leave the token unknown.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	v, err := s.cfg.SubaccountToken(ctx, acct)
	if err != nil {
		s.cfg.Log.Warn("read a subaccount's auth token for a status callback's signature", "subaccount", acct, "err", err)
		v = "" // remembered as unknown until tokenRefresh has passed
	}
	s.mu.Lock()
	s.tokens[acct] = token{value: v, at: now}
	delete(s.fetching, acct)
	s.mu.Unlock()
	f.value = v
	close(f.done)
	return v, true, v != ""
}
