package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sentinel/internal/poller"
	"sentinel/internal/slack"
	"sentinel/internal/twilioapi"
)

// config is everything the command line and environment say. Secrets come
// only from the environment (through getenv) and are never printed.
type config struct {
	twilioURL  string
	accountSID string
	authToken  string
	db         string
	policies   string
	// policiesSet: -policies was given; otherwise policy test files name
	// their own policy directory.
	policiesSet bool
	// dbSet, socketSet, logSet: -db, -control-socket, -log-level or
	// -log-format were given on the command line.
	dbSet, socketSet, logSet bool
	// command is how alerts and -status tell a person to run sentinel
	// (the start of the reinstate command; see hostCommand); default
	// "sentinel".
	command   string
	listen    string
	webConfig string
	// socket is the daemon's control socket (daemonSocket); socketFrom
	// names the flag or variable that gave it, "" for the default.
	// Commands look for the daemon on candidates.
	socket, socketFrom string
	// controlGroup is -control-group: the group whose members may use the
	// control socket besides the daemon's user and root ("": none).
	controlGroup string

	slackWebhook string
	slackToken   string
	slackChannel string
	slackAPIURL  string

	// Slack interactions (buttons): the app-level token turns Socket Mode
	// on, the signing secret the HTTP endpoint; both secrets. deciders
	// are who may decide (-slack-deciders).
	slackAppToken      string
	slackSigningSecret string
	slackDeciders      []string

	// Push ingest: eventsListen is -events-listen (empty: off), eventsURL
	// the public base URL Twilio calls (-events-url). The Basic credentials
	// Twilio's sink presents are secrets, from the environment only.
	eventsListen, eventsURL        string
	eventsUsername, eventsPassword string
	eventsSetup                    bool
	reconcileSpec                  string

	dryRun bool
	once   bool
	demo   bool

	reinstate, suspend string
	reason, by         string

	status, jsonOut bool
	statusSID       string // -status SID: one subaccount
	history         string
	checkPolicies   bool
	testPolicies    bool
	bt              backtestFlags // -backtest, -explain (backtest.go)
	testFiles       []string
	version         bool

	logFormat string
	logLevel  slog.Level

	accountsSpec, messagesSpec, usageSpec string
	sweepSpec                             string
	concurrency                           int
	concurrencyShare                      float64
	rateLimit                             float64
	requestTimeout                        time.Duration
	settle, retention                     time.Duration
	optOutKeywords                        []string
	noSubaccountLabel                     bool

	// pollDeadline is -poll-deadline; messagesDeadline, usageDeadline and
	// sweepDeadline are what each stream gets, derived from its schedule
	// without it.
	pollDeadline, messagesDeadline, usageDeadline, sweepDeadline time.Duration

	maxPerHour   int
	maxFraction  float64
	maxStaleness time.Duration
	reminder     time.Duration
	grace        time.Duration
}

// Defaults of flags that hostCommand repeats when a process runs with
// other values.
const (
	defaultTwilioURL = "https://api.twilio.com"
	defaultRetention = 7 * 24 * time.Hour
)

