package slack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"
)

// Environment variables read by ConfigFromEnv. Both hold secrets.
const (
	EnvWebhookURL = "SLACK_WEBHOOK_URL"
	EnvBotToken   = "SLACK_BOT_TOKEN"
	EnvChannel    = "SLACK_CHANNEL"
)

// Mode is how alerts reach people.
type Mode string

// Modes.
const (
	ModeLog     Mode = "log"     // no Slack configured: alerts go to the log only
	ModeWebhook Mode = "webhook" // an incoming webhook: no threads
	ModeBot     Mode = "bot"     // a bot token and a channel: incidents are threads
)

// Config says where alerts go. WebhookURL and BotToken are secrets: they never
// appear in errors, logs or metrics.
type Config struct {
	WebhookURL string // incoming webhook URL
	BotToken   string // bot token (xoxb-...); needs chat:write in Channel
	Channel    string // channel ID or name, for a bot token
	// APIURL overrides Slack's Web API base URL (bot token only), for tests
	// and proxies; "" means https://slack.com/api/.
	APIURL string
	// HTTPClient is used for every request; nil means a client with a 15s
	// timeout.
	HTTPClient *http.Client
}

// ConfigFromEnv reads the webhook URL, bot token and channel through getenv.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		WebhookURL: strings.TrimSpace(getenv(EnvWebhookURL)),
		BotToken:   strings.TrimSpace(getenv(EnvBotToken)),
		Channel:    strings.TrimSpace(getenv(EnvChannel)),
	}
}

// Mode reports where alerts will go with this configuration. NewClient
// refuses ModeLog: the caller uses a LogNotifier instead and should say at
// start that alerts reach nobody but the log.
func (c Config) Mode() Mode {
	switch {
	case c.BotToken != "":
		return ModeBot
	case c.WebhookURL != "":
		return ModeWebhook
	}
	return ModeLog
}

// String describes the configuration without its secrets, for the start-up
// log line.
func (c Config) String() string {
	switch c.Mode() {
	case ModeBot:
		api := c.APIURL
		if api == "" {
			api = goslack.APIURL
		}
		return fmt.Sprintf("slack bot token, channel %s, api %s", c.Channel, api)
	case ModeWebhook:
		host := "?"
		if u, err := url.Parse(c.WebhookURL); err == nil {
			host = u.Host
		}
		return "slack incoming webhook at " + host
	}
	return "no slack configured: alerts go to the log only"
}

