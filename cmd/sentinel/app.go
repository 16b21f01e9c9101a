package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sentinel/internal/actions"
	"sentinel/internal/ingest"
	"sentinel/internal/policy"
	"sentinel/internal/poller"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
)

// app is sentinel wired together: everything the daemon, -once, -demo and
// the manual actions share.
type app struct {
	cfg *config
	log *slog.Logger
	reg *prometheus.Registry

	st       *store.Store
	tw       *twilioapi.Client
	policies *policy.Reloader
	notifier actions.Notifier
	disp     *slack.Dispatcher // nil when alerts only go to the log
	act      *actions.Actor
	poll     *poller.Poller
	gauges   *gauges
	ready    readiness

	// Slack's buttons: interactions carries clicks out through act; the
	// socket receives them over Socket Mode (SLACK_APP_TOKEN) and
	// slackEndpoint is the HTTP handler for POST /slack/interactions
	// (SLACK_SIGNING_SECRET). Each is nil when not configured.
	interactions  *slack.Interactions
	socket        *slack.Socket
	slackEndpoint *slack.Endpoint

	// Push ingest (-events-listen): the endpoints, and the nudger that
	// judges the accounts they touch. nil when off.
	ingest    *ingest.Server
	nudger    *nudger
	knownSIDs sync.Map // accounts known to the store (app.known)

	hup chan struct{} // a policy reload request (SIGHUP)
}

// newLogger builds the process logger. Secrets never reach it: they are
// only in cfg's credential fields, which nothing logs.
func newLogger(cfg *config, stderr io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// build wires sentinel in dependency order: metrics registry, store, Twilio
// client, policies, Slack, actions, Slack's buttons, poller. When Slack is
// not configured, alerts go to the log, or, if terminal is not nil (the
// demo), are printed there in full instead. The caller must call close.
func build(cfg *config, log *slog.Logger, terminal io.Writer) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, reg: prometheus.NewRegistry(), hup: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	bi := readBuildInfo()
	a.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sentinel_build_info",
			Help: "Always 1; the labels say which build runs (revision is empty when the binary carries none).",
			ConstLabels: prometheus.Labels{
				"version":   bi.version,
				"revision":  bi.revision,
				"goversion": bi.goVersion,
			},
		}, func() float64 { return 1 }),
	)

	// A number's opt-outs count once per retention, and only when the
	// subaccount messaged it within the retention (store.Options).
	if a.st, err = store.Open(cfg.db, store.Options{ConsentWindow: cfg.retention}); err != nil {
		return nil, err
	}
	key, err := a.st.PeerKey()
	if err != nil {
		return nil, err
	}
	peers, err := traffic.NewPeers(key)
	if err != nil {
		return nil, err
	}
	// Polled and pushed messages are classified and hashed alike.
	dec := &ingest.Decoder{Classifier: traffic.NewClassifier(cfg.optOutKeywords...), Peers: peers}
	tc := cfg.twilioConfig()
	tc.Classifier, tc.Peers, tc.Registerer = dec.Classifier, peers, a.reg
	a.tw, err = twilioapi.New(tc)
	if err != nil {
		return nil, err
	}

	// The notifier must exist before the policies: a rejected reload is
	// reported to Slack. The reloader is created right after, and the
	// callback only runs from its Run loop.
	if err := a.buildNotifier(terminal); err != nil {
		return nil, err
	}
	a.policies, err = policy.NewReloader(policy.ReloaderConfig{
		Dir:        cfg.policies,
		Trigger:    a.hup,
		Registerer: a.reg,
		Logger:     log,
		OnReload:   a.onReload,
		// Every window must fit in what is kept: a longer one is refused
		// at start-up and on reload, naming the rule and -retention.
		Validate: func(set *policy.Set) error { return set.FitsRetention(cfg.retention) },
	})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	set := a.policies.Current()

	a.act, err = actions.New(actions.Config{
		DryRun:            cfg.dryRun,
		MaxPerHour:        cfg.maxPerHour,
		MaxFraction:       cfg.maxFraction,
		MaxStaleness:      cfg.maxStaleness,
		EachRunCounts:     cfg.once,
		Reminder:          cfg.reminder,
		NoSubaccountLabel: cfg.noSubaccountLabel,
		Command:           cfg.command,
		Interval:          cfg.messagesInterval(),
		// The poller is built below, before anything judges.
		Allowance: func(sid string) time.Duration { return a.poll.Allowance(sid) },
	}, a.st, a.tw, a.policies.Current, a.notifier, a.reg, log, time.Now)
	if err != nil {
		return nil, err
	}
	if err := a.buildInteractions(); err != nil {
		return nil, err
	}
	a.poll, err = poller.New(poller.Config{
		Parent:            cfg.accountSID,
		Concurrency:       cfg.concurrency,
		Settle:            cfg.settle,
		Backfill:          set.MaxWindow(),
		UsageDays:         max(set.UsageDays()-1, 1),
		UsageRefresh:      set.Settings().UsageStaleness / 2,
		Retention:         cfg.retention,
		NoSubaccountLabel: cfg.noSubaccountLabel,
		MessagesDeadline:  cfg.messagesDeadline,
		UsageDeadline:     cfg.usageDeadline,
		SweepDeadline:     cfg.sweepDeadline,
		Reconcile:         cfg.reconcileInterval(),
	}, a.tw, a.st, a.reg, log, time.Now)
	if err != nil {
		return nil, err
	}
	if err := a.buildPush(dec); err != nil {
		return nil, err
	}
	if a.gauges, err = newGauges(a.reg, cfg.noSubaccountLabel); err != nil {
		return nil, err
	}
	return a, nil
}

