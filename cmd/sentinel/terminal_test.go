package main

import (
	"strings"
	"testing"
	"time"
	"unicode"

	"sentinel/internal/actions"
)

// TestTablesAreInert prints status and history rows that hold what others
// wrote: a subaccount's name (its owner's), and the -by and -reason of a
// member of the control group. Nothing of theirs reaches the operator's
// terminal as a control character (an escape sequence that hides the rest
// of a line, such as the uid Attribute appends, or moves the cursor) or a
// bidirectional override, and each row stays one line.
func TestTablesAreInert(t *testing.T) {
	const hostile = "a\x1b[8m\x1b]0;t\x07b\u202ec\rd\x00e\x9b2Jf"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rows := []actions.StatusRow{{SID: "AC" + strings.Repeat("1", 32), Name: hostile, State: "watching", Status: "active",
		Attention: "warning", Note: hostile}}
	entries := []actions.HistoryEntry{
		{At: at, Kind: "action", Action: "reinstate", Actor: "carol\nAC11 2026-01-01 forged line " + hostile + " (uid 1000 mallory)", Reason: hostile},
		{At: at, Kind: "action", Action: "suspend", Actor: "dave", Reason: "r", Detail: hostile},
	}
	for _, tc := range []struct {
		name  string
		print func(*strings.Builder) error
		lines int
	}{
		{"-status", func(b *strings.Builder) error { return printStatus(b, rows) }, 2},
		{"-status SID", func(b *strings.Builder) error { return printOne(b, rows[0]) }, 0},
		{"-history", func(b *strings.Builder) error { return printHistory(b, entries) }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := tc.print(&b); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, r := range out {
				if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
					t.Errorf("output holds %U:\n%q", r, out)
					break
				}
			}
			if n := strings.Count(out, "\n"); tc.lines > 0 && n != tc.lines {
				t.Errorf("%d lines, want %d:\n%s", n, tc.lines, out)
			}
		})
	}
}
