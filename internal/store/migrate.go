package store

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// recountRetained rebuilds the aggregates of every bucket from the prune
// horizon on from the raw messages, which are all there. Version 3 added
// counts that older records lack (the messages that can still change, the
// opt-outs that did not count, unknown statuses): read as zero, they would
// hide a pending message from the poller's re-read. Buckets before the
// horizon keep their counts: their messages are gone, and nothing there can
// still change.
func recountRetained(tx *bolt.Tx) error {
	h, err := horizon(tx)
	if err != nil {
		return err
	}
	type hourRef struct {
		account string
		hour    int64 // Unix seconds
	}
	rebuilt := map[hourRef]*[slotsPerHour]traffic.Bucket{}
	err = tx.Bucket([]byte(bkMessages)).ForEach(func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil {
			return corrupt(bkMessages, k, err)
		}
		start := traffic.BucketStart(m.Time)
		if start.Before(traffic.BucketStart(h)) {
			return nil
		}
		hour := start.Truncate(time.Hour)
		ref := hourRef{m.AccountSID, hour.Unix()}
		slots := rebuilt[ref]
		if slots == nil {
			slots = new([slotsPerHour]traffic.Bucket)
			for i := range slots {
				slots[i].Start = hour.Add(time.Duration(i) * traffic.BucketWidth)
			}
			rebuilt[ref] = slots
		}
		b := &slots[start.Sub(hour)/traffic.BucketWidth]
		b.Counts.Add(traffic.Contribution(m))
		for _, key := range traffic.SampleKeys(m) {
			addSample(b, key, m.SID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	aggs := tx.Bucket([]byte(bkAggregates))
	from := traffic.BucketStart(h)
	// Existing records from the horizon on: rebuilt, or emptied.
	type change struct {
		k, v []byte
	}
	var changes []change
	err = aggs.ForEach(func(k, v []byte) error {
		account, rest, ok := splitSID(k)
		if !ok || len(rest) != 8 {
			return corrupt(bkAggregates, k, fmt.Errorf("%w: bad key", errCorrupt))
		}
		hour := time.Unix(readT8(rest), 0).UTC()
		if !hour.Add(time.Hour).After(from) {
			return nil // wholly before the horizon
		}
		ref := hourRef{account, hour.Unix()}
		slots := rebuilt[ref]
		delete(rebuilt, ref)
		if slots == nil {
			slots = new([slotsPerHour]traffic.Bucket)
			for i := range slots {
				slots[i].Start = hour.Add(time.Duration(i) * traffic.BucketWidth)
			}
		}
		if hour.Before(from) {
			// The hour of the horizon: its slots before it stay.
			old, err := decodeHour(hour, v)
			if err != nil {
				return corrupt(bkAggregates, k, err)
			}
			for i := range old {
				if old[i].Start.Before(from) {
					slots[i] = old[i]
				}
			}
		}
		changes = append(changes, change{bytes.Clone(k), encodeHour(slots)})
		return nil
	})
	if err != nil {
		return err
	}
	for ref, slots := range rebuilt { // hours with messages but no record
		changes = append(changes, change{hourKey(ref.account, time.Unix(ref.hour, 0).UTC()), encodeHour(slots)})
	}
	for _, c := range changes {
		var err error
		if c.v == nil {
			err = aggs.Delete(c.k)
		} else {
			err = aggs.Put(c.k, c.v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
