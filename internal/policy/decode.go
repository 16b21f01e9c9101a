package policy

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks yaml.Nodes of one file, collecting every problem instead of
// stopping at the first, with the line and field path of each.
type decoder struct {
	file  string
	probs *problems
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.probs.add(d.file, line, field, format, args...)
}

// deref follows aliases (*name) to the node they stand for. The YAML parser
// already rejects an anchor that contains itself; the bound is belt and braces.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return strconv.Quote(n.Value)
		case "!!null":
			return "nothing"
		case "!!bool":
			return "boolean " + n.Value
		}
		return n.Value
	}
	return "an unsupported node"
}

func field(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// fields checks that n is a mapping whose keys are all in allowed, each once,
// and returns its values by key. A key whose value is null counts as absent.
// It returns nil (after reporting) when n is not a mapping.
func (d *decoder) fields(n *yaml.Node, path string, allowed ...string) map[string]*yaml.Node {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", describe(n))
		return nil
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "want a plain key, got %s", describe(k))
			continue
		}
		switch {
		case !contains(allowed, k.Value):
			d.errorf(k, path, "unknown key %q%s", k.Value, suggest(k.Value, allowed))
		case seen[k.Value]:
			d.errorf(k, field(path, k.Value), "key appears more than once")
		default:
			seen[k.Value] = true
			if !isNull(v) {
				out[k.Value] = v
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns ` (did you mean "x"?)` for the closest allowed key within
// two edits, or a list of the allowed keys.
func suggest(got string, allowed []string) string {
	best, bestDist := "", 3
	for _, a := range allowed {
		if dist := editDistance(got, a); dist < bestDist {
			best, bestDist = a, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (want one of: " + strings.Join(allowed, ", ") + ")"
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str returns a string scalar.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errorf(n, path, "want a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// enum returns a string scalar that must be one of allowed.
func (d *decoder) enum(n *yaml.Node, path string, allowed ...string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !contains(allowed, s) {
		d.errorf(n, path, "unknown value %q (want one of: %s)", s, strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

// number returns a finite number scalar. When percent is true, a string like
// "5%" is accepted and divided by 100.
func (d *decoder) number(n *yaml.Node, path string, percent bool) (float64, bool) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f, true
			}
		case "!!str":
			if s, ok := strings.CutSuffix(strings.TrimSpace(n.Value), "%"); ok && percent {
				f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
				if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
					return f / 100, true
				}
			}
		}
	}
	if percent {
		d.errorf(n, path, "want a number or a percentage like 5%%, got %s", describe(n))
	} else {
		d.errorf(n, path, "want a number, got %s", describe(n))
	}
	return 0, false
}

// integer returns a whole number in [lo, hi].
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	n = deref(n)
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.errorf(n, path, "want a whole number, got %s", describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(n, path, "%s is outside %d..%d", n.Value, lo, hi)
		return 0, false
	}
	return v, true
}

var daysRE = regexp.MustCompile(`^([0-9]+)d(.*)$`)

// ParseDuration parses a duration the way policy files write one: a Go
// duration with an optional leading whole number of days and an optional
// sign ("90m", "7d", "-1d12h"), for command lines that speak the same
// language as the policies.
func ParseDuration(s string) (time.Duration, error) { return parseDuration(s) }

// parseDuration is time.ParseDuration that also accepts a leading whole
// number of days ("7d", "1d12h"), as compliance people think in days.
func parseDuration(s string) (time.Duration, error) {
	neg := strings.HasPrefix(s, "-")
	rest := strings.TrimPrefix(s, "-")
	var days time.Duration
	if m := daysRE.FindStringSubmatch(rest); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 3650 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		rest = m[2]
		if rest == "" {
			rest = "0s"
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	d += days
	if neg {
		d = -d
	}
	return d, nil
}

// duration returns a positive duration written like "1h", "90m" or "7d".
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errorf(n, path, "want a duration like 1h or 7d, got %s", describe(n))
		return 0, false
	}
	v, err := parseDuration(n.Value)
	switch {
	case err != nil:
		d.errorf(n, path, "want a duration like 1h or 7d, got %q", n.Value)
		return 0, false
	case v < 0:
		d.errorf(n, path, "%s is negative", n.Value)
		return 0, false
	case v == 0:
		d.errorf(n, path, "must be longer than 0")
		return 0, false
	}
	return v, true
}

// item is one element of a list with its field path.
type item struct {
	node *yaml.Node
	path string
}

// sequence returns the items of a list; a single scalar counts as a list of
// one, so "codes: 30007" reads like "codes: [30007]".
func (d *decoder) sequence(n *yaml.Node, path string) ([]item, bool) {
	n = deref(n)
	switch n.Kind {
	case yaml.SequenceNode:
		out := make([]item, len(n.Content))
		for i, c := range n.Content {
			out[i] = item{deref(c), index(path, i)}
		}
		return out, true
	case yaml.ScalarNode:
		return []item{{n, path}}, true
	}
	d.errorf(n, path, "want a list, got %s", describe(n))
	return nil, false
}

// FormatDuration writes d the way policy files do: days, hours, minutes
// and seconds, leaving out what is zero ("7d", "1d12h", "90s" reads
// "1m30s"); "0s" for zero.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	if d > 0 {
		b.WriteString(d.String()) // below a second
	}
	return b.String()
}
