package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
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
// Fleet is the poller's first cycle without the network: see fleetIngest.
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
	b.Run("Fleet", fleetIngest)
}

// fleetIngest stores the first cycle of a fleet, 200 accounts of 5,000 new
// messages each with random SIDs spread over 20 hours, into a fresh store:
// one PutMessages per account with its messages sorted by SID, as the
// poller's first cycle calls it. Besides msgs/s it reports the bytes the
// process wrote to storage (Linux /proc/self/io) and the size of the file,
// per cycle.
func fleetIngest(b *testing.B) {
	const accounts, perAccount = 200, 5000
	rng := rand.New(rand.NewPCG(1, 2))
	batches := make([][]traffic.Message, accounts)
	for a := range batches {
		batches[a] = fleetBatch(rng, testAccount(a), perAccount)
	}
	var written, size float64
	for b.Loop() {
		b.StopTimer()
		s := MustOpen(b)
		w := writeBytes(b)
		b.StartTimer()
		for a, msgs := range batches {
			if in, err := s.PutMessages(testAccount(a), msgs); err != nil || in.New != perAccount {
				b.Fatalf("PutMessages = %+v, %v", in, err)
			}
		}
		b.StopTimer()
		if w >= 0 {
			written += float64(writeBytes(b) - w)
		} else {
			written = -1
		}
		fi, err := os.Stat(s.path)
		if err != nil {
			b.Fatal(err)
		}
		size += float64(fi.Size())
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*accounts*perAccount)/b.Elapsed().Seconds(), "msgs/s")
	if written >= 0 {
		b.ReportMetric(written/float64(b.N)/(1<<20), "disk-write-MB")
	}
	b.ReportMetric(size/float64(b.N)/(1<<20), "file-MB")
}

// fleetBatch returns n new messages of acct as a first poll reads them:
// random SIDs, sorted, times in the 20 hours before testBase, mostly
// delivered, with some inbound, failed, opted-out and unbilled ones, to and
// from a pool of 2,000 numbers (their hashes, as the poller stores them).
func fleetBatch(rng *rand.Rand, acct string, n int) []traffic.Message {
	msgs := make([]traffic.Message, n)
	for i := range msgs {
		m := traffic.Message{
			SID:        fmt.Sprintf("SM%016x%016x", rng.Uint64(), rng.Uint64()),
			AccountSID: acct, Direction: traffic.OutboundAPI, Status: "delivered",
			Time:        testBase.Add(-time.Duration(rng.Int64N(int64(20 * time.Hour)))),
			PriceMicros: 7900, MessagingService: true,
			Peer: 1 + rng.Uint64N(2000)*0x9e3779b97f4a7c15, // spread like a hash
		}
		switch r := rng.IntN(100); {
		case r < 10:
			m.Direction, m.Status, m.PriceMicros = traffic.Inbound, "received", 0
			if r < 1 {
				m.Keyword = traffic.OptOut
			}
		case r < 15:
			m.Status, m.ErrorCode = "undelivered", 30003+4*(r%2)
		case r < 17:
			m.PriceMicros = 0
		case r < 20:
			m.MessagingService = false
		}
		msgs[i] = m
	}
	slices.SortFunc(msgs, func(x, y traffic.Message) int { return strings.Compare(x.SID, y.SID) })
	return msgs
}

// writeBytes returns the bytes this process has caused to be written to
// storage (Linux /proc/self/io write_bytes), or -1 where unknown.
func writeBytes(b *testing.B) int64 {
	b.Helper()
	io, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(io)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	return -1
}
