package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// wantHours builds what HourBuckets should return from Recount's five-minute
// buckets: each hour that lies in [from, to) with no cut strictly inside
// summed into one bucket whose samples are the MaxSamples smallest SIDs per
// key of the hour, every other hour as it is.
func wantHours(recount []traffic.Bucket, from, to time.Time, cuts []time.Time) []traffic.Bucket {
	whole := func(h time.Time) bool {
		if h.Before(from) || h.Add(time.Hour).After(to) {
			return false
		}
		for _, c := range cuts {
			if c.After(h) && c.Before(h.Add(time.Hour)) {
				return false
			}
		}
		return true
	}
	var out []traffic.Bucket
	for i := 0; i < len(recount); {
		h := recount[i].Start.Truncate(time.Hour)
		j := i
		for j < len(recount) && recount[j].Start.Before(h.Add(time.Hour)) {
			j++
		}
		if !whole(h) {
			out = append(out, recount[i:j]...)
			i = j
			continue
		}
		t := traffic.Bucket{Start: h, Width: time.Hour}
		for _, b := range recount[i:j] {
			t.Counts.Add(b.Counts)
			for k, sids := range b.Samples {
				if t.Samples == nil {
					t.Samples = map[int][]string{}
				}
				t.Samples[k] = append(t.Samples[k], sids...)
			}
		}
		for k, sids := range t.Samples {
			slices.Sort(sids)
			t.Samples[k] = sids[:min(len(sids), traffic.MaxSamples)]
		}
		out = append(out, t)
		i = j
	}
	return out
}

// checkHours asserts that HourBuckets of acct equals Recount merged by hour
// (wantHours), and that summing it over any window between from, to and
// the cuts gives what summing Buckets gives.
func checkHours(t testing.TB, s *Store, acct string, from, to time.Time, cuts []time.Time) []traffic.Bucket {
	t.Helper()
	got, err := s.HourBuckets(acct, from, to, cuts)
	if err != nil {
		t.Fatal(err)
	}
	recount, err := s.Recount(acct, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantHours(recount, from, to, cuts), got); diff != "" {
		t.Fatalf("HourBuckets(%s, %v, %v, %v) != Recount by hour (-recount +hours):\n%s", acct, from, to, cuts, diff)
	}
	bounds := append([]time.Time{traffic.CeilBucket(from), traffic.CeilBucket(to)}, cuts...)
	for _, a := range bounds {
		for _, b := range bounds {
			if !a.Before(b) || a.Before(from) || b.After(to) || !a.Equal(traffic.BucketStart(a)) {
				continue
			}
			for _, bk := range got {
				if bk.Straddles(a, b) {
					t.Fatalf("HourBuckets(%s, %v, %v, %v): bucket %v+%v straddles [%v, %v)", acct, from, to, cuts, bk.Start, bk.Width, a, b)
				}
			}
			if diff := cmp.Diff(traffic.Sum(recount, a, b), traffic.Sum(got, a, b)); diff != "" {
				t.Fatalf("Sum over [%v, %v) (-recount +hours):\n%s", a, b, diff)
			}
		}
	}
	return got
}

