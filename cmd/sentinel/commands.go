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
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

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

// testPolicies runs policy test files against the directory each names
// (its policies: key, relative to the file), or against -policies when it
// is given.
func testPolicies(cfg *config, stdout io.Writer) error {
	dir := ""
	if cfg.policiesSet {
		dir = cfg.policies
	}
	failed, err := policy.RunTests(stdout, dir, cfg.testFiles...)
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d policy test cases failed", failed)
	}
	return nil
}

// withDaemonOrReadOnly runs viaDaemon when a daemon answers (findDaemon),
// which holds the database, and otherwise direct on the database at -db,
// opened read-only: nothing in it changes, a file the user may only read
// will do, and a path that holds none is not made one.
func withDaemonOrReadOnly(cfg *config, viaDaemon func(*control.Client) error, direct func(*store.Store) error) error {
	c, err := findDaemon(cfg)
	if err != nil {
		return err
	}
	if c != nil {
		defer c.Close()
		return viaDaemon(c)
	}
	st, err := store.Open(cfg.db, store.Options{ReadOnly: true})
	if err != nil {
		return withoutDaemon(cfg, err)
	}
	defer st.Close()
	return direct(st)
}

// withoutDaemon explains err, from opening the database at -db after no
// daemon answered: where the daemon was looked for, and what to pass.
func withoutDaemon(cfg *config, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cfg.errNoDatabase()
	case errors.Is(err, store.ErrLocked):
		// A daemon holds it, on a socket of its own.
		return fmt.Errorf("%w, and %s: pass the daemon's -control-socket, or set SENTINEL_SOCKET", err, cfg.noDaemon())
	}
	return err
}

func status(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	var rows []actions.StatusRow
	err := withDaemonOrReadOnly(cfg,
		func(c *control.Client) (err error) { rows, err = c.Status(ctx); return err },
		func(st *store.Store) (err error) {
			set, lerr := policy.Load(cfg.policies)
			if lerr != nil {
				fmt.Fprintf(stderr, "sentinel: the policies in %s do not load, so rules are not judged here: %v\n", cfg.policies, firstLine(lerr))
			}
			rows, err = actions.StatusRows(ctx, st, set, time.Now(), cfg.maxStaleness)
			// No daemon runs: a reinstatement acts on this database.
			actions.AddReinstate(rows, hostCommand(selfCommand(), cfg, false))
			return err
		})
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return errors.New("no subaccounts known: sentinel has not read Twilio's account list yet (is the daemon running, and can it reach Twilio? its log says)")
	}
	if cfg.statusSID != "" {
		i := slices.IndexFunc(rows, func(r actions.StatusRow) bool { return r.SID == cfg.statusSID })
		if i < 0 {
			return fmt.Errorf("no subaccount %s in this fleet (sentinel -status lists them)", cfg.statusSID)
		}
		rows = rows[i : i+1]
	}
	switch {
	case cfg.jsonOut && cfg.statusSID != "":
		return writeJSON(stdout, rows[0])
	case cfg.jsonOut:
		return writeJSON(stdout, rows)
	case cfg.statusSID != "":
		return printOne(stdout, rows[0])
	}
	return printStatus(stdout, rows)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// printStatus prints rows as a table: what needs a person first, then the
