package slack

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	goslack "github.com/slack-go/slack"
)

// EnvSigningSecret is the environment variable with the app's signing
// secret, which the HTTP interactions endpoint verifies requests with. A
// secret.
const EnvSigningSecret = "SLACK_SIGNING_SECRET"

// Limits of the HTTP interactions endpoint.
const (
	// MaxSkew is how far a request's timestamp may be from now, either
	// way: an older request may be a replay.
	MaxSkew = 5 * time.Minute
	// maxRequest bounds a request body: a modal's submission carries the
	// modal's blocks, a few kilobytes.
	maxRequest = 1 << 20
)

// Endpoint is the HTTP interactions endpoint, for workspaces that forbid
// Socket Mode: Slack POSTs each interaction to it (the app's Request URL,
// /slack/interactions) and it acknowledges at once, with the same
// Interactions as Socket Mode. It answers only requests that Slack signed
// with the app's signing secret and that are at most MaxSkew old: 401
// otherwise, before the payload is read. Mount it on a listener Slack can
// reach, as POST /slack/interactions.
type Endpoint struct {
	secret string
	in     *Interactions
}

var _ http.Handler = (*Endpoint)(nil)

// NewEndpoint returns the endpoint verifying requests with the signing
// secret, whose interactions in carries out.
func NewEndpoint(signingSecret string, in *Interactions) (*Endpoint, error) {
	switch {
	case signingSecret == "":
		return nil, errors.New("new slack endpoint: no signing secret (" + EnvSigningSecret + ")")
	case in == nil:
		return nil, errors.New("new slack endpoint: no interactions")
	}
	return &Endpoint{secret: signingSecret, in: in}, nil
}

func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reject := func(code int, reason, text string) {
		e.in.m.rejected.WithLabelValues(reason).Inc()
		http.Error(w, text, code)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reject(http.StatusMethodNotAllowed, "method", "POST only")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequest))
	if err != nil {
		reject(http.StatusRequestEntityTooLarge, "body", "request body unreadable or too large")
		return
	}
	// The window is checked here against sentinel's clock (slack-go checks
	// it again against the system's): an old request is refused before its
	// signature is even computed.
	ts, err := strconv.ParseInt(r.Header.Get("X-Slack-Request-Timestamp"), 10, 64)
	if err != nil {
		reject(http.StatusUnauthorized, "timestamp", "missing or bad X-Slack-Request-Timestamp")
		return
	}
	if skew := e.in.cfg.Now().Sub(time.Unix(ts, 0)); skew > MaxSkew || skew < -MaxSkew {
		reject(http.StatusUnauthorized, "timestamp", "request timestamp more than 5 minutes from now")
		return
	}
	v, err := goslack.NewSecretsVerifier(r.Header, e.secret)
	if err == nil {
		_, err = v.Write(body)
	}
	if err == nil {
		err = v.Ensure()
	}
	if err != nil {
		reason := "signature"
		if errors.Is(err, goslack.ErrExpiredTimestamp) {
			reason = "timestamp"
		}
		reject(http.StatusUnauthorized, reason, "request not signed by Slack")
		return
	}
	form, err := url.ParseQuery(string(body))
	var cb goslack.InteractionCallback
	if err == nil {
		err = json.Unmarshal([]byte(form.Get("payload")), &cb)
	}
	if err != nil {
		reject(http.StatusBadRequest, "payload", "no interaction payload")
		return
	}
	ack := e.in.accept(cb)
	if ack == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ack) //nolint:errcheck // Slack went away
}
