package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/control"
	"sentinel/internal/policy"
	"sentinel/internal/store"
)

func checkPolicies(cfg *config, stdout io.Writer) error {
	if err := policy.Check(cfg.policies); err != nil {
		return fmt.Errorf("policies in %s are invalid:\n%w", cfg.policies, err)
	}
	set, err := policy.Load(cfg.policies)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d rules OK\n", cfg.policies, len(set.Rules()))
	return nil
}

func testPolicies(cfg *config, stdout io.Writer) error {
	failed, err := policy.RunTests(stdout, cfg.policies, cfg.testFiles...)
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d policy test cases failed", failed)
	}
	return nil
}

// withDaemonOrStore runs viaDaemon when a daemon answers on the control
// socket (it holds the database), and otherwise direct on the database,
// opened here.
func withDaemonOrStore(ctx context.Context, cfg *config, viaDaemon func(*control.Client) error, direct func(*store.Store) error) error {
	c, err := control.Dial(cfg.socket)
	switch {
	case err == nil:
		defer c.Close()
		return viaDaemon(c)
	case !errors.Is(err, control.ErrNoDaemon):
		return err
	}
	// store.Open would create a missing file: a mistyped -db would print an
	// empty fleet and leave a new database behind.
	if _, err := os.Stat(cfg.db); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no database at %s (check -db)", cfg.db)
	}
	st, err := store.Open(cfg.db, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	return direct(st)
}

func status(ctx context.Context, cfg *config, stdout io.Writer) error {
	var rows []actions.StatusRow
	err := withDaemonOrStore(ctx, cfg,
		func(c *control.Client) (err error) { rows, err = c.Status(ctx); return err },
		func(st *store.Store) (err error) { rows, err = actions.StatusRows(st, time.Now()); return err })
	if err != nil {
		return err
	}
	if cfg.jsonOut {
		if rows == nil {
			rows = []actions.StatusRow{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	return printStatus(stdout, rows)
}

// printStatus prints rows as a table.
func printStatus(stdout io.Writer, rows []actions.StatusRow) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SID\tNAME\tTWILIO\tBREAKER\tOUT 1H\t30007 24H\tOPT-OUT 24H\tSPEND TODAY\tLAST POLL")
	for _, r := range rows {
		name := r.Name
		if r.Parent {
			name += " (parent)"
		}
		last := "never"
		if !r.LastPoll.IsZero() {
			last = r.LastPoll.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.2f%%\t%.2f%%\t$%.2f\t%s\n", r.SID, name, r.Status, r.Breaker,
			r.Outbound1h, 100*r.Filtered24h, 100*r.OptOut24h, r.SpendToday, last)
	}
	return tw.Flush()
}

func history(ctx context.Context, cfg *config, stdout io.Writer) error {
	var entries []actions.HistoryEntry
	err := withDaemonOrStore(ctx, cfg,
		func(c *control.Client) (err error) { entries, err = c.History(ctx, cfg.history); return err },
		func(st *store.Store) (err error) { entries, err = actions.History(st, cfg.history); return err })
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintf(stdout, "%s: no history\n", cfg.history)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tKIND\tACTION\tRULE\tSTATE/OUTCOME\tBY\tREASON / DETAIL")
	for _, e := range entries {
		outcome := e.Outcome
		if e.State != "" {
			outcome = e.State
		}
		if e.DryRun {
			outcome += " (dry-run)"
		}
		detail := e.Reason
		if e.Detail != "" {
			detail = strings.TrimSpace(detail + " " + e.Detail)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.DateTime), e.Kind, e.Action,
			e.Rule, outcome, e.Actor, oneLine(detail))
	}
	return tw.Flush()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// manual runs -reinstate or -suspend: through the daemon when it runs, so
// that there is one writer, otherwise directly with the parent's
// credentials.
func manual(ctx context.Context, cfg *config, getenv func(string) string, log *slog.Logger, stdout io.Writer) error {
	by := cfg.by
	if by == "" {
		by = osUser(getenv)
	}
	sid, verb := cfg.reinstate, "reinstated"
	if sid == "" {
		sid, verb = cfg.suspend, "suspended"
	}
	do := func(act interface {
		Reinstate(ctx context.Context, sid, by, reason string) error
		Suspend(ctx context.Context, sid, by, reason string) error
	}, by string) error {
		if cfg.reinstate != "" {
			return act.Reinstate(ctx, sid, by, cfg.reason)
		}
		return act.Suspend(ctx, sid, by, cfg.reason)
	}

	c, err := control.Dial(cfg.socket)
	switch {
	case err == nil:
		defer c.Close()
		if err := do(c, by); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s by %s (through the running daemon)\n", sid, verb, by)
		return nil
	case !errors.Is(err, control.ErrNoDaemon):
		return err
	}
	if cfg.accountSID == "" || cfg.authToken == "" {
		return errNoTwilio
	}
	a, err := build(cfg, log, nil)
	if err != nil {
		return err
	}
	defer a.close()
	// The audit names the OS user beside -by, as the daemon does.
	if err := do(a.act, control.Attribute(by, uint32(os.Getuid()))); err != nil {
		return err
	}
	a.flush(ctx)
	fmt.Fprintf(stdout, "%s %s by %s\n", sid, verb, by)
	return nil
}

// osUser names the person running the command, for the audit log.
func osUser(getenv func(string) string) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
