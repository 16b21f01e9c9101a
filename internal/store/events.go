package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// EventMemory is how long the id of a pushed event is remembered, so that
// a retry of it counts once. Twilio retries an Event Streams delivery for
// up to four hours.
const EventMemory = 5 * time.Hour

// Report is what one pushed event or status callback says about one
// message.
type Report struct {
	// ID is the event's id; empty for a status callback, which has none
	// (a repeat is then recognised by the message's state alone).
	ID string
	// Message is the message as the report knows it. For a message the
	// store holds, only its Status, ErrorCode and Updated are taken (and
	// the other party, a Messaging Service and a keyword where the stored
	// record lacks them); the rest (Time above all, which decides its
	// bucket) stays as read from the log. For a message the store does not
	// hold, it is stored as reported until a poll reads it.
	Message traffic.Message
}

// Reports are reports of one account's messages.
type Reports struct {
	Account string
	Reports []Report
}

// PutReports stores reports of messages, each batch of its account, in one
// transaction shared with the PutReports calls made at the same moment
// (bbolt's Batch: many small HTTP requests, one file sync), through the
// same upsert as PutMessages: aggregates stay equal to a recount, an older
// report never moves a message back (traffic.Merge), and the same event id
// counts once within EventMemory (Ingest.Duplicates). at is when the
// reports arrived. It returns what it did with each batch, in order.
func (s *Store) PutReports(batches []Reports, at time.Time) ([]Ingest, error) {
	for _, b := range batches {
		if err := checkSID(b.Account); err != nil {
			return nil, fmt.Errorf("put reports: %w", err)
		}
	}
	ins := make([]Ingest, len(batches))
	err := s.db.Batch(func(tx *bolt.Tx) error {
		clear(ins)
		seen, err := newEventIDs(tx, at)
		if err != nil {
			return err
		}
		for i, b := range batches {
			if err := s.putReports(tx, seen, b, &ins[i]); err != nil {
				return fmt.Errorf("%s: %w", b.Account, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("put reports: %w", err)
	}
	return ins, nil
}

func (s *Store) putReports(tx *bolt.Tx, seen *eventIDs, b Reports, in *Ingest) error {
	msgs := make([]traffic.Message, 0, len(b.Reports))
	for _, r := range b.Reports {
		if r.ID != "" {
			dup, err := seen.add(r.ID)
			if err != nil {
				return err
			}
			if dup {
				in.Duplicates++
				continue
			}
		}
		msgs = append(msgs, r.Message)
	}
	if len(msgs) == 0 {
		return nil
	}
	w, err := newIngest(tx, b.Account, len(msgs), s.consent)
	if err != nil {
		return err
	}
	return w.upsert(msgs, sidOrder(msgs), in, fromReport)
}

// fromReport is the message stored as old, as the report r updates it.
func fromReport(old []byte, r traffic.Message) (traffic.Message, error) {
	m, err := decodeMessage(old)
	if err != nil {
		return traffic.Message{}, err
	}
	m.Status, m.ErrorCode, m.Updated = r.Status, r.ErrorCode, r.Updated
	if m.Peer == 0 {
		m.Peer = r.Peer
	}
	m.MessagingService = m.MessagingService || r.MessagingService
	if m.Keyword == traffic.NoKeyword {
		m.Keyword = r.Keyword
	}
	return m, nil
}

// eventIDs is the memory of pushed event ids, in one bucket per hour of
// arrival under bkEvents, so that forgetting them is dropping whole
// buckets (PruneEvents).
type eventIDs struct {
	root  *bolt.Bucket
	hours []*bolt.Bucket // the remembered hours, newest first; nil where absent
	now   *bolt.Bucket   // this hour's, created on first use
	hour  []byte
}

func newEventIDs(tx *bolt.Tx, at time.Time) (*eventIDs, error) {
	root := tx.Bucket([]byte(bkEvents))
	if root == nil {
		return nil, errors.New("no events bucket")
	}
	e := &eventIDs{root: root, hour: hourName(at)}
	h := at.UTC().Truncate(time.Hour)
	for i := 0; time.Duration(i)*time.Hour <= EventMemory; i++ {
		e.hours = append(e.hours, root.Bucket(hourName(h.Add(-time.Duration(i)*time.Hour))))
	}
	return e, nil
}

func hourName(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UTC().Truncate(time.Hour).Unix()))
}

// add remembers id and reports whether it was remembered already.
func (e *eventIDs) add(id string) (bool, error) {
	for _, b := range e.hours {
		if b != nil && b.Get([]byte(id)) != nil {
			return true, nil
		}
	}
	if e.now == nil {
		b, err := e.root.CreateBucketIfNotExists(e.hour)
		if err != nil {
			return false, err
		}
		e.now, e.hours[0] = b, b
	}
	return false, e.now.Put([]byte(id), []byte{})
}

// PruneEvents forgets the event ids that arrived more than EventMemory
// before now, and returns how many hours of them it dropped.
func (s *Store) PruneEvents(now time.Time) (int, error) {
	limit := hourName(now.Add(-EventMemory - time.Hour))
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket([]byte(bkEvents))
		var old [][]byte
		c := root.Cursor()
		for k, v := c.First(); k != nil && string(k) <= string(limit); k, v = c.Next() {
			if v == nil {
				old = append(old, append([]byte(nil), k...))
			}
		}
		for _, k := range old {
			if err := root.DeleteBucket(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return n, nil
}
