package main

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// env is a getenv over a map.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseFlagsErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"-bogus"}, nil, "flag provided but not defined: -bogus"},
		{"bad value", []string{"-concurrency", "many"}, nil, `invalid value "many" for flag -concurrency: parse error`},
		{"stray argument", []string{"-once", "extra"}, nil, `unexpected argument "extra"`},
		{"test-policies without files", []string{"-test-policies"}, nil, "-test-policies needs at least one test FILE"},
		{"log level", []string{"-log-level", "loud"}, nil, `-log-level "loud": want debug, info, warn or error`},
		{"log format", []string{"-log-format", "xml"}, nil, `-log-format "xml": want text or json`},
		{"two modes", []string{"-status", "-history", testSID}, nil, "choose one of -reinstate, -suspend, -status, -history, -check-policies, -test-policies, -version, -once, -demo, -backtest, -explain and -events-setup"},
		{"once and demo", []string{"-once", "-demo"}, nil, "choose one of -reinstate, -suspend, -status, -history, -check-policies, -test-policies, -version, -once, -demo, -backtest, -explain and -events-setup"},
		{"demo and status", []string{"-demo", "-status"}, nil, "choose one of -reinstate, -suspend, -status, -history, -check-policies, -test-policies, -version, -once, -demo, -backtest, -explain and -events-setup"},
		{"reinstate without reason", []string{"-reinstate", testSID}, nil, "-reinstate and -suspend need -reason"},
		{"suspend with a blank reason", []string{"-suspend", testSID, "-reason", "  "}, nil, "-reinstate and -suspend need -reason"},
		{"json without status", []string{"-json"}, nil, "-json goes with -status, -history, -backtest or -explain"},
		{"empty db", []string{"-db", ""}, nil, "-db: need a path"},
		{"concurrency", []string{"-concurrency", "0"}, nil, "-concurrency 0: want at least 1"},
		{"rate limit", []string{"-rate-limit", "-1"}, nil, "-rate-limit -1: must not be negative"},
		{"concurrency share", []string{"-concurrency-share", "1.5"}, nil, "-concurrency-share 1.5: want more than 0 and at most 1"},
		{"manual with dry-run", []string{"-suspend", testSID, "-reason", "r", "-dry-run"}, nil, "-dry-run does not apply to -reinstate and -suspend: they act"},
		{"per hour zero", []string{"-max-suspensions-per-hour", "0"}, nil, "-max-suspensions-per-hour 0: want at least 1 (-dry-run suspends nothing)"},
		{"per hour negative", []string{"-max-suspensions-per-hour", "-2"}, nil, "-max-suspensions-per-hour -2: want at least 1 (-dry-run suspends nothing)"},
		{"fraction zero", []string{"-max-suspended-fraction", "0"}, nil, "-max-suspended-fraction 0: want more than 0 and at most 1"},
		{"fraction above one", []string{"-max-suspended-fraction", "1.5"}, nil, "-max-suspended-fraction 1.5: want more than 0 and at most 1"},
		{"fraction NaN", []string{"-max-suspended-fraction", "NaN"}, nil, "-max-suspended-fraction NaN: want more than 0 and at most 1"},
		{"request timeout", []string{"-request-timeout", "0s"}, nil, "-request-timeout 0s: must be positive"},
		{"settle zero", []string{"-settle", "0s"}, nil, "-settle 0s: must be positive"},
		{"settle negative", []string{"-settle", "-1m"}, nil, "-settle -1m0s: must be positive"},
		{"retention", []string{"-retention", "0s"}, nil, "-retention 0s: must be positive"},
		{"max staleness", []string{"-max-staleness", "0s"}, nil, "-max-staleness 0s: must be positive"},
		{"reminder", []string{"-reminder", "-1h"}, nil, "-reminder -1h0m0s: must be positive"},
		{"shutdown grace", []string{"-shutdown-grace", "-1s"}, nil, "-shutdown-grace -1s: must not be negative"},
		{"poll deadline", []string{"-poll-deadline", "-1s"}, nil, "-poll-deadline -1s: must not be negative"},
		{"messages schedule", []string{"-messages-schedule", "every 1m"}, nil, `-messages-schedule: schedule messages: bad spec "every 1m": expected exactly 5 fields, found 2: [every 1m]`},
		{"accounts schedule", []string{"-accounts-schedule", "@hourlyish"}, nil, `-accounts-schedule: schedule accounts: bad spec "@hourlyish": unrecognized descriptor: @hourlyish`},
		{"usage schedule", []string{"-usage-schedule", "61 * * * *"}, nil, `-usage-schedule: schedule usage: bad spec "61 * * * *": end of range (61) above maximum (59): 61`},
		{"empty history", []string{"-history", ""}, nil, "-history needs a subaccount SID (AC and 32 hex digits; sentinel -status lists them)"},
		{"empty reinstate", []string{"-reinstate", "", "-reason", "r"}, nil, "-reinstate needs a subaccount SID (AC and 32 hex digits; sentinel -status lists them)"},
		{"lower-case SID", []string{"-suspend", "ac" + testSID[2:], "-reason", "r"}, nil,
			`-suspend "ac` + testSID[2:] + `": Twilio writes SIDs as AC and 32 lower-case hex digits: use ` + testSID},
		{"upper-case hex", []string{"-history", "AC" + strings.ToUpper(testSID[2:])}, nil,
			`-history "AC` + strings.ToUpper(testSID[2:]) + `": Twilio writes SIDs as AC and 32 lower-case hex digits: use ` + testSID},
		{"not a SID", []string{"-history", "acme"}, nil, `-history "acme" is not a subaccount SID (AC and 32 hex digits; sentinel -status lists them)`},
		{"listen nonsense", []string{"-listen", "nonsense"}, nil, `-listen "nonsense": want host:port, such as 127.0.0.1:9464: address nonsense: missing port in address`},
		{"listen bad port", []string{"-listen", "127.0.0.1:http2"}, nil, `-listen "127.0.0.1:http2": want host:port, such as 127.0.0.1:9464: port "http2" is not a number from 0 to 65535`},
		{"events listen nonsense", []string{"-events-listen", "8080"}, nil, `-events-listen "8080": want host:port, such as 127.0.0.1:9464: address 8080: missing port in address`},
		{"events listen without credentials", []string{"-events-listen", "127.0.0.1:0"}, nil,
			"-events-listen needs SENTINEL_EVENTS_USERNAME and SENTINEL_EVENTS_PASSWORD: the HTTP Basic credentials Twilio's Event Streams sink presents"},
		{"events password short", []string{"-events-listen", "127.0.0.1:0"}, map[string]string{"SENTINEL_EVENTS_USERNAME": "twilio", "SENTINEL_EVENTS_PASSWORD": "SECRETshort"},
			"SENTINEL_EVENTS_PASSWORD is shorter than 16 characters: anyone who guesses it can forge evidence"},
		{"events username colon", []string{"-events-listen", "127.0.0.1:0"}, map[string]string{"SENTINEL_EVENTS_USERNAME": "a:b", "SENTINEL_EVENTS_PASSWORD": "0123456789abcdefSECRET"},
			"SENTINEL_EVENTS_USERNAME must not contain a colon (HTTP Basic credentials cannot carry one)"},
		{"events listen without url", []string{"-events-listen", "127.0.0.1:0"}, map[string]string{"SENTINEL_EVENTS_USERNAME": "twilio", "SENTINEL_EVENTS_PASSWORD": "0123456789abcdefSECRET"},
			"-events-listen needs -events-url: the public base URL Twilio calls, which its signatures cover"},
		{"events setup without url", []string{"-events-setup"}, map[string]string{"SENTINEL_EVENTS_USERNAME": "twilio", "SENTINEL_EVENTS_PASSWORD": "0123456789abcdefSECRET"},
			"-events-setup needs -events-url: the public base URL Twilio is to call"},
		{"events url relative", []string{"-events-url", "sentinel.example.com"}, nil,
			`-events-url "sentinel.example.com": want an absolute URL such as https://sentinel.example.com`},
		{"events url with credentials", []string{"-events-url", "https://u:SECRET@sentinel.example.com"}, nil,
			"-events-url: leave the credentials out; they come from SENTINEL_EVENTS_USERNAME and SENTINEL_EVENTS_PASSWORD"},
		{"events url with credentials and a query", []string{"-events-url", "https://u:SECRET@sentinel.example.com/?a=1"}, nil,
			"-events-url: leave the credentials out; they come from SENTINEL_EVENTS_USERNAME and SENTINEL_EVENTS_PASSWORD"},
		{"events url with credentials, no scheme", []string{"-events-url", "//u:SECRET@sentinel.example.com"}, nil,
			"-events-url: leave the credentials out; they come from SENTINEL_EVENTS_USERNAME and SENTINEL_EVENTS_PASSWORD"},
		{"events url with credentials, bad port", []string{"-events-url", "https://u:SECRET@sentinel.example.com:x"}, nil,
			`-events-url: not a URL: invalid port ":x" after host`},
		{"events url with a query", []string{"-events-url", "https://sentinel.example.com/?a=1"}, nil,
			`-events-url "https://sentinel.example.com/?a=1": want a base URL without query or fragment`},
		{"reconcile schedule", []string{"-reconcile-schedule", "often"}, nil, `-reconcile-schedule: schedule reconcile: bad spec "often": expected exactly 5 fields, found 1: [often]`},
		{"twilio url with credentials", []string{"-twilio-api-url", "https://u:proxy-SECRET@proxy.example/"}, nil,
			"-twilio-api-url: leave credentials out of the URL; Twilio's come from TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"},
		{"twilio url relative", []string{"-twilio-api-url", "proxy.example"}, nil, "-twilio-api-url: want an absolute URL such as https://api.twilio.com"},
		{"malformed account SID", nil, map[string]string{"TWILIO_ACCOUNT_SID": "sk_live_0123"},
			"TWILIO_ACCOUNT_SID is not an account SID (AC and 32 hex digits): is the parent's SID in it?"},
		{"bot token without channel", nil, map[string]string{"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_BOT_TOKEN needs -slack-channel"},
		{"webhook and bot token", []string{"-slack-channel", "#c"}, map[string]string{"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/x"},
			"SLACK_WEBHOOK_URL and SLACK_BOT_TOKEN are both set: choose one"},
		{"app token not xapp", []string{"-slack-channel", "#c"}, map[string]string{"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-SECRET"},
			"SLACK_APP_TOKEN is not an app-level token (xapp-…): Socket Mode needs one with connections:write"},
		{"app token with a webhook", nil, map[string]string{"SLACK_WEBHOOK_URL": "https://hooks.slack.com/x", "SLACK_APP_TOKEN": "xapp-SECRET"},
			"buttons on Slack messages (SLACK_APP_TOKEN or SLACK_SIGNING_SECRET) need SLACK_BOT_TOKEN and -slack-channel: a webhook cannot be clicked"},
		{"signing secret alone", nil, map[string]string{"SLACK_SIGNING_SECRET": "SECRET"},
			"buttons on Slack messages (SLACK_APP_TOKEN or SLACK_SIGNING_SECRET) need SLACK_BOT_TOKEN and -slack-channel: a webhook cannot be clicked"},
		{"deciders without buttons", []string{"-slack-deciders", "U0ANA"}, nil,
			"-slack-deciders needs Slack interactions: set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET"},
		{"decider not an ID", []string{"-slack-deciders", "U0ANA,@ana"}, nil,
			`-slack-deciders: decider "@ana" is not a Slack user ID (U…, W…) or user-group ID (S…)`},
		{"decider a channel", []string{"-slack-deciders", "C0CHANNEL"}, nil,
			`-slack-deciders: decider "C0CHANNEL" is not a Slack user ID (U…, W…) or user-group ID (S…)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			_, err := parseFlags(tc.args, env(tc.env), &stderr)
			if err == nil {
				t.Fatalf("parseFlags(%q) succeeded, want %q", tc.args, tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("parseFlags(%q):\ngot  %q\nwant %q", tc.args, got, tc.want)
			}
			// main reports the error in one line; the flag package must
			// not print it again with the whole usage text.
			if stderr.Len() > 0 {
				t.Errorf("parseFlags(%q) printed:\n%s", tc.args, &stderr)
			}
		})
	}
}

// testSID is a well-formed subaccount SID.
const testSID = "AC0123456789abcdef0123456789abcdef"

func TestParseFlagsHelp(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	_, err := parseFlags([]string{"-h"}, env(nil), &stdout)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseFlags(-h): %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage:", "TWILIO_AUTH_TOKEN", "-max-suspensions-per-hour"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("-h output lacks %q:\n%s", want, &stdout)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000001",
		"TWILIO_AUTH_TOKEN":  "tok",
		"SLACK_WEBHOOK_URL":  "https://hooks.slack.com/services/x",
	}
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, c *config)
	}{
		{"defaults", nil, func(t *testing.T, c *config) {
			got := []any{c.db, c.socket, c.policies, c.listen, c.twilioURL, c.concurrency, c.concurrencyShare, c.rateLimit, c.maxPerHour,
				c.maxFraction, c.grace, c.logLevel, c.accountSID, c.authToken, c.slackWebhook}
			want := []any{"sentinel.db", "sentinel.db.sock", "policies", "127.0.0.1:9464", "https://api.twilio.com", 8, 0.25, 0.0, 3,
				0.10, 30 * time.Second, slog.LevelInfo, secrets["TWILIO_ACCOUNT_SID"], "tok", secrets["SLACK_WEBHOOK_URL"]}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("defaults (-want +got):\n%s", diff)
			}
		}},
		{"socket follows db", []string{"-db", "/var/lib/s.db"}, func(t *testing.T, c *config) {
			if c.socket != "/var/lib/s.db.sock" {
				t.Errorf("socket %q, want /var/lib/s.db.sock", c.socket)
			}
		}},
		{"test files", []string{"-test-policies", "a.yaml", "b.yaml"}, func(t *testing.T, c *config) {
			if diff := cmp.Diff([]string{"a.yaml", "b.yaml"}, c.testFiles); diff != "" {
				t.Errorf("test files (-want +got):\n%s", diff)
			}
		}},
		{"opt-out keywords", []string{"-opt-out-keywords", " arret, ,halt "}, func(t *testing.T, c *config) {
			if diff := cmp.Diff([]string{"arret", "halt"}, c.optOutKeywords); diff != "" {
				t.Errorf("keywords (-want +got):\n%s", diff)
			}
		}},
		// A hung account may hold up its cycle for half the time until the
		// next one is due; -poll-deadline says otherwise for both streams.
		{"poll deadlines from the default schedules", nil, func(t *testing.T, c *config) {
			if c.messagesDeadline != 27500*time.Millisecond || c.usageDeadline != 150*time.Second || c.sweepDeadline != 30*time.Minute {
				t.Errorf("deadlines %v, %v and %v, want 27.5s, 2m30s and 30m", c.messagesDeadline, c.usageDeadline, c.sweepDeadline)
			}
		}},
		{"poll deadlines from the schedules", []string{"-messages-schedule", "*/2 * * * *", "-usage-schedule", "@every 10m"}, func(t *testing.T, c *config) {
			if c.messagesDeadline != time.Minute || c.usageDeadline != 5*time.Minute {
				t.Errorf("deadlines %v and %v, want 1m and 5m", c.messagesDeadline, c.usageDeadline)
			}
		}},
		{"poll deadline", []string{"-poll-deadline", "45s"}, func(t *testing.T, c *config) {
			if c.messagesDeadline != 45*time.Second || c.usageDeadline != 45*time.Second {
				t.Errorf("deadlines %v and %v, want 45s both", c.messagesDeadline, c.usageDeadline)
			}
		}},
		{"deciders, shown by the demo", []string{"-demo", "-slack-deciders", " U0ANA, ,S0LEADS "}, func(t *testing.T, c *config) {
			if diff := cmp.Diff([]string{"U0ANA", "S0LEADS"}, c.slackDeciders); diff != "" {
				t.Errorf("deciders (-want +got):\n%s", diff)
			}
			if ia := c.slackInteractivity(); ia.Enabled || ia.NoDeciders {
				t.Errorf("interactivity %+v: without SLACK_APP_TOKEN no buttons go to Slack", ia)
			}
		}},
		{"once with dry-run", []string{"-once", "-dry-run", "-shutdown-grace", "0s"}, func(t *testing.T, c *config) {
			if !c.once || !c.dryRun || c.grace != 0 {
				t.Errorf("once %v, dry-run %v, grace %v", c.once, c.dryRun, c.grace)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseFlags(tc.args, env(secrets), &bytes.Buffer{})
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tc.args, err)
			}
			tc.check(t, c)
		})
	}
}

// TestRunUsageErrors checks run's side of a bad command line: a usage
// error (exit status 2), and nothing touched.
func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-bogus"},
		{"-concurrency", "0"},
		// No credentials: the daemon cannot start.
		{"-db", dir + "/s.db", "-policies", "../../policies"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, env(nil), &stdout, &stderr)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("run(%q): %v (exit %d), want a usage error (exit 2)", args, err, exitCode(err))
		}
		if stdout.Len() > 0 || stderr.Len() > 0 {
			t.Errorf("run(%q) printed:\n%s%s", args, &stdout, &stderr)
		}
	}
	if _, err := os.Stat(dir + "/s.db"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a usage error created the database: %v", err)
	}
}
