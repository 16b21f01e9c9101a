package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/backtest"
	"sentinel/internal/control"
	"sentinel/internal/policy"
	"sentinel/internal/store"
)

// backtestFlags are -backtest's and -explain's.
type backtestFlags struct {
	backtest bool
	explain  string // SID
	from, to string // as given
	step     time.Duration
	html     string // file
	// fromAt and toAt are -from and -to read (see timeSpec).
	fromAt, toAt timeSpec
}

// addBacktestFlags defines the flags of -backtest and -explain.
func addBacktestFlags(fs *flag.FlagSet, b *backtestFlags) {
	fs.BoolVar(&b.backtest, "backtest", false, "replay the stored history between -from and -to through -policies and report what they would have done")
	fs.StringVar(&b.explain, "explain", "", "explain the current judgement of subaccount `SID`, rule by rule, with its last 24 hours")
	fs.StringVar(&b.from, "from", "", "with -backtest: the period's start, RFC 3339 or a duration before now such as -7d (default: 24h before -to)")
	fs.StringVar(&b.to, "to", "", "with -backtest: the period's end, RFC 3339 or a duration before now (default: now, or where the data ends)")
	fs.DurationVar(&b.step, "step", backtest.DefaultStep, "with -backtest: the time between two evaluations")
	fs.StringVar(&b.html, "html", "", "with -backtest or -explain: also write the report, with charts, to this HTML `file`")
}

// checkBacktestFlags checks what can be checked of -backtest's and
// -explain's flags without the database.
func checkBacktestFlags(c *config, given map[string]bool) error {
	b := &c.bt
	if given["explain"] {
		if err := checkSID("-explain", b.explain); err != nil {
			return err
		}
	}
	for _, f := range []string{"from", "to", "step"} {
		if given[f] && !b.backtest {
			return fmt.Errorf("-%s goes with -backtest", f)
		}
	}
	switch {
	case given["html"] && !b.backtest && b.explain == "":
		return errors.New("-html goes with -backtest or -explain")
	case given["html"] && strings.TrimSpace(b.html) == "":
		return errors.New("-html needs a file name")
	case b.step <= 0:
		return fmt.Errorf("-step %v: must be positive", b.step)
	case b.backtest && c.dryRun:
		return errors.New("-dry-run does not apply to -backtest: a backtest never acts")
	}
	var err error
	if b.fromAt, err = parseTimeSpec("-from", b.from); err != nil {
		return err
	}
	if b.toAt, err = parseTimeSpec("-to", b.to); err != nil {
		return err
	}
	// Two times of the same kind compare without a clock.
	if b.from != "" && b.to != "" && b.fromAt.relative == b.toAt.relative {
		if !b.fromAt.resolve(time.Time{}).Before(b.toAt.resolve(time.Time{})) {
			return fmt.Errorf("-from %s is not before -to %s", b.from, b.to)
		}
	}
	return nil
}

// timeSpec is a -from or -to: a time, or an offset from now.
type timeSpec struct {
	relative bool
	at       time.Time
	offset   time.Duration
}

// parseTimeSpec reads s: RFC 3339 ("2026-03-02T10:00:00Z"), a UTC day
// ("2026-03-02", its midnight), "now", or a duration before now in the
// policies' syntax ("-7d", "-36h", "-1d12h").
func parseTimeSpec(name, s string) (timeSpec, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return timeSpec{}, nil
	case s == "now":
		return timeSpec{relative: true}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return timeSpec{at: t.UTC()}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return timeSpec{at: t}, nil
	}
	if d, err := policy.ParseDuration(s); err == nil && d <= 0 {
		return timeSpec{relative: true, offset: d}, nil
	}
	return timeSpec{}, fmt.Errorf("%s %q: want a time in RFC 3339 (2026-03-02T10:00:00Z), a day (2026-03-02), now, or a duration before now (-7d, -36h)", name, s)
}

// resolve returns the time s names at now.
func (s timeSpec) resolve(now time.Time) time.Time {
	if s.relative {
		return now.Add(s.offset)
	}
	return s.at
}

