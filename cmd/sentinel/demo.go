package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/demo"
	"sentinel/internal/store"
	"sentinel/policies"
)

// demoSeed seeds the demo fleet (see runDemo).
const demoSeed = 3

// runDemo runs the whole daemon, with the default policies and the real code
// paths, against the built-in Twilio fake and its demo fleet, on a fast
// schedule. Alerts print in the terminal unless Slack is configured. Ctrl-C
// ends it with a summary.
func runDemo(ctx context.Context, cfg *config, log *slog.Logger, stdout, stderr io.Writer) error {
	// The demo makes its own database and socket, and removes them: a
	// -db or -control-socket given would be silently ignored.
	if cfg.dbSet || cfg.socketSet {
		return usageError(errors.New("-demo runs on a database and control socket of its own, in a temporary directory it prints: -db and -control-socket do not apply"))
	}
	cleanStaleDemos(log)
	if err := checkWebConfig(cfg.webConfig); err != nil {
		return err
	}
	// Push is on in the demo: the fake's Event Streams deliver every
	// message's events to a listener of the demo's own, set up by
	// -events-setup's own code, and polling reconciles.
	if cfg.eventsListen == "" {
		cfg.eventsListen = "127.0.0.1:0"
	}
	ls, err := bind(cfg)
	if err != nil {
		return err
	}
	defer ls.close()
	if err := demoPush(cfg, ls.events.Addr().String()); err != nil {
		return err
	}
	// A fixed seed: every demo run watches the same fleet.
	fleet, err := demo.New(demo.Options{Seed: demoSeed})
	if err != nil {
		return err
	}
	fleet.Server.Start()
	defer fleet.Server.Close()

	dir, err := os.MkdirTemp("", demoPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	cfg.db = filepath.Join(dir, "sentinel.db")
	cfg.socket = filepath.Join(dir, "control.sock")
	if !cfg.policiesSet {
		// The shipped policies, from the binary: the demo runs from any
		// directory.
		if cfg.policies, err = unpackPolicies(dir); err != nil {
			return err
		}
	}
	cfg.twilioURL = fleet.Server.URL()
	cfg.accountSID, cfg.authToken = fleet.Server.ParentSID(), fleet.Server.ParentToken()
	cfg.accountsSpec, cfg.messagesSpec, cfg.usageSpec = "@every 30s", "@every 5s", "@every 10s"
	cfg.reconcileSpec = "@every 1m"
	self := selfCommand()
	cfg.command = hostCommand(self, cfg, true)

	// Alerts are the demo's output: the log goes to a file beside the
	// database, unless asked for with -log-level or -log-format.
	logPath := "stderr"
	if !cfg.logSet {
		logPath = filepath.Join(dir, "sentinel.log")
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		log = newLogger(cfg, f)
	}

	a, err := build(cfg, log, stdout)
	if err != nil {
		return err
	}
	defer a.close()

	var setupOut strings.Builder
	if err := eventsSetup(ctx, cfg, &setupOut, &setupOut); err != nil {
		return fmt.Errorf("set up the fake's Event Streams: %w", err)
	}
	log.Info("demo push set up", "setup", strings.TrimSpace(setupOut.String()))

	fleetCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	go fleet.Run(fleetCtx, 2*time.Second)

	alerts := "Alerts print below as they would go to Slack."
	if a.disp != nil {
		alerts = "Alerts go to the Slack channel configured (" + a.cfg.slackConfig().String() + ")."
	}
	mode := ""
	if cfg.dryRun {
		mode = "\n  dry-run:        sentinel decides, alerts and records; it suspends nobody."
	}
	ready := make(chan string, 1)
	go func() {
		select {
		case addr := <-ready:
			fmt.Fprintf(stdout, `
sentinel demo
  Twilio (fake):  %s, %d subaccounts plus the parent
  offenders:      %s (30007 filtering), %s (opt-out storm), %s (runaway spend)%s
  metrics:        http://%s/metrics
  push:           the fake's Event Streams post every message's events to %s/twilio/events;
                  polls reconcile every minute
  status:         %s -status -db %s -control-socket %s
  log:            %s
  %s Ctrl-C stops the demo.

`, fleet.Server.URL(), len(fleet.Server.Accounts())-1, demo.FilteredName, demo.StormName, demo.SpenderName, mode,
				addr, cfg.eventsURL, self, cfg.db, cfg.socket, logPath, alerts)
		case <-ctx.Done():
		}
	}()
	if err := a.serve(ctx, ls, ready); err != nil {
		return err
	}
	stopFleet()

	rows, err := actions.StatusRows(context.WithoutCancel(ctx), a.st, a.policies.Current(), time.Now(), a.cfg.maxStaleness)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nsentinel demo summary")
	if err := printStatus(stdout, rows); err != nil {
		return err
	}
	var suspended, active int
	for _, r := range rows {
		switch {
		case r.Parent:
		case r.Status == "suspended":
			suspended++
		case r.Status == "active":
			active++
		}
	}
	if cfg.dryRun {
		would, err := wouldSuspend(a.st)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\ndry-run: %d subaccounts would have been suspended, %d suspended, %d still sending.\n", would, suspended, active)
		return nil
	}
	fmt.Fprintf(stdout, "\n%d subaccounts suspended, %d still sending.\n", suspended, active)
	return nil
}

// demoPush points push ingest at the demo's own events listener, bound at
// addr: its URL, and Basic credentials made up for this run unless the
// environment gave some.
func demoPush(cfg *config, addr string) error {
	cfg.eventsURL = "http://" + addr
	if cfg.eventsUsername == "" || cfg.eventsPassword == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		cfg.eventsUsername, cfg.eventsPassword = "demo", hex.EncodeToString(b)
	}
	return nil
}

// demoPrefix names the demo's temporary directories.
const demoPrefix = "sentinel-demo-"

// cleanStaleDemos removes the temporary directories of earlier demos that
// did not get to clean up after themselves (killed): each holds the pid of
// its demo, and is removed once no such process runs.
func cleanStaleDemos(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), demoPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			continue // not ours, or being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			if err := os.RemoveAll(d); err == nil {
				log.Info("removed the directory of a demo that did not stop cleanly", "dir", d)
			}
		}
	}
}

// unpackPolicies writes the shipped policies into dir/policies and
// returns that path.
func unpackPolicies(dir string) (string, error) {
	out := filepath.Join(dir, "policies")
	if err := os.Mkdir(out, 0o700); err != nil {
		return "", err
	}
	files, err := fs.Glob(policies.Files, "*.yaml")
	if err != nil {
		return "", err
	}
	for _, name := range files {
		b, err := policies.Files.ReadFile(name)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(out, name), b, 0o600); err != nil {
			return "", err
		}
	}
	return out, nil
}

// wouldSuspend counts the subaccounts a dry run would have suspended.
func wouldSuspend(st *store.Store) (int, error) {
	recs, err := st.Audit("", 0)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Kind == actions.KindDecision && r.DryRun && r.Action == actions.ActionSuspend {
			seen[r.Subaccount] = true
		}
	}
	return len(seen), nil
}
