package slack

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

func TestText(t *testing.T) {
	reminder := suspendedEvent()
	reminder.Kind, reminder.Action, reminder.Examples = KindReminder, "", nil
	reminder.At = t0.Add(4*time.Hour + 30*time.Minute)

	manual := Event{
		Kind: KindManualSuspended, Severity: SeverityWarning, Subaccount: "AC1", Action: "suspended",
		Actor: "alice", Reason: "customer asked", At: t0,
	}
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"suspended", suspendedEvent(), `[CRITICAL] Suspended: Acme Corp (AC0123456789abcdef0123456789abcdef)
  rule carrier-filtering: 30007 rate 12.5% against threshold 5% over 2026-11-26 21:40–22:40 UTC (1h) (25 of 200)
  examples: SM00000000000000000000000000000001 SM00000000000000000000000000000002
  done: suspended
  reinstate: sentinel -reinstate AC0123456789abcdef0123456789abcdef -reason "..."
  [incident AC0123456789abcdef0123456789abcdef/carrier-filtering opened 2026-11-26 22:40 UTC]`},
		{"reminder", reminder, `[CRITICAL] Still open: Acme Corp (AC0123456789abcdef0123456789abcdef)
  rule carrier-filtering: 30007 rate 12.5% against threshold 5% over 2026-11-26 21:40–22:40 UTC (1h) (25 of 200)
  open for 4h30m
  reinstate: sentinel -reinstate AC0123456789abcdef0123456789abcdef -reason "..."
  [incident AC0123456789abcdef0123456789abcdef/carrier-filtering opened 2026-11-26 22:40 UTC]`},
		{"manual", manual, `[WARNING] Suspended by hand: AC1
  done: suspended
  by: alice, reason: customer asked`},
		{"spend", Event{Kind: KindFiring, Severity: SeverityWarning, Subaccount: "AC2", Rule: "spend", Signal: "spend today", Unit: UnitUSD, Value: 1234.5, Threshold: 500},
			`[WARNING] Rule firing: AC2
  rule spend: spend today $1234.50 against threshold $500.00`},
		{"policy", Event{Kind: KindPolicyRejected, Detail: "policies/a.yaml:\n  line 3: bad"},
			"[INFO] Policy rejected\n  detail: policies/a.yaml:   line 3: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Text(tt.ev)); diff != "" {
				t.Errorf("Text (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderBlocks(t *testing.T) {
	m := Render(suspendedEvent())
	texts := blockTexts(t, mustJSON(t, m.Blocks))
	want := []string{
		":rotating_light: Suspended: Acme Corp",
		"*Acme Corp* `AC0123456789abcdef0123456789abcdef`\nrule carrier-filtering: 30007 rate 12.5% against threshold 5% over 2026-11-26 21:40–22:40 UTC (1h) (25 of 200)",
		"*Severity*\ncritical",
		"*Rule*\n`carrier-filtering`",
		"*Measured*\n30007 rate 12.5% against threshold 5%",
		"*Window*\n2026-11-26 21:40–22:40 UTC (1h)",
		"*Volume*\n25 of 200",
		"*Done*\nsuspended",
		"*Example messages*\n`SM00000000000000000000000000000001` `SM00000000000000000000000000000002`",
		"*To reinstate*\n`sentinel -reinstate AC0123456789abcdef0123456789abcdef -reason \"...\"`",
		"sentinel · incident AC0123456789abcdef0123456789abcdef/carrier-filtering opened 2026-11-26 22:40 UTC · 2026-11-26 22:45 UTC",
	}
	if diff := cmp.Diff(want, texts); diff != "" {
		t.Errorf("block texts (-want +got):\n%s", diff)
	}
	var kinds []string
	for _, b := range m.Blocks {
		kinds = append(kinds, string(b.BlockType()))
	}
	if diff := cmp.Diff([]string{"header", "section", "section", "section", "section", "context"}, kinds); diff != "" {
		t.Errorf("block types (-want +got):\n%s", diff)
	}
	if !m.Broadcast {
		t.Error("a suspension is not broadcast from its thread")
	}
	if !strings.HasPrefix(m.Text, "[CRITICAL] Suspended: Acme Corp") {
		t.Errorf("fallback text = %q", m.Text)
	}
}

func TestRenderEscapes(t *testing.T) {
	ev := suspendedEvent()
	ev.Name = "<!channel> Tom & Jerry <https://evil.example|click here>\n[CRITICAL] forged line"
	ev.Examples = []string{"<@U123>"}
	ev.Reinstate = "sentinel -reinstate AC1 -reason \"`rm` <b>\""
	ev.Detail = "Twilio said: <html> & more"
	ev.Actor = "<!here>"
	m := Render(ev)
	texts := append(blockTexts(t, mustJSON(t, m.Blocks)), m.Text)
	for i, s := range texts {
		if strings.ContainsAny(s, "<>") {
			t.Errorf("raw < or > in %q", s)
		}
		if i == 0 {
			continue // the plain_text header: & is not special there
		}
		for _, ent := range strings.Split(s, "&")[1:] {
			if !strings.HasPrefix(ent, "amp;") && !strings.HasPrefix(ent, "lt;") && !strings.HasPrefix(ent, "gt;") {
				t.Errorf("unescaped & in %q", s)
			}
		}
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{
		"&lt;!channel&gt; Tom &amp; Jerry &lt;https://evil.example|click here&gt; [CRITICAL] forged line",
		"`&lt;@U123&gt;`",
		"`sentinel -reinstate AC1 -reason \"'rm' &lt;b&gt;\"`", // a backtick would end the span
		"Twilio said: &lt;html&gt; &amp; more",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("rendering lacks %q:\n%s", want, joined)
		}
	}
	// The header is plain text, where entities may show as typed.
	if got, want := texts[0], ":rotating_light: Suspended: ‹!channel› Tom & Jerry ‹https://evil.example|click here› [CRITICAL] forged line"; got != want {
		t.Errorf("header = %q, want %q", got, want)
	}
	if n := strings.Count(Text(ev), "\n"); n != 7 {
		t.Errorf("Text has %d newlines, want 7: a friendly name forged a line:\n%s", n, Text(ev))
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{0.125, UnitRatio, "12.5%"},
		{0.05, UnitRatio, "5%"},
		{1, UnitRatio, "100%"},
		{0, UnitRatio, "0%"},
		{0.00001, UnitRatio, "0.001%"},
		{0.333333, UnitRatio, "33.33%"},
		{1234.5, UnitUSD, "$1234.50"},
		{-2, UnitUSD, "-$2.00"},
		{200, UnitCount, "200"},
		{100, "", "100"},
		{2.5, UnitCount, "2.5"},
		{math.Copysign(0, -1), UnitCount, "0"},
		{1e300, UnitCount, "1e+300"},
	}
	for _, tt := range tests {
		if got := format(tt.v, tt.unit); got != tt.want {
			t.Errorf("format(%v, %q) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestWindowAndDuration(t *testing.T) {
	tests := []struct {
		from, to time.Time
		want     string
	}{
		{time.Time{}, time.Time{}, ""},
		{t0, time.Time{}, "since 2026-11-26 22:40 UTC"},
		{time.Time{}, t0, "until 2026-11-26 22:40 UTC"},
		{t0.Add(-90 * time.Minute), t0, "2026-11-26 21:10–22:40 UTC (1h30m)"},
		{t0, t0.Add(26 * time.Hour), "2026-11-26 22:40 – 2026-11-28 00:40 UTC (26h)"},
		{t0.In(time.FixedZone("X", 3600)), t0.Add(15 * time.Minute), "2026-11-26 22:40–22:55 UTC (15m)"},
	}
	for _, tt := range tests {
		if got := window(tt.from, tt.to); got != tt.want {
			t.Errorf("window(%v, %v) = %q, want %q", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestTruncateKeepsRunes(t *testing.T) {
	s := strings.Repeat("é", 200)
	got := truncate(s, 151)
	if len(got) > 151 || !strings.HasSuffix(got, "…") || !json.Valid([]byte(mustJSON(t, got))) {
		t.Errorf("truncate = %q (%d bytes)", got, len(got))
	}
	if strings.ContainsRune(got, '\uFFFD') {
		t.Error("truncate split a rune")
	}
}

// An event that says its evidence in plain words shows that sentence, not
// internal signal names and raw decimals, and its whole "why".
func TestRenderPlainWords(t *testing.T) {
	why := strings.Repeat("Carriers filter this account's messages, which gets the parent's senders blocked. ", 5)
	ev := Event{Kind: KindFiring, Severity: SeverityWarning, Subaccount: "AC0123456789abcdef0123456789abcdef", Name: "acme",
		Rule: "carrier-filtering-warning", Signal: "error_rate 30007", Unit: UnitRatio, Value: 0.0909, Threshold: 0.01,
		Numerator: 20, Denominator: 220, Measure: "30007 filtering: 9.1% of 220 finished messages in the last hour (alerts at 1%)",
		Action: "alert only: the subaccount keeps sending", Reason: why, At: time.Date(2026, 3, 2, 10, 32, 0, 0, time.UTC)}
	text := Text(ev)
	for _, want := range []string{"30007 filtering: 9.1% of 220 finished messages in the last hour (alerts at 1%)",
		"done: alert only", strings.TrimSpace(why)} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"error_rate", "0.0909", "against threshold", "…"} {
		if strings.Contains(text, bad) {
			t.Errorf("text has %q:\n%s", bad, text)
		}
	}
	var all strings.Builder
	for _, b := range Render(ev).Blocks {
		js, _ := json.Marshal(b)
		all.Write(js)
	}
	if s := all.String(); strings.Contains(s, "error_rate") || !strings.Contains(s, "9.1% of 220 finished messages") {
		t.Errorf("blocks do not say it in plain words:\n%s", s)
	}
}
