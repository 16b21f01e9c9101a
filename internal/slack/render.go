package slack

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	goslack "github.com/slack-go/slack"
)

// Message is a rendered Event, ready to post.
type Message struct {
	// Text is the fallback shown in notifications and by clients that cannot
	// show blocks; it is escaped for Slack.
	Text   string
	Blocks []goslack.Block
	// Broadcast asks for a thread reply to be shown in the channel as well,
	// for follow-ups a person must not miss (a suspension, a blocked one).
	Broadcast bool
}

// Limits from Slack's Block Kit reference, with room to spare.
const (
	maxHeader   = 150  // header block text
	maxSection  = 2900 // section text (3000)
	maxField    = 1900 // section field (2000)
	maxLine     = 200  // one user-controlled value on one line
	maxExamples = 5    // example SIDs shown
	timeLayout  = "2006-01-02 15:04 UTC"
)

var titles = map[string]string{
	KindFiring:          "Rule firing",
	KindSuspended:       "Suspended",
	KindWouldSuspend:    "Would suspend (dry-run)",
	KindBlocked:         "Suspension blocked",
	KindReminder:        "Still open",
	KindReinstated:      "Reinstated",
	KindResolved:        "Resolved",
	KindSystemic:        "Systemic problem",
	KindBlind:           "Sentinel cannot see",
	KindPolicyRejected:  "Policy rejected",
	KindManualSuspended: "Suspended by hand",
	KindKeptSuspended:   "Kept suspended",
	KindAcknowledged:    "Acknowledged",
	KindWouldReinstate:  "Would reinstate (dry-run)",
}

// Render turns ev into Block Kit: a header (severity, what happened, to whom),
// a summary, fields a compliance person acts on (rule, measured value against
// threshold, window, volume, what was done), example message SIDs, the exact
// reinstate command and a context line naming the incident. Every string
// that came from outside (a friendly name above all) is escaped, so that it
// can neither mention anyone nor forge a link. It offers no buttons; see
// RenderInteractive.
func Render(ev Event) Message {
	return RenderInteractive(ev, Interactivity{})
}

// RenderInteractive is Render with the buttons ev offers under ia (see
// Buttons) before the closing context line.
func RenderInteractive(ev Event, ia Interactivity) Message {
	var blocks []goslack.Block
	blocks = append(blocks, goslack.NewHeaderBlock(
		goslack.NewTextBlockObject(goslack.PlainTextType, truncate(plain(emoji(ev)+" "+headline(ev)), maxHeader), true, false)))

	var summary []string
	if ev.Subaccount != "" || ev.Name != "" {
		s := ""
		if ev.Name != "" {
			s = "*" + esc(line(ev.Name)) + "* "
		}
		if ev.Subaccount != "" {
			s += code(ev.Subaccount)
		}
		summary = append(summary, strings.TrimSpace(s))
	}
	if ev.Measure != "" {
		summary = append(summary, esc(sentence(ev.Measure)))
	} else if m := measured(ev); m != "" {
		summary = append(summary, esc(m))
	}
	if ev.Kind == KindReminder && !ev.Opened.IsZero() && !ev.At.IsZero() {
		summary = append(summary, fmt.Sprintf("Open for %s, since %s.", duration(ev.At.Sub(ev.Opened)), ev.Opened.UTC().Format(timeLayout)))
	}
	if len(summary) > 0 {
		blocks = append(blocks, section(strings.Join(summary, "\n")))
	}

	var fields []*goslack.TextBlockObject
	field := func(name, value string) {
		if value != "" {
			fields = append(fields, goslack.NewTextBlockObject(goslack.MarkdownType, truncate("*"+name+"*\n"+value, maxField), false, false))
		}
	}
	field("Severity", esc(severity(ev)))
	if ev.Rule != "" {
		field("Rule", code(ev.Rule))
	}
	if ev.Measure == "" {
		if ev.Signal != "" || ev.Threshold != 0 {
			field("Measured", esc(valueAgainst(ev)))
		}
		field("Window", esc(window(ev.From, ev.To)))
		field("Volume", esc(volume(ev)))
	}
	field("Done", esc(line(ev.Action)))
	if ev.Actor != "" {
		field("By", esc(line(ev.Actor)))
	}
	if ev.Reason != "" {
		field("Why", esc(whole(ev.Reason)))
	}
	if len(fields) > 0 {
		blocks = append(blocks, goslack.NewSectionBlock(nil, fields, nil))
	}

	if ex := examples(ev.Examples); len(ex) > 0 {
		spans := make([]string, len(ex))
		for i, sid := range ex {
			spans[i] = code(sid)
		}
		more := ""
		if n := len(ev.Examples) - len(ex); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		blocks = append(blocks, section("*Example messages*\n"+strings.Join(spans, " ")+more))
	}
	if ev.Reinstate != "" {
		blocks = append(blocks, section("*To reinstate*\n"+code(ev.Reinstate)))
	}
	if ev.Detail != "" {
		blocks = append(blocks, section("*Detail*\n"+esc(truncate(strings.TrimSpace(ev.Detail), maxSection-20))))
	}

	blocks = append(blocks, decisionBlocks(ev, ia)...)

	ctx := "sentinel"
	if ev.incident() {
		ctx += " · " + esc(incidentLabel(ev))
	}
	if !ev.At.IsZero() {
		ctx += " · " + ev.At.UTC().Format(timeLayout)
	}
	blocks = append(blocks, goslack.NewContextBlock("", goslack.NewTextBlockObject(goslack.MarkdownType, ctx, false, false)))

	return Message{
		Text:      esc(Text(ev)),
		Blocks:    blocks,
		Broadcast: ev.Kind == KindSuspended || ev.Kind == KindManualSuspended || ev.Kind == KindBlocked,
	}
}

