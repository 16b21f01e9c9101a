package store

import (
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// ScanCounts is ScanBuckets without the samples: every account's non-empty
// five-minute buckets that start in [from, to), in one read transaction, in
// order of account SID. It is for reads that need the counts at full
// resolution over a long stretch and no example SIDs, such as a backtest,
// which replays a week minute by minute: decoding and copying the samples
// is most of what a read of the aggregates costs. fn's buckets are reused
// for the next account, as ScanBuckets' are, and fn must not write to the
// store.
func (s *Store) ScanCounts(from, to time.Time, fn func(accountSID string, buckets []traffic.Bucket) error) error {
	from, to = from.UTC(), to.UTC()
	read := func(c *bolt.Cursor, r *hourReader, account string, dst []traffic.Bucket) ([]traffic.Bucket, error) {
		err := eachHour(c, account, from, to, func(hour time.Time, v []byte) (err error) {
			dst, err = r.appendHour(dst, hour, v, from, to, false)
			return err
		})
		return dst, err
	}
	return s.scan("scan counts", read, fn)
}
