package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/demo"
)

// demoSeed seeds the demo fleet (see runDemo).
const demoSeed = 3

// runDemo runs the whole daemon, with the default policies and the real code
// paths, against the built-in Twilio fake and its demo fleet, on a fast
// schedule. Alerts print in the terminal unless Slack is configured. Ctrl-C
// ends it with a summary.
func runDemo(ctx context.Context, cfg *config, log *slog.Logger, stdout io.Writer) error {
	if err := checkWebConfig(cfg.webConfig); err != nil {
		return err
	}
	// A fixed seed: every demo run watches the same fleet.
	fleet, err := demo.New(demo.Options{Seed: demoSeed})
	if err != nil {
		return err
	}
	fleet.Server.Start()
	defer fleet.Server.Close()

	dir, err := os.MkdirTemp("", "sentinel-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.db = filepath.Join(dir, "sentinel.db")
	cfg.socket = filepath.Join(dir, "control.sock")
	cfg.twilioURL = fleet.Server.URL()
	cfg.accountSID, cfg.authToken = fleet.Server.ParentSID(), fleet.Server.ParentToken()
	cfg.accountsSpec, cfg.messagesSpec, cfg.usageSpec = "@every 30s", "@every 5s", "@every 10s"
	cfg.rateLimit = 0 // loopback

	a, err := build(cfg, log, stdout)
	if err != nil {
		return err
	}
	defer a.close()

	fleetCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	go fleet.Run(fleetCtx, 2*time.Second)

	ready := make(chan string, 1)
	go func() {
		select {
		case addr := <-ready:
			fmt.Fprintf(stdout, `
sentinel demo
  Twilio (fake):  %s, %d subaccounts plus the parent
  offenders:      %s (30007 filtering), %s (opt-out storm), %s (runaway spend)
  metrics:        http://%s/metrics
  status:         sentinel -status -db %s -control-socket %s
  Alerts print below as they would go to Slack. Ctrl-C stops the demo.

`, fleet.Server.URL(), len(fleet.Server.Accounts())-1, demo.FilteredName, demo.StormName, demo.SpenderName,
				addr, cfg.db, cfg.socket)
		case <-ctx.Done():
		}
	}()
	if err := a.serve(ctx, ready); err != nil {
		return err
	}
	stopFleet()

	rows, err := actions.StatusRows(a.st, time.Now())
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
	fmt.Fprintf(stdout, "\n%d subaccounts suspended, %d still sending.\n", suspended, active)
	return nil
}
