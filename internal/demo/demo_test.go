package demo

import (
	"testing"
	"time"

	"sentinel/internal/twiliofake"
)

// The demo must show each offender tripping its rule whatever the seed, and
// a suspended subaccount must stop sending as it would in Twilio.
func TestFleet(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for _, seed := range []uint64{1, 2, 3, 42} {
		f, err := New(Options{Subaccounts: 4, Now: clock, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var filtered, finished int
		for _, m := range f.Server.Messages(f.Filtered) {
			if m.DateSent.Before(now.Add(-55*time.Minute)) || m.Direction == "inbound" {
				continue
			}
			finished++
			if m.ErrorCode == 30007 {
				filtered++
			}
		}
		if finished < 100 || float64(filtered) < 0.05*float64(finished) {
			t.Errorf("seed %d: filtered offender has %d of %d filtered in the last hour: below the carrier-filtering rule", seed, filtered, finished)
		}
	}

	f, err := New(Options{Subaccounts: 4, Now: clock, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Server.SetStatus(f.Storm, twiliofake.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	before := f.Server.MessageCount(f.Storm)
	steadyBefore := f.Server.MessageCount(f.Filtered)
	now = now.Add(10 * time.Minute)
	if err := f.Tick(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := f.Server.MessageCount(f.Storm); got != before {
		t.Errorf("a suspended subaccount sent %d messages", got-before)
	}
	if got := f.Server.MessageCount(f.Filtered); got <= steadyBefore {
		t.Errorf("an active subaccount sent nothing in a tick")
	}
}