// parseFlags turns args and the environment into a config. It validates
// everything that can be checked without I/O, so a bad flag exits before the
// database is touched.
func parseFlags(args []string, getenv func(string) string, stdout io.Writer) (*config, error) {
	c := &config{}
	// The flag package prints a parse error and then the whole usage text;
	// main prints the error once more. Keep quiet while parsing, print the
	// usage only when asked for (-h), and let main report a mistake in one
	// line.
	fs := flag.NewFlagSet("sentinel", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(&c.twilioURL, "twilio-api-url", defaultTwilioURL, "base `URL` of the Twilio API (for a proxy, a fake or the demo)")
	fs.StringVar(&c.db, "db", "sentinel.db", "the bbolt database `path`")
	fs.StringVar(&c.policies, "policies", "policies", "the policy `directory`")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:9464", "`address` for /metrics, /healthz and /readyz")
	fs.StringVar(&c.webConfig, "web-config-file", "", "TLS and basic auth for -listen, in the Prometheus exporters' web configuration `file` format (default: plain HTTP, no auth)")
	fs.StringVar(&c.socket, "control-socket", "", "unix socket `path` of the daemon's control endpoint. The daemon listens on it (default: $SENTINEL_SOCKET, else the -db path plus \".sock\"). Commands use the daemon on the socket this flag, or else SENTINEL_SOCKET, names; without either, the first that answers of "+unitSocket+" (the unit's) and the -db path plus \".sock\"; with no daemon, the database at -db, which they never create")
	fs.StringVar(&c.controlGroup, "control-group", "", "let the members of `group` (a name or a gid) use the control socket besides the daemon's user and root: the socket becomes 0660 and the group's")
	fs.StringVar(&c.slackChannel, "slack-channel", "", "Slack `channel` for the bot token (SLACK_BOT_TOKEN)")
	fs.StringVar(&c.slackAPIURL, "slack-api-url", "", "Slack Web API base `URL` override (tests, proxies)")
	fs.StringVar(&c.eventsListen, "events-listen", "", "`address` of a second HTTP listener for pushed evidence: Twilio Event Streams (POST /twilio/events), status callbacks (POST /twilio/status) and Slack's interactions (POST /slack/interactions); meant to sit behind a TLS-terminating proxy (default: off)")
	fs.StringVar(&c.eventsURL, "events-url", "", "the public base `URL` Twilio calls for -events-listen, such as https://sentinel.example.com (checked against request signatures; where -events-setup points the sink)")
	fs.BoolVar(&c.eventsSetup, "events-setup", false, "create or repair the Event Streams sink and subscription that push to -events-url, print what changed and exit (with -dry-run: what would change)")
	fs.StringVar(&c.reconcileSpec, "reconcile-schedule", "@every 10m", "with push ingest: how often a subaccount whose events arrive, and whose polls find nothing they missed, has its message log read (cron spec or @every)")
	deciders := fs.String("slack-deciders", "", "who may decide from Slack's buttons: Slack user IDs (U…) and user-group IDs (S…), comma separated (`IDs`; needs SLACK_APP_TOKEN or SLACK_SIGNING_SECRET)")

	fs.BoolVar(&c.dryRun, "dry-run", false, "decide and alert, never change a subaccount")
	fs.BoolVar(&c.once, "once", false, "run one complete cycle (accounts, messages, usage, evaluate, act, notify) and exit")
	fs.BoolVar(&c.demo, "demo", false, "run the whole daemon against the built-in Twilio fake")

	fs.StringVar(&c.reinstate, "reinstate", "", "reinstate the subaccount `SID` (needs -reason)")
	fs.StringVar(&c.suspend, "suspend", "", "suspend the subaccount `SID` by hand (needs -reason)")
	fs.StringVar(&c.reason, "reason", "", "why, for -reinstate and -suspend (recorded in the audit log and Slack)")
	fs.StringVar(&c.by, "by", "", "who, for -reinstate and -suspend (default: the OS user)")

	fs.BoolVar(&c.status, "status", false, "print every subaccount's state and exit")
	fs.BoolVar(&c.jsonOut, "json", false, "with -status, -history, -backtest or -explain: print JSON")
	fs.StringVar(&c.history, "history", "", "print the incidents, transitions and actions of subaccount `SID`, newest first")
	fs.BoolVar(&c.checkPolicies, "check-policies", false, "validate the policy directory and exit")
	fs.BoolVar(&c.testPolicies, "test-policies", false, "run the policy test FILEs given as arguments and exit")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	addBacktestFlags(fs, &c.bt)

	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")

	fs.StringVar(&c.accountsSpec, "accounts-schedule", "@every 10m", "when to read the subaccount list (cron spec or @every)")
	// 55s, so that every log is read at least once a minute: a log's place
	// in a cycle moves by up to a second or so from one cycle to the next.
	fs.StringVar(&c.messagesSpec, "messages-schedule", "@every 55s", "when to read message logs and judge them (cron spec or @every); the default reads every log at least once a minute")
	fs.StringVar(&c.usageSpec, "usage-schedule", "@every 5m", "when to read usage of the subaccounts whose usage can have changed (cron spec or @every)")
	fs.StringVar(&c.sweepSpec, "sweep-schedule", "@every 1h", "when to re-read every log's whole -settle window, for messages that appear late (cron spec or @every)")
	fs.IntVar(&c.concurrency, "concurrency", twilioapi.DefaultConcurrency, "most Twilio API requests in flight at once (halved on 429, grown back on success)")
	fs.Float64Var(&c.concurrencyShare, "concurrency-share", twilioapi.DefaultConcurrencyShare, "most share of the account's requests in flight sentinel takes while other traffic is in flight (Twilio-Concurrent-Requests)")
	fs.Float64Var(&c.rateLimit, "rate-limit", 0, "optional hard cap on Twilio API requests per second (0: none; the concurrency budget bounds sentinel)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 30*time.Second, "timeout of one Twilio API request")
	fs.DurationVar(&c.pollDeadline, "poll-deadline", 0, "how long one account's poll may go without a page (requests, retries and backoff) before it is abandoned as hung; a message log still being read page after page then goes on outside its cycle (default: half the interval of its stream's schedule)")
	fs.DurationVar(&c.settle, "settle", 2*time.Hour, "trailing window re-read every poll, for late status changes")
	fs.DurationVar(&c.retention, "retention", defaultRetention, "how long raw messages are kept")
	keywords := fs.String("opt-out-keywords", "", "extra opt-out keywords, comma separated (Twilio's defaults always apply)")
	fs.BoolVar(&c.noSubaccountLabel, "no-subaccount-label", false, "drop the subaccount label from metrics (very large fleets)")

	fs.IntVar(&c.maxPerHour, "max-suspensions-per-hour", 3, "blast radius: suspensions by sentinel per rolling hour")
	fs.Float64Var(&c.maxFraction, "max-suspended-fraction", 0.10, "blast radius: fraction of active subaccounts suspended by sentinel at once (rounded down, at least one)")
	fs.DurationVar(&c.maxStaleness, "max-staleness", 10*time.Minute, "no suspension on data older than this")
	fs.DurationVar(&c.reminder, "reminder", 4*time.Hour, "Slack reminder interval while an incident lasts")
	fs.DurationVar(&c.grace, "shutdown-grace", 30*time.Second, "how long a running cycle may take to finish after SIGTERM")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// Asked for: it is the output, not an error.
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, usageText)
			fs.PrintDefaults()
		}
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	c.policiesSet = given["policies"]
	c.dbSet, c.socketSet = given["db"], given["control-socket"]
	c.logSet = given["log-level"] || given["log-format"]
	// A SID flag given empty (-history "") is a mistake on the command
	// line, not a request for the daemon.
	for _, f := range []struct{ name, sid string }{{"reinstate", c.reinstate}, {"suspend", c.suspend}, {"history", c.history}} {
		if given[f.name] {
			if err := checkSID("-"+f.name, f.sid); err != nil {
				return nil, err
			}
		}
	}
	if err := checkListen("-listen", c.listen); err != nil {
		return nil, err
	}
	if c.eventsListen != "" {
		if err := checkListen("-events-listen", c.eventsListen); err != nil {
			return nil, err
		}
	}
	if c.eventsURL != "" {
		if err := checkEventsURL(c.eventsURL); err != nil {
			return nil, err
		}
	}
	// The Twilio URL is printed in reinstate commands and logs: a
	// password in it would be too. Credentials come from the environment.
	if u, err := url.Parse(c.twilioURL); err != nil || u.User != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		if err == nil && u.User != nil {
			return nil, errors.New("-twilio-api-url: leave credentials out of the URL; Twilio's come from TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
		}
		return nil, errors.New("-twilio-api-url: want an absolute URL such as https://api.twilio.com")
	}
	if err := checkBacktestFlags(c, given); err != nil {
		return nil, err
	}
	if c.testPolicies {
		c.testFiles = fs.Args()
		if len(c.testFiles) == 0 {
			return nil, errors.New("-test-policies needs at least one test FILE")
		}
	} else if c.status && fs.NArg() == 1 {
		c.statusSID = fs.Arg(0)
		if err := checkSID("-status", c.statusSID); err != nil {
			return nil, err
		}
	} else if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", *logLevel)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return nil, fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	}
	for _, k := range strings.Split(*keywords, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.optOutKeywords = append(c.optOutKeywords, k)
		}
	}
	for _, d := range strings.Split(*deciders, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.slackDeciders = append(c.slackDeciders, d)
		}
	}
	if err := slack.CheckDeciders(c.slackDeciders); err != nil {
		return nil, fmt.Errorf("-slack-deciders: %w", err)
	}

	// Every mode is exclusive: a second one would otherwise be silently
	// ignored (-demo -status ran -status only).
	actions := 0
	for _, set := range []bool{c.reinstate != "", c.suspend != "", c.status, c.history != "", c.checkPolicies, c.testPolicies, c.version, c.once, c.demo,
		c.bt.backtest, c.bt.explain != "", c.eventsSetup} {
		if set {
			actions++
		}
	}
	switch {
	case actions > 1:
		return nil, errors.New("choose one of -reinstate, -suspend, -status, -history, -check-policies, -test-policies, -version, -once, -demo, -backtest, -explain and -events-setup")
	case (c.reinstate != "" || c.suspend != "") && strings.TrimSpace(c.reason) == "":
		return nil, errors.New("-reinstate and -suspend need -reason")
	case (c.reinstate != "" || c.suspend != "") && c.dryRun:
		// -dry-run governs sentinel's own decisions; a person's -suspend or
		// -reinstate acts. A silent preview would look like an action.
		return nil, errors.New("-dry-run does not apply to -reinstate and -suspend: they act")
	case c.jsonOut && !c.status && c.history == "" && !c.bt.backtest && c.bt.explain == "":
		return nil, errors.New("-json goes with -status, -history, -backtest or -explain")
	case c.db == "":
		return nil, errors.New("-db: need a path")
	case c.concurrency < 1:
		return nil, fmt.Errorf("-concurrency %d: want at least 1", c.concurrency)
	case c.rateLimit < 0:
		return nil, fmt.Errorf("-rate-limit %v: must not be negative", c.rateLimit)
	case !(c.concurrencyShare > 0 && c.concurrencyShare <= 1):
		return nil, fmt.Errorf("-concurrency-share %v: want more than 0 and at most 1", c.concurrencyShare)
	// The actions package takes a zero for "the default": 0 would quietly
	// mean 3 suspensions an hour, or 10% of the fleet. -dry-run is the way
	// to suspend nothing.
	case c.maxPerHour < 1:
		return nil, fmt.Errorf("-max-suspensions-per-hour %d: want at least 1 (-dry-run suspends nothing)", c.maxPerHour)
	case !(c.maxFraction > 0 && c.maxFraction <= 1):
		return nil, fmt.Errorf("-max-suspended-fraction %v: want more than 0 and at most 1", c.maxFraction)
	}
	// The poller, too, takes a zero -settle or -retention for its default.
	for _, d := range []struct {
		name   string
		v      time.Duration
		zeroOK bool
	}{
		{"-request-timeout", c.requestTimeout, false},
		{"-settle", c.settle, false},
		{"-retention", c.retention, false},
		{"-max-staleness", c.maxStaleness, false},
		{"-reminder", c.reminder, false},
		{"-shutdown-grace", c.grace, true},
		{"-poll-deadline", c.pollDeadline, true},
	} {
		switch {
		case d.v < 0 && d.zeroOK:
			return nil, fmt.Errorf("%s %v: must not be negative", d.name, d.v)
		case d.v <= 0 && !d.zeroOK:
			return nil, fmt.Errorf("%s %v: must be positive", d.name, d.v)
		}
	}
	// The schedules are parsed here, so that a typo exits before the
	// database is opened.
	for _, j := range []struct{ name, spec string }{
		{"accounts", c.accountsSpec}, {"messages", c.messagesSpec}, {"usage", c.usageSpec}, {"sweep", c.sweepSpec},
		{"reconcile", c.reconcileSpec},
	} {
		job := poller.Job{Name: j.name, Spec: j.spec, Run: func(context.Context) {}}
		if _, err := poller.NewScheduler(slog.New(slog.DiscardHandler), job); err != nil {
			return nil, fmt.Errorf("-%s-schedule: %w", j.name, err)
		}
	}
	// One account whose Twilio log hangs may hold up its cycle for half the
	// time until the next cycle is due, so that everyone else is still
	// judged on time; -poll-deadline overrides that for every stream.
	c.messagesDeadline, c.usageDeadline, c.sweepDeadline = c.pollDeadline, c.pollDeadline, c.pollDeadline
	for _, j := range []struct {
		name     string
		spec     string
		deadline *time.Duration
	}{
		{"messages", c.messagesSpec, &c.messagesDeadline}, {"usage", c.usageSpec, &c.usageDeadline},
		{"sweep", c.sweepSpec, &c.sweepDeadline},
	} {
		interval, err := poller.Interval(j.spec)
		if err != nil {
			return nil, fmt.Errorf("-%s-schedule: %w", j.name, err)
		}
		if *j.deadline == 0 {
			*j.deadline = interval / 2
		}
	}
	c.socket, c.socketFrom = daemonSocket(c.socket, getenv(fromEnv), c.db)

	c.accountSID = getenv("TWILIO_ACCOUNT_SID")
	c.authToken = getenv("TWILIO_AUTH_TOKEN")
	if c.accountSID != "" && !sidRE.MatchString(c.accountSID) {
		// Not echoed: a token pasted into the wrong variable is a secret.
		return nil, errors.New("TWILIO_ACCOUNT_SID is not an account SID (AC and 32 hex digits): is the parent's SID in it?")
	}
	c.slackWebhook = getenv("SLACK_WEBHOOK_URL")
	c.slackToken = getenv("SLACK_BOT_TOKEN")
	switch {
	case c.slackToken != "" && c.slackWebhook != "":
		return nil, errors.New("SLACK_WEBHOOK_URL and SLACK_BOT_TOKEN are both set: choose one")
	case c.slackToken != "" && c.slackChannel == "":
		return nil, errors.New("SLACK_BOT_TOKEN needs -slack-channel")
	}
	if err := c.parseInteractions(getenv); err != nil {
		return nil, err
	}
	if err := c.parseEvents(getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// Environment variables holding the HTTP Basic credentials of the Event
// Streams sink.
const (
	envEventsUsername = "SENTINEL_EVENTS_USERNAME"
	envEventsPassword = "SENTINEL_EVENTS_PASSWORD"
)

// parseEvents reads what push ingest needs. The credentials are required
// with -events-listen (an open sink would let anyone forge evidence) and
// with -events-setup (the sink Twilio calls carries them); neither is ever
// echoed.
func (c *config) parseEvents(getenv func(string) string) error {
	c.eventsUsername = getenv(envEventsUsername)
	c.eventsPassword = getenv(envEventsPassword)
	if c.eventsListen == "" && !c.eventsSetup {
		return nil
	}
	what := "-events-listen"
	if c.eventsSetup {
		what = "-events-setup"
	}
	switch {
	case c.eventsUsername == "" || c.eventsPassword == "":
		return fmt.Errorf("%s needs %s and %s: the HTTP Basic credentials Twilio's Event Streams sink presents", what, envEventsUsername, envEventsPassword)
	case strings.Contains(c.eventsUsername, ":"):
		return fmt.Errorf("%s must not contain a colon (HTTP Basic credentials cannot carry one)", envEventsUsername)
	case len(c.eventsPassword) < 16:
		return fmt.Errorf("%s is shorter than 16 characters: anyone who guesses it can forge evidence", envEventsPassword)
	case c.eventsSetup && c.eventsURL == "":
		return errors.New("-events-setup needs -events-url: the public base URL Twilio is to call")
	case c.eventsURL == "":
		return errors.New("-events-listen needs -events-url: the public base URL Twilio calls, which its signatures cover")
	}
	return nil
}

// checkEventsURL checks -events-url: an absolute http(s) URL without
// credentials, query or fragment (sentinel adds the paths).
func checkEventsURL(raw string) error {
	u, err := url.Parse(raw)
	var uerr *url.Error
	switch {
	case err != nil && errors.As(err, &uerr):
		// Not the URL itself: it may carry a password.
		return fmt.Errorf("-events-url: not a URL: %w", uerr.Err)
	case err != nil:
		return errors.New("-events-url: not a URL")
	case u.User != nil:
		// Before anything that quotes it.
		return errors.New("-events-url: leave the credentials out; they come from SENTINEL_EVENTS_USERNAME and SENTINEL_EVENTS_PASSWORD")
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		return fmt.Errorf("-events-url %q: want an absolute URL such as https://sentinel.example.com", truncate(raw, 60))
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("-events-url %q: want a base URL without query or fragment", truncate(raw, 60))
	}
	return nil
}

// parseInteractions reads what Slack's buttons need: SLACK_APP_TOKEN
// (Socket Mode) or SLACK_SIGNING_SECRET (the HTTP endpoint), each with
// the bot token that answers the clicks. Neither value is ever echoed.
func (c *config) parseInteractions(getenv func(string) string) error {
	c.slackAppToken = strings.TrimSpace(getenv(slack.EnvAppToken))
	c.slackSigningSecret = strings.TrimSpace(getenv(slack.EnvSigningSecret))
	switch {
	case c.slackAppToken != "" && !strings.HasPrefix(c.slackAppToken, "xapp-"):
		return errors.New("SLACK_APP_TOKEN is not an app-level token (xapp-…): Socket Mode needs one with connections:write")
	case (c.slackAppToken != "" || c.slackSigningSecret != "") && c.slackToken == "":
		return errors.New("buttons on Slack messages (SLACK_APP_TOKEN or SLACK_SIGNING_SECRET) need SLACK_BOT_TOKEN and -slack-channel: a webhook cannot be clicked")
	case len(c.slackDeciders) > 0 && c.slackAppToken == "" && c.slackSigningSecret == "" && !c.demo:
		return errors.New("-slack-deciders needs Slack interactions: set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET")
	}
	return nil
}

// sidRE is an account SID as Twilio writes it.
var sidRE = regexp.MustCompile(`^AC[0-9a-f]{32}$`)

// checkSID checks the subaccount SID given to flag name, saying how to fix
// a near miss.
func checkSID(name, sid string) error {
	switch {
	case strings.TrimSpace(sid) == "":
		return fmt.Errorf("%s needs a subaccount SID (AC and 32 hex digits; sentinel -status lists them)", name)
	case sidRE.MatchString(sid):
		return nil
	case sidRE.MatchString(fixSID(sid)):
		return fmt.Errorf("%s %q: Twilio writes SIDs as AC and 32 lower-case hex digits: use %s", name, sid, fixSID(sid))
	}
	return fmt.Errorf("%s %q is not a subaccount SID (AC and 32 hex digits; sentinel -status lists them)", name, truncate(sid, 40))
}

// fixSID is sid with Twilio's case: "AC" upper, the digits lower.
func fixSID(sid string) string {
	sid = strings.TrimSpace(sid)
	if len(sid) < 2 {
		return sid
	}
	return strings.ToUpper(sid[:2]) + strings.ToLower(sid[2:])
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// checkListen checks a listen address given to flag name: host:port, the
// port a number (0 for any).
func checkListen(name, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n < 0 || n > 65535 {
			err = fmt.Errorf("port %q is not a number from 0 to 65535", port)
		}
	}
	if err == nil && strings.ContainsAny(host, " /") {
		err = fmt.Errorf("host %q is not a host name or address", host)
	}
	if err != nil {
		return fmt.Errorf("%s %q: want host:port, such as 127.0.0.1:9464: %w", name, addr, err)
	}
	return nil
}

const usageText = `sentinel watches every Twilio subaccount of a parent account for compliance
trouble and suspends the one that crosses the line, so the others keep sending.

Usage:
  sentinel [flags]                          run the daemon
  sentinel -once                            run one cycle and exit
  sentinel -demo                            run against the built-in Twilio fake
  sentinel -status [-json] [SID]            show every subaccount, or one in full
  sentinel -history SID [-json]             show a subaccount's incidents and actions
  sentinel -backtest [-from T] [-to T] [-step 1m] [-json] [-html FILE]
                                            replay the stored history through -policies
  sentinel -explain SID [-json] [-html FILE]
                                            why a subaccount is judged as it is, rule by rule
  sentinel -reinstate SID -reason TEXT      reinstate a subaccount (probation follows)
  sentinel -suspend SID -reason TEXT        suspend a subaccount by hand
  sentinel -check-policies                  validate the policy directory
  sentinel -events-setup -events-url URL [-dry-run]
                                            create or repair the Event Streams sink
  sentinel -test-policies FILE...           run policy unit tests

Environment:
  TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN     the parent account's credentials
  SENTINEL_SOCKET                           the daemon's control socket, unless -control-socket is given
  SLACK_WEBHOOK_URL                         Slack incoming webhook, or
  SLACK_BOT_TOKEN (with -slack-channel)     Slack bot token
  SLACK_APP_TOKEN                           with the bot token: buttons over Socket Mode
  SLACK_SIGNING_SECRET                      with the bot token: buttons over POST /slack/interactions
  SENTINEL_EVENTS_USERNAME, SENTINEL_EVENTS_PASSWORD
                                            Basic credentials of the Event Streams sink

Flags:
`