// Text renders ev as plain text: the first line says what happened to whom,
// the next lines carry the evidence, what was done and how to undo it. It is
// the fallback text of a Slack message (escaped by Render), the log-only
// notifier's output and the dead-letter record. Newlines and other control
// characters in outside strings are flattened, so a friendly name cannot
// forge lines of output.
func Text(ev Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", strings.ToUpper(severity(ev)), headline(ev))
	if ev.Name != "" && ev.Subaccount != "" {
		fmt.Fprintf(&b, " (%s)", line(ev.Subaccount))
	}
	if ev.Measure != "" {
		b.WriteString("\n  " + sentence(ev.Measure))
	} else if m := measured(ev); m != "" {
		b.WriteString("\n  " + m)
	}
	if ev.Kind == KindReminder && !ev.Opened.IsZero() && !ev.At.IsZero() {
		fmt.Fprintf(&b, "\n  open for %s", duration(ev.At.Sub(ev.Opened)))
	}
	if ex := examples(ev.Examples); len(ex) > 0 {
		b.WriteString("\n  examples: " + strings.Join(ex, " "))
	}
	if ev.Action != "" {
		b.WriteString("\n  done: " + line(ev.Action))
	}
	switch {
	case ev.Actor != "":
		fmt.Fprintf(&b, "\n  by: %s, reason: %s", line(ev.Actor), whole(ev.Reason))
	case ev.Reason != "":
		b.WriteString("\n  why: " + whole(ev.Reason))
	}
	if ev.Reinstate != "" {
		b.WriteString("\n  reinstate: " + line(ev.Reinstate))
	}
	if ev.Detail != "" {
		b.WriteString("\n  detail: " + truncate(line(ev.Detail), maxSection))
	}
	if ev.incident() {
		b.WriteString("\n  [" + incidentLabel(ev) + "]")
	}
	return b.String()
}

// headline is what happened and to whom: "Suspended: Acme Corp".
func headline(ev Event) string {
	s := titles[ev.Kind]
	if s == "" {
		s = line(ev.Kind)
	}
	switch {
	case ev.Name != "":
		s += ": " + line(ev.Name)
	case ev.Subaccount != "":
		s += ": " + line(ev.Subaccount)
	}
	return s
}

// measured is the one-line evidence: rule, signal, value against threshold,
// window and volume.
func measured(ev Event) string {
	var parts []string
	if ev.Rule != "" {
		parts = append(parts, "rule "+line(ev.Rule)+":")
	}
	if ev.Signal != "" || ev.Threshold != 0 {
		parts = append(parts, valueAgainst(ev))
	}
	if w := window(ev.From, ev.To); w != "" {
		parts = append(parts, "over "+w)
	}
	if v := volume(ev); v != "" {
		parts = append(parts, "("+v+")")
	}
	return strings.Join(parts, " ")
}

func valueAgainst(ev Event) string {
	s := format(ev.Value, ev.Unit) + " against threshold " + format(ev.Threshold, ev.Unit)
	if ev.Signal != "" {
		s = line(ev.Signal) + " " + s
	}
	return s
}

func volume(ev Event) string {
	switch {
	case ev.Denominator != 0:
		return number(ev.Numerator) + " of " + number(ev.Denominator)
	case ev.Numerator != 0:
		return number(ev.Numerator)
	}
	return ""
}

func incidentLabel(ev Event) string {
	return "incident " + line(ev.Subaccount) + "/" + line(ev.Rule) + " opened " + ev.Opened.UTC().Format(timeLayout)
}

