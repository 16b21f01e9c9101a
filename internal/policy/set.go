package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"sentinel/internal/traffic"
)

// Rule is the public, read-only view of one loaded rule.
type Rule struct {
	Name, Description string
	Signal            string        // one of the Signal* constants
	Codes             []int         // error codes, resolved from lists, sorted
	Window            time.Duration // 0 for spend signals, which judge today (UTC)
	Days              int           // spend_spike: trailing days in the mean
	Budget            float64       // spend_budget: default daily budget in USD; 0 = none
	MinVolume         float64       // min_volume (messages) or min_spend (USD)
	Trip, Resolve     float64       // Resolve == Trip when no hysteresis was asked for
	For               int           // consecutive evaluations over Trip before firing
	Severity          string
	Action            string // alert | suspend
	Mode              string // enforce | dry_run
	File              string
	Line              int
}

// rule is a Rule with what Evaluate needs precomputed.
type rule struct {
	Rule
	file       string
	line       int
	path       string // "rules[3]", for problems
	spec       signalSpec
	resolveSet bool
	codeRefs   []ref
	include    matcher
	exclude    matcher
	overrides  []override

	win        int   // index into Set.windows; -1 for spend signals
	slots      []int // indexes of Codes into Set.codes
	sampleKeys []int
	signalText string
}

// Probation configures the tightened judgement after a reinstatement.
type Probation struct {
	Duration time.Duration // after the first offence; doubles per repeat; default 24h
	Factor   float64       // thresholds are multiplied by it; default 0.5
	Cap      time.Duration // longest probation; default 7d
}

// Settings are the set-wide knobs (the settings section).
type Settings struct {
	// Staleness is how far behind now the message log's coverage may end
	// before a window counts as having a gap (result Unknown). Default 15m.
	Staleness time.Duration
	// UsageStaleness is how old UsageAsOf may be before spend rules are
	// Unknown. Default 1h: Twilio's usage records lag by minutes.
	UsageStaleness time.Duration
	Probation      Probation
	// Currency is the ISO 4217 code that budgets and spend minimums are in;
	// spend billed in another currency is not judged. Default "USD".
	Currency string
}

// DefaultSettings returns the settings used for whatever no file sets.
func DefaultSettings() Settings {
	return Settings{
		Staleness:      15 * time.Minute,
		UsageStaleness: time.Hour,
		Probation:      Probation{Duration: 24 * time.Hour, Factor: 0.5, Cap: 7 * 24 * time.Hour},
		Currency:       "USD",
	}
}

// Set is a loaded, validated set of rules. It is immutable and safe for
// concurrent use.
type Set struct {
	rules     []*rule
	settings  Settings
	protected matcher
	windows   []time.Duration // distinct message windows, ascending
	codes     []int           // union of the codes of all rules, for one-pass sums
	// windowSlots[k] are the indexes into codes used by rules whose window
	// is windows[k] or longer.
	windowSlots [][]int
	usageDays   int
}

// Rules returns the rules in load order (by file name, then position).
func (s *Set) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.Rule
		out[i].Codes = slices.Clone(r.Codes)
	}
	return out
}

// Settings returns the set's settings, defaults filled in.
func (s *Set) Settings() Settings { return s.settings }

// Protected reports whether an account is on the protected list: its rules
// alert but never suspend it.
func (s *Set) Protected(sid, name string) bool { return s.protected.match(sid, name) }

// MaxWindow returns the longest message window of any rule: how much bucket
// history the poller must keep and backfill. Spend rules read usage instead
// (see UsageDays).
func (s *Set) MaxWindow() time.Duration {
	if len(s.windows) == 0 {
		return 0
	}
	return s.windows[len(s.windows)-1]
}

// UsageDays returns how many UTC days of usage evaluation reads, today
// included (spend_spike's trailing days plus today).
func (s *Set) UsageDays() int { return s.usageDays }

// FitsRetention checks that every rule's window fits in the raw message
// retention: windows longer than what is kept would be computed over
// partly pruned data (or be unknown for ever), and a number's opt-outs are
// counted once only within the retention (store.Options.ConsentWindow).
// The error is a *LoadError naming each rule that does not fit.
func (s *Set) FitsRetention(retention time.Duration) error {
	var probs problems
	for _, r := range s.rules {
		if r.Window > retention {
			probs.add(r.file, r.line, r.path+".window", "rule %q has a %s window, longer than the %s of messages sentinel keeps (-retention): shorten the window or raise -retention to at least %s",
				r.Name, FormatDuration(r.Window), FormatDuration(retention), FormatDuration(r.Window))
		}
	}
	return probs.err()
}

