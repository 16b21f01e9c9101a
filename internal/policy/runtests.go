package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"sentinel/internal/traffic"
)

// A policy test file, in the spirit of `promtool test rules`: synthetic
// traffic for one account per case, evaluated step by step so that `for` and
// hysteresis apply, and the decisions expected at given times.
type testFile struct {
	// Policies is the policy directory, relative to the test file; default "..".
	Policies string     `yaml:"policies"`
	Start    time.Time  `yaml:"start"` // offsets below count from here; aligned to 5 minutes
	Tests    []testCase `yaml:"tests"`
}

type testCase struct {
	Name    string      `yaml:"name"`
	Subject testSubject `yaml:"subject"`
	// Coverage of the message log; by default complete from long before
	// start up to each evaluation time.
	Coverage *struct {
		From  *offset `yaml:"from"`
		Until *offset `yaml:"until"` // default: each evaluation time
	} `yaml:"coverage"`
	Traffic []series `yaml:"traffic"`
	Usage   []usage  `yaml:"usage"`
	// UsageAsOf is an offset or "never"; default: each evaluation time.
	UsageAsOf string `yaml:"usage_as_of"`
	// Every evaluates at start+every, start+2*every, ... up to the last eval,
	// as the daemon would, besides the times listed in evals.
	Every offset     `yaml:"every"`
	Evals []testEval `yaml:"evals"`
}

type testSubject struct {
	Account      string  `yaml:"account"`
	Name         string  `yaml:"name"`
	Parent       bool    `yaml:"parent"`
	ReinstatedAt *offset `yaml:"reinstated_at"` // seen from evaluations at or after it
	Offences     int     `yaml:"offences"`
	// SpendAtReinstatement is the day's spend known at the reinstatement
	// (the snapshot sentinel takes); without it, spend rules skip the rest
	// of a reinstatement's day.
	SpendAtReinstatement *float64 `yaml:"spend_at_reinstatement"`
	// OffenceDays are days (0 = start's UTC day, -1 the day before) on
	// which a spend rule fired: spend_spike's baseline leaves them out.
	OffenceDays []int `yaml:"offence_days"`
}

// series is traffic repeated in every 5-minute bucket of [from, to).
type series struct {
	From offset `yaml:"from"`
	To   offset `yaml:"to"`
	// Finished outbound messages per bucket, including those below.
	Finished int `yaml:"finished"`
	// Errors: of the finished, how many ended undelivered with each code.
	Errors map[int]int `yaml:"errors"`
	// Failed: of the finished, how many more failed without a code.
	Failed int `yaml:"failed"`
	// InFlight outbound messages (queued): not finished.
	InFlight int `yaml:"in_flight"`
	// NoService: of the outbound, how many had no Messaging Service.
	NoService int `yaml:"no_service"`
	OptOuts   int `yaml:"opt_outs"` // inbound opt-out keywords
	Inbound   int `yaml:"inbound"`  // other inbound messages
}

type usage struct {
	Day      int     `yaml:"day"` // 0 = start's UTC day, -1 the day before
	Spend    float64 `yaml:"spend"`
	Currency string  `yaml:"currency"` // default: the policies' own
	At       *offset `yaml:"at"`       // known from this offset on; default always
}

type testEval struct {
	At     offset        `yaml:"at"`
	Expect []expectation `yaml:"expect"`
	// Firing, when given, is exactly the set of rules whose result is firing.
	Firing *[]string `yaml:"firing"`
}

type expectation struct {
	Rule      string   `yaml:"rule"`
	Result    Result   `yaml:"result"`
	Fired     bool     `yaml:"fired"`
	Protected *bool    `yaml:"protected"`
	Probation *bool    `yaml:"probation"`
	DryRun    *bool    `yaml:"dry_run"`
	Value     *float64 `yaml:"value"`
}

// offset is a duration from the test's start, like "90m", "-1d" or "1d2h".
type offset time.Duration

func (o *offset) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "0" {
		*o = 0
		return nil
	}
	d, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: want an offset like 90m or -1d, got %q", n.Line, n.Value)
	}
	*o = offset(d)
	return nil
}

