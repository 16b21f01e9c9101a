package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Signals a rule can judge.
const (
	SignalErrorRate      = "error_rate"       // messages with any of codes / finished outbound
	SignalErrorCount     = "error_count"      // finished outbound messages with any of codes
	SignalFailureRate    = "failure_rate"     // failed or undelivered / finished outbound
	SignalOptOutRate     = "opt_out_rate"     // inbound opt-outs / outbound
	SignalNoServiceRate  = "no_service_rate"  // outbound without a Messaging Service / outbound
	SignalNoServiceCount = "no_service_count" // outbound without a Messaging Service
	SignalParentOutbound = "parent_outbound"  // outbound messages in the parent's own log
	SignalSpendBudget    = "spend_budget"     // today's spend / daily budget
	SignalSpendSpike     = "spend_spike"      // today's spend / trailing daily mean
)

// Severities, actions and modes.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"

	ActionAlert   = "alert"
	ActionSuspend = "suspend"

	ModeEnforce = "enforce"
	ModeDryRun  = "dry_run"
)

// unit says how a signal's thresholds read.
type unit uint8

const (
	unitRate  unit = iota // a fraction in 0..1, "5%" accepted
	unitCount             // a number of messages
	unitRatio             // a multiple: of the budget, of the trailing mean
)

type signalSpec struct {
	unit   unit
	codes  bool   // takes codes
	spend  bool   // judged on usage, window "today"
	parent bool   // applies to the parent account only
	minKey string // "min_volume", "min_spend" or "" when a minimum makes no sense
	volume string // what the denominator / minimum counts, for Reasons
}

var signals = map[string]signalSpec{
	SignalErrorRate:      {unit: unitRate, codes: true, minKey: "min_volume", volume: "finished outbound messages"},
	SignalErrorCount:     {unit: unitCount, codes: true},
	SignalFailureRate:    {unit: unitRate, minKey: "min_volume", volume: "finished outbound messages"},
	SignalOptOutRate:     {unit: unitRate, minKey: "min_volume", volume: "outbound messages"},
	SignalNoServiceRate:  {unit: unitRate, minKey: "min_volume", volume: "outbound messages"},
	SignalNoServiceCount: {unit: unitCount},
	SignalParentOutbound: {unit: unitCount, parent: true},
	SignalSpendBudget:    {unit: unitRatio, spend: true},
	SignalSpendSpike:     {unit: unitRatio, spend: true, minKey: "min_spend", volume: "USD spent today"},
}

var signalNames = []string{SignalErrorRate, SignalErrorCount, SignalFailureRate, SignalOptOutRate,
	SignalNoServiceRate, SignalNoServiceCount, SignalParentOutbound, SignalSpendBudget, SignalSpendSpike}

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)
	listNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	sidRE      = regexp.MustCompile(`^AC[0-9a-f]{32}$`)
)

// maxWindow bounds a message window; history beyond a month is not kept.
const maxWindow = 31 * 24 * time.Hour

// ref is a use of a named list ("$name"), resolved when files are combined.
type ref struct {
	name, file, field string
	line              int
}

// sidSet is a set of account SIDs written as literals and list references.
type sidSet struct {
	sids map[string]bool
	refs []ref
}

func (s *sidSet) add(sid string) {
	if s.sids == nil {
		s.sids = map[string]bool{}
	}
	s.sids[sid] = true
}

func (s *sidSet) empty() bool { return len(s.sids) == 0 && len(s.refs) == 0 }

// matcher selects accounts by SID or friendly-name glob (path.Match).
type matcher struct {
	accounts sidSet
	names    []string
}

func (m *matcher) empty() bool { return m.accounts.empty() && len(m.names) == 0 }

