package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twilio/twilio-go/client"
	"golang.org/x/time/rate"

	"sentinel/internal/traffic"
)

// Defaults for zero Config fields.
const (
	DefaultBaseURL    = "https://api.twilio.com"
	DefaultEventsURL  = "https://events.twilio.com"
	DefaultTimeout    = 30 * time.Second
	DefaultMaxRetries = 5
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	DefaultMaxPages   = 10000
	DefaultPageSize   = 1000
	// DefaultConcurrency and DefaultConcurrencyShare are Config's.
	DefaultConcurrency      = 8
	DefaultConcurrencyShare = 0.25
)

// Errors callers branch on.
var (
	// ErrExhausted wraps the last error of a call whose retries ran out.
	ErrExhausted = errors.New("retries exhausted")
	// ErrDeadline means a call gave up before its context's deadline
	// because it could not finish by then: the rate limiter could not let
	// the next request go, or the next retry was due after it. It wraps
	// the last failure, if any.
	ErrDeadline = errors.New("cannot finish before the deadline")
	// ErrPageLoop means Twilio returned a next_page_uri it had returned before.
	ErrPageLoop = errors.New("next_page_uri repeats")
	// ErrTooManyPages means a listing had more than Config.MaxPages pages.
	ErrTooManyPages = errors.New("too many pages")
	// ErrMalformed means Twilio answered with something that cannot be
	// understood: undecodable JSON or a message missing a SID or a date.
	ErrMalformed = errors.New("malformed response")
	// ErrParent means SetStatus was asked to change the parent account.
	ErrParent = errors.New("refusing to change the parent account")
	// ErrStatus means SetStatus was asked for a status other than active or
	// suspended. Closing an account is permanent and never done here.
	ErrStatus = errors.New("refusing status")
)

