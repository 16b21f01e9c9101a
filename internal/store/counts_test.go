package store

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/traffic"
)

// TestScanCounts: every account's five-minute buckets as Buckets returns
// them, samples left out, bounds applied as ScanBuckets applies them.
func TestScanCounts(t *testing.T) {
	s := MustOpen(t)
	accts := []string{testAccount(1), testAccount(2)}
	for a, acct := range accts {
		var msgs []traffic.Message
		for i := range 2 * 60 {
			m := testMessage(acct, 1000*a+i, testBase.Add(time.Duration(i)*time.Minute+time.Duration(a)*time.Second))
			switch i % 5 {
			case 0:
				m.Status, m.ErrorCode = "undelivered", 30007
			case 1:
				m.Direction, m.Status, m.Keyword = traffic.Inbound, "received", traffic.OptOut
			}
			msgs = append(msgs, m)
		}
		mustPut(t, s, acct, msgs...)
	}
	for _, r := range []struct{ from, to time.Time }{
		{testBase, testBase.Add(2 * time.Hour)},
		{testBase.Add(17 * time.Minute), testBase.Add(93 * time.Minute)},
		{testBase.Add(-time.Hour), testBase.Add(5 * time.Hour)},
	} {
		seen := 0
		err := s.ScanCounts(r.from, r.to, func(acct string, bs []traffic.Bucket) error {
			seen++
			want, err := s.Buckets(acct, r.from, r.to)
			if err != nil {
				return err
			}
			for i := range want {
				want[i].Samples = nil
			}
			if diff := cmp.Diff(want, bs); diff != "" {
				t.Errorf("ScanCounts %s [%v, %v) (-Buckets without samples +got):\n%s", acct, r.from, r.to, diff)
			}
			return nil
		})
		if err != nil || seen != len(accts) {
			t.Errorf("ScanCounts [%v, %v) visited %d accounts: %v", r.from, r.to, seen, err)
		}
	}
	stop := errors.New("stop")
	if err := s.ScanCounts(testBase, testBase.Add(time.Hour), func(string, []traffic.Bucket) error { return stop }); err != stop {
		t.Errorf("ScanCounts = %v, want fn's error", err)
	}
}
