package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The Slack hold survives a reopen and is gone once cleared.
func TestSlackHold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	s := mustOpenPath(t, path)
	if h, err := s.SlackHold(); err != nil || h != (SlackHold{}) {
		t.Fatalf("SlackHold of a new database = %+v, %v; want none", h, err)
	}
	want := SlackHold{
		Until:    time.Date(2026, 11, 26, 22, 45, 0, 0, time.UTC),
		Cause:    "refused",
		Failures: 3,
		Config:   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	}
	if err := s.SetSlackHold(want); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpenPath(t, path)
	got, err := s.SlackHold()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hold after reopening (-want +got):\n%s", diff)
	}
	if err := s.SetSlackHold(SlackHold{}); err != nil {
		t.Fatal(err)
	}
	if h, err := s.SlackHold(); err != nil || h != (SlackHold{}) {
		t.Errorf("SlackHold after clearing = %+v, %v; want none", h, err)
	}
}
