package store

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// Bulk reads and writes for the evaluator's cycle, which needs the same few
// records of every account once a minute. Each method is one transaction
// over every account, where reading the records one account at a time
// would be one transaction per account and record, and writing them one
// commit (and fsync) per account. The maps are the caller's.

// AllBreakers returns every stored breaker by account SID. An account
// without a stored breaker is absent; Breaker reports it as
// Breaker{State: "closed"}.
func (s *Store) AllBreakers() (map[string]Breaker, error) {
	out := make(map[string]Breaker)
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEachRec(tx, bkBreaker, decodeBreaker, func(k []byte, b Breaker) {
			out[string(k)] = b
		})
	})
	if err != nil {
		return nil, fmt.Errorf("all breakers: %w", err)
	}
	return out, nil
}

// AllCoverage returns every stored coverage by account SID. An account
// without one is absent (its Coverage is zero).
func (s *Store) AllCoverage() (map[string]traffic.Coverage, error) {
	out := make(map[string]traffic.Coverage)
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEachRec(tx, bkCoverage, decodeCoverage, func(k []byte, c traffic.Coverage) {
			out[string(k)] = c
		})
	})
	if err != nil {
		return nil, fmt.Errorf("all coverage: %w", err)
	}
	return out, nil
}

// AllRuleStates returns every account's rule states by account SID, then by
// rule name. An account without any is absent.
func (s *Store) AllRuleStates() (map[string]map[string]RuleState, error) {
	out := make(map[string]map[string]RuleState)
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEachRec(tx, bkRuleState, decodeRuleStates, func(k []byte, states map[string]RuleState) {
			out[string(k)] = states
		})
	})
	if err != nil {
		return nil, fmt.Errorf("all rule states: %w", err)
	}
	return out, nil
}

// PutRuleStatesBatch is PutRuleStates for many accounts in one transaction:
// each account's states replace all of its stored ones, and an empty map
// deletes them. Accounts not in states are left as they are. Nothing is
// written if any SID is invalid.
func (s *Store) PutRuleStatesBatch(states map[string]map[string]RuleState) error {
	if len(states) == 0 {
		return nil
	}
	// Sorted, so that bbolt writes its pages in key order.
	sids := slices.Sorted(maps.Keys(states))
	for _, sid := range sids {
		if err := checkSID(sid); err != nil {
			return fmt.Errorf("put rule states batch: %w", err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bkRuleState))
		for _, sid := range sids {
			var err error
			if len(states[sid]) == 0 {
				err = b.Delete([]byte(sid))
			} else {
				err = putRec(tx, bkRuleState, []byte(sid), states[sid], encodeRuleStates)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", sid, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put rule states batch: %w", err)
	}
	return nil
}

// AllPollStates returns the bookkeeping of stream ("messages", "usage", ...)
// of every account by account SID. Accounts never polled on stream are
// absent, and so are polls that belong to no account.
func (s *Store) AllPollStates(stream string) (map[string]PollState, error) {
	out := make(map[string]PollState)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bkPolls)).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sid, rest, ok := splitSID(k)
			if !ok || string(rest) != stream {
				continue // another stream, or a poll of no account ("/accounts")
			}
			p, err := decodeRec(v, decodePollState)
			if err != nil {
				return corrupt(bkPolls, k, err)
			}
			out[sid] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("all poll states %s: %w", stream, err)
	}
	return out, nil
}

// AllUsage returns every account's stored usage days from fromDay to toDay
// inclusive, oldest first, by account SID; an account without any in the
// range is absent. Usage is kept for every day, so the read seeks to the
// range in each account rather than reading all of its history.
func (s *Store) AllUsage(fromDay, toDay string) (map[string][]traffic.Usage, error) {
	out := make(map[string][]traffic.Usage)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bkUsage)).Cursor()
		k, _ := c.First()
		for k != nil {
			sid, _, ok := splitSID(k)
			if !ok {
				return corrupt(bkUsage, k, fmt.Errorf("%w: bad key", errCorrupt))
			}
			p := prefix(sid)
			last := append(slices.Clone(p), toDay...)
			var days []traffic.Usage
			var v []byte
			for k, v = c.Seek(append(slices.Clone(p), fromDay...)); bytes.HasPrefix(k, p) && bytes.Compare(k, last) <= 0; k, v = c.Next() {
				u, err := decodeRec(v, decodeUsage)
				if err != nil {
					return corrupt(bkUsage, k, err)
				}
				days = append(days, u)
			}
			if len(days) > 0 {
				out[sid] = days
			}
			k, _ = c.Seek(afterPrefix(sid))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("all usage: %w", err)
	}
	return out, nil
}

// forEachRec decodes every record of bucket and calls fn with its key,
// which is only valid until fn returns.
func forEachRec[T any](tx *bolt.Tx, bucket string, decode func(*dec) T, fn func(k []byte, r T)) error {
	return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
		r, err := decodeRec(v, decode)
		if err != nil {
			return corrupt(bucket, k, err)
		}
		fn(k, r)
		return nil
	})
}