func severity(ev Event) string {
	if ev.Severity == "" {
		return SeverityInfo
	}
	return ev.Severity
}

func emoji(ev Event) string {
	switch {
	case ev.Kind == KindResolved || ev.Kind == KindReinstated:
		return ":white_check_mark:"
	case ev.Severity == SeverityCritical:
		return ":rotating_light:"
	case ev.Severity == SeverityWarning:
		return ":warning:"
	}
	return ":information_source:"
}

func examples(sids []string) []string {
	var out []string
	for _, s := range sids {
		if len(out) == maxExamples {
			break
		}
		if s = line(s); s != "" {
			out = append(out, truncate(s, 64))
		}
	}
	return out
}

// format renders a measured value in its unit: ratios as percentages,
// dollars with cents, counts as numbers.
func format(v float64, unit string) string {
	switch unit {
	case UnitRatio:
		return percent(v)
	case UnitUSD:
		if v < 0 {
			return "-$" + strconv.FormatFloat(-v, 'f', 2, 64)
		}
		return "$" + strconv.FormatFloat(v, 'f', 2, 64)
	}
	return number(v)
}

func percent(v float64) string {
	p := v * 100
	s := number(p)
	if s == "0" && p != 0 {
		s = strconv.FormatFloat(p, 'g', 2, 64)
	}
	return s + "%"
}

// number prints v with at most two decimals and no trailing zeros.
func number(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	if math.Abs(v) >= 1e15 {
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(s, "0")
	s = strings.TrimSuffix(s, ".")
	if s == "-0" {
		s = "0"
	}
	return s
}

func window(from, to time.Time) string {
	f, t := from.UTC(), to.UTC()
	switch {
	case from.IsZero() && to.IsZero():
		return ""
	case to.IsZero():
		return "since " + f.Format(timeLayout)
	case from.IsZero():
		return "until " + t.Format(timeLayout)
	case f.Format(time.DateOnly) == t.Format(time.DateOnly):
		return f.Format("2006-01-02 15:04") + "–" + t.Format("15:04") + " UTC (" + duration(t.Sub(f)) + ")"
	}
	return f.Format("2006-01-02 15:04") + " – " + t.Format(timeLayout) + " (" + duration(t.Sub(f)) + ")"
}

// duration prints d in hours and minutes: "4h", "1h30m", "45m".
func duration(d time.Duration) string {
	d = d.Round(time.Minute)
	if d < time.Minute && d > -time.Minute {
		return "0m"
	}
	h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return strconv.FormatInt(m, 10) + "m"
	case m == 0:
		return strconv.FormatInt(h, 10) + "h"
	}
	if m < 0 {
		m = -m
	}
	return strconv.FormatInt(h, 10) + "h" + strconv.FormatInt(m, 10) + "m"
}

// esc escapes the three characters Slack's mrkdwn gives meaning to: with
// them a friendly name could ping <!channel> or show a forged <link|label>.
func esc(s string) string {
	return mrkdwnEscaper.Replace(s)
}

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// plain makes s safe for a plain_text object (the header). Slack does not
// parse plain text, but whether it decodes entities there is not settled:
// angle brackets become look-alike quotes, which read the same either way.
func plain(s string) string {
	return plainEscaper.Replace(s)
}

var plainEscaper = strings.NewReplacer("<", "‹", ">", "›")

// code renders s as an inline code span on one line. A backtick would end
// the span early, so it becomes a quote.
func code(s string) string {
	return "`" + esc(strings.ReplaceAll(line(s), "`", "'")) + "`"
}

func section(text string) *goslack.SectionBlock {
	return goslack.NewSectionBlock(goslack.NewTextBlockObject(goslack.MarkdownType, truncate(text, maxSection), false, false), nil, nil)
}

// line flattens control characters (newlines above all) to spaces and bounds
// the length of one outside value.
func line(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), maxLine)
}

// maxWhole bounds a text that is shown whole (a rule's description, a
// person's reason): long enough for any sensible one, bounded for a hostile
// one, and cut at a word when it must be.
const maxWhole = 1500

// whole flattens s to one line and keeps it whole up to maxWhole, cutting
// at a word beyond.
func whole(s string) string {
	s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)), " ")
	if len(s) <= maxWhole {
		return s
	}
	cut := strings.LastIndexByte(s[:maxWhole-len("…")], ' ')
	if cut <= 0 {
		return truncate(s, maxWhole)
	}
	return s[:cut] + " …"
}

// sentence is whole(s) with a capital first letter.
func sentence(s string) string {
	s = whole(s)
	if r, n := utf8.DecodeRuneInString(s); n > 0 {
		return string(unicode.ToUpper(r)) + s[n:]
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