// runBacktest runs -backtest: the history through the daemon while it
// runs, from the database (opened read-only) otherwise; the replay here,
// with -policies.
func runBacktest(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	set, err := loadPolicies(cfg)
	if err != nil {
		return err
	}
	b := cfg.bt
	now := time.Now().UTC()
	from, to := b.fromAt.resolve(now), b.toAt.resolve(now)
	if b.to == "" || to.After(now) {
		to = now
	}
	if b.from == "" {
		from = to.Add(-24 * time.Hour)
	}
	if !from.Before(to) {
		return usageError(fmt.Errorf("-from %s is not before -to %s", stamp(from), stamp(to)))
	}

	var rep *backtest.Report
	err = withDaemonOrReadOnly(cfg,
		func(c *control.Client) (err error) {
			rep, err = replay(ctx, cfg, set, from, to, stderr, func(req backtest.Request) (*backtest.History, error) {
				return c.BacktestHistory(ctx, req)
			})
			return err
		},
		func(st *store.Store) (err error) {
			rep, err = replay(ctx, cfg, set, from, to, stderr, func(req backtest.Request) (*backtest.History, error) {
				return backtest.Load(ctx, st, req)
			})
			return err
		})
	if err != nil {
		return err
	}
	if b.html != "" {
		if err := writeFile(b.html, rep.WriteHTML); err != nil {
			return err
		}
	}
	if cfg.jsonOut {
		return writeJSON(stdout, rep)
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if b.html != "" {
		fmt.Fprintf(stdout, "\nHTML report: %s\n", b.html)
	}
	return nil
}

// replay loads the history of the period [from, to] with load, fits the
// period to the data, and runs the backtest.
func replay(ctx context.Context, cfg *config, set *policy.Set, from, to time.Time, stderr io.Writer,
	load func(backtest.Request) (*backtest.History, error)) (*backtest.Report, error) {
	b := cfg.bt
	fromGiven, toGiven := b.from != "", b.to != ""
	req := backtest.RequestFor(set, from, to)
	h, err := load(req)
	if err != nil {
		return nil, err
	}
	// The period starts no earlier than the database's data: a week
	// asked of a database that holds two days is those two days. It ends
	// no later than now; past where the data ends, rules are unknown as
	// they would have been for the daemon. Without -from and -to, it is
	// the last 24 hours of the data.
	covFrom, covUntil, ok := h.Covers()
	if !ok {
		return nil, fmt.Errorf("%w between %s and %s: the database holds no message log read completely yet", backtest.ErrNoData, stamp(from), stamp(to))
	}
	if !toGiven && !fromGiven && covUntil.Before(to) {
		to = covUntil
		from = to.Add(-24 * time.Hour)
	}
	if !to.After(covFrom) || !from.Before(covUntil) {
		err := fmt.Errorf("%w between %s and %s; the database covers %s to %s", backtest.ErrNoData, stamp(from), stamp(to), stamp(covFrom), stamp(covUntil))
		if fromGiven || toGiven {
			return nil, usageError(err)
		}
		return nil, err
	}
	if from.Before(covFrom) {
		if fromGiven {
			fmt.Fprintf(stderr, "sentinel: the database's data starts at %s: the backtest starts there\n", stamp(covFrom))
		}
		from = covFrom
	}
	// A period moved back to where the data ends needs that stretch read.
	if fit := backtest.RequestFor(set, from, to); fit.Since.Before(req.Since) || fit.To.After(req.To) {
		if h, err = load(fit); err != nil {
			return nil, err
		}
	}
	return backtest.Run(ctx, h, set, backtest.Options{
		From: from, To: to, Step: b.step, Charts: b.html != "",
		Rails: actions.Rails{MaxPerHour: cfg.maxPerHour, MaxFraction: cfg.maxFraction, MaxStaleness: cfg.maxStaleness},
	})
}

// runExplain runs -explain: the running daemon's judgement, with its
// policies, or, without a daemon, the database's with -policies.
func runExplain(ctx context.Context, cfg *config, stdout io.Writer) error {
	var e *backtest.Explanation
	err := withDaemonOrReadOnly(cfg,
		func(c *control.Client) (err error) { e, err = c.Explain(ctx, cfg.bt.explain); return err },
		func(st *store.Store) error {
			set, err := loadPolicies(cfg)
			if err != nil {
				return err
			}
			e, err = backtest.Explain(ctx, st, set, cfg.bt.explain, time.Now().UTC(), cfg.maxStaleness)
			return err
		})
	if err != nil {
		return err
	}
	if cfg.bt.html != "" {
		if err := writeFile(cfg.bt.html, e.WriteHTML); err != nil {
			return err
		}
	}
	if cfg.jsonOut {
		return writeJSON(stdout, e)
	}
	if err := e.WriteText(stdout); err != nil {
		return err
	}
	if cfg.bt.html != "" {
		fmt.Fprintf(stdout, "\nHTML: %s\n", cfg.bt.html)
	}
	return nil
}

// loadPolicies loads -policies as the daemon would accept them: every
// problem with its file and line, and every window within -retention.
func loadPolicies(cfg *config) (*policy.Set, error) {
	set, err := policy.Load(cfg.policies)
	if err == nil {
		err = set.FitsRetention(cfg.retention)
	}
	if err != nil {
		return nil, fmt.Errorf("policies in %s are invalid:\n%w", cfg.policies, err)
	}
	return set, nil
}

// writeFile writes what write writes to path, readable by its owner
// only: a report names customers.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// stamp writes a time for an error message.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }
