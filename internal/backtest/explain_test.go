package backtest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"sentinel/internal/actions"
)

// TestExplain: a subaccount on probation is explained by its judgement
// now, one that is suspended by its last one; each rule says its
// coverage, its last decision and its last 24 hours.
func TestExplain(t *testing.T) {
	d := runScenario(t)
	now := d.cycles[len(d.cycles)-1]
	ctx := context.Background()

	e, err := Explain(ctx, d.st, d.set, d.subs["acme"], now, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !e.JudgedAt.Equal(now) || e.Status.Breaker != actions.StateProbation {
		t.Errorf("acme judged at %v, breaker %s; want now, probation", e.JudgedAt, e.Status.Breaker)
	}
	rules := map[string]ExplainedRule{}
	for _, r := range e.Rules {
		rules[r.Rule] = r
		if n := utf8.RuneCountInString(r.Sparkline); n != sparkWidth {
			t.Errorf("%s: sparkline of %d characters, want %d", r.Rule, n, sparkWidth)
		}
	}
	f := rules["filtered"]
	if f.Result != "firing" || !f.Probation || f.Coverage != "complete" || !strings.HasPrefix(f.LastDecision, "blocked (fraction)") {
		t.Errorf("acme's filtered: %+v", f)
	}
	if !strings.HasPrefix(rules["budget"].Coverage, "unknown since") {
		t.Errorf("acme's budget coverage %q: usage went stale an hour after its read", rules["budget"].Coverage)
	}
	if e.Chart == nil || len(e.Chart.Rules) == 0 {
		t.Fatal("no chart")
	}
	var changes []string
	for _, c := range e.Changes {
		changes = append(changes, c.From+">"+c.To)
	}
	if got := strings.Join(changes, " "); got != "closed>open open>probation" {
		t.Errorf("changes of the last 24 hours: %s", got)
	}
	var text, page bytes.Buffer
	if err := e.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"on probation until", "filtered", "blocked (fraction)", "reinstated by alice"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if err := e.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(page.String(), `<svg class="chart"`); n != len(e.Chart.Rules) {
		t.Errorf("%d charts in the page, want %d", n, len(e.Chart.Rules))
	}

	// Suspended since the first cycle: explained by its last judgement.
	e, err = Explain(ctx, d.st, d.set, d.subs["spender"], now, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status.Breaker != actions.StateOpen || e.JudgedAt.Equal(now) || len(e.Rules) == 0 {
		t.Fatalf("spender: breaker %s, judged at %v, %d rules; want open, its last judgement", e.Status.Breaker, e.JudgedAt, len(e.Rules))
	}
	for _, r := range e.Rules {
		if r.Rule == "budget" && (r.Result != "firing" || !strings.HasPrefix(r.LastDecision, "suspended")) {
			t.Errorf("spender's budget: %+v", r)
		}
	}

	if _, err := Explain(ctx, d.st, d.set, "AC"+strings.Repeat("e", 32), now, 10*time.Minute); !errors.Is(err, actions.ErrUnknownAccount) {
		t.Errorf("an unknown SID: %v, want ErrUnknownAccount", err)
	}
}