// Check loads the policies in dir and returns every problem found, for
// `sentinel -check-policies`.
func Check(dir string) error {
	_, err := Load(dir)
	return err
}

// Load reads every *.yaml and *.yml file directly in dir (not in
// subdirectories, so tests can live in dir/tests) and combines them into a
// Set. The error is a *LoadError listing every problem in every file.
func Load(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	if len(paths) == 0 {
		return nil, &LoadError{Problems: []Problem{{File: dir, Msg: "no policy files (*.yaml, *.yml)"}}}
	}
	return LoadFiles(paths...)
}

// LoadFiles parses the named files and combines them into a Set.
func LoadFiles(paths ...string) (*Set, error) {
	var probs problems
	var files []*File
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fs.ErrNotExist
			}
			probs.add(p, 0, "", "read: %v", err)
			continue
		}
		f, err := Parse(p, data)
		var le *LoadError
		if errors.As(err, &le) {
			probs = append(probs, le.Problems...)
			continue
		}
		files = append(files, f)
	}
	s, err := NewSet(files...)
	var le *LoadError
	if errors.As(err, &le) {
		probs = append(probs, le.Problems...)
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// NewSet combines parsed files: it resolves list references, rejects
// duplicate rule and list names and conflicting settings, and precomputes
// what Evaluate needs.
func NewSet(files ...*File) (*Set, error) {
	var probs problems
	s := &Set{settings: DefaultSettings()}

	// Lists.
	lists := map[string]*list{}
	for _, f := range files {
		for i := range f.lists {
			l := &f.lists[i]
			if prev, ok := lists[l.name]; ok {
				probs.add(l.file, l.line, "lists."+l.name, "list %q is also defined at %s:%d", l.name, prev.file, prev.line)
				continue
			}
			lists[l.name] = l
		}
	}
	listNames := make([]string, 0, len(lists))
	for name := range lists {
		listNames = append(listNames, name)
	}
	sort.Strings(listNames)
	lookup := func(r ref, wantCodes bool) *list {
		l, ok := lists[r.name]
		switch {
		case !ok:
			probs.add(r.file, r.line, r.field, "unknown list \"$%s\"%s", r.name, suggestList(r.name, listNames))
			return nil
		case wantCodes && l.isSIDs:
			probs.add(r.file, r.line, r.field, "list \"$%s\" holds account SIDs, want error codes", r.name)
			return nil
		case !wantCodes && l.isCodes:
			probs.add(r.file, r.line, r.field, "list \"$%s\" holds error codes, want account SIDs", r.name)
			return nil
		}
		return l
	}
	resolveSIDs := func(set *sidSet) {
		for _, r := range set.refs {
			if l := lookup(r, false); l != nil {
				for _, sid := range l.sids {
					set.add(sid)
				}
			}
		}
		set.refs = nil
	}

	// Settings: a key may be set in several files only with the same value.
	seen := map[string]setting{}
	for _, f := range files {
		for _, st := range f.settings {
			if prev, ok := seen[st.key]; ok {
				if prev.dur != st.dur || prev.num != st.num || prev.str != st.str {
					probs.add(st.file, st.line, st.key, "%s conflicts with %s set at %s:%d", st.raw, prev.raw, prev.file, prev.line)
				}
				continue
			}
			seen[st.key] = st
			switch st.key {
			case "settings.staleness":
				s.settings.Staleness = st.dur
			case "settings.usage_staleness":
				s.settings.UsageStaleness = st.dur
			case "settings.probation.duration":
				s.settings.Probation.Duration = st.dur
			case "settings.probation.cap":
				s.settings.Probation.Cap = st.dur
			case "settings.probation.factor":
				s.settings.Probation.Factor = st.num
			case "settings.currency":
				s.settings.Currency = st.str
			}
		}
	}
	if p := s.settings.Probation; p.Cap < p.Duration {
		st, ok := seen["settings.probation.cap"]
		if !ok {
			st = seen["settings.probation.duration"]
		}
		probs.add(st.file, st.line, st.key, "probation cap %v is shorter than its duration %v", p.Cap, p.Duration)
	}

	// Protected accounts, from every file.
	for _, f := range files {
		resolveSIDs(&f.protected.accounts)
		for sid := range f.protected.accounts.sids {
			s.protected.accounts.add(sid)
		}
		s.protected.names = append(s.protected.names, f.protected.names...)
	}

	// Rules.
	names := map[string]*rule{}
	codeSlot := map[int]int{}
	windowSet := map[time.Duration]bool{}
	for _, f := range files {
		for _, src := range f.rules {
			r := *src // files stay reusable: NewSet never mutates them
			if prev, ok := names[r.Name]; ok {
				probs.add(r.file, r.line, r.path+".name", "duplicate rule name %q (also at %s:%d)", r.Name, prev.file, prev.line)
				continue
			}
			names[r.Name] = &r
			r.Codes = slices.Clone(r.Codes)
			resolved := true
			for _, ref := range r.codeRefs {
				if l := lookup(ref, true); l != nil {
					r.Codes = append(r.Codes, l.codes...)
				} else {
					resolved = false
				}
			}
			slices.Sort(r.Codes)
			r.Codes = slices.Compact(r.Codes)
			if r.spec.codes && len(r.Codes) == 0 && resolved {
				probs.add(r.file, r.line, r.path+".codes", "the lists named hold no error codes")
			}
			r.include.accounts = cloneSIDs(r.include.accounts)
			r.exclude.accounts = cloneSIDs(r.exclude.accounts)
			resolveSIDs(&r.include.accounts)
			resolveSIDs(&r.exclude.accounts)
			r.overrides = slices.Clone(r.overrides)
			for i := range r.overrides {
				r.overrides[i].match.accounts = cloneSIDs(r.overrides[i].match.accounts)
				resolveSIDs(&r.overrides[i].match.accounts)
			}
			s.compile(&r, codeSlot, windowSet)
			s.rules = append(s.rules, &r)
		}
	}
	s.codes = make([]int, len(codeSlot))
	for code, i := range codeSlot {
		s.codes[i] = code
	}
	for w := range windowSet {
		s.windows = append(s.windows, w)
	}
	slices.Sort(s.windows)
	for _, r := range s.rules {
		if r.Window > 0 {
			r.win = slices.Index(s.windows, r.Window)
		}
	}
	s.windowSlots = make([][]int, len(s.windows))
	for k := range s.windows {
		for _, r := range s.rules {
			if r.win >= k {
				s.windowSlots[k] = append(s.windowSlots[k], r.slots...)
			}
		}
		slices.Sort(s.windowSlots[k])
		s.windowSlots[k] = slices.Compact(s.windowSlots[k])
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// compile precomputes a rule's code slots, sample keys and signal text.
func (s *Set) compile(r *rule, codeSlot map[int]int, windows map[time.Duration]bool) {
	r.win = -1
	if r.Window > 0 {
		windows[r.Window] = true
	}
	r.slots = nil
	for _, code := range r.Codes {
		i, ok := codeSlot[code]
		if !ok {
			i = len(codeSlot)
			codeSlot[code] = i
		}
		r.slots = append(r.slots, i)
	}
	switch r.Signal {
	case SignalErrorRate, SignalErrorCount:
		r.sampleKeys = r.Codes
		codes := make([]string, len(r.Codes))
		for i, c := range r.Codes {
			codes[i] = fmt.Sprint(c)
		}
		r.signalText = r.Signal + " " + strings.Join(codes, ",")
	case SignalFailureRate:
		r.sampleKeys, r.signalText = []int{traffic.SampleFailed}, r.Signal
	case SignalOptOutRate:
		r.sampleKeys, r.signalText = []int{traffic.SampleOptOut}, r.Signal
	case SignalNoServiceRate, SignalNoServiceCount:
		r.sampleKeys, r.signalText = []int{traffic.SampleNoService}, r.Signal
	case SignalSpendSpike:
		r.signalText = fmt.Sprintf("%s %dd", r.Signal, r.Days)
		s.usageDays = max(s.usageDays, r.Days+1)
	default:
		r.signalText = r.Signal
		if r.spec.spend {
			s.usageDays = max(s.usageDays, 1)
		}
	}
}

func cloneSIDs(s sidSet) sidSet {
	out := sidSet{refs: s.refs}
	for sid := range s.sids {
		out.add(sid)
	}
	return out
}

func suggestList(name string, names []string) string {
	if len(names) == 0 {
		return " (no lists are defined)"
	}
	return suggest(name, names)
}