// String writes o the way tests do: "1h5m", "-30m", "0".
func (o offset) String() string {
	s := time.Duration(o).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

var validResults = []Result{OK, Pending, Firing, Resolved, Unknown, Insufficient, Skipped}

// RunTests runs policy test files against the policies in policyDir, or, when
// policyDir is "", in the directory each file names (default: the parent of
// the test file's directory). It prints PASS or FAIL per case, with what
// differed, and returns how many cases failed. err reports files that could
// not be read or whose policies did not load.
func RunTests(w io.Writer, policyDir string, files ...string) (failed int, err error) {
	var passed int
	sets := map[string]*Set{}
	var errs []error
	for _, file := range files {
		tf, err := readTestFile(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dir := policyDir
		if dir == "" {
			dir = cmpOr(tf.Policies, "..")
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(filepath.Dir(file), dir)
			}
		}
		set, ok := sets[dir]
		if !ok {
			if set, err = Load(dir); err != nil {
				errs = append(errs, fmt.Errorf("%s: load policies %s:\n%w", file, dir, err))
				continue
			}
			sets[dir] = set
		}
		for _, tc := range tf.Tests {
			diffs, err := runCase(set, tf.Start, tc)
			switch {
			case err != nil:
				failed++
				fmt.Fprintf(w, "FAIL %s: %s\n    %v\n", file, tc.Name, err)
			case len(diffs) > 0:
				failed++
				fmt.Fprintf(w, "FAIL %s: %s\n", file, tc.Name)
				for _, d := range diffs {
					fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(d, "\n", "\n    "))
				}
			default:
				passed++
				fmt.Fprintf(w, "PASS %s: %s\n", file, tc.Name)
			}
		}
	}
	fmt.Fprintf(w, "policy tests: %d passed, %d failed\n", passed, failed)
	return failed, errors.Join(errs...)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func readTestFile(file string) (*testFile, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read policy tests: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var tf testFile
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	switch {
	case tf.Start.IsZero():
		return nil, fmt.Errorf("%s: start is required", file)
	case !tf.Start.Equal(traffic.BucketStart(tf.Start)):
		return nil, fmt.Errorf("%s: start %s is not aligned to %v", file, tf.Start.Format(time.RFC3339), traffic.BucketWidth)
	case len(tf.Tests) == 0:
		return nil, fmt.Errorf("%s: no tests", file)
	}
	tf.Start = tf.Start.UTC()
	return &tf, nil
}

// runCase evaluates one case step by step and returns what differed.
func runCase(set *Set, start time.Time, tc testCase) ([]string, error) {
	if err := checkCase(set, tc); err != nil {
		return nil, err
	}
	buckets, err := buildBuckets(start, tc.Traffic)
	if err != nil {
		return nil, err
	}
	// Every evaluation time, in order; listed ones carry expectations.
	want := map[offset]*testEval{}
	var times []offset
	for i := range tc.Evals {
		ev := &tc.Evals[i]
		if _, dup := want[ev.At]; dup {
			return nil, fmt.Errorf("eval at %s listed twice", ev.At)
		}
		want[ev.At] = ev
		times = append(times, ev.At)
	}
	if tc.Every > 0 && len(times) > 0 {
		last := slices.Max(times)
		// Counted in steps rather than summed: past an offset near the
		// largest one, a sum would overflow and start again from below.
		for k := offset(1); k <= last/tc.Every; k++ {
			if t := k * tc.Every; want[t] == nil {
				times = append(times, t)
			}
		}
	}
	slices.Sort(times)

	var diffs []string
	var state map[string]State
	for _, at := range times {
		now := start.Add(time.Duration(at))
		subj, err := tc.subject(start, now, buckets)
		if err != nil {
			return nil, err
		}
		var decisions []Decision
		decisions, state = set.Evaluate(subj, state, now)
		if ev := want[at]; ev != nil {
			diffs = append(diffs, compare(at, ev, decisions)...)
		}
	}
	return diffs, nil
}

func checkCase(set *Set, tc testCase) error {
	names := map[string]bool{}
	for _, r := range set.rules {
		names[r.Name] = true
	}
	if len(tc.Evals) == 0 {
		return errors.New("no evals")
	}
	for _, ev := range tc.Evals {
		rules := slices.Clone(derefStrings(ev.Firing))
		for _, x := range ev.Expect {
			if !slices.Contains(validResults, x.Result) {
				return fmt.Errorf("eval at %s: rule %s: unknown result %q (want one of %v)", ev.At, x.Rule, x.Result, validResults)
			}
			rules = append(rules, x.Rule)
		}
		for _, r := range rules {
			if !names[r] {
				return fmt.Errorf("eval at %s: no rule named %q in the policies", ev.At, r)
			}
		}
	}
	return nil
}

func derefStrings(p *[]string) []string {
	if p == nil {
		return nil
	}
	return *p
}

// subject builds the account as it looks at now.
func (tc testCase) subject(start, now time.Time, buckets []traffic.Bucket) (Subject, error) {
	s := Subject{
		Account:  cmpOr(tc.Subject.Account, "AC"+strings.Repeat("0", 32)),
		Name:     tc.Subject.Name,
		Parent:   tc.Subject.Parent,
		Buckets:  buckets,
		Coverage: traffic.Coverage{From: start.AddDate(0, 0, -60), Until: now},
		Offences: tc.Subject.Offences,
	}
	if c := tc.Coverage; c != nil {
		if c.From != nil {
			s.Coverage.From = start.Add(time.Duration(*c.From))
		}
		if c.Until != nil {
			s.Coverage.Until = start.Add(time.Duration(*c.Until))
		}
	}
	day0 := start.Truncate(24 * time.Hour)
	if r := tc.Subject.ReinstatedAt; r != nil {
		if at := start.Add(time.Duration(*r)); !at.After(now) {
			s.ReinstatedAt = at
			if b := tc.Subject.SpendAtReinstatement; b != nil {
				s.SpendDay, s.SpendBase = at.UTC().Format(time.DateOnly), *b
			}
		}
	}
	for _, d := range tc.Subject.OffenceDays {
		if s.OffenceDays == nil {
			s.OffenceDays = map[string]bool{}
		}
		s.OffenceDays[day0.AddDate(0, 0, d).Format(time.DateOnly)] = true
	}
	switch tc.UsageAsOf {
	case "":
		s.UsageAsOf = now
	case "never":
	default:
		var o offset
		if err := o.UnmarshalYAML(&yaml.Node{Value: tc.UsageAsOf}); err != nil {
			return s, fmt.Errorf("usage_as_of: %w", err)
		}
		s.UsageAsOf = start.Add(time.Duration(o))
	}
	// For each day, the latest record known at now.
	days := map[int]usage{}
	for _, u := range tc.Usage {
		if u.At != nil && start.Add(time.Duration(*u.At)).After(now) {
			continue
		}
		prev, ok := days[u.Day]
		if !ok || prev.At == nil || (u.At != nil && *u.At >= *prev.At) {
			days[u.Day] = u
		}
	}
	order := make([]int, 0, len(days))
	for day := range days {
		order = append(order, day)
	}
	sort.Ints(order)
	for _, day := range order {
		s.Usage = append(s.Usage, traffic.Usage{
			Day:        day0.AddDate(0, 0, day).Format(time.DateOnly),
			TotalPrice: days[day].Spend,
			Currency:   days[day].Currency,
			AsOf:       s.UsageAsOf,
		})
	}
	return s, nil
}

// buildBuckets turns series into buckets the way the store does: one
// synthetic message at a time, through traffic.Contribution and SampleKeys.
func buildBuckets(start time.Time, traffics []series) ([]traffic.Bucket, error) {
	byStart := map[time.Time]*traffic.Bucket{}
	seq := 0
	for i, sr := range traffics {
		var errs int
		for _, n := range sr.Errors {
			errs += n
		}
		if errs+sr.Failed > sr.Finished {
			return nil, fmt.Errorf("traffic[%d]: errors and failed (%d) exceed finished (%d)", i, errs+sr.Failed, sr.Finished)
		}
		if sr.NoService > sr.Finished+sr.InFlight {
			return nil, fmt.Errorf("traffic[%d]: no_service (%d) exceeds outbound (%d)", i, sr.NoService, sr.Finished+sr.InFlight)
		}
		if sr.To <= sr.From {
			return nil, fmt.Errorf("traffic[%d]: to (%s) must be after from (%s)", i, sr.To, sr.From)
		}
		codes := make([]int, 0, len(sr.Errors))
		for code := range sr.Errors {
			codes = append(codes, code)
		}
		sort.Ints(codes)
		from, to := start.Add(time.Duration(sr.From)), start.Add(time.Duration(sr.To))
		for t := traffic.BucketStart(from); t.Before(to); t = t.Add(traffic.BucketWidth) {
			b := byStart[t]
			if b == nil {
				b = &traffic.Bucket{Start: t, Samples: map[int][]string{}}
				byStart[t] = b
			}
			var msgs []traffic.Message
			out := func(status string, code int) {
				msgs = append(msgs, traffic.Message{Direction: traffic.OutboundAPI, Status: status, ErrorCode: code,
					MessagingService: true})
			}
			for _, code := range codes {
				for range sr.Errors[code] {
					out("undelivered", code)
				}
			}
			for range sr.Failed {
				out("failed", 0)
			}
			for range sr.Finished - errs - sr.Failed {
				out("delivered", 0)
			}
			for range sr.InFlight {
				out("queued", 0)
			}
			for j := range sr.NoService {
				msgs[j].MessagingService = false
			}
			for range sr.OptOuts {
				msgs = append(msgs, traffic.Message{Direction: traffic.Inbound, Status: "received", Keyword: traffic.OptOut})
			}
			for range sr.Inbound {
				msgs = append(msgs, traffic.Message{Direction: traffic.Inbound, Status: "received"})
			}
			for _, m := range msgs {
				seq++
				m.SID = fmt.Sprintf("SM%032x", seq)
				m.Time = t
				b.Add(traffic.Contribution(m))
				for _, k := range traffic.SampleKeys(m) {
					if len(b.Samples[k]) < traffic.MaxSamples {
						b.Samples[k] = append(b.Samples[k], m.SID)
					}
				}
			}
		}
	}
	out := make([]traffic.Bucket, 0, len(byStart))
	for _, b := range byStart {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

// compare returns a -want/+got diff per expectation that did not hold.
func compare(at offset, ev *testEval, decisions []Decision) []string {
	byRule := map[string]Decision{}
	var firing []string
	for _, d := range decisions {
		byRule[d.Rule] = d
		if d.Result == Firing {
			firing = append(firing, d.Rule)
		}
	}
	var diffs []string
	for _, x := range ev.Expect {
		d := byRule[x.Rule]
		want := []string{"result=" + string(x.Result), fmt.Sprintf("fired=%t", x.Fired)}
		got := []string{"result=" + string(d.Result), fmt.Sprintf("fired=%t", d.Fired)}
		optBool := func(name string, w *bool, g bool) {
			if w != nil {
				want = append(want, fmt.Sprintf("%s=%t", name, *w))
				got = append(got, fmt.Sprintf("%s=%t", name, g))
			}
		}
		optBool("protected", x.Protected, d.Protected)
		optBool("probation", x.Probation, d.Probation)
		optBool("dry_run", x.DryRun, d.DryRun)
		if x.Value != nil {
			want = append(want, fmt.Sprintf("value=%g", *x.Value))
			g := d.Evidence.Value
			if math.Abs(g-*x.Value) <= 1e-9*math.Max(1, math.Abs(g)) {
				g = *x.Value
			}
			got = append(got, fmt.Sprintf("value=%g", g))
		}
		w, g := strings.Join(want, " "), strings.Join(got, " ")
		if w != g {
			diffs = append(diffs, fmt.Sprintf("at %s, %s:\n  - %s\n  + %s\n    (%s)", at, x.Rule, w, g, describeEvidence(d)))
		}
	}
	if ev.Firing != nil {
		want := slices.Sorted(slices.Values(*ev.Firing))
		slices.Sort(firing)
		if !slices.Equal(want, firing) {
			diffs = append(diffs, fmt.Sprintf("at %s, firing rules:\n  - %v\n  + %v", at, want, firing))
		}
	}
	return diffs
}

func describeEvidence(d Decision) string {
	e := d.Evidence
	s := fmt.Sprintf("%s: %g/%g = %.4g, trip %g, resolve %g, window %s..%s", e.Signal, e.Numerator, e.Denominator,
		e.Value, e.Threshold, e.ResolveAt, e.From.Format("01-02T15:04"), e.To.Format("01-02T15:04"))
	if e.Reason != "" {
		s += "; " + e.Reason
	}
	return s
}
