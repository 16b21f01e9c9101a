package slack

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewClientValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "new slack client: neither SLACK_WEBHOOK_URL nor SLACK_BOT_TOKEN is set"},
		{"both", Config{BotToken: testToken, Channel: "C1", WebhookURL: "https://hooks.slack.com" + testWebhookPath},
			"new slack client: both SLACK_WEBHOOK_URL and SLACK_BOT_TOKEN are set; choose one"},
		{"bot without channel", Config{BotToken: testToken}, "new slack client: a bot token needs a channel (SLACK_CHANNEL)"},
		{"bad api url", Config{BotToken: testToken, Channel: "C1", APIURL: "ftp://x/"}, `new slack client: api url "ftp://x/" is not an http(s) URL`},
		// url.Parse would quote the whole URL, secret and all.
		{"unparsable webhook", Config{WebhookURL: "https://hooks.slack.com" + testWebhookPath + "%zz"}, "new slack client: SLACK_WEBHOOK_URL is not an http(s) URL"},
		{"webhook without scheme", Config{WebhookURL: "hooks.slack.com" + testWebhookPath}, "new slack client: SLACK_WEBHOOK_URL is not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.cfg)
			if err == nil {
				t.Fatal("NewClient accepted it")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
			noSecret(t, "error", err.Error())
		})
	}
}

func TestConfig(t *testing.T) {
	env := map[string]string{EnvBotToken: " " + testToken + "\n", EnvChannel: "C0COMPLIANCE"}
	cfg := ConfigFromEnv(func(k string) string { return env[k] })
	if cfg.Mode() != ModeBot || cfg.BotToken != testToken {
		t.Errorf("ConfigFromEnv = mode %s, token trimmed %v", cfg.Mode(), cfg.BotToken == testToken)
	}
	tests := []struct {
		cfg  Config
		mode Mode
		want string
	}{
		{cfg, ModeBot, "slack bot token, channel C0COMPLIANCE, api https://slack.com/api/"},
		{Config{WebhookURL: "https://hooks.slack.com" + testWebhookPath}, ModeWebhook, "slack incoming webhook at hooks.slack.com"},
		{Config{}, ModeLog, "no slack configured: alerts go to the log only"},
	}
	for _, tt := range tests {
		if got := tt.cfg.Mode(); got != tt.mode {
			t.Errorf("Mode = %s, want %s", got, tt.mode)
		}
		if got := tt.cfg.String(); got != tt.want {
			t.Errorf("String = %q, want %q", got, tt.want)
		}
		noSecret(t, "Config.String", tt.cfg.String())
	}
}

// A fingerprint changes with every field that decides where alerts go, is
// stable otherwise, and holds no secret.
func TestConfigFingerprint(t *testing.T) {
	bot := Config{BotToken: testToken, Channel: "C0COMPLIANCE"}
	hook := Config{WebhookURL: "https://hooks.slack.com" + testWebhookPath}
	configs := map[string]Config{
		"bot":             bot,
		"webhook":         hook,
		"other token":     {BotToken: testToken + "2", Channel: "C0COMPLIANCE"},
		"other channel":   {BotToken: testToken, Channel: "C0OTHER"},
		"other api":       {BotToken: testToken, Channel: "C0COMPLIANCE", APIURL: "https://proxy.example/api/"},
		"other webhook":   {WebhookURL: "https://hooks.slack.com/services/T0001/B0002/OTHERKEY"},
		"fields shuffled": {BotToken: "C0COMPLIANCE", Channel: testToken},
		"none":            {},
	}
	seen := map[string]string{}
	for name, cfg := range configs {
		fp := cfg.Fingerprint()
		if len(fp) != 64 {
			t.Errorf("%s: fingerprint %q is not a hex SHA-256", name, fp)
		}
		if other, ok := seen[fp]; ok {
			t.Errorf("%s and %s share a fingerprint", name, other)
		}
		seen[fp] = name
		noSecret(t, name+" fingerprint", fp)
	}
	// Only what decides where alerts go counts; the HTTP client does not.
	again := hook
	again.HTTPClient = &http.Client{}
	if hook.Fingerprint() != again.Fingerprint() {
		t.Error("the fingerprint depends on the HTTP client")
	}
}

