package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	rungroup "github.com/oklog/run"
	"github.com/prometheus/exporter-toolkit/web"

	"sentinel/internal/control"
	"sentinel/internal/poller"
)

// daemon runs sentinel until ctx ends: the schedules, the policy reloader,
// the Slack dispatcher, Slack's buttons (their workers and the Socket Mode
// connection), the control socket and the HTTP endpoints, each an
// actor of one run group, so that any of them failing stops them all.
func daemon(ctx context.Context, cfg *config, log *slog.Logger) error {
	ls, err := preflight(cfg)
	if err != nil {
		return err
	}
	a, err := build(cfg, log, nil)
	if err != nil {
		ls.close()
		return err
	}
	defer a.close()
	if cfg.once {
		return a.once(ctx)
	}
	return a.serve(ctx, ls, nil)
}

// preflight finds what is wrong with the configuration before the database
// is created or Twilio polled: policies that do not load; and, unless
// -once, which serves neither, a control socket that others could replace,
// that another daemon answers on or whose group is not the daemon's, a web
// configuration that cannot be served, and listen addresses that cannot be
// bound. It returns the bound listeners (none with -once).
func preflight(cfg *config) (listeners, error) {
	if !cfg.once {
		if err := (control.Socket{Path: cfg.socket, Group: cfg.controlGroup}).Check(); err != nil {
			return listeners{}, err
		}
		if err := checkWebConfig(cfg.webConfig); err != nil {
			return listeners{}, err
		}
	}
	if _, err := loadPolicies(cfg); err != nil {
		return listeners{}, err
	}
	if cfg.once {
		return listeners{}, nil
	}
	return bind(cfg)
}

// listeners are the daemon's TCP listeners: -listen's, and -events-listen's
// with push ingest (nil without).
type listeners struct{ http, events net.Listener }

// bind binds -listen and, when it is set, -events-listen.
func bind(cfg *config) (listeners, error) {
	var ls listeners
	var err error
	if ls.http, err = net.Listen("tcp", cfg.listen); err != nil {
		return listeners{}, fmt.Errorf("-listen %s: %w", cfg.listen, err)
	}
	if cfg.eventsListen != "" {
		if ls.events, err = net.Listen("tcp", cfg.eventsListen); err != nil {
			ls.close()
			return listeners{}, fmt.Errorf("-events-listen %s: %w", cfg.eventsListen, err)
		}
	}
	return ls, nil
}

// close closes the listeners that are bound.
func (ls listeners) close() {
	for _, l := range []net.Listener{ls.http, ls.events} {
		if l != nil {
			l.Close()
		}
	}
}

// recoverTimeout bounds start-up reconciliation.
const recoverTimeout = 2 * time.Minute

// recoverIntents reconciles every open intent (see serve).
func (a *app) recoverIntents(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	intents, err := a.st.OpenIntents()
	if err == nil && len(intents) == 0 {
		return
	}
	a.log.Info("reconciling actions left open by the last run", "intents", len(intents))
	if err := a.act.Reconcile(ctx); err != nil {
		a.log.Error("some actions are not reconciled yet; those subaccounts wait until Twilio answers", "err", err)
	}
}

