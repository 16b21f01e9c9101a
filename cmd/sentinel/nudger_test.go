package main

import (
	"log/slog"
	"slices"
	"testing"
	"time"
)

// An account with new evidence is judged nudgeDelay after it was stored,
// and not again within nudgeEvery of its last judgement, however much more
// arrives; another account is not held back by it.
func TestNudgerDue(t *testing.T) {
	n := newNudger(nil, slog.New(slog.DiscardHandler))
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	n.add(map[string]time.Time{"ACa": {}}, t0)
	if sids, next := n.due(t0.Add(nudgeDelay / 2)); len(sids) != 0 || !next.Equal(t0.Add(nudgeDelay)) {
		t.Fatalf("before the delay: %v, next %v", sids, next)
	}
	at := t0.Add(nudgeDelay)
	if sids, _ := n.due(at); !slices.Equal(sids, []string{"ACa"}) {
		t.Fatalf("after the delay: %v, want ACa", sids)
	}
	n.add(map[string]time.Time{"ACa": {}, "ACb": {}}, at.Add(10*time.Millisecond))
	sids, next := n.due(at.Add(10*time.Millisecond + nudgeDelay))
	if !slices.Equal(sids, []string{"ACb"}) || !next.Equal(at.Add(nudgeEvery)) {
		t.Fatalf("again within a second: %v, next %v; want ACb now, ACa at %v", sids, next, at.Add(nudgeEvery))
	}
	if sids, _ := n.due(at.Add(nudgeEvery)); !slices.Equal(sids, []string{"ACa"}) {
		t.Fatalf("a second after its last: %v, want ACa", sids)
	}
	if sids, next := n.due(at.Add(time.Hour)); len(sids) != 0 || !next.IsZero() || len(n.last) != 0 {
		t.Fatalf("nothing pending: %v, next %v, remembered %v", sids, next, n.last)
	}
}