// twilioConfig is the Twilio client's part of the configuration: the
// parent's credentials and the request budget.
func (c *config) twilioConfig() twilioapi.Config {
	return twilioapi.Config{
		BaseURL:          c.twilioURL,
		AccountSID:       c.accountSID,
		AuthToken:        c.authToken,
		Timeout:          c.requestTimeout,
		Concurrency:      c.concurrency,
		ConcurrencyShare: c.concurrencyShare,
		RateLimit:        c.rateLimit,
	}
}

// slackConfig is the Slack part of the configuration.
func (c *config) slackConfig() slack.Config {
	return slack.Config{WebhookURL: c.slackWebhook, BotToken: c.slackToken, Channel: c.slackChannel, APIURL: c.slackAPIURL}
}

// slackInteractivity says which buttons incident messages carry: some only
// when a click can reach sentinel. Socket Mode needs nothing more than its
// token; the HTTP endpoint (SLACK_SIGNING_SECRET) counts once a listener
// Slack can reach serves it (see slackEndpoint).
func (c *config) slackInteractivity() slack.Interactivity {
	return slack.Interactivity{
		Enabled:    c.slackAppToken != "" || (c.slackSigningSecret != "" && c.eventsListen != ""),
		NoDeciders: len(c.slackDeciders) == 0,
		DryRun:     c.dryRun,
	}
}

// buildInteractions wires Slack's buttons to the actor: the same Reinstate
// and audit as the command line, one more caller of them.
func (a *app) buildInteractions() error {
	cfg := a.cfg
	if cfg.slackAppToken == "" && cfg.slackSigningSecret == "" {
		return nil
	}
	var err error
	a.interactions, err = slack.NewInteractions(slack.InteractionsConfig{
		BotToken:   cfg.slackToken,
		APIURL:     cfg.slackAPIURL,
		Deciders:   cfg.slackDeciders,
		DryRun:     cfg.dryRun,
		Registerer: a.reg,
	}, a.act, a.log)
	if err != nil {
		return err
	}
	if cfg.slackAppToken != "" {
		a.socket, err = slack.NewSocket(slack.SocketConfig{
			AppToken:   cfg.slackAppToken,
			BotToken:   cfg.slackToken,
			APIURL:     cfg.slackAPIURL,
			Registerer: a.reg,
		}, a.interactions, a.log)
		if err != nil {
			return err
		}
	}
	if cfg.slackSigningSecret != "" {
		if a.slackEndpoint, err = slack.NewEndpoint(cfg.slackSigningSecret, a.interactions); err != nil {
			return err
		}
	}
	return nil
}