// serve runs the daemon's actors until ctx ends, serving HTTP on ls (bind),
// which it closes. ready, if not nil, receives the -listen address once it
// serves (the demo prints it).
func (a *app) serve(ctx context.Context, ls listeners, ready chan<- string) error {
	cfg, log := a.cfg, a.log
	ln, eventsLn := ls.http, ls.events
	closeListeners := ls.close
	// Recover before serving: the actions a crash left between intent and
	// outcome are reconciled with Twilio before the control socket, the
	// scheduler or anything else can act on those subaccounts. One that
	// stays open (Twilio unreachable) is reconciled again by the first
	// action on its subaccount, which waits for it.
	a.recoverIntents(ctx)
	ctrl, err := control.New(control.Socket{Path: cfg.socket, Group: cfg.controlGroup}, a.act, a.st, log, time.Now)
	if err != nil {
		closeListeners()
		return err
	}

	// A signal stops scheduling at once; a cycle already running gets the
	// grace period to finish before its context is cancelled too. The
	// grace timer ends with serve.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(cfg.grace)
		defer t.Stop()
		select {
		case <-t.C:
			log.Warn("shutdown grace is over: aborting the running cycle", "grace", cfg.grace)
			cancelJobs()
		case <-jobCtx.Done():
		}
	})
	defer stopGrace()

	sched, err := poller.NewScheduler(log,
		poller.Job{Name: "accounts", Spec: cfg.accountsSpec, Run: func(context.Context) {
			if _, err := a.poll.Accounts(jobCtx); err != nil && jobCtx.Err() == nil {
				log.Error("read subaccount list", "err", err)
			}
		}},
		poller.Job{Name: "messages", Spec: cfg.messagesSpec, Run: func(context.Context) {
			if err := a.cycle(jobCtx); err != nil && jobCtx.Err() == nil {
				log.Error("messages cycle", "err", err)
			}
		}},
		// Usage and the sweep read at low priority, behind the message
		// watch, and never hold it up.
		poller.Job{Name: "usage", Spec: cfg.usageSpec, Concurrent: true, Run: func(context.Context) {
			if _, err := a.poll.Usage(jobCtx); err != nil && jobCtx.Err() == nil {
				log.Error("usage cycle", "err", err)
			}
		}},
		poller.Job{Name: "sweep", Spec: cfg.sweepSpec, Deferred: true, Run: func(context.Context) {
			if _, err := a.poll.Sweep(jobCtx); err != nil && jobCtx.Err() == nil {
				log.Error("settle sweep", "err", err)
			}
		}},
	)
	if err != nil {
		closeListeners()
		return usageError(err)
	}

	var g rungroup.Group
	g.Add(rungroup.ContextHandler(ctx))
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return sched.Run(ctx) }, func(error) { cancel() })
	}
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return a.policies.Run(ctx) }, func(error) { cancel() })
	}
	if a.disp != nil {
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return a.disp.Run(ctx) }, func(error) { cancel() })
	}
	if a.interactions != nil {
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return a.interactions.Run(ctx) }, func(error) { cancel() })
	}
	if a.socket != nil {
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return a.socket.Run(ctx) }, func(error) { cancel() })
	}
	if a.interactions != nil && len(cfg.slackDeciders) == 0 {
		log.Warn("Slack's buttons are disabled: -slack-deciders names nobody who may decide")
	}
	if a.slackEndpoint != nil && a.socket == nil && eventsLn == nil {
		log.Warn("SLACK_SIGNING_SECRET is set, but no listener serves POST /slack/interactions: set -events-listen, or SLACK_APP_TOKEN for Socket Mode")
	}
	if eventsLn != nil {
		{
			ctx, cancel := context.WithCancel(ctx)
			g.Add(func() error { return a.serveEvents(ctx, eventsLn) }, func(error) { cancel(); eventsLn.Close() })
		}
		{
			ctx, cancel := context.WithCancel(jobCtx)
			g.Add(func() error { return a.nudger.Run(ctx) }, func(error) { cancel() })
		}
		log.Info("push ingest on", "events_listen", eventsLn.Addr().String(), "events_url", cfg.eventsURL,
			"reconcile", cfg.reconcileSpec)
	}
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return ctrl.Run(ctx) }, func(error) { cancel() })
	}
	{
		srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
		g.Add(func() error {
			if ready != nil {
				ready <- ln.Addr().String()
			}
			if cfg.webConfig == "" {
				if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					return fmt.Errorf("serve %s: %w", cfg.listen, err)
				}
				return nil
			}
			// TLS and basic auth as the file says. The toolkit reads it
			// again for every request and TLS handshake, so a new password
			// or certificate applies without a restart.
			wlog := slog.New(scrubHandler{log.Handler()})
			err := web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &cfg.webConfig}, wlog)
			if !errors.Is(err, http.ErrServerClosed) {
				// Not wrapped: the error may quote the file (see scrub).
				return fmt.Errorf("serve %s with -web-config-file %s: %s", cfg.listen, cfg.webConfig, scrub(err.Error()))
			}
			return nil
		}, func(error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	{
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-hup:
					log.Info("SIGHUP: reloading policies")
					select {
					case a.hup <- struct{}{}:
					default:
					}
				}
			}
		}, func(error) { signal.Stop(hup); cancel() })
	}

	bi := readBuildInfo()
	log.Info("sentinel started", "version", bi.version, "revision", bi.revision, "listen", ln.Addr().String(),
		"db", cfg.db, "policies", cfg.policies, "dry_run", cfg.dryRun)
	err = g.Run()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	// The cycle has finished or been cancelled; make one last attempt to
	// deliver what it queued.
	a.flush(context.Background())
	log.Info("sentinel stopped")
	return err
}

// checkWebConfig reads the -web-config-file as the metrics listener will,
// certificates and bcrypt hashes included, so that a mistake stops start-up
// before the database is created.
func checkWebConfig(path string) error {
	if path == "" {
		return nil
	}
	if err := web.Validate(path); err != nil {
		// Not wrapped: the error may quote the file (see scrub).
		return fmt.Errorf("-web-config-file %s: %s", path, scrub(err.Error()))
	}
	return nil
}

// scrub removes from the exporter toolkit's messages what could be part of
// a password: the bcrypt package quotes the first bytes of a value that is
// not a hash (a password pasted in plain), and the YAML parser quotes the
// start of a misplaced value between backquotes. It also makes the message
// one line.
func scrub(msg string) string {
	if strings.HasPrefix(msg, "crypto/bcrypt:") {
		return "basic_auth_users: a password is not a bcrypt hash (see deploy/web-config.yml for how to make one)"
	}
	msg = regexp.MustCompile("`[^`]*`").ReplaceAllString(msg, "`...`")
	return regexp.MustCompile(`\s*\n\s*`).ReplaceAllString(msg, " ")
}

// scrubHandler passes the exporter toolkit's log records on with their
// errors scrubbed: it reports a web configuration file that fails to
// parse on every request.
type scrubHandler struct{ slog.Handler }

func (h scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			a.Value = slog.StringValue(scrub(a.Value.String()))
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h scrubHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return scrubHandler{h.Handler.WithAttrs(as)}
}

func (h scrubHandler) WithGroup(name string) slog.Handler {
	return scrubHandler{h.Handler.WithGroup(name)}
}
