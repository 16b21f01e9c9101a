package store

import (
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// benchHour returns a plausible hour of aggregates for an account sending
// about 500 messages an hour: every fifth account without a Messaging
// Service, a few failures with error codes, the odd opt-out.
func benchHour(acct, h int, start time.Time) *[slotsPerHour]traffic.Bucket {
	var slots [slotsPerHour]traffic.Bucket
	for i := range slots {
		n := acct*7919 + h*12 + i
		b := &slots[i]
		b.Start = start.Add(time.Duration(i) * traffic.BucketWidth)
		b.Outbound, b.Finished, b.Inbound = 42, 40, 2
		b.Samples = map[int][]string{}
		if n%3 == 0 {
			b.Failed = 2
			b.Errors = map[int]int64{30003: 1, 30007: 1}
			b.Samples[30003] = []string{testSID(n)}
			b.Samples[30007] = []string{testSID(n + 1)}
			b.Samples[traffic.SampleFailed] = []string{testSID(n), testSID(n + 1)}
		}
		if acct%5 == 0 {
			b.NoService = 42
			b.Samples[traffic.SampleNoService] = []string{testSID(n + 2), testSID(n + 3), testSID(n + 4)}
		}
		if n%11 == 0 {
			b.OptOuts = 1
			b.Samples[traffic.SampleOptOut] = []string{testSID(n + 5)}
		}
	}
	return &slots
}

// BenchmarkBuckets24h reads 24 hours of buckets of every account: the
// evaluator's read per cycle. The database is built once, directly from
// hour records.
func BenchmarkBuckets24h(b *testing.B) {
	const accounts = 10000
	s := MustOpen(b)
	now := testBase.Add(48 * time.Hour).Add(32 * time.Minute)
	from := traffic.WindowStart(now, 24*time.Hour)
	first := from.Truncate(time.Hour)
	err := s.db.Update(func(tx *bolt.Tx) error {
		aggs := tx.Bucket([]byte(bkAggregates))
		aggs.FillPercent = 0.9 // keys are written in order
		for a := range accounts {
			for h := 0; !first.Add(time.Duration(h) * time.Hour).After(now); h++ {
				hour := first.Add(time.Duration(h) * time.Hour)
				if err := aggs.Put(hourKey(testAccount(a), hour), encodeHour(benchHour(a, h, hour))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	perAccount := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*accounts), "ns/account")
	}

	b.Run("Buckets", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for a := range accounts {
				bs, err := s.Buckets(testAccount(a), from, now)
				if err != nil || len(bs) != 24*12 {
					b.Fatalf("Buckets = %d buckets, %v", len(bs), err)
				}
			}
		}
		perAccount(b)
	})
	b.Run("ScanBuckets", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			err := s.ScanBuckets(from, now, func(_ string, bs []traffic.Bucket) error {
				n++
				var c traffic.Counts
				for _, b := range bs {
					c.Add(b.Counts)
				}
				return nil
			})
			if err != nil || n != accounts {
				b.Fatalf("ScanBuckets visited %d accounts: %v", n, err)
			}
		}
		perAccount(b)
	})
}

// BenchmarkPutMessages ingests pages of 1000 messages of one account: new
// ones, then the same ones changed (status, error and, for some, time).
func BenchmarkPutMessages(b *testing.B) {
	const page = 1000
	acct := testAccount(1)
	newPage := func(p int) []traffic.Message {
		msgs := make([]traffic.Message, page)
		for i := range msgs {
			msgs[i] = traffic.Message{
				SID: fmt.Sprintf("SM%016x%016x", p, i), AccountSID: acct, Direction: traffic.OutboundAPI,
				Status: "queued", Time: testBase.Add(time.Duration(p*page+i) * 7 * time.Second),
			}
		}
		return msgs
	}
	perSecond := func(b *testing.B) {
		b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("New", func(b *testing.B) {
		s := MustOpen(b)
		p := 0
		for b.Loop() {
			b.StopTimer()
			msgs := newPage(p)
			p++
			b.StartTimer()
			if in, err := s.PutMessages(acct, msgs); err != nil || in.New != page {
				b.Fatalf("PutMessages = %+v, %v", in, err)
			}
		}
		perSecond(b)
	})
	b.Run("Changed", func(b *testing.B) {
		s := MustOpen(b)
		const pages = 20
		for p := range pages {
			if _, err := s.PutMessages(acct, newPage(p)); err != nil {
				b.Fatal(err)
			}
		}
		statuses := []string{"sent", "delivered", "undelivered", "failed"}
		p := 0
		for b.Loop() {
			b.StopTimer()
			msgs := newPage(p % pages)
			for i := range msgs {
				m := &msgs[i]
				m.Status = statuses[(p/pages+i)%len(statuses)]
				if m.Status == "undelivered" {
					m.ErrorCode = 30003
				}
				if i%4 == 0 {
					m.Time = m.Time.Add(time.Duration(p/pages+1) * time.Minute)
				}
			}
			p++
			b.StartTimer()
			if in, err := s.PutMessages(acct, msgs); err != nil || in.Changed != page {
				b.Fatalf("PutMessages = %+v, %v", in, err)
			}
		}
		perSecond(b)
	})
}