// buildNotifier chooses Slack (webhook or bot token, through the persistent
// outbox) or, without either, the log. Without Slack its metrics still
// exist, at zero.
func (a *app) buildNotifier(terminal io.Writer) error {
	sc := a.cfg.slackConfig()
	switch {
	case sc.Mode() == slack.ModeLog && terminal != nil:
		// The demo prints each alert as it would go to Slack, with the
		// buttons it would carry and what each would send.
		ia := a.cfg.slackInteractivity()
		ia.Enabled = true
		a.notifier = slack.NewLogNotifier(slog.New(slog.DiscardHandler), terminal).WithButtons(ia)
		return slack.RegisterMetrics(a.reg)
	case sc.Mode() == slack.ModeLog:
		a.log.Warn("Slack is not configured (SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN): alerts go to the log only")
		a.notifier = slack.NewLogNotifier(a.log, nil)
		return slack.RegisterMetrics(a.reg)
	}
	client, err := slack.NewClient(sc)
	if err != nil {
		return err
	}
	a.disp, err = slack.NewDispatcher(outbox{a.st}, client, a.st, a.log, slack.Options{
		Registerer:    a.reg,
		Holds:         holds{a.st},
		Config:        sc.Fingerprint(),
		Interactivity: a.cfg.slackInteractivity(),
	})
	if err != nil {
		return err
	}
	a.notifier = a.disp
	a.log.Info("alerts go to Slack", "slack", sc.String())
	return nil
}

// onReload is called by the policy reloader after every reload attempt.
func (a *app) onReload(set *policy.Set, err error) {
	if err != nil {
		// The reloader has logged it, once; Slack hears it too.
		ev := slack.Event{
			Kind:     slack.KindPolicyRejected,
			Severity: slack.SeverityWarning,
			Detail:   err.Error(),
			Action:   "previous policies keep running",
			At:       time.Now(),
		}
		if nerr := a.notifier.Notify(context.Background(), ev); nerr != nil {
			a.log.Error("notify policy rejection", "err", nerr)
		}
		return
	}
	a.log.Info("policies reloaded", "rules", len(set.Rules()))
	a.poll.SetBackfill(set.MaxWindow())
	a.poll.SetUsageRefresh(set.Settings().UsageStaleness / 2)
}

func (a *app) close() {
	if a.poll != nil {
		a.poll.Wait() // the reads that outlived their cycle; their context is done
	}
	if a.st != nil {
		if err := a.st.Close(); err != nil {
			a.log.Error("close store", "err", err)
		}
	}
}

// cycle polls every message log, judges the result and acts on it: the
// messages job.
func (a *app) cycle(ctx context.Context) error {
	res, err := a.poll.Messages(ctx)
	if err != nil {
		return fmt.Errorf("poll messages: %w", err)
	}
	if err := res.Err(); err != nil {
		a.log.Error("no message log could be read", "err", err)
	}
	sum, err := a.act.Judge(ctx)
	if err != nil {
		return fmt.Errorf("judge: %w", err)
	}
	a.ready.cycleDone(time.Now(), res.Err() == nil)
	if len(sum.Suspended)+len(sum.WouldSuspend)+len(sum.Blocked) > 0 || sum.Systemic {
		a.log.Info("cycle acted", "suspended", sum.Suspended, "would_suspend", sum.WouldSuspend,
			"blocked", sum.Blocked, "systemic", sum.Systemic)
	}
	rows, err := actions.FleetFigures(a.st, time.Now())
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	a.gauges.update(rows)
	return nil
}

