package store

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// ---- coverage

func encodeCoverage(e *enc, c traffic.Coverage) {
	e.time(c.From)
	e.time(c.Until)
}

func decodeCoverage(d *dec) traffic.Coverage {
	return traffic.Coverage{From: d.time(), Until: d.time()}
}

// Coverage returns the stretch of accountSID's message log known to be
// ingested; the zero Coverage if none is stored.
func (s *Store) Coverage(accountSID string) (traffic.Coverage, error) {
	var c traffic.Coverage
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, _, err = getRec(tx, bkCoverage, []byte(accountSID), decodeCoverage)
		return err
	})
	if err != nil {
		return traffic.Coverage{}, fmt.Errorf("coverage %s: %w", accountSID, err)
	}
	return c, nil
}

// SetCoverage replaces accountSID's coverage. Like RecordPoll and PutUsage,
// it commits together with the same writes of other accounts made at the
// same moment (bbolt's Batch): a cycle over thousands of quiet accounts
// syncs the file a few hundred times, not twice per account.
func (s *Store) SetCoverage(accountSID string, c traffic.Coverage) error {
	err := checkSID(accountSID)
	if err == nil {
		err = s.db.Batch(func(tx *bolt.Tx) error {
			return putRec(tx, bkCoverage, []byte(accountSID), c, encodeCoverage)
		})
	}
	if err != nil {
		return fmt.Errorf("set coverage %s: %w", accountSID, err)
	}
	return nil
}

// ---- polls

// PollState is the bookkeeping of one account's stream of polls.
type PollState struct {
	LastAttempt, LastSuccess time.Time
	// Failures counts consecutive failed polls.
	Failures int
	// LastError is the last failure, short and secret-free; empty after a
	// success.
	LastError string
}

// maxPollError bounds the error text kept per stream.
const maxPollError = 256

func encodePollState(e *enc, p PollState) {
	e.time(p.LastAttempt)
	e.time(p.LastSuccess)
	e.int(p.Failures)
	e.str(p.LastError)
}

func decodePollState(d *dec) PollState {
	return PollState{LastAttempt: d.time(), LastSuccess: d.time(), Failures: d.int(), LastError: d.str()}
}

func pollKey(accountSID, stream string) []byte {
	return append(prefix(accountSID), stream...)
}

// RecordPoll records a poll of accountSID's stream ("messages", "usage" or
// "accounts") that ended at `at` with err (nil for success). accountSID may
// be empty for polls that belong to no account. The caller keeps secrets
// out of err; the store keeps at most 256 bytes of it.
func (s *Store) RecordPoll(accountSID, stream string, at time.Time, err error) error {
	if stream == "" || bytes.ContainsRune([]byte(accountSID), '/') {
		return fmt.Errorf("record poll %s %q: invalid account or stream", accountSID, stream)
	}
	key := pollKey(accountSID, stream)
	uerr := s.db.Batch(func(tx *bolt.Tx) error {
		p, _, gerr := getRec(tx, bkPolls, key, decodePollState)
		if gerr != nil {
			return gerr
		}
		p.LastAttempt = utc(at)
		if err == nil {
			p.LastSuccess, p.Failures, p.LastError = p.LastAttempt, 0, ""
		} else {
			p.Failures++
			p.LastError = truncate(err.Error(), maxPollError)
		}
		return putRec(tx, bkPolls, key, p, encodePollState)
	})
	if uerr != nil {
		return fmt.Errorf("record poll %s %s: %w", accountSID, stream, uerr)
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// PollState returns the bookkeeping of accountSID's stream; zero if none.
func (s *Store) PollState(accountSID, stream string) (PollState, error) {
	var p PollState
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		p, _, err = getRec(tx, bkPolls, pollKey(accountSID, stream), decodePollState)
		return err
	})
	if err != nil {
		return PollState{}, fmt.Errorf("poll state %s %s: %w", accountSID, stream, err)
	}
	return p, nil
}

// ---- usage

func encodeUsage(e *enc, u traffic.Usage) {
	e.str(u.Day)
	e.float(u.TotalPrice)
	e.varint(u.SMS)
	e.varint(u.MMS)
	e.time(u.AsOf)
	e.str(u.Currency)
}

func decodeUsage(d *dec) traffic.Usage {
	u := traffic.Usage{Day: d.str(), TotalPrice: d.float(), SMS: d.varint(), MMS: d.varint(), AsOf: d.time()}
	if d.more() { // added after the first release
		u.Currency = d.str()
	}
	return u
}

const dayLayout = "2006-01-02"

