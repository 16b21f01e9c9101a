package backtest

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"sentinel/internal/actions"
)

// hostile is a friendly name as a customer might set it: markup, quotes,
// an escape sequence and a bidirectional override.
const hostile = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>\x1b[31m\u202eevil"

// TestHTML: one self-contained page, a chart per rule judged for every
// subaccount that fired, a histogram per rule, every customer string
// escaped.
func TestHTML(t *testing.T) {
	set := loadSet(t)
	end := t0.Add(3 * time.Hour)
	h := buildHistory(t, set, end,
		fleetSpec{name: hostile, counts: filteredFrom(t0.Add(30*time.Minute), 0.3)},
		fleetSpec{name: "warned", counts: filteredFrom(t0.Add(60*time.Minute), 0.04)},
		fleetSpec{name: "quiet", counts: steady(0)},
	)
	rep, err := Run(context.Background(), h, set, Options{From: t0, To: end, Rails: actions.DefaultRails(), Charts: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Subaccounts) != 2 || len(rep.Charts) != 2 {
		t.Fatalf("%d subaccounts fired, %d charted; want 2 and 2", len(rep.Subaccounts), len(rep.Charts))
	}
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script", "<img", "\x1b", "\u202e", "http://", "https://", "<link", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the hostile name is not in the page, escaped")
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"`) {
		t.Error("no Content-Security-Policy that forbids scripts and fetches")
	}
	charts := regexp.MustCompile(`<svg class="chart" data-sid="(AC[0-9a-f]{32})" data-rule="([a-z-]+)" data-fired="(true|false)"`).FindAllStringSubmatch(page, -1)
	bySID := map[string]int{}
	for _, m := range charts {
		bySID[m[1]]++
	}
	for _, s := range rep.Subaccounts {
		if bySID[s.SID] == 0 {
			t.Errorf("no chart for %s", s.SID)
		}
	}
	if n := strings.Count(page, `<svg class="histogram"`); n != len(rep.Fleet) || n == 0 {
		t.Errorf("%d histograms, want one per rule judged (%d)", n, len(rep.Fleet))
	}
	if !strings.Contains(page, `class="mark suspend"`) {
		t.Error("no mark where the backtest would suspend")
	}
}

// TestTextClean: the text report writes a hostile name on one line,
// without its escape sequences.
func TestTextClean(t *testing.T) {
	got := Clean(hostile+"\nsecond line", 200)
	for _, bad := range []string{"\x1b", "\u202e", "\n"} {
		if strings.Contains(got, bad) {
			t.Errorf("Clean(...) = %q, holds %q", got, bad)
		}
	}
	if got := Clean("a  b\tc", 200); got != "a b c" {
		t.Errorf("Clean collapses space: %q", got)
	}
	if got := Clean("abcdef", 3); got != "abc…" {
		t.Errorf("Clean(abcdef, 3) = %q", got)
	}
}