// checkScanHours asserts that ScanHourBuckets gives every account what
// HourBuckets gives, without samples, and examples equal to Examples over
// Buckets, for windows between the cuts and keys from every sample kind.
func checkScanHours(t testing.TB, s *Store, from, to time.Time, cuts []time.Time) {
	t.Helper()
	bounds := append([]time.Time{from, to}, cuts...)
	keys := [][]int{{30007}, {30003, 21610}, {traffic.SampleOptOut}, {traffic.SampleNoService, traffic.SampleFailed}}
	err := s.ScanHourBuckets(from, to, func(string) []time.Time { return cuts }, func(acct string, bs []traffic.Bucket, examples traffic.ExampleFunc) error {
		want, err := s.HourBuckets(acct, from, to, cuts)
		if err != nil {
			return err
		}
		for i := range want {
			want[i].Samples = nil
		}
		if diff := cmp.Diff(want, bs); diff != "" {
			t.Fatalf("ScanHourBuckets %s != HourBuckets without samples (-HourBuckets +scan):\n%s", acct, diff)
		}
		fine, err := s.Buckets(acct, from, to)
		if err != nil {
			return err
		}
		for _, a := range bounds {
			for _, b := range bounds {
				for i, k := range keys {
					n := 1 + 2*i
					if diff := cmp.Diff(traffic.Examples(fine, a, b, n, k...), examples(a, b, n, k...)); diff != "" {
						t.Fatalf("%s examples(%v, %v, %d, %v) (-Examples of Buckets +scan):\n%s", acct, a, b, n, k, diff)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// randomCuts returns up to three times in [from, to), most of them aligned
// to a bucket, as window starts are.
func randomCuts(rng *rand.Rand, from, to time.Time) []time.Time {
	var cuts []time.Time
	for range rng.IntN(4) {
		c := from.Add(time.Duration(rng.Int64N(int64(to.Sub(from)))))
		if rng.IntN(4) > 0 {
			c = traffic.BucketStart(c)
		}
		cuts = append(cuts, c)
	}
	return cuts
}

func TestHourBuckets(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	var msgs []traffic.Message
	for i := range 3 * 60 {
		m := testMessage(acct, i, testBase.Add(time.Duration(i)*time.Minute))
		switch i % 7 {
		case 0:
			m.Status, m.ErrorCode = "undelivered", 30007
		case 1:
			m.Status = "delivered"
		case 2:
			m.Direction, m.Status, m.Keyword = traffic.Inbound, "received", traffic.OptOut
		}
		msgs = append(msgs, m)
	}
	mustPut(t, s, acct, msgs...)
	end := testBase.Add(3 * time.Hour)
	now := testBase.Add(2*time.Hour + 32*time.Minute)

	got := checkHours(t, s, acct, testBase, end, nil)
	if len(got) != 3 || got[0].Width != time.Hour {
		t.Fatalf("HourBuckets without cuts = %d buckets, first of width %v; want 3 hours", len(got), got[0].Width)
	}
	if got, want := got[0].Samples[30007], []string{testSID(0), testSID(7), testSID(14)}; !cmp.Equal(got, want) {
		t.Errorf("hour samples for 30007 = %v, want the three smallest SIDs of the hour %v", got, want)
	}

	// An evaluation at now: windows start at now-1h and at testBase; the
	// read ends at now. The hour of each cut comes back in five-minute
	// buckets.
	cuts := []time.Time{traffic.WindowStart(now, time.Hour), testBase, now}
	got = checkHours(t, s, acct, testBase, now, cuts)
	var widths []time.Duration
	for _, b := range got {
		widths = append(widths, b.Span())
	}
	want := []time.Duration{time.Hour} // 10:00
	for range 12 + 7 {                 // 11:00-11:55, 12:00-12:30
		want = append(want, traffic.BucketWidth)
	}
	if diff := cmp.Diff(want, widths); diff != "" {
		t.Errorf("widths (-want +got):\n%s", diff)
	}

	// Unaligned bounds split their hours.
	checkHours(t, s, acct, testBase.Add(17*time.Minute), end.Add(-7*time.Minute), nil)
	// A cut on an hour boundary splits nothing.
	if got := checkHours(t, s, acct, testBase, end, []time.Time{testBase.Add(time.Hour)}); len(got) != 3 {
		t.Errorf("HourBuckets with a cut on the hour = %d buckets, want 3", len(got))
	}

	// The scan returns what HourBuckets returns, with each account's cuts,
	// but no samples: its examples give what Examples gives over Buckets.
	other := testAccount(2)
	mustPut(t, s, other, testMessage(other, 1000, testBase.Add(90*time.Minute)))
	n := 0
	var stale traffic.ExampleFunc
	err := s.ScanHourBuckets(testBase, end, func(a string) []time.Time {
		if a == acct {
			return cuts
		}
		return nil
	}, func(a string, bs []traffic.Bucket, examples traffic.ExampleFunc) error {
		n++
		var c []time.Time
		if a == acct {
			c = cuts
		}
		want, err := s.HourBuckets(a, testBase, end, c)
		if err != nil {
			return err
		}
		for i := range want {
			want[i].Samples = nil
		}
		if diff := cmp.Diff(want, bs); diff != "" {
			t.Errorf("ScanHourBuckets %s != HourBuckets without samples (-HourBuckets +scan):\n%s", a, diff)
		}
		fine, err := s.Buckets(a, testBase, end)
		if err != nil {
			return err
		}
		for _, w := range []struct {
			from, to time.Time
			n        int
			keys     []int
		}{
			{testBase, end, 5, []int{30007}},
			{testBase, end, 100, []int{30007, traffic.SampleOptOut, traffic.SampleFailed}},
			{testBase.Add(35 * time.Minute), now, 4, []int{traffic.SampleNoService}},
			{testBase.Add(-time.Hour), testBase.Add(61 * time.Minute), 7, []int{traffic.SampleOptOut, 30007}},
			{testBase.Add(2 * time.Hour), testBase.Add(2 * time.Hour), 3, []int{30007}},
		} {
			want := traffic.Examples(fine, w.from, w.to, w.n, w.keys...)
			if diff := cmp.Diff(want, examples(w.from, w.to, w.n, w.keys...)); diff != "" {
				t.Errorf("%s examples(%v, %v, %d, %v) (-Examples of Buckets +scan):\n%s", a, w.from, w.to, w.n, w.keys, diff)
			}
		}
		stale = examples
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("ScanHourBuckets visited %d accounts: %v", n, err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("examples called after the scan did not panic")
			}
		}()
		stale(testBase, end, 1, 30007)
	}()
	// Over some accounts only: those, in SID order, each once; an account
	// with nothing stored is not visited.
	var visited []string
	err = s.ScanHourBucketsOf([]string{other, testAccount(3), acct, other}, testBase, end, nil, func(a string, bs []traffic.Bucket, _ traffic.ExampleFunc) error {
		visited = append(visited, a)
		want, err := s.HourBuckets(a, testBase, end, nil)
		for i := range want {
			want[i].Samples = nil
		}
		if diff := cmp.Diff(want, bs); err != nil || diff != "" {
			t.Errorf("ScanHourBucketsOf %s != HourBuckets (-HourBuckets +scan), %v:\n%s", a, err, diff)
		}
		return nil
	})
	if want := []string{acct, other}; err != nil || !slices.Equal(visited, want) {
		t.Errorf("ScanHourBucketsOf visited %v, %v; want %v", visited, err, want)
	}
	if err := s.ScanHourBucketsOf([]string{}, testBase, end, nil, func(string, []traffic.Bucket, traffic.ExampleFunc) error {
		t.Error("ScanHourBucketsOf of no accounts visited one")
		return nil
	}); err != nil {
		t.Error(err)
	}
	stop := errors.New("stop")
	if err := s.ScanHourBuckets(testBase, end, nil, func(string, []traffic.Bucket, traffic.ExampleFunc) error { return stop }); err != stop {
		t.Errorf("ScanHourBuckets = %v, want fn's error", err)
	}
}

// encodeHourV1 returns slots in the hourV1 layout: no totals, no sample
// lengths.
func encodeHourV1(t testing.TB, slots *[slotsPerHour]traffic.Bucket) []byte {
	t.Helper()
	v := encodeHourAs(hourV1, slots)
	if v[0] != hourV1 {
		t.Fatalf("encodeHourAs(hourV1) wrote version %d", v[0])
	}
	return v
}

// TestHourV1 checks that hour records written before totals were stored
// still read, in both modes, and are rewritten with totals on the next
// change.
func TestHourV1(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	var msgs []traffic.Message
	for i := range 40 {
		// Final states: a version 1 record has no count of the messages
		// that can still change (see TestMigratePending).
		m := testMessage(acct, i, testBase.Add(time.Duration(i)*90*time.Second))
		m.Status = "delivered"
		if i%3 == 0 {
			m.Status, m.ErrorCode = "failed", 30007
		}
		msgs = append(msgs, m)
	}
	mustPut(t, s, acct, msgs...)
	k := hourKey(acct, testBase)
	err := s.db.Update(func(tx *bolt.Tx) error {
		aggs := tx.Bucket([]byte(bkAggregates))
		slots, err := decodeHour(testBase, aggs.Get(k))
		if err != nil {
			return err
		}
		return aggs.Put(k, encodeHourV1(t, &slots))
	})
	if err != nil {
		t.Fatal(err)
	}
	end := testBase.Add(time.Hour)
	checkRecount(t, s, acct, testBase, end)
	checkHours(t, s, acct, testBase, end, nil)
	checkHours(t, s, acct, testBase, end, []time.Time{testBase.Add(20 * time.Minute)})

	m := msgs[1]
	m.Status = "read"
	mustPut(t, s, acct, m)
	var v []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket([]byte(bkAggregates)).Get(k))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v[0] != hourV3 {
		t.Errorf("hour record after a change has version %d, want %d", v[0], hourV3)
	}
	checkRecount(t, s, acct, testBase, end)
	checkHours(t, s, acct, testBase, end, nil)
}

// TestHourTotalsCorrupt checks that totals that disagree with the slots are
// reported when the record is loaded for a change.
func TestHourTotalsCorrupt(t *testing.T) {
	var slots [slotsPerHour]traffic.Bucket
	for i := range slots {
		slots[i].Start = testBase.Add(time.Duration(i) * traffic.BucketWidth)
	}
	slots[3].Outbound = 2
	slots[7].Outbound = 1
	good := encodeHour(&slots)
	if _, err := decodeHour(testBase, good); err != nil {
		t.Fatalf("decodeHour = %v", err)
	}
	// The totals' Outbound is the byte after version, length and the
	// number of counts: 3 as a varint is 6; make it 4 (8).
	bad := bytes.Clone(good)
	if bad[3] != 6 {
		t.Fatalf("unexpected layout % x", good)
	}
	bad[3] = 8
	if _, err := decodeHour(testBase, bad); !errors.Is(err, errCorrupt) {
		t.Errorf("decodeHour with wrong totals = %v, want errCorrupt", err)
	}
	var r hourReader
	if _, err := r.appendHour(nil, testBase, []byte{hourV3 + 1, 1, 0}, testBase, testBase.Add(time.Hour), true); !errors.Is(err, errCorrupt) {
		t.Errorf("appendHour of an unknown version = %v, want errCorrupt", err)
	}
}