// value of each suspension rule over its own window.
func printStatus(stdout io.Writer, rows []actions.StatusRow) error {
	var cols []string // the suspension rules, in policy order
	for _, r := range rows {
		for _, rv := range r.Rules {
			if rv.Action == policy.ActionSuspend && !slices.Contains(cols, rv.Rule) {
				cols = append(cols, rv.Rule)
			}
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	head := []string{"SID", "NAME", "STATE"}
	for _, c := range cols {
		head = append(head, strings.ToUpper(c))
	}
	head = append(head, "OUT 1H", "IGNORED STOPS 24H", "SPEND TODAY", "LAST POLL", "NOTE")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rows {
		name := r.Name
		if r.Parent {
			name += " (parent)"
		}
		cells := []string{r.SID, oneLine(name), r.State}
		for _, c := range cols {
			cell := "-"
			for _, rv := range r.Rules {
				if rv.Rule == c {
					cell = ruleCell(rv)
				}
			}
			cells = append(cells, cell)
		}
		last := "never"
		if !r.LastPoll.IsZero() {
			last = r.LastPoll.UTC().Format(time.DateTime)
		}
		cells = append(cells, fmt.Sprint(r.Outbound1h), fmt.Sprint(r.IgnoredOptOuts24h),
			fmt.Sprintf("%.2f", r.SpendToday), last, oneLine(r.Note))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// ruleCell is a rule's value against its threshold, in one short cell:
// "9.1% (5%)", "$30.00/$50.00", "unknown".
func ruleCell(rv actions.RuleView) string {
	switch policy.Result(rv.Result) {
	case policy.Unknown:
		return "unknown"
	case policy.Insufficient:
		return fmt.Sprintf("too few (%s %s)", rv.Window, trimFloat(rv.Denominator))
	}
	mark := ""
	switch policy.Result(rv.Result) {
	case policy.Firing:
		mark = " FIRING"
	case policy.Pending:
		mark = fmt.Sprintf(" %d/%d", rv.Consecutive, rv.For)
	}
	switch rv.Signal {
	case policy.SignalSpendBudget:
		return fmt.Sprintf("$%.2f/$%.2f%s", rv.Numerator, rv.Denominator*rv.Threshold, mark)
	case policy.SignalSpendSpike:
		return fmt.Sprintf("%.1fx (%gx)%s", rv.Value, rv.Threshold, mark)
	case policy.SignalErrorCount, policy.SignalNoServiceCount, policy.SignalParentOutbound:
		return fmt.Sprintf("%s (%s)%s", trimFloat(rv.Value), trimFloat(rv.Threshold), mark)
	}
	return fmt.Sprintf("%s (%s)%s", percent(rv.Value), percent(rv.Threshold), mark)
}

func percent(v float64) string { return trimFloat(v*100) + "%" }

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// printOne prints one subaccount in full: its state and every rule.
func printOne(stdout io.Writer, r actions.StatusRow) error {
	fmt.Fprintf(stdout, "%s %s\n", r.SID, oneLine(r.Name))
	fmt.Fprintf(stdout, "  state:      %s (Twilio: %s)\n", r.State, r.Status)
	if r.Note != "" {
		fmt.Fprintf(stdout, "  attention:  %s: %s\n", r.Attention, oneLine(r.Note))
	}
	if r.Reinstate != "" {
		fmt.Fprintf(stdout, "  reinstate:  %s\n", r.Reinstate)
	}
	fmt.Fprintf(stdout, "  last hour:  %d messages sent; today: %.2f spent; ignored STOPs in 24h: %d\n",
		r.Outbound1h, r.SpendToday, r.IgnoredOptOuts24h)
	if !r.DataUntil.IsZero() {
		fmt.Fprintf(stdout, "  data until: %s UTC\n", r.DataUntil.UTC().Format(time.DateTime))
	}
	if len(r.Rules) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tWINDOW\tRESULT\tVALUE\tFOR\tIN WORDS")
	for _, rv := range r.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", rv.Rule, rv.Window, rv.Result, ruleCell(rv),
			rv.Consecutive, rv.For, oneLine(rv.Text))
	}
	return tw.Flush()
}

func history(ctx context.Context, cfg *config, stdout io.Writer) error {
	var entries []actions.HistoryEntry
	err := withDaemonOrReadOnly(cfg,
		func(c *control.Client) (err error) { entries, err = c.History(ctx, cfg.history); return err },
		func(st *store.Store) (err error) { entries, err = actions.History(st, cfg.history); return err })
	if err != nil {
		return err
	}
	if cfg.jsonOut {
		if entries == nil {
			entries = []actions.HistoryEntry{}
		}
		return writeJSON(stdout, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintf(stdout, "%s: no history\n", cfg.history)
		return nil
	}
	return printHistory(stdout, entries)
}

// printHistory prints entries as a table, one line each.
func printHistory(stdout io.Writer, entries []actions.HistoryEntry) error {
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
			e.Rule, outcome, oneLine(e.Actor), oneLine(detail))
	}
	return tw.Flush()
}

// oneLine is s, written by others (a subaccount's name, a person's -by or
// -reason), as a terminal may print it: on one line, with control and
// formatting characters (escape sequences, bidirectional overrides) shown
// as "?".
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if !unicode.IsSpace(r) && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			return '?'
		}
		return r
	}, s)), " ")
}

// manual runs -reinstate or -suspend: through the daemon when one answers
// (findDaemon), so that there is one writer, otherwise directly, with the
// parent's credentials, on the database at -db, which must exist.
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

	c, err := findDaemon(cfg)
	if err != nil {
		return err
	}
	if c != nil {
		defer c.Close()
		if err := do(c, by); errors.Is(err, actions.ErrUnchanged) {
			// Nothing was done: say why, and do not claim it was.
			msg := err.Error()
			if ce := (*control.Error)(nil); errors.As(err, &ce) {
				msg = ce.Message
			}
			fmt.Fprintln(stdout, msg)
			return nil
		} else if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s by %s (through the running daemon)\n", sid, verb, by)
		return nil
	}
	// Without a daemon, on the database at -db.
	if err := checkDatabase(cfg); err != nil {
		return err
	}
	if cfg.accountSID == "" || cfg.authToken == "" {
		return fmt.Errorf("%s, and acting on %s without a daemon needs the parent's credentials in TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", cfg.noDaemon(), shown(cfg.db))
	}
	cfg.command = hostCommand(selfCommand(), cfg, false)
	a, err := build(cfg, log, nil)
	if err != nil {
		return err
	}
	defer a.close()
	// The audit names the OS user beside -by, as the daemon does.
	if err := do(a.act, control.Attribute(by, uint32(os.Getuid()))); errors.Is(err, actions.ErrUnchanged) {
		fmt.Fprintln(stdout, err)
		return nil
	} else if err != nil {
		return err
	}
	a.flush(ctx)
	fmt.Fprintf(stdout, "%s %s by %s\n", sid, verb, by)
	return nil
}

// checkDatabase returns an error, saying where the daemon was looked for,
// when the database at -db is not there (build would create it: a command
// pasted in the wrong directory would leave one behind), or when another
// process holds it (a daemon that did not answer). It opens the database
// read-only to find out; what else could be wrong with it, build reports.
func checkDatabase(cfg *config) error {
	st, err := store.Open(cfg.db, store.Options{ReadOnly: true})
	switch {
	case err == nil:
		return st.Close()
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, store.ErrLocked):
		return withoutDaemon(cfg, err)
	}
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