// Config configures a Client. Zero fields take the defaults documented on
// them.
type Config struct {
	// BaseURL is the scheme and host (and port) that every request goes to,
	// whatever URL twilio-go builds; no path, query or user info. Default
	// "https://api.twilio.com".
	BaseURL string
	// EventsURL is where requests to the Event Streams API
	// (events.twilio.com) go, in the same form. Default
	// "https://events.twilio.com" when BaseURL is Twilio's own, else
	// BaseURL: a fake or proxy that stands in for api.twilio.com serves
	// both, as their paths do not overlap (/2010-04-01, /v1).
	EventsURL string
	// AccountSID is the parent account: "AC" and 32 hex digits.
	AccountSID string
	// AuthToken is the parent's auth token. It is never logged and never
	// appears in errors.
	AuthToken string
	// Timeout bounds one HTTP request, from when the rate limiter lets it go
	// until its body is read. Default 30s.
	Timeout time.Duration
	// Concurrency is the most requests in flight at once, over all calls of
	// the Client (see budget.go: halved on 429, grown back on success).
	// Default 8.
	Concurrency int
	// ConcurrencyShare is the largest share of the account's requests in
	// flight, as Twilio's Twilio-Concurrent-Requests header reports them,
	// that the Client takes while other traffic is in flight. 0 means
	// 0.25; 1 disables the cap.
	ConcurrencyShare float64
	// SuccessInterval is how often the concurrency limit may grow back by
	// one after a 429, and how often it may be halved. Default 1s.
	SuccessInterval time.Duration
	// RateLimit is an optional hard cap on requests per second over all
	// calls of the Client, retries and page follow-ups included. 0 means
	// none: the concurrency budget is what bounds the Client.
	RateLimit float64
	// Burst is the rate limiter's bucket size. Default 1.
	Burst int
	// MaxRetries is how many times a retryable failure (429, 5xx, timeout,
	// transport error) is retried. 0 means 5; negative means never.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff: the ceiling
	// for retry n is MinBackoff*2^n capped at MaxBackoff, and the delay is
	// drawn uniformly below it (full jitter). A Retry-After header raises the
	// delay to what it asks for, capped at 4*MaxBackoff. Defaults 500ms, 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxPages bounds the pages read by one listing. Default 10000.
	MaxPages int
	// PageSize is the page size asked of Twilio, 1..1000. Default 1000.
	PageSize int
	// Classifier reduces inbound bodies to keywords. Default
	// traffic.NewClassifier().
	Classifier *traffic.Classifier
	// Peers hashes the other party's number of each message
	// (traffic.Message.Peer); nil leaves Peer 0, so that opt-outs cannot
	// be matched to the messages they answer and all count.
	Peers *traffic.Peers
	// Registerer receives the Client's metrics; nil means unregistered.
	Registerer prometheus.Registerer
	// Sleep waits between retries and returns ctx's error if ctx ends first.
	// Tests inject it; the default uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client is sentinel's Twilio client. It is safe for concurrent use.
type Client struct {
	cfg        Config
	base       *url.URL                    // scheme and host every request goes to
	eventsBase *url.URL                    // the same for events.twilio.com's
	transport  *http.Transport             // shared connection pool
	wait       func(context.Context) error // rate limiter; a hook for tests
	budget     *budget                     // requests in flight
	now        func() time.Time            // for Retry-After dates
	classifier *traffic.Classifier
	peers      *traffic.Peers
	metrics    *metrics
}

var (
	sidPattern   = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	tokenPattern = regexp.MustCompile(`^[a-zA-Z0-9]+$`)
)

// New validates cfg, fills in defaults and returns a Client. It sends no
// request.
func New(cfg Config) (*Client, error) {
	if !sidPattern.MatchString(cfg.AccountSID) {
		return nil, errors.New("new twilio client: account SID must be AC and 32 hex digits")
	}
	// twilio-go refuses non-alphanumeric credentials at every request with a
	// synthetic 400; refuse them once, here, without echoing the token.
	if !tokenPattern.MatchString(cfg.AuthToken) {
		return nil, errors.New("new twilio client: auth token must be non-empty and alphanumeric")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := parseBase(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("new twilio client: base URL %q must be http(s)://host[:port]", redactURL(cfg.BaseURL))
	}
	if cfg.EventsURL == "" {
		cfg.EventsURL = cfg.BaseURL
		if base.Host == "api.twilio.com" {
			cfg.EventsURL = DefaultEventsURL
		}
	}
	eventsBase, err := parseBase(cfg.EventsURL)
	if err != nil {
		return nil, fmt.Errorf("new twilio client: events URL %q must be http(s)://host[:port]", redactURL(cfg.EventsURL))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxPages == 0 {
		cfg.MaxPages = DefaultMaxPages
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.ConcurrencyShare == 0 {
		cfg.ConcurrencyShare = DefaultConcurrencyShare
	}
	if cfg.SuccessInterval == 0 {
		cfg.SuccessInterval = time.Second
	}
	switch {
	case cfg.Timeout < 0:
		return nil, errors.New("new twilio client: negative timeout")
	case cfg.RateLimit < 0 || math.IsNaN(cfg.RateLimit):
		return nil, errors.New("new twilio client: negative rate limit")
	case cfg.Burst < 0:
		return nil, errors.New("new twilio client: negative burst")
	case cfg.MinBackoff < 0 || cfg.MaxBackoff < cfg.MinBackoff:
		return nil, errors.New("new twilio client: backoff must satisfy 0 <= min <= max")
	case cfg.MaxPages < 0:
		return nil, errors.New("new twilio client: negative max pages")
	case cfg.PageSize < 1 || cfg.PageSize > 1000:
		return nil, errors.New("new twilio client: page size must be 1..1000")
	case cfg.Concurrency < 1:
		return nil, errors.New("new twilio client: concurrency must be at least 1")
	case !(cfg.ConcurrencyShare > 0 && cfg.ConcurrencyShare <= 1):
		return nil, errors.New("new twilio client: concurrency share must be more than 0 and at most 1")
	case cfg.SuccessInterval < 0:
		return nil, errors.New("new twilio client: negative success interval")
	}
	if cfg.Classifier == nil {
		cfg.Classifier = traffic.NewClassifier()
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new twilio client: %w", err)
	}

	limit := rate.Limit(cfg.RateLimit)
	if cfg.RateLimit == 0 {
		limit = rate.Inf
	}
	limiter := rate.NewLimiter(limit, cfg.Burst)
	// Every request goes to one host. The default transport keeps two idle
	// connections per host, so a poller with more requests in flight would
	// close and reopen (a TLS handshake each, against Twilio) the rest on
	// every round.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	return &Client{
		cfg:        cfg,
		base:       base,
		eventsBase: eventsBase,
		transport:  transport,
		wait:       limiter.Wait,
		budget:     newBudget(cfg.Concurrency, cfg.ConcurrencyShare, cfg.SuccessInterval, time.Now, m),
		now:        time.Now,
		classifier: cfg.Classifier,
		peers:      cfg.Peers,
		metrics:    m,
	}, nil
}

// ParentSID returns the parent account's SID.
func (c *Client) ParentSID() string { return c.cfg.AccountSID }

// Code returns the Twilio error code carried by err, or 0 if err carries
// none.
func Code(err error) int {
	var rest *client.TwilioRestError
	if errors.As(err, &rest) {
		return rest.Code
	}
	var v1 *client.RestErrorV1
	if errors.As(err, &v1) {
		return v1.Code
	}
	return 0
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// redactURL drops user info from a URL for an error message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}

// validSID reports whether sid is an account SID. SIDs are spliced into
// request paths by twilio-go, so anything else is refused before sending.
func validSID(sid string) error {
	if !sidPattern.MatchString(sid) {
		return fmt.Errorf("invalid account SID %q", truncate(sid, 40))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// parseBase parses a base URL: http(s)://host[:port], nothing else.
func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("not a base URL")
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// baseFor returns where a request twilio-go addressed to host goes: the
// Event Streams API's host (events.twilio.com, or an edge or region of it)
// to EventsURL, everything else to BaseURL.
func (c *Client) baseFor(host string) *url.URL {
	if strings.HasPrefix(host, "events.") && strings.HasSuffix(host, ".twilio.com") {
		return c.eventsBase
	}
	return c.base
}

// credentials are the account a request acts as. The token is never
// logged and never appears in errors.
type credentials struct{ sid, token string }

func (c *Client) parent() credentials { return credentials{c.cfg.AccountSID, c.cfg.AuthToken} }

// handler returns a twilio-go request handler acting as cred whose every
// request goes through rt. It is cheap: the connection pool lives in
// c.transport. It is built without TWILIO_EDGE/TWILIO_REGION, and rt
// rewrites the host in any case.
func (c *Client) handler(rt http.RoundTripper, cred credentials) *client.RequestHandler {
	tc := &client.Client{
		Credentials: client.NewCredentials(cred.sid, cred.token),
		HTTPClient: &http.Client{
			Transport: rt,
			// Like twilio-go's default client: a redirect is an answer, not
			// something to follow with credentials attached.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	tc.SetAccountSid(cred.sid)
	return &client.RequestHandler{Client: tc}
}
