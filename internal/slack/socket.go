package slack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goslack "github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// EnvAppToken is the environment variable with the app-level token
// (xapp-…, scope connections:write) that turns Socket Mode on. A secret.
const EnvAppToken = "SLACK_APP_TOKEN"

// SocketConfig configures a Socket. Zero values take the defaults.
type SocketConfig struct {
	// AppToken opens Socket Mode connections (apps.connections.open); an
	// app-level token, xapp-…. A secret.
	AppToken string
	// BotToken is the bot token the Web API client of the connection
	// carries. A secret.
	BotToken string
	// APIURL overrides Slack's Web API base URL; "" means Slack's.
	APIURL string
	// HTTPClient makes the Web API calls; nil means one with a 15s timeout.
	HTTPClient *http.Client
	// MinBackoff and MaxBackoff bound the wait before connecting again
	// after slack-go's client gave up (a refused token): it doubles from
	// MinBackoff to at most MaxBackoff; defaults 5s and 5m. slack-go
	// itself reconnects a dropped connection, with its own backoff.
	MinBackoff, MaxBackoff time.Duration
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Socket receives Slack's interactions over Socket Mode, so sentinel needs
// no public endpoint: slack-go's socketmode client holds a WebSocket to
// Slack, and every interaction it delivers is accepted by Interactions and
// acknowledged at once, within Slack's 3 seconds. Run keeps it connected,
// reconnecting with backoff, and sentinel_slack_socket_up says whether it
// is. Tokens never appear in its logs or metrics.
type Socket struct {
	cfg SocketConfig
	api string
	in  *Interactions
	log *slog.Logger
	m   *socketMetrics
	red redactor

	lastWarn time.Time
}

// NewSocket validates cfg and returns a Socket whose interactions in
// carries out.
func NewSocket(cfg SocketConfig, in *Interactions, logger *slog.Logger) (*Socket, error) {
	switch {
	case !strings.HasPrefix(cfg.AppToken, "xapp-"):
		// Not quoted: a token pasted into the wrong variable is a secret.
		return nil, errors.New("new slack socket: " + EnvAppToken + " is not an app-level token (xapp-…)")
	case cfg.BotToken == "":
		return nil, errors.New("new slack socket: Socket Mode needs the bot token (" + EnvBotToken + ") too")
	case in == nil || logger == nil:
		return nil, errors.New("new slack socket: interactions and logger are required")
	}
	cfg.MinBackoff = cmp.Or(cfg.MinBackoff, 5*time.Second)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 5*time.Minute)
	if cfg.MinBackoff < 0 || cfg.MaxBackoff < cfg.MinBackoff {
		return nil, errors.New("new slack socket: negative backoff or MaxBackoff below MinBackoff")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	api, err := apiURL(cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("new slack socket: %w", err)
	}
	m, err := newSocketMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new slack socket: %w", err)
	}
	return &Socket{cfg: cfg, api: api, in: in, log: logger, m: m, red: redactor{cfg.AppToken, cfg.BotToken}}, nil
}

// Run keeps the Socket Mode connection until ctx ends, and returns nil
// then. It never gives up: Slack refusing the token is logged (at most
// every ten minutes) and tried again after a backoff, so that alerts keep
// flowing through the outbox whatever happens to the buttons.
func (s *Socket) Run(ctx context.Context) error {
	backoff := s.cfg.MinBackoff
	for {
		connected, err := s.session(ctx)
		s.m.up.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = s.cfg.MinBackoff
		}
		s.warn("slack socket mode stopped; buttons do not work until it reconnects", "err", s.reason(err), "retry_in", backoff)
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, s.cfg.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// session runs one slack-go socketmode client until it gives up or ctx
// ends, handling its events. It reports whether it connected.
func (s *Socket) session(ctx context.Context) (connected bool, _ error) {
	api := goslack.New(s.cfg.BotToken,
		goslack.OptionAppLevelToken(s.cfg.AppToken),
		goslack.OptionAPIURL(s.api),
		goslack.OptionHTTPClient(s.cfg.HTTPClient),
		goslack.OptionLog(log.New(io.Discard, "", 0)))
	client := socketmode.New(api, socketmode.OptionLog(log.New(io.Discard, "", 0)))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- client.RunContext(ctx) }()
	for {
		select {
		case err := <-errc:
			return connected, err
		case ev := <-client.Events:
			if s.handle(ctx, client, ev) {
				connected = true
			}
		}
	}
}

// handle handles one event of the client; it reports a new connection.
func (s *Socket) handle(ctx context.Context, client *socketmode.Client, ev socketmode.Event) bool {
	switch ev.Type {
	case socketmode.EventTypeConnecting:
		s.m.up.Set(0)
	case socketmode.EventTypeConnected:
		s.m.up.Set(1)
		s.m.connections.Inc()
		if !s.lastWarn.IsZero() {
			s.log.Info("slack socket mode connected again: buttons work")
			s.lastWarn = time.Time{}
		}
		s.log.Debug("slack socket mode connected")
		return true
	case socketmode.EventTypeConnectionError:
		s.m.up.Set(0)
		if ce, ok := ev.Data.(*goslack.ConnectionErrorEvent); ok {
			s.warn("slack socket mode cannot connect; retrying", "err", s.reason(ce.ErrorObj), "attempt", ce.Attempt)
		}
	case socketmode.EventTypeInvalidAuth:
		s.warn("slack refuses the app-level token (" + EnvAppToken + "): buttons do not work")
	case socketmode.EventTypeInteractive:
		cb, ok := ev.Data.(goslack.InteractionCallback)
		if !ok || ev.Request == nil {
			return false
		}
		if err := client.AckCtx(ctx, ev.Request.EnvelopeID, s.in.accept(cb)); err != nil {
			s.log.Warn("slack interaction not acknowledged", "err", s.reason(err))
		}
	case socketmode.EventTypeEventsAPI, socketmode.EventTypeSlashCommand:
		// Not asked for by sentinel's manifest; acknowledged so that Slack
		// does not send them again.
		if ev.Request != nil {
			client.AckCtx(ctx, ev.Request.EnvelopeID, nil) //nolint:errcheck // nothing to do about it
		}
	}
	return false
}

// warn logs at warning level at most every ten minutes.
func (s *Socket) warn(msg string, attrs ...any) {
	now := time.Now()
	if !s.lastWarn.IsZero() && now.Sub(s.lastWarn) < 10*time.Minute {
		return
	}
	s.lastWarn = now
	s.log.Warn(msg, attrs...)
}

// reason is err's text for the log: the WebSocket URL (its ticket is a
// credential) dropped and the tokens redacted.
func (s *Socket) reason(err error) string {
	if err == nil {
		return "stopped"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return s.red.redact(ue.Op + ": " + ue.Err.Error())
	}
	msg := err.Error()
	if i := strings.Index(msg, "ws://"); i >= 0 {
		msg = msg[:i] + "[websocket url]"
	} else if i := strings.Index(msg, "wss://"); i >= 0 {
		msg = msg[:i] + "[websocket url]"
	}
	return s.red.redact(msg)
}
