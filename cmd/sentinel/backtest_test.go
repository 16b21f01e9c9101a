package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/actions"
	"sentinel/internal/backtest"
	"sentinel/internal/policy"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twiliofake"
)

// hostileName is a friendly name a customer might give a subaccount:
// markup that would fetch a file, and a terminal escape sequence.
const hostileName = "<img src=x onerror=alert(1)>bravo\x1b[31m"

// cycleDecision is one decision of a -once cycle, as its debug log has it.
type cycleDecision struct {
	SID, Rule string
	At        time.Time
	Result    string
	Fired     bool
}

// decisionsOf reads the decisions of a -once run's JSON log.
func decisionsOf(t *testing.T, stderr string) []cycleDecision {
	t.Helper()
	var out []cycleDecision
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg        string    `json:"msg"`
			Subaccount string    `json:"subaccount"`
			Rule       string    `json:"rule"`
			Result     string    `json:"result"`
			Fired      bool      `json:"fired"`
			To         time.Time `json:"to"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Msg != "decision" {
			continue
		}
		out = append(out, cycleDecision{rec.Subaccount, rec.Rule, rec.To, rec.Result, rec.Fired})
	}
	if len(out) == 0 {
		t.Fatalf("no decision in the log:\n%s", stderr)
	}
	return out
}

// backtestWorld is a fleet of ten steady subaccounts and two offenders:
// acme-blaster, whose carriers filter half its messages in the last hour,
// and one with a hostile name filtered at 40%. With twelve subaccounts
// the rails let sentinel hold one suspended at a time.
func backtestWorld(t *testing.T) (w *world, acme, bravo string) {
	t.Helper()
	w = newWorld(t, twiliofake.Options{})
	w.fleet(t, 10, false)
	now := time.Now().UTC()
	for _, o := range []struct {
		name  string
		share float64
		seed  uint64
		sid   *string
	}{{"acme-blaster", 0.5, 200, &acme}, {hostileName, 0.4, 300, &bravo}} {
		a, err := w.fake.AddSubaccount(twiliofake.Account{FriendlyName: o.name})
		if err != nil {
			t.Fatal(err)
		}
		*o.sid = a.SID
		for _, tr := range []twiliofake.Traffic{
			{AccountSID: a.SID, N: 480, From: now.Add(-24 * time.Hour), To: now.Add(-time.Hour), Seed: o.seed},
			{AccountSID: a.SID, N: 300, From: now.Add(-time.Hour), To: now.Add(-time.Minute), Seed: o.seed + 1,
				Failed: o.share, ErrorCodes: []int{30007}},
		} {
			if _, err := w.fake.Generate(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	return w, acme, bravo
}

// TestBacktestEqualsCycles drives the daemon's cycles (-once, as cron
// would run it) through a scenario: a suspension, a second offender held
// back by the rails, a person's reinstatement, more filtering on
// probation and a second suspension. A backtest of the store at the
// cycles' own times, with the shipped policies, makes the same decisions,
// one by one; and -backtest over the period reports the same suspensions.
func TestBacktestEqualsCycles(t *testing.T) {
	t.Parallel()
	w, acme, bravo := backtestWorld(t)
	var decisions []cycleDecision
	once := func() {
		t.Helper()
		r := w.run(t, w.args("-once", "-log-level", "debug", "-log-format", "json")...)
		if r.code != 0 {
			t.Fatalf("-once: %s", r)
		}
		decisions = append(decisions, decisionsOf(t, r.stderr)...)
	}
	once()
	once()
	// The reinstatement and what acme sends after it fall in one bucket,
	// so that a backtest at any step after the reinstatement sees them as
	// the third cycle does.
	if wait := time.Until(time.Now().Truncate(5 * time.Minute).Add(5 * time.Minute)); wait < 5*time.Second {
		time.Sleep(wait + 100*time.Millisecond)
	}
	if r := w.run(t, w.args("-reinstate", acme, "-reason", "list cleaned", "-by", "alice")...); r.code != 0 {
		t.Fatalf("-reinstate: %s", r)
	}
	// acme sends again after its reinstatement, and half is filtered
	// (the fake dates messages to the second: from the next one).
	after := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	if _, err := w.fake.Generate(twiliofake.Traffic{AccountSID: acme, N: 200, From: after, To: after.Add(time.Second),
		Seed: 202, Failed: 0.5, ErrorCodes: []int{30007}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(after.Add(1200 * time.Millisecond)))
	once()

	cycles := map[time.Time]bool{}
	for _, d := range decisions {
		cycles[d.At] = true
	}
	times := make([]time.Time, 0, len(cycles))
	for at := range cycles {
		times = append(times, at)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	if len(times) != 3 {
		t.Fatalf("%d cycle times in the logs, want 3: %v", len(times), times)
	}

	st, err := store.Open(w.db, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	set, err := policy.Load("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	h, err := backtest.Load(context.Background(), st, backtest.RequestFor(set, times[0], times[2]))
	if err != nil {
		t.Fatal(err)
	}
	var replayed []cycleDecision
	trace := make(chan cycleDecision, 1<<12)
	rep, err := backtest.Run(context.Background(), h, set, backtest.Options{Times: times, Rails: actions.DefaultRails(),
		Workers: 1, Trace: func(sid string, at time.Time, ds []policy.Decision) {
			for _, d := range ds {
				if d.Result != policy.Skipped {
					trace <- cycleDecision{sid, d.Rule, at, string(d.Result), d.Fired}
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	close(trace)
	for d := range trace {
		replayed = append(replayed, d)
	}
	sortDecisions(decisions)
	sortDecisions(replayed)
	if diff := cmp.Diff(decisions, replayed); diff != "" {
		t.Errorf("decisions (-cycles +backtest):\n%s", diff)
	}

	// The suspensions and blocks, by subaccount, rule and cycle.
	cycleOf := func(at time.Time) time.Time {
		c := times[0]
		for _, x := range times {
			if !x.After(at) {
				c = x
			}
		}
		return c
	}
	recs, err := st.Audit("", 0)
	if err != nil {
		t.Fatal(err)
	}
	var actual, replay []string
	for _, r := range recs {
		switch {
		case r.Kind == actions.KindOutcome && r.Action == actions.ActionSuspend && r.Outcome == actions.OutcomeOK && r.Actor == actions.ActorSentinel:
			actual = append(actual, fmt.Sprintf("%s %s suspend %s", r.Subaccount, r.Rule, cycleOf(r.At).Format(time.RFC3339Nano)))
		case r.Kind == actions.KindRefusal:
			rail, _, _ := strings.Cut(strings.TrimPrefix(r.Detail, "rail="), ":")
			actual = append(actual, fmt.Sprintf("%s %s %s %s", r.Subaccount, r.Rule, rail, cycleOf(r.At).Format(time.RFC3339Nano)))
		}
	}
	for _, s := range rep.Subaccounts {
		for _, rr := range s.Rules {
			for _, at := range rr.SuspendedAt {
				replay = append(replay, fmt.Sprintf("%s %s suspend %s", s.SID, rr.Rule, at.Format(time.RFC3339Nano)))
			}
			for _, b := range rr.Blocked {
				replay = append(replay, fmt.Sprintf("%s %s %s %s", s.SID, rr.Rule, b.Rail, b.At.Format(time.RFC3339Nano)))
			}
		}
	}
	sort.Strings(actual)
	sort.Strings(replay)
	if diff := cmp.Diff(actual, replay); diff != "" {
		t.Errorf("suspensions and blocks (-cycles +backtest):\n%s", diff)
	}
	want := []string{
		acme + " carrier-filtering suspend " + times[1].Format(time.RFC3339Nano),
		acme + " carrier-filtering suspend " + times[2].Format(time.RFC3339Nano),
		bravo + " carrier-filtering fraction " + times[1].Format(time.RFC3339Nano),
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, actual); diff != "" {
		t.Errorf("the scenario did not go as planned (-want +got):\n%s", diff)
	}

	// The command, every second over the period (the cycles are seconds
	// apart): the same subaccounts suspended, by the same rule, as the
	// audit log says.
	from, to := times[0].Add(-30*time.Second), times[2].Add(30*time.Second)
	r := w.run(t, w.args("-backtest", "-json", "-from", from.Format(time.RFC3339Nano), "-to", to.Format(time.RFC3339Nano), "-step", "1s")...)
	if r.code != 0 {
		t.Fatalf("-backtest -json: %s", r)
	}
	var got backtest.Report
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("-backtest -json printed no report: %v\n%s", err, r.stdout)
	}
	if diff := cmp.Diff(backtest.Summary{WouldSuspend: 2, Alerts: got.Summary.Alerts, ActuallySuspended: 2,
		OnlyBacktest: []string{}, Both: []string{acme}, OnlyActual: []string{}}, got.Summary); diff != "" {
		t.Errorf("-backtest summary (-want +got):\n%s", diff)
	}

	text := w.run(t, w.args("-backtest", "-from", from.Format(time.RFC3339Nano), "-to", to.Format(time.RFC3339Nano), "-step", "1s")...)
	if text.code != 0 || !regexp.MustCompile(`(?m)^`+acme+`\s+acme-blaster\s+carrier-filtering\s+`).MatchString(text.stdout) ||
		!strings.Contains(text.stdout, "blocked by the cap on the fraction suspended at once") ||
		!strings.Contains(text.stdout, "= "+acme) {
		t.Errorf("-backtest text:\n%s", text)
	}
	if strings.Contains(text.stdout, "\x1b") {
		t.Errorf("-backtest printed a customer's escape sequence:\n%q", text.stdout)
	}
}

func sortDecisions(ds []cycleDecision) {
	sort.Slice(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		if a.SID != b.SID {
			return a.SID < b.SID
		}
		return a.Rule < b.Rule
	})
}

// TestBacktestThroughDaemon: while the daemon runs, it holds the database,
// and -backtest and -explain go through its control socket; the database
// is left as it was by a backtest of a copy.
func TestBacktestThroughDaemon(t *testing.T) {
	t.Parallel()
	w, acme, _ := backtestWorld(t)
	for range 2 {
		if r := w.run(t, w.args("-once")...); r.code != 0 {
			t.Fatalf("-once: %s", r)
		}
	}
	// A copy, backtested with -db while nothing runs: unchanged after.
	cp := filepath.Join(w.dir, "copy.db")
	b, err := os.ReadFile(w.db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	direct := w.run(t, "-backtest", "-json", "-db", cp, "-policies", "../../policies", "-from", "-2h")
	if direct.code != 0 {
		t.Fatalf("-backtest -db copy: %s", direct)
	}
	if after, _ := os.ReadFile(cp); string(after) != string(b) {
		t.Error("a backtest changed the database it read")
	}

	p := w.start(t, w.args("-messages-schedule", "@every 1h", "-accounts-schedule", "@every 1h", "-usage-schedule", "@every 1h")...)
	p.addr(t)
	eventually(t, 10*time.Second, "control socket", func() bool { _, err := os.Stat(w.socket); return err == nil })

	via := w.run(t, w.args("-backtest", "-json", "-from", "-2h")...)
	if via.code != 0 {
		t.Fatalf("-backtest through the daemon: %s", via)
	}
	var a, d backtest.Report
	if json.Unmarshal([]byte(via.stdout), &a) != nil || json.Unmarshal([]byte(direct.stdout), &d) != nil {
		t.Fatalf("reports:\n%s\n%s", via.stdout, direct.stdout)
	}
	if !cmp.Equal(a.Summary.Both, []string{acme}) || !cmp.Equal(a.Summary, d.Summary) {
		t.Errorf("summary through the daemon %+v, of the copy %+v; want %s suspended in both", a.Summary, d.Summary, acme)
	}

	ex := w.run(t, w.args("-explain", acme)...)
	if ex.code != 0 || !strings.Contains(ex.stdout, "the running daemon's policies") || !strings.Contains(ex.stdout, "carrier-filtering") ||
		!strings.Contains(ex.stdout, "suspended by sentinel") {
		t.Errorf("-explain through the daemon: %s", ex)
	}
	if code := p.signal(t, os.Interrupt, 30*time.Second); code != 0 {
		t.Errorf("daemon exit %d", code)
	}
}

// TestBacktestBadInput: mistakes on the command line exit 2 with a reason;
// what the database or the policies make impossible, 1.
func TestBacktestBadInput(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	w.fleet(t, 2, false)
	if r := w.run(t, w.args("-once")...); r.code != 0 {
		t.Fatalf("-once: %s", r)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"from after to", w.args("-backtest", "-from", "2026-03-02T10:00:00Z", "-to", "2026-03-01T10:00:00Z"), 2,
			`^sentinel: -from 2026-03-02T10:00:00Z is not before -to 2026-03-01T10:00:00Z\n$`},
		{"relative from after to", w.args("-backtest", "-from", "-1h", "-to", "-2h"), 2, `^sentinel: -from -1h is not before -to -2h\n$`},
		{"from after now", w.args("-backtest", "-from", "2099-01-01T00:00:00Z"), 2, `^sentinel: -from 2099-01-01 00:00 UTC is not before -to \d{4}-`},
		{"nonsense from", w.args("-backtest", "-from", "last tuesday"), 2, `^sentinel: -from "last tuesday": want a time in RFC 3339`},
		{"no coverage", w.args("-backtest", "-from", "2020-01-01T00:00:00Z", "-to", "2020-01-02T00:00:00Z"), 2,
			`^sentinel: no data between 2020-01-01 00:00 UTC and 2020-01-02 00:00 UTC; the database covers \d{4}-\d\d-\d\d \d\d:\d\d UTC to \d{4}-`},
		{"step zero", w.args("-backtest", "-step", "0s"), 2, `^sentinel: -step 0s: must be positive\n$`},
		{"step without backtest", w.args("-status", "-step", "5m"), 2, `^sentinel: -step goes with -backtest\n$`},
		{"html alone", w.args("-html", "x.html"), 2, `^sentinel: -html goes with -backtest or -explain\n$`},
		{"two modes", w.args("-backtest", "-status"), 2, `^sentinel: choose one of .*-backtest, -explain and -events-setup\n$`},
		{"dry-run", w.args("-backtest", "-dry-run"), 2, `^sentinel: -dry-run does not apply to -backtest`},
		{"malformed SID", w.args("-explain", "AC123"), 2, `^sentinel: -explain "AC123" is not a subaccount SID`},
		{"unknown SID", w.args("-explain", "AC"+strings.Repeat("0", 31)+"9"), 1, `^sentinel: no subaccount AC0+9 in this fleet`},
		{"invalid policies", append(w.args("-backtest"), "-policies", badPolicies(t)), 1,
			`(?s)^sentinel: policies in \S+ are invalid:\n.*broken\.yaml:7: rules\[0\]\.trip: 1\.5 is outside 0\.\.1 for a rate`},
		{"no database", []string{"-backtest", "-db", filepath.Join(w.dir, "typo.db"), "-policies", "../../policies"}, 1,
			`^sentinel: no daemon answers on \S+/run/control\.sock or \S+/typo\.db\.sock, and \S+/typo\.db does not exist: pass -db or -control-socket\n$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.run(t, tc.args...)
			if r.code != tc.code || !regexp.MustCompile(tc.want).MatchString(r.stderr) {
				t.Errorf("exit %d, want %d, and stderr matching %s:\n%s", r.code, tc.code, tc.want, r)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(w.dir, "typo.db")); !os.IsNotExist(err) {
		t.Errorf("-backtest created a database: %v", err)
	}
}

