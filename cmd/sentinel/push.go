package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sentinel/internal/ingest"
	"sentinel/internal/poller"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// buildPush wires push ingest (-events-listen): the endpoints store what
// Twilio pushes through the store's upsert, as polls do, then tell the
// poller (which backs off the logs whose pushes miss nothing) and the
// nudger (which judges the accounts touched within seconds, through the
// same Actor as the schedule). Without -events-listen it only registers
// sentinel_events_configured, at 0, for the alert rules.
func (a *app) buildPush(dec *ingest.Decoder) error {
	cfg := a.cfg
	configured := 0.0
	if cfg.eventsListen != "" {
		configured = 1
	}
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sentinel_events_configured",
		Help: "1 when push ingest is on (-events-listen), so that alert rules can tell a silent push from none.",
	}, func() float64 { return configured }))
	if cfg.eventsListen == "" {
		return nil
	}
	a.nudger = newNudger(func(ctx context.Context, sids []string) error {
		_, err := a.act.Nudge(ctx, sids)
		return err
	}, a.log)
	var err error
	a.ingest, err = ingest.New(ingest.Config{
		Username:        cfg.eventsUsername,
		Password:        cfg.eventsPassword,
		URL:             cfg.eventsURL,
		Parent:          cfg.accountSID,
		Token:           cfg.authToken,
		SubaccountToken: a.tw.AuthToken,
		Known:           a.known,
		Store:           a.st,
		Decoder:         dec,
		Stored: func(accts map[string]time.Time, stream bool) {
			now := time.Now()
			if stream {
				a.poll.Pushed(accts, now)
			}
			a.nudger.add(accts, now)
		},
		Registerer: a.reg,
		Log:        a.log,
	})
	return err
}

// known reports whether sid is an account of the fleet the store knows
// (the parent included): events of others are not stored. Accounts are
// never removed from the store, so a yes is remembered.
func (a *app) known(sid string) (bool, error) {
	if _, ok := a.knownSIDs.Load(sid); ok {
		return true, nil
	}
	if !traffic.IsAccountSID(sid) {
		return false, nil
	}
	switch _, err := a.st.Account(sid); {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	a.knownSIDs.Store(sid, true)
	return true, nil
}

// eventsHandler serves the -events-listen listener: Twilio's pushes and,
// with SLACK_SIGNING_SECRET, Slack's interactions.
func (a *app) eventsHandler() http.Handler {
	mux := http.NewServeMux()
	h := a.ingest.Handler()
	mux.Handle("POST "+ingest.EventsPath, h)
	mux.Handle("POST "+ingest.StatusPath, h)
	if a.slackEndpoint != nil {
		mux.Handle("POST /slack/interactions", a.slackEndpoint)
	}
	return mux
}

// serveEvents serves the events listener ln until ctx ends.
func (a *app) serveEvents(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.eventsHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Twilio gives a sink 5 s; a body of at most 1 MiB that takes
		// longer to arrive is not Twilio.
		ReadTimeout:  15 * time.Second,
		WriteTimeout: 15 * time.Second,
		IdleTimeout:  2 * time.Minute,
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve -events-listen %s: %w", a.cfg.eventsListen, err)
	}
	return nil
}

// messagesInterval is the interval of -messages-schedule: the scheduled
// Judge's, which a rule's `for` counts in.
func (c *config) messagesInterval() time.Duration {
	d, err := poller.Interval(c.messagesSpec)
	if err != nil {
		return 0 // parseFlags has checked it; 0 is the actor's default
	}
	return d
}

// reconcileInterval is the poller's reconcile interval: that of
// -reconcile-schedule with push ingest on, none without.
func (c *config) reconcileInterval() time.Duration {
	if c.eventsListen == "" {
		return 0
	}
	d, err := poller.Interval(c.reconcileSpec)
	if err != nil {
		return 0 // parseFlags has checked it
	}
	return d
}

// Nudging: an account with new pushed evidence is judged within
// nudgeDelay of the evidence being stored, and no more often than once per
// nudgeEvery, however many events arrive.
const (
	nudgeDelay = 200 * time.Millisecond
	nudgeEvery = time.Second
)

// nudger collects the accounts that pushed events touched and judges them
// in small batches (actions.Actor.Nudge).
type nudger struct {
	judge func(ctx context.Context, sids []string) error
	log   *slog.Logger
	wake  chan struct{}

	mu      sync.Mutex
	pending map[string]time.Time // account: when evidence was stored
	last    map[string]time.Time // account: when it was last nudged
}

func newNudger(judge func(ctx context.Context, sids []string) error, log *slog.Logger) *nudger {
	return &nudger{
		judge:   judge,
		log:     log,
		wake:    make(chan struct{}, 1),
		pending: map[string]time.Time{},
		last:    map[string]time.Time{},
	}
}

// add records that evidence of accts was stored at at.
func (n *nudger) add(accts map[string]time.Time, at time.Time) {
	n.mu.Lock()
	for sid := range accts {
		if _, ok := n.pending[sid]; !ok {
			n.pending[sid] = at
		}
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// due takes the accounts that can be judged at now, and says when to look
// again for those that cannot yet (zero if none wait).
func (n *nudger) due(now time.Time) (sids []string, next time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sid, at := range n.pending {
		t := at.Add(nudgeDelay)
		if l, ok := n.last[sid]; ok && l.Add(nudgeEvery).After(t) {
			t = l.Add(nudgeEvery)
		}
		if !t.After(now) {
			sids = append(sids, sid)
			delete(n.pending, sid)
			n.last[sid] = now
			continue
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	// Forget nudges too old to hold anything back (those just made are
	// not).
	for sid, l := range n.last {
		if now.Sub(l) > nudgeEvery {
			delete(n.last, sid)
		}
	}
	slices.Sort(sids)
	return sids, next
}

// Run judges what is due until ctx ends.
func (n *nudger) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		sids, next := n.due(time.Now())
		if len(sids) > 0 {
			if err := n.judge(ctx, sids); err != nil && ctx.Err() == nil {
				n.log.Error("judge on pushed evidence", "subaccounts", len(sids), "err", err)
			}
			continue // the judging took time: look again at once
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-n.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}