// Fingerprint identifies the configuration without revealing it: the
// hex SHA-256 of its mode, webhook URL, bot token, channel and API URL. The
// Dispatcher stores it with its hold (Options.Config), so that a hold earned
// by one webhook or token does not outlive it. The webhook URL and the token
// carry long random keys, so their hash gives nothing away.
func (c Config) Fingerprint() string {
	h := sha256.New()
	for _, f := range []string{"sentinel slack config 1", string(c.Mode()), c.WebhookURL, c.BotToken, c.Channel, c.APIURL} {
		// Length-prefixed, so that no two configurations hash the same text.
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Client posts rendered messages to Slack through an incoming webhook or
// with a bot token. It does not retry: the Dispatcher does, from the outbox.
type Client struct {
	mode    Mode
	webhook string
	channel string
	http    *http.Client
	api     *goslack.Client
	secrets []string // redacted from every error
}

var _ Poster = (*Client)(nil)

// NewClient validates cfg and returns a Client for its mode. Setting both a
// webhook URL and a bot token is an error rather than a silent choice.
func NewClient(cfg Config) (*Client, error) {
	c := &Client{mode: cfg.Mode(), http: cfg.HTTPClient}
	if c.http == nil {
		c.http = &http.Client{Timeout: 15 * time.Second}
	}
	switch c.mode {
	case ModeLog:
		return nil, errors.New("new slack client: neither " + EnvWebhookURL + " nor " + EnvBotToken + " is set")
	case ModeBot:
		if cfg.WebhookURL != "" {
			return nil, errors.New("new slack client: both " + EnvWebhookURL + " and " + EnvBotToken + " are set; choose one")
		}
		if cfg.Channel == "" {
			return nil, errors.New("new slack client: a bot token needs a channel (" + EnvChannel + ")")
		}
		api := cfg.APIURL
		if api == "" {
			api = goslack.APIURL
		}
		if u, err := url.Parse(api); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("new slack client: api url %q is not an http(s) URL", api)
		}
		if !strings.HasSuffix(api, "/") {
			api += "/"
		}
		c.channel = cfg.Channel
		c.api = goslack.New(cfg.BotToken, goslack.OptionAPIURL(api), goslack.OptionHTTPClient(c.http))
		c.secrets = []string{cfg.BotToken}
	case ModeWebhook:
		// url.Parse's error quotes the URL, which is the secret: say what is
		// wrong without it.
		u, err := url.Parse(cfg.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("new slack client: " + EnvWebhookURL + " is not an http(s) URL")
		}
		c.webhook = cfg.WebhookURL
		c.secrets = []string{cfg.WebhookURL}
		// The path alone is as secret as the whole URL, and errors may carry
		// it escaped or unescaped.
		if len(u.Path) > 1 {
			c.secrets = append(c.secrets, u.Path, u.EscapedPath())
		}
		if u.RawQuery != "" {
			c.secrets = append(c.secrets, u.RawQuery)
		}
	}
	return c, nil
}

// Mode reports how the client delivers.
func (c *Client) Mode() Mode { return c.mode }

// Post delivers m, as a reply in thread if thread is not "" and the client
// can thread (bot token). It returns the posted message's ts, the thread key
// of a new incident, or "" for a webhook, which has none. Errors are
// *DeliveryError and carry no secret.
func (c *Client) Post(ctx context.Context, m Message, thread string) (string, error) {
	switch c.mode {
	case ModeBot:
		opts := []goslack.MsgOption{goslack.MsgOptionText(m.Text, false)}
		if len(m.Blocks) > 0 {
			opts = append(opts, goslack.MsgOptionBlocks(m.Blocks...))
		}
		if thread != "" {
			opts = append(opts, goslack.MsgOptionTS(thread))
			if m.Broadcast {
				opts = append(opts, goslack.MsgOptionBroadcast())
			}
		}
		_, ts, err := c.api.PostMessageContext(ctx, c.channel, opts...)
		if err != nil {
			return "", c.classify("post message", err)
		}
		return ts, nil
	case ModeWebhook:
		msg := &goslack.WebhookMessage{Text: m.Text}
		if len(m.Blocks) > 0 {
			msg.Blocks = &goslack.Blocks{BlockSet: m.Blocks}
		}
		if err := goslack.PostWebhookCustomHTTPContext(ctx, c.webhook, c.http, msg); err != nil {
			return "", c.classify("post webhook", err)
		}
		return "", nil
	}
	return "", &DeliveryError{Class: ClassConfig, msg: "slack client not configured"}
}

// Class says what a failed delivery means for the message and the ones after
// it.
type Class int

// Classes of delivery failure.
const (
	// ClassUnavailable: Slack or the network failed (transport error, 5xx,
	// 429). Every message would fail the same way: wait, then retry.
	ClassUnavailable Class = iota
	// ClassConfig: Slack refuses sentinel (bad token, unknown or archived
	// channel, revoked webhook). Every message would fail until a person
	// fixes the configuration: retry rarely, complain loudly.
	ClassConfig
	// ClassRejected: Slack refuses this message (invalid blocks, too long).
	// Others may still go through.
	ClassRejected
)

func (c Class) String() string {
	switch c {
	case ClassUnavailable:
		return "unavailable"
	case ClassConfig:
		return "config"
	case ClassRejected:
		return "rejected"
	}
	return "unknown"
}

// DeliveryError is a failed post. Its message is free of secrets: slack-go
// errors that quote the request URL (the webhook URL is the secret) are
// reduced to their cause, and the secrets are redacted from what is left.
type DeliveryError struct {
	Class      Class
	RetryAfter time.Duration // Slack's Retry-After on a 429; 0 if none
	Status     int           // HTTP status, if the failure had one
	Code       string        // Slack's error code ("invalid_auth"), if any
	msg        string
	cause      error // kept only when it cannot hold a secret
}

func (e *DeliveryError) Error() string { return e.msg }

// Unwrap exposes context errors and slack-go's typed errors, never an error
// that quotes a URL.
func (e *DeliveryError) Unwrap() error { return e.cause }

// configCodes are the Web API errors that no retry of any message can fix.
var configCodes = map[string]bool{
	"invalid_auth": true, "not_authed": true, "account_inactive": true, "token_revoked": true,
	"token_expired": true, "no_permission": true, "missing_scope": true, "channel_not_found": true,
	"not_in_channel": true, "is_archived": true, "restricted_action": true, "access_denied": true,
	"team_access_not_granted": true, "ekm_access_denied": true, "org_login_required": true,
	"not_allowed_token_type": true, "invalid_token": true, "team_not_found": true,
	"restricted_action_read_only_channel": true, "restricted_action_thread_only_channel": true,
	"restricted_action_non_threadable_channel": true,
}

// unavailableCodes are Web API errors that mean "later".
var unavailableCodes = map[string]bool{
	"ratelimited": true, "rate_limited": true, "fatal_error": true, "internal_error": true,
	"service_unavailable": true, "request_timeout": true,
}

func (c *Client) classify(op string, err error) *DeliveryError {
	de := &DeliveryError{Class: ClassUnavailable}

	var rl *goslack.RateLimitedError
	var sce goslack.StatusCodeError
	var ser goslack.SlackErrorResponse
	var ue *url.Error
	switch {
	case errors.As(err, &rl):
		de.RetryAfter, de.Status, de.cause = rl.RetryAfter, http.StatusTooManyRequests, rl
		de.msg = rl.Error()
	case errors.As(err, &sce):
		de.Status, de.cause = sce.Code, sce
		de.msg = "slack answered " + sce.Status
		switch {
		case sce.Code >= 500 || sce.Code == http.StatusTooManyRequests || sce.Code == http.StatusRequestTimeout:
			de.Class = ClassUnavailable
		case sce.Code == http.StatusBadRequest || sce.Code == http.StatusRequestEntityTooLarge:
			// A webhook answers 400 invalid_payload / invalid_blocks /
			// no_text for a message it cannot take.
			de.Class = ClassRejected
		default:
			// 401, 403 action_prohibited, 404 no_service (webhook revoked),
			// 410 channel_is_archived.
			de.Class = ClassConfig
		}
	case errors.As(err, &ser):
		de.Code, de.cause = ser.Err, ser
		de.msg = "slack error " + ser.Err
		switch {
		case unavailableCodes[ser.Err]:
			de.Class = ClassUnavailable
		case configCodes[ser.Err]:
			de.Class = ClassConfig
		default:
			// invalid_blocks, msg_too_long, no_text, invalid_arguments and
			// whatever else Slack says about this one message.
			de.Class = ClassRejected
		}
	case errors.As(err, &ue):
		// "Post \"https://hooks.slack.com/services/T/B/secret\": dial tcp ...":
		// keep the operation and the cause, drop the URL.
		de.cause = ue.Err
		de.msg = ue.Op + ": " + ue.Err.Error()
	default:
		// Context errors, unreadable answers from a proxy, a Retry-After
		// slack-go cannot parse: assume Slack is unwell, not the message.
		de.cause = err
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			// The cause's text might quote anything: keep only our copy.
			de.cause = nil
		}
		de.msg = err.Error()
	}
	de.msg = op + ": " + c.redact(de.msg)
	return de
}

func (c *Client) redact(s string) string {
	for _, secret := range c.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