// TestBacktestFitsOldData: without -from and -to, a backtest of a copy
// whose data ends days ago replays the last 24 hours of its data, and
// reads them, not the last 24 hours before now.
func TestBacktestFitsOldData(t *testing.T) {
	set, err := policy.Load("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	end := now.Add(-72 * time.Hour).Truncate(time.Minute)
	var asked []backtest.Request
	load := func(req backtest.Request) (*backtest.History, error) {
		asked = append(asked, req)
		start := req.Since.Truncate(5 * time.Minute)
		slots := int(req.To.Sub(start)/(5*time.Minute)) + 1
		h := &backtest.History{Start: start, Slots: slots, Codes: req.Codes, Loaded: now}
		h.Accounts = []backtest.Account{{
			Info:     store.Account{SID: "AC" + strings.Repeat("1", 32), FriendlyName: "old", Status: "active"},
			Coverage: traffic.Coverage{From: end.Add(-7 * 24 * time.Hour), Until: end},
			Counts:   make([]int64, slots*(5+len(req.Codes))),
		}}
		return h, nil
	}
	cfg := &config{bt: backtestFlags{step: time.Minute}, maxPerHour: 3, maxFraction: 0.1, maxStaleness: 10 * time.Minute}
	rep, err := replay(context.Background(), cfg, set, now.Add(-24*time.Hour), now, io.Discard, load)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.From.Equal(end.Add(-24*time.Hour)) || !rep.To.Equal(end) {
		t.Errorf("period %v to %v, want the last 24 hours of the data, to %v", rep.From, rep.To, end)
	}
	if len(asked) != 2 || asked[1].Since.After(traffic.WindowStart(end.Add(-24*time.Hour), set.MaxWindow())) || asked[1].To.Before(end) {
		t.Errorf("histories asked for: %+v; want a second one that holds the period", asked)
	}
}
