package store

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// SyntheticAccount is one account of a synthetic database (WriteSynthetic).
type SyntheticAccount struct {
	Account  Account
	Coverage traffic.Coverage
	// Usage is stored by Day, as PutUsage stores it.
	Usage []traffic.Usage
	// UsagePoll is the bookkeeping of the account's "usage" stream.
	UsagePoll PollState
	// Buckets are the account's five-minute aggregates, samples included,
	// in any order and at most one per start. They are stored as given:
	// nothing checks that they could come from any set of messages.
	Buckets []traffic.Bucket
}

// syntheticChunk is how many accounts WriteSynthetic writes per transaction.
const syntheticChunk = 500

// WriteSynthetic builds synthetic aggregates for benchmarks: it creates a
// database at path holding the n accounts that gen returns for 0..n-1, with
// their coverage, usage, usage poll state and five-minute aggregates
// written straight into their hour records, in a few large transactions.
// A fleet's worth of history takes a minute this way, against hours through
// PutMessages, which is why benchmarks of other packages (actions' Judge)
// use it.
//
// The aggregates have no raw messages behind them, so Recount disagrees
// with them and a later PutMessages of the same messages would count them
// twice: never use it on a database that sentinel runs on. gen is called
// from several goroutines at once. The database is written to path+".tmp"
// and renamed into place, so an interrupted build leaves nothing at path;
// path must not exist.
func WriteSynthetic(path string, n int, gen func(i int) SyntheticAccount) (err error) {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("write synthetic %s: file exists", path)
	}
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("write synthetic %s: %w", path, err)
	}
	s, err := Open(tmp, Options{})
	if err != nil {
		return fmt.Errorf("write synthetic %s: %w", path, err)
	}
	defer func() {
		if s != nil {
			s.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	for lo := 0; lo < n; lo += syntheticChunk {
		accts := make([]syntheticRecords, min(syntheticChunk, n-lo))
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		errs := make([]error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(accts) && errs[w] == nil; i += workers {
					accts[i], errs[w] = syntheticAccount(gen(lo + i))
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("write synthetic %s: %w", path, err)
			}
		}
		// Keys in order, so that bbolt fills its pages as it goes.
		slices.SortFunc(accts, func(a, b syntheticRecords) int { return strings.Compare(a.Account.SID, b.Account.SID) })
		if err := s.db.Update(func(tx *bolt.Tx) error { return writeSynthetic(tx, accts) }); err != nil {
			return fmt.Errorf("write synthetic %s: %w", path, err)
		}
	}
	err = s.Close()
	s = nil
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write synthetic %s: %w", path, err)
	}
	return nil
}

// syntheticRecords is a SyntheticAccount with its hour records encoded.
type syntheticRecords struct {
	SyntheticAccount
	hours []time.Time // the hours of the records, ascending
	recs  [][]byte
}

func syntheticAccount(a SyntheticAccount) (syntheticRecords, error) {
	if err := checkSID(a.Account.SID); err != nil {
		return syntheticRecords{}, err
	}
	slots := make(map[int64]*[slotsPerHour]traffic.Bucket)
	for _, b := range a.Buckets {
		start := b.Start.UTC()
		if !start.Equal(traffic.BucketStart(start)) {
			return syntheticRecords{}, fmt.Errorf("account %s: bucket start %v not aligned", a.Account.SID, b.Start)
		}
		hour := start.Truncate(time.Hour)
		h := slots[hour.Unix()]
		if h == nil {
			h = new([slotsPerHour]traffic.Bucket)
			for i := range h {
				h[i].Start = hour.Add(time.Duration(i) * traffic.BucketWidth)
			}
			slots[hour.Unix()] = h
		}
		b.Start = start
		h[start.Sub(hour)/traffic.BucketWidth] = b
	}
	r := syntheticRecords{SyntheticAccount: a}
	for _, hour := range sortedKeys64(slots) {
		if v := encodeHour(slots[hour]); v != nil {
			r.hours = append(r.hours, time.Unix(hour, 0).UTC())
			r.recs = append(r.recs, v)
		}
	}
	r.Buckets = nil
	return r, nil
}

func writeSynthetic(tx *bolt.Tx, accts []syntheticRecords) error {
	aggs := tx.Bucket([]byte(bkAggregates))
	aggs.FillPercent = 0.9
	for _, a := range accts {
		sid := a.Account.SID
		acct := a.Account
		acct.FirstSeen, acct.StatusSince = utc(acct.FirstSeen), utc(acct.StatusSince)
		if err := putRec(tx, bkAccounts, []byte(sid), acct, encodeAccount); err != nil {
			return err
		}
		if err := putRec(tx, bkCoverage, []byte(sid), a.Coverage, encodeCoverage); err != nil {
			return err
		}
		for _, u := range a.Usage {
			if _, err := time.Parse(dayLayout, u.Day); err != nil {
				return fmt.Errorf("account %s: day %q: %w", sid, u.Day, err)
			}
			if err := putRec(tx, bkUsage, append(prefix(sid), u.Day...), u, encodeUsage); err != nil {
				return err
			}
		}
		if a.UsagePoll != (PollState{}) {
			if err := putRec(tx, bkPolls, pollKey(sid, "usage"), a.UsagePoll, encodePollState); err != nil {
				return err
			}
		}
		for i, hour := range a.hours {
			if err := aggs.Put(hourKey(sid, hour), a.recs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