// TestClientErrors checks how each failure Slack can produce is classified,
// and that no error, down its whole chain, quotes a secret.
func TestClientErrors(t *testing.T) {
	type answer struct {
		status int
		header http.Header
		body   string
	}
	ra := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	tests := []struct {
		name   string
		bot    bool
		down   bool
		answer answer
		want   DeliveryError
	}{
		{name: "webhook refused", down: true, want: DeliveryError{Class: ClassUnavailable}},
		{name: "webhook 500", answer: answer{500, nil, "oops"}, want: DeliveryError{Class: ClassUnavailable, Status: 500}},
		{name: "webhook 429 retry-after", answer: answer{429, ra("7"), "rate_limited"}, want: DeliveryError{Class: ClassUnavailable, Status: 429, RetryAfter: 7 * time.Second}},
		{name: "webhook 429 bare", answer: answer{429, nil, "rate_limited"}, want: DeliveryError{Class: ClassUnavailable, Status: 429}},
		{name: "webhook 429 http-date", answer: answer{429, ra("Wed, 21 Oct 2026 07:28:00 GMT"), ""}, want: DeliveryError{Class: ClassUnavailable}},
		{name: "webhook revoked", answer: answer{404, nil, "no_service"}, want: DeliveryError{Class: ClassConfig, Status: 404}},
		{name: "webhook archived", answer: answer{410, nil, "channel_is_archived"}, want: DeliveryError{Class: ClassConfig, Status: 410}},
		{name: "webhook bad payload", answer: answer{400, nil, "invalid_blocks"}, want: DeliveryError{Class: ClassRejected, Status: 400}},
		{name: "bot refused", bot: true, down: true, want: DeliveryError{Class: ClassUnavailable}},
		{name: "bot invalid_auth", bot: true, answer: answer{200, nil, `{"ok":false,"error":"invalid_auth"}`}, want: DeliveryError{Class: ClassConfig, Code: "invalid_auth"}},
		{name: "bot channel_not_found", bot: true, answer: answer{200, nil, `{"ok":false,"error":"channel_not_found"}`}, want: DeliveryError{Class: ClassConfig, Code: "channel_not_found"}},
		{name: "bot invalid_blocks", bot: true, answer: answer{200, nil, `{"ok":false,"error":"invalid_blocks"}`}, want: DeliveryError{Class: ClassRejected, Code: "invalid_blocks"}},
		{name: "bot ratelimited body", bot: true, answer: answer{200, nil, `{"ok":false,"error":"ratelimited"}`}, want: DeliveryError{Class: ClassUnavailable, Code: "ratelimited"}},
		{name: "bot 429", bot: true, answer: answer{429, ra("3"), `{"ok":false,"error":"ratelimited"}`}, want: DeliveryError{Class: ClassUnavailable, Status: 429, RetryAfter: 3 * time.Second}},
		{name: "bot 503", bot: true, answer: answer{503, nil, "<html>down</html>"}, want: DeliveryError{Class: ClassUnavailable, Status: 503}},
		{name: "bot proxy html", bot: true, answer: answer{200, nil, "<html>captive portal</html>"}, want: DeliveryError{Class: ClassUnavailable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newWebhook(t)
			if tt.bot {
				f, c = newBot(t)
			}
			f.setDown(tt.down)
			f.setRespond(func(int, request) (int, http.Header, string) {
				return tt.answer.status, tt.answer.header, tt.answer.body
			})
			_, err := c.Post(context.Background(), Render(suspendedEvent()), "")
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Post error %v (%T) is not a *DeliveryError", err, err)
			}
			got := DeliveryError{Class: de.Class, Status: de.Status, RetryAfter: de.RetryAfter, Code: de.Code}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(DeliveryError{})); diff != "" {
				t.Errorf("classification (-want +got):\n%s", diff)
			}
			for e := error(de); e != nil; e = errors.Unwrap(e) {
				noSecret(t, "error chain", e.Error())
			}
			t.Logf("%s", err)
		})
	}
}

func TestClientTimeoutNoSecret(t *testing.T) {
	f, c := newWebhook(t)
	block := make(chan struct{})
	f.setRespond(func(int, request) (int, http.Header, string) { <-block; return 200, nil, "ok" })
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := c.Post(ctx, Render(suspendedEvent()), "")
	close(block)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Post error %v is not a deadline", err)
	}
	noSecret(t, "error", err.Error())
	if !strings.Contains(err.Error(), "post webhook: Post: ") {
		t.Errorf("error %q does not name the operation", err)
	}
}