// PutUsage upserts accountSID's usage days by Day ("2006-01-02").
func (s *Store) PutUsage(accountSID string, days []traffic.Usage) error {
	err := checkSID(accountSID)
	if err == nil {
		err = s.db.Batch(func(tx *bolt.Tx) error {
			for _, u := range days {
				if _, err := time.Parse(dayLayout, u.Day); err != nil {
					return fmt.Errorf("day %q: %w", u.Day, err)
				}
				if err := putRec(tx, bkUsage, append(prefix(accountSID), u.Day...), u, encodeUsage); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("put usage %s: %w", accountSID, err)
	}
	return nil
}

// Usage returns accountSID's stored usage days from fromDay to toDay
// inclusive, oldest first.
func (s *Store) Usage(accountSID string, fromDay, toDay string) ([]traffic.Usage, error) {
	var out []traffic.Usage
	err := s.db.View(func(tx *bolt.Tx) error {
		p := prefix(accountSID)
		last := append(slices.Clone(p), toDay...)
		c := tx.Bucket([]byte(bkUsage)).Cursor()
		for k, v := c.Seek(append(slices.Clone(p), fromDay...)); bytes.HasPrefix(k, p) && bytes.Compare(k, last) <= 0; k, v = c.Next() {
			u, err := decodeRec(v, decodeUsage)
			if err != nil {
				return corrupt(bkUsage, k, err)
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage %s: %w", accountSID, err)
	}
	return out, nil
}

// ---- rule state

// RuleState is a policy rule's evaluation state for one account; it
// survives restarts so that `for` durations keep counting.
type RuleState struct {
	// Consecutive counts consecutive evaluations over the trip threshold.
	Consecutive int
	Firing      bool
	// Since is when Firing became true.
	Since     time.Time
	LastValue float64
	LastEval  time.Time
	// Advanced is when Consecutive last went up.
	Advanced time.Time
}

func encodeRuleStates(e *enc, states map[string]RuleState) {
	e.uvarint(uint64(len(states)))
	names := slices.Sorted(maps.Keys(states))
	advanced := false
	for _, name := range names {
		r := states[name]
		e.str(name)
		e.int(r.Consecutive)
		e.bool(r.Firing)
		e.time(r.Since)
		e.float(r.LastValue)
		e.time(r.LastEval)
		advanced = advanced || !r.Advanced.IsZero()
	}
	// Optional, after the list (records written before it existed have
	// none): each state's Advanced, in the same order.
	if advanced {
		for _, name := range names {
			e.time(states[name].Advanced)
		}
	}
}

func decodeRuleStates(d *dec) map[string]RuleState {
	n := d.count()
	states := make(map[string]RuleState, n)
	names := make([]string, 0, n)
	for range n {
		name := d.str()
		names = append(names, name)
		states[name] = RuleState{Consecutive: d.int(), Firing: d.bool(), Since: d.time(), LastValue: d.float(), LastEval: d.time()}
	}
	if d.more() {
		for _, name := range names {
			r := states[name]
			r.Advanced = d.time()
			states[name] = r
		}
	}
	return states
}

// RuleStates returns accountSID's rule states by rule name; an empty map if
// none are stored.
func (s *Store) RuleStates(accountSID string) (map[string]RuleState, error) {
	var states map[string]RuleState
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		states, _, err = getRec(tx, bkRuleState, []byte(accountSID), decodeRuleStates)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rule states %s: %w", accountSID, err)
	}
	if states == nil {
		states = map[string]RuleState{}
	}
	return states, nil
}

// PutRuleStates replaces all of accountSID's rule states with states: a rule
// that is not in states loses its state.
func (s *Store) PutRuleStates(accountSID string, states map[string]RuleState) error {
	err := checkSID(accountSID)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			if len(states) == 0 {
				return tx.Bucket([]byte(bkRuleState)).Delete([]byte(accountSID))
			}
			return putRec(tx, bkRuleState, []byte(accountSID), states, encodeRuleStates)
		})
	}
	if err != nil {
		return fmt.Errorf("put rule states %s: %w", accountSID, err)
	}
	return nil
}

// ---- spend days

// MarkSpendDays records that a spend rule fired for accountSID on each of
// days ("2006-01-02", UTC): the spend-spike baseline leaves those days out,
// so that an offence does not raise its own bar.
func (s *Store) MarkSpendDays(accountSID string, days ...string) error {
	err := checkSID(accountSID)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, day := range days {
				if _, err := time.Parse(dayLayout, day); err != nil {
					return fmt.Errorf("day %q: %w", day, err)
				}
				if err := tx.Bucket([]byte(bkSpendDays)).Put(append(prefix(accountSID), day...), []byte{}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("mark spend days %s: %w", accountSID, err)
	}
	return nil
}

// AllSpendDays returns, by account SID, the days from fromDay to toDay
// inclusive on which a spend rule fired.
func (s *Store) AllSpendDays(fromDay, toDay string) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bkSpendDays)).ForEach(func(k, _ []byte) error {
			sid, day, ok := splitSID(k)
			if !ok {
				return corrupt(bkSpendDays, k, fmt.Errorf("%w: bad key", errCorrupt))
			}
			if d := string(day); d >= fromDay && d <= toDay {
				if out[sid] == nil {
					out[sid] = map[string]bool{}
				}
				out[sid][d] = true
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spend days: %w", err)
	}
	return out, nil
}