func (m *matcher) match(sid, name string) bool {
	if m.accounts.sids[sid] {
		return true
	}
	for _, g := range m.names {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// override replaces thresholds or the budget for the accounts it matches.
type override struct {
	line              int
	match             matcher
	trip, resolve     *float64
	minVolume, budget *float64
	forN              int
}

// list is a named list of error codes or account SIDs.
type list struct {
	name, file string
	line       int
	codes      []int
	sids       []string
	isCodes    bool
	isSIDs     bool
}

// setting is one value in the settings section, kept with where it was set
// so that conflicts across files can name both places.
type setting struct {
	key, file, raw string
	line           int
	dur            time.Duration
	num            float64
	str            string
}

// File is one parsed policy file. Its list references are resolved, and its
// rules checked against the other files, by NewSet.
type File struct {
	name      string
	settings  []setting
	lists     []list
	protected matcher
	rules     []*rule
}

// Name returns the name the file was parsed under.
func (f *File) Name() string { return f.name }

// Parse parses one policy file. name is used in problems ("policies/x.yaml").
// The error is a *LoadError listing every problem in the file.
func Parse(name string, data []byte) (*File, error) {
	var probs problems
	d := &decoder{file: name, probs: &probs}
	f := &File{name: name}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		probs.add(name, 0, "", "file is empty: want rules, lists or settings")
		return nil, probs.err()
	case err != nil:
		line, msg := yamlError(err)
		probs.add(name, locateSyntaxError(data, line, msg), "", "%s", msg)
		return nil, probs.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		probs.add(name, extra.Line, "", "more than one YAML document: put one policy document in each file")
	} else if !errors.Is(err, io.EOF) {
		line, msg := yamlError(err)
		probs.add(name, line, "", "%s", msg)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(deref(root)) {
		probs.add(name, 0, "", "file is empty: want rules, lists or settings")
		return nil, probs.err()
	}

	top := d.fields(root, "", "settings", "lists", "protected", "rules")
	if n := top["settings"]; n != nil {
		d.settings(f, n)
	}
	if n := top["lists"]; n != nil {
		d.lists(f, n)
	}
	if n := top["protected"]; n != nil {
		f.protected = d.matcher(n, "protected")
	}
	if n := top["rules"]; n != nil {
		if items, ok := d.sequence(n, "rules"); ok {
			for _, it := range items {
				if r := d.rule(it.node, it.path); r != nil {
					f.rules = append(f.rules, r)
				}
			}
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return f, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// locateSyntaxError improves on the line of a YAML syntax error. The parser
// reports where the enclosing block starts, which for a mis-indented key is
// often line 1; the first prefix of the file that fails with the same message
// ends on the offending line. Only small files are searched (each try parses).
func locateSyntaxError(data []byte, line int, msg string) int {
	const maxLines = 500
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxLines {
		return line
	}
	var prefix []byte
	for k, l := range lines {
		prefix = append(prefix, l...)
		if k+1 < line {
			continue
		}
		var n yaml.Node
		if err := yaml.Unmarshal(prefix, &n); err != nil {
			if _, m := yamlError(err); m == msg {
				return k + 1
			}
		}
	}
	return line
}

// currencyRE matches an ISO 4217 currency code, in either case.
var currencyRE = regexp.MustCompile(`^[A-Za-z]{3}$`)

// yamlError splits a yaml syntax error into its line and message.
func yamlError(err error) (int, string) {
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	line, _ := strconv.Atoi(m[1])
	return line, "invalid YAML: " + msg[len(m[0]):]
}

func (d *decoder) settings(f *File, n *yaml.Node) {
	m := d.fields(n, "settings", "staleness", "usage_staleness", "probation", "currency")
	add := func(key string, v *yaml.Node, dur time.Duration, num float64) {
		f.settings = append(f.settings, setting{key: key, file: d.file, raw: v.Value, line: v.Line, dur: dur, num: num})
	}
	if v := m["currency"]; v != nil {
		if c, ok := d.str(v, "settings.currency"); ok {
			if !currencyRE.MatchString(c) {
				d.errorf(v, "settings.currency", "%q is not a currency code: want three letters, such as USD or EUR", c)
			} else {
				f.settings = append(f.settings, setting{key: "settings.currency", file: d.file, raw: v.Value, line: v.Line, str: strings.ToUpper(c)})
			}
		}
	}
	for _, key := range []string{"staleness", "usage_staleness"} {
		if v := m[key]; v != nil {
			if dur, ok := d.duration(v, "settings."+key); ok {
				add("settings."+key, v, dur, 0)
			}
		}
	}
	if p := m["probation"]; p != nil {
		pm := d.fields(p, "settings.probation", "duration", "factor", "cap")
		for _, key := range []string{"duration", "cap"} {
			if v := pm[key]; v != nil {
				if dur, ok := d.duration(v, "settings.probation."+key); ok {
					add("settings.probation."+key, v, dur, 0)
				}
			}
		}
		if v := pm["factor"]; v != nil {
			if x, ok := d.number(v, "settings.probation.factor", true); ok {
				if x <= 0 || x > 1 {
					d.errorf(v, "settings.probation.factor", "%s is outside 0..1 (exclusive of 0)", v.Value)
				} else {
					add("settings.probation.factor", v, 0, x)
				}
			}
		}
	}
}

func (d *decoder) lists(f *File, n *yaml.Node) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "lists", "want a mapping of list names to lists, got %s", describe(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || !listNameRE.MatchString(k.Value) {
			d.errorf(k, "lists", "invalid list name %s: use letters, digits, _ and -", describe(k))
			continue
		}
		p := "lists." + k.Value
		if seen[k.Value] {
			d.errorf(k, p, "list defined more than once")
			continue
		}
		seen[k.Value] = true
		l := list{name: k.Value, file: d.file, line: k.Line}
		if isNull(v) {
			f.lists = append(f.lists, l)
			continue
		}
		items, ok := d.sequence(v, p)
		if !ok {
			continue
		}
		good := true
		for _, it := range items {
			switch {
			case it.node.Kind == yaml.ScalarNode && it.node.ShortTag() == "!!int":
				if code, ok := d.integer(it.node, it.path, 1, 999999); ok {
					l.codes = append(l.codes, code)
				}
				l.isCodes = true
			case it.node.Kind == yaml.ScalarNode && it.node.ShortTag() == "!!str":
				if strings.HasPrefix(it.node.Value, "$") {
					d.errorf(it.node, it.path, "a list cannot refer to another list")
					good = false
				} else if d.sid(it.node, it.path) {
					l.sids = append(l.sids, it.node.Value)
				}
				l.isSIDs = true
			default:
				d.errorf(it.node, it.path, "want an error code or an account SID, got %s", describe(it.node))
				good = false
			}
		}
		if l.isCodes && l.isSIDs {
			d.errorf(v, p, "mixes error codes and account SIDs: keep them in separate lists")
			good = false
		}
		if good {
			f.lists = append(f.lists, l)
		}
	}
}

func (d *decoder) sid(n *yaml.Node, path string) bool {
	if !sidRE.MatchString(n.Value) {
		d.errorf(n, path, "%q is not an account SID (AC followed by 32 lowercase hex digits)", n.Value)
		return false
	}
	return true
}

// listRef reports whether a scalar is a "$name" list reference and records it.
func (d *decoder) listRef(n *yaml.Node, path string, refs *[]ref) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" || !strings.HasPrefix(n.Value, "$") {
		return false
	}
	name := n.Value[1:]
	if !listNameRE.MatchString(name) {
		d.errorf(n, path, "invalid list reference %q", n.Value)
		return true
	}
	*refs = append(*refs, ref{name: name, file: d.file, field: path, line: n.Line})
	return true
}

// sids reads a list of account SIDs and $list references.
func (d *decoder) sids(n *yaml.Node, path string, into *sidSet) {
	items, ok := d.sequence(n, path)
	if !ok {
		return
	}
	for _, it := range items {
		if d.listRef(it.node, it.path, &into.refs) {
			continue
		}
		if s, ok := d.str(it.node, it.path); ok && d.sid(it.node, it.path) {
			into.add(s)
		}
	}
}

// globs reads friendly-name patterns in path.Match syntax.
func (d *decoder) globs(n *yaml.Node, p string) []string {
	items, ok := d.sequence(n, p)
	if !ok {
		return nil
	}
	var out []string
	for _, it := range items {
		s, ok := d.str(it.node, it.path)
		if !ok {
			continue
		}
		if _, err := path.Match(s, ""); err != nil {
			d.errorf(it.node, it.path, "bad name pattern %q: %v", s, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

func (d *decoder) matcher(n *yaml.Node, path string) matcher {
	var m matcher
	f := d.fields(n, path, "accounts", "names")
	if v := f["accounts"]; v != nil {
		d.sids(v, path+".accounts", &m.accounts)
	}
	if v := f["names"]; v != nil {
		m.names = d.globs(v, path+".names")
	}
	return m
}

// codes reads a list of error codes and $list references.
func (d *decoder) codes(n *yaml.Node, path string, r *rule) {
	items, ok := d.sequence(n, path)
	if !ok {
		return
	}
	for _, it := range items {
		if d.listRef(it.node, it.path, &r.codeRefs) {
			continue
		}
		if code, ok := d.integer(it.node, it.path, 1, 999999); ok {
			r.Codes = append(r.Codes, code)
		}
	}
}

var ruleKeys = []string{"name", "description", "signal", "codes", "window", "days", "budget",
	"min_volume", "min_spend", "trip", "resolve", "for", "severity", "action", "mode", "scope", "overrides"}

var overrideKeys = []string{"accounts", "names", "trip", "resolve", "min_volume", "min_spend", "budget", "for"}

// rule parses one rule and checks everything that does not depend on other
// files. It returns nil when the rule is too broken to be worth keeping.
func (d *decoder) rule(n *yaml.Node, p string) *rule {
	m := d.fields(n, p, ruleKeys...)
	if m == nil {
		return nil
	}
	r := &rule{file: d.file, line: deref(n).Line, path: p, win: -1}
	r.File, r.Line = d.file, r.line
	before := len(*d.probs)
	required := func(key string) *yaml.Node {
		v := m[key]
		if v == nil {
			d.errorf(n, field(p, key), "is required")
		}
		return v
	}

	if v := required("name"); v != nil {
		if s, ok := d.str(v, p+".name"); ok {
			if !nameRE.MatchString(s) {
				d.errorf(v, p+".name", "invalid rule name %q: use letters, digits, '-', '_' and '.'", s)
			}
			r.Name = s
		}
	}
	if v := required("description"); v != nil {
		if s, ok := d.str(v, p+".description"); ok {
			r.Description = strings.TrimSpace(s)
		}
	}
	var spec signalSpec
	known := false
	if v := required("signal"); v != nil {
		if s, ok := d.enum(v, p+".signal", signalNames...); ok {
			r.Signal, spec, known = s, signals[s], true
		}
	}
	r.spec = spec
	only := func(key string, ok bool, why string) *yaml.Node {
		v := m[key]
		if v != nil && known && !ok {
			d.errorf(v, field(p, key), "does not apply to %s%s", r.Signal, why)
			return nil
		}
		return v
	}

	// Signal parameters.
	if v := only("codes", spec.codes, ""); v != nil {
		d.codes(v, p+".codes", r)
	} else if known && spec.codes && m["codes"] == nil {
		d.errorf(n, p+".codes", "is required for %s", r.Signal)
	}
	r.Days = 7
	if v := only("days", r.Signal == SignalSpendSpike, ""); v != nil {
		if x, ok := d.integer(v, p+".days", 1, 31); ok {
			r.Days = x
		}
	}
	if r.Signal != SignalSpendSpike {
		r.Days = 0
	}
	if v := only("budget", r.Signal == SignalSpendBudget, ""); v != nil {
		if x, ok := d.money(v, p+".budget", true); ok {
			r.Budget = x
		}
	}

	// Window.
	if v := m["window"]; v != nil {
		vv := deref(v)
		switch {
		case vv.Kind == yaml.ScalarNode && vv.Value == "today":
			if known && !spec.spend {
				d.errorf(v, p+".window", "\"today\" is only for spend signals; want a duration like 1h")
			}
		case known && spec.spend:
			d.errorf(v, p+".window", "%s is judged on today's usage: want \"today\" or leave it out", r.Signal)
		default:
			if w, ok := d.duration(v, p+".window"); ok {
				if w > maxWindow {
					d.errorf(v, p+".window", "%s is longer than the 31d of history kept", vv.Value)
				}
				r.Window = w
			}
		}
	} else if known && !spec.spend {
		d.errorf(n, p+".window", "is required for %s", r.Signal)
	}

	// Thresholds.
	minKey := spec.minKey
	for _, key := range []string{"min_volume", "min_spend"} {
		if key == minKey {
			continue
		}
		why := ""
		if minKey != "" {
			why = "; use " + minKey
		}
		only(key, false, why)
	}
	if v := m[minKey]; minKey != "" && v != nil {
		if x, ok := d.minimum(v, p+"."+minKey, spec); ok {
			r.MinVolume = x
		}
	}
	var tripNode *yaml.Node
	if v := required("trip"); v != nil && known {
		if x, ok := d.threshold(v, p+".trip", spec.unit); ok {
			r.Trip, tripNode = x, v
		}
	}
	if v := m["resolve"]; v != nil && known {
		if x, ok := d.threshold(v, p+".resolve", spec.unit); ok {
			r.Resolve, r.resolveSet = x, true
			if tripNode != nil && x >= r.Trip {
				d.errorf(v, p+".resolve", "%s must be below trip %s (leave resolve out to resolve below trip)", deref(v).Value, deref(tripNode).Value)
			}
		}
	}
	if !r.resolveSet {
		r.Resolve = r.Trip
	}
	r.For = 1
	if v := m["for"]; v != nil {
		if x, ok := d.integer(v, p+".for", 1, 1000); ok {
			r.For = x
		}
	}
	if v := required("severity"); v != nil {
		r.Severity, _ = d.enum(v, p+".severity", SeverityInfo, SeverityWarning, SeverityCritical)
	}
	if v := required("action"); v != nil {
		r.Action, _ = d.enum(v, p+".action", ActionAlert, ActionSuspend)
	}
	r.Mode = ModeEnforce
	if v := m["mode"]; v != nil {
		r.Mode, _ = d.enum(v, p+".mode", ModeEnforce, ModeDryRun)
	}

	if v := m["scope"]; v != nil {
		sm := d.fields(v, p+".scope", "accounts", "names", "exclude_accounts", "exclude_names")
		if x := sm["accounts"]; x != nil {
			d.sids(x, p+".scope.accounts", &r.include.accounts)
		}
		if x := sm["names"]; x != nil {
			r.include.names = d.globs(x, p+".scope.names")
		}
		if x := sm["exclude_accounts"]; x != nil {
			d.sids(x, p+".scope.exclude_accounts", &r.exclude.accounts)
		}
		if x := sm["exclude_names"]; x != nil {
			r.exclude.names = d.globs(x, p+".scope.exclude_names")
		}
	}
	if v := m["overrides"]; v != nil {
		if items, ok := d.sequence(v, p+".overrides"); ok {
			for _, it := range items {
				if o := d.override(it.node, it.path, r, spec, known); o != nil {
					r.overrides = append(r.overrides, *o)
				}
			}
		}
	}
	if len(*d.probs) > before {
		return nil
	}
	return r
}

func (d *decoder) override(n *yaml.Node, p string, r *rule, spec signalSpec, known bool) *override {
	m := d.fields(n, p, overrideKeys...)
	if m == nil {
		return nil
	}
	o := &override{line: deref(n).Line}
	if v := m["accounts"]; v != nil {
		d.sids(v, p+".accounts", &o.match.accounts)
	}
	if v := m["names"]; v != nil {
		o.match.names = d.globs(v, p+".names")
	}
	if o.match.empty() {
		d.errorf(n, p, "names no accounts: give accounts or names")
	}
	if !known {
		return nil
	}
	for _, key := range []string{"min_volume", "min_spend"} {
		if v := m[key]; v != nil {
			if key != spec.minKey {
				d.errorf(v, p+"."+key, "does not apply to %s", r.Signal)
			} else if x, ok := d.minimum(v, p+"."+key, spec); ok {
				o.minVolume = &x
			}
		}
	}
	if v := m["budget"]; v != nil {
		if r.Signal != SignalSpendBudget {
			d.errorf(v, p+".budget", "does not apply to %s", r.Signal)
		} else if x, ok := d.money(v, p+".budget", true); ok {
			o.budget = &x
		}
	}
	if v := m["trip"]; v != nil {
		if x, ok := d.threshold(v, p+".trip", spec.unit); ok {
			o.trip = &x
		}
	}
	if v := m["resolve"]; v != nil {
		if x, ok := d.threshold(v, p+".resolve", spec.unit); ok {
			o.resolve = &x
		}
	}
	if v := m["for"]; v != nil {
		if x, ok := d.integer(v, p+".for", 1, 1000); ok {
			o.forN = x
		}
	}
	// The effective thresholds must keep resolve below trip.
	trip, resolve, explicit := r.Trip, r.Resolve, r.resolveSet
	if o.trip != nil {
		trip = *o.trip
		if !explicit {
			resolve = trip
		}
	}
	if o.resolve != nil {
		resolve, explicit = *o.resolve, true
	}
	if explicit && resolve >= trip {
		at := m["resolve"]
		if at == nil {
			at = m["trip"]
		}
		d.errorf(at, p, "resolve %g must be below trip %g", resolve, trip)
	}
	return o
}

// threshold reads a trip or resolve value in the signal's unit.
func (d *decoder) threshold(n *yaml.Node, p string, u unit) (float64, bool) {
	x, ok := d.number(n, p, u != unitCount)
	if !ok {
		return 0, false
	}
	raw := deref(n).Value
	switch {
	case u == unitRate && (x < 0 || x > 1):
		d.errorf(n, p, "%s is outside 0..1 for a rate", raw)
	case x <= 0:
		d.errorf(n, p, "%s must be greater than 0", raw)
	default:
		return x, true
	}
	return 0, false
}

// minimum reads a min_volume (whole messages) or min_spend (USD).
func (d *decoder) minimum(n *yaml.Node, p string, spec signalSpec) (float64, bool) {
	if spec.minKey == "min_spend" {
		return d.money(n, p, false)
	}
	x, ok := d.integer(n, p, 0, 1<<40)
	return float64(x), ok
}

// money reads an amount of USD; positive requires it to be above 0.
func (d *decoder) money(n *yaml.Node, p string, positive bool) (float64, bool) {
	x, ok := d.number(n, p, false)
	if !ok {
		return 0, false
	}
	if x < 0 || (positive && x == 0) {
		d.errorf(n, p, "%s must be greater than 0 (USD)", deref(n).Value)
		return 0, false
	}
	return x, true
}

func (r *rule) String() string { return fmt.Sprintf("%s (%s:%d)", r.Name, r.file, r.line) }