// once runs one complete cycle: accounts, messages, usage, evaluate, act,
// notify. It fails when Twilio could not be reached at all.
func (a *app) once(ctx context.Context) error {
	if _, err := a.poll.Accounts(ctx); err != nil {
		return err
	}
	res, err := a.poll.Messages(ctx)
	// One run judges everything it read: reads that outlived the cycle
	// are waited for.
	a.poll.Wait()
	if err != nil {
		return fmt.Errorf("poll messages: %w", err)
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("poll messages: %w", err)
	}
	if _, err := a.poll.Usage(ctx); err != nil {
		return fmt.Errorf("poll usage: %w", err)
	}
	if _, err := a.act.Judge(ctx); err != nil {
		return fmt.Errorf("judge: %w", err)
	}
	for sid, err := range res.Failed {
		a.log.Warn("message log not read; its rules are unknown this cycle", "subaccount", sid, "err", err)
	}
	return a.flush(ctx)
}

// flush makes one delivery attempt for queued Slack messages. What is not
// delivered stays in the outbox for the next run.
func (a *app) flush(ctx context.Context) error {
	if a.disp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := a.disp.Flush(ctx); err != nil {
		a.log.Warn("Slack delivery incomplete; queued messages are kept for the next run", "err", err)
	}
	return nil
}

// handler serves /metrics, /healthz and /readyz.
func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := a.ready.check(time.Now(), a.cfg.maxStaleness, a.poll.Freshness(a.cfg.maxStaleness), a.poll.Backfill()); !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// readiness is ready after the first complete cycle, and not while the data
// is stale: when no message cycle has read any log for longer than the
// staleness bound (-max-staleness), or when any active account's message
// data (the parent's included) is older than that bound. One account whose
// log hangs does not stop the cycles, so only the second rule sees it; the
// answer names how many accounts are stale and the oldest. Suspended
// subaccounts do not count: nothing is judged on them.
type readiness struct {
	mu       sync.Mutex
	lastGood time.Time
}

func (r *readiness) cycleDone(at time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.lastGood = at
	}
}

// check says whether sentinel is ready at now, and why not; fresh is how
// old the active accounts' data is, against maxStale, and backfill how far
// the running cycle's first reads have come.
func (r *readiness) check(now time.Time, maxStale time.Duration, fresh poller.Freshness, backfill poller.Backfill) (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case backfill.Total > 0:
		return false, fmt.Sprintf("backfilling %d of %d subaccounts (%d messages read)", backfill.Done, backfill.Total, backfill.Messages)
	case r.lastGood.IsZero():
		return false, "no complete cycle yet"
	case now.Sub(r.lastGood) > maxStale:
		return false, fmt.Sprintf("data is stale: last complete cycle %s ago", now.Sub(r.lastGood).Round(time.Second))
	case fresh.Stale > 0:
		return false, fmt.Sprintf("data is stale: %d of %d active accounts not read completely for over %v (-max-staleness); the oldest, %s, for %v",
			fresh.Stale, fresh.Active, maxStale, fresh.Oldest, fresh.Age.Round(time.Second))
	}
	return true, ""
}

// outbox adapts the store's outbox to the slack package's.
type outbox struct{ *store.Store }

func (o outbox) Due(at time.Time, limit int) ([]slack.OutboxItem, error) {
	items, err := o.Store.Due(at, limit)
	out := make([]slack.OutboxItem, len(items))
	for i, it := range items {
		out[i] = slack.OutboxItem(it)
	}
	return out, err
}

// holds adapts the store's record of the Slack hold to the slack package's.
type holds struct{ *store.Store }

func (h holds) Hold() (slack.Hold, error) {
	sh, err := h.SlackHold()
	return slack.Hold(sh), err
}

func (h holds) SetHold(sh slack.Hold) error { return h.SetSlackHold(store.SlackHold(sh)) }

var errNoTwilio = errors.New("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set")
