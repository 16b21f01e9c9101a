package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// Consent records decide whether an inbound opt-out counts (traffic.Ignored).
// One number texting STOP thirteen times is one opt-out, and a STOP from a
// number the subaccount never messaged says nothing about its list (a
// competitor can text STOP to any number). So, per account and number —
// the number's keyed hash (traffic.Peers), never the number — the store
// keeps:
//
//   - when the account last sent to it (to the second; written only when it
//     moves by an hour or more, so a busy recipient costs no write per
//     message);
//   - the earliest and latest opt-out from it that counted;
//   - up to maxPending opt-outs from it that were unsolicited, so that an
//     outbound message read later (a backfill reads newest first, a STOP
//     before the message it answers) can make them count after all.
//
// An opt-out from number n at time t counts when the account sent to n at
// or after t-W (W, the consent window, is the raw message retention: every
// rule window fits in it) and no counted opt-out from n lies within W of t;
// within W it is Repeated, and without the outbound message Unsolicited.
// So in any window no longer than W a number counts at most once. An
// opt-out without a number (masked by redaction) counts: it cannot be
// matched, and not counting it would let redaction hide opt-outs.
//
// The decision is made when the opt-out is first stored and kept with the
// message (traffic.Merge), so aggregates stay a recount of the stored
// messages. Records whose every time is before the prune horizon are
// pruned with the messages.

// defaultConsentWindow is Options.ConsentWindow when it is zero: the
// daemon's default raw retention.
const defaultConsentWindow = 7 * 24 * time.Hour

// maxPending bounds the unsolicited opt-outs kept per number.
const maxPending = 4

// consentRec is one account's record of one number.
type consentRec struct {
	lastOut     int64 // Unix seconds of the last message sent to the number; 0 none
	storedOut   int64 // lastOut as stored, to write only when it moved an hour
	first, last int64 // Unix seconds of the earliest and latest counted opt-out; 0 none
	pending     []pendingOptOut
	dirty       bool
}

type pendingOptOut struct {
	sid string
	at  int64 // Unix seconds
}

func (r *consentRec) empty() bool { return r.lastOut == 0 && r.first == 0 && len(r.pending) == 0 }

func encodeConsent(e *enc, r *consentRec) {
	e.varint(r.lastOut)
	e.varint(r.first)
	e.varint(r.last)
	e.uvarint(uint64(len(r.pending)))
	for _, p := range r.pending {
		e.str(p.sid)
		e.varint(p.at)
	}
}

func decodeConsent(d *dec) *consentRec {
	r := &consentRec{lastOut: d.varint(), first: d.varint(), last: d.varint()}
	r.storedOut = r.lastOut
	n := d.count()
	for range n {
		r.pending = append(r.pending, pendingOptOut{sid: d.str(), at: d.varint()})
	}
	return r
}

func consentKey(account string, peer uint64) []byte {
	return binary.BigEndian.AppendUint64(prefix(account), peer)
}

// consentIndex is one ingest's view of an account's consent records.
type consentIndex struct {
	b       *bolt.Bucket
	account string
	window  int64 // seconds
	recs    map[uint64]*consentRec
}

func newConsentIndex(tx *bolt.Tx, account string, window time.Duration) consentIndex {
	if window <= 0 {
		window = defaultConsentWindow
	}
	return consentIndex{b: tx.Bucket([]byte(bkConsent)), account: account,
		window: int64(window / time.Second), recs: map[uint64]*consentRec{}}
}

// load reads the records of peers (in any order, repeats allowed) with
// one cursor walking the account's records in key order, as ingest.stored
// does for messages: a first poll of a busy account reads thousands of
// numbers, and a lookup each would cost a tree descent each.
func (c *consentIndex) load(peers []uint64) error {
	slices.Sort(peers)
	peers = slices.Compact(peers)
	cur := c.b.Cursor()
	var k, v []byte
	for n, p := range peers {
		if _, ok := c.recs[p]; ok {
			continue
		}
		key := consentKey(c.account, p)
		if n == 0 || k == nil || bytes.Compare(k, key) > 0 {
			k, v = cur.Seek(key)
		}
		for steps := 0; k != nil && bytes.Compare(k, key) < 0; steps++ {
			if steps == maxSteps {
				k, v = cur.Seek(key)
				break
			}
			k, v = cur.Next()
		}
		r := &consentRec{}
		if bytes.Equal(k, key) {
			var err error
			if r, err = decodeRec(v, decodeConsent); err != nil {
				return corrupt(bkConsent, k, err)
			}
		}
		c.recs[p] = r
	}
	return nil
}

// rec returns the record of peer, loading it on first use.
func (c *consentIndex) rec(peer uint64) (*consentRec, error) {
	if r, ok := c.recs[peer]; ok {
		return r, nil
	}
	r := &consentRec{}
	k := consentKey(c.account, peer)
	if v := c.b.Get(k); v != nil {
		var err error
		if r, err = decodeRec(v, decodeConsent); err != nil {
			return nil, corrupt(bkConsent, k, err)
		}
	}
	c.recs[peer] = r
	return r, nil
}

// outbound notes a message sent to peer at t.
func (c *consentIndex) outbound(peer uint64, t time.Time) error {
	r, err := c.rec(peer)
	if err != nil {
		return err
	}
	if s := t.Unix(); s > r.lastOut {
		r.lastOut = s
		if r.storedOut == 0 || r.lastOut-r.storedOut >= int64(time.Hour/time.Second) || len(r.pending) > 0 {
			r.dirty = true
		}
	}
	return nil
}

// judge decides whether the opt-out m, kept for the first time, counts.
func (c *consentIndex) judge(m *traffic.Message) (traffic.Ignored, error) {
	if m.Peer == 0 {
		return traffic.Counted, nil
	}
	r, err := c.rec(m.Peer)
	if err != nil {
		return 0, err
	}
	t := m.Time.Unix()
	switch {
	case r.lastOut == 0 || r.lastOut < t-c.window:
		if !slices.ContainsFunc(r.pending, func(p pendingOptOut) bool { return p.sid == m.SID }) {
			r.pending = append(r.pending, pendingOptOut{m.SID, t})
			slices.SortFunc(r.pending, func(a, b pendingOptOut) int { return int(a.at - b.at) })
			if len(r.pending) > maxPending {
				r.pending = slices.Delete(r.pending, 0, len(r.pending)-maxPending) // keep the newest
			}
			r.dirty = true
		}
		return traffic.Unsolicited, nil
	case r.first != 0 && t >= r.first-c.window && t <= r.last+c.window:
		return traffic.Repeated, nil
	}
	if r.first == 0 || t < r.first {
		r.first = t
	}
	if t > r.last {
		r.last = t
	}
	r.dirty = true
	return traffic.Counted, nil
}

// solicited removes from the records this ingest touched the unsolicited
// opt-outs that an outbound message now covers, and returns them, by SID.
func (c *consentIndex) solicited() []pendingOptOut {
	var out []pendingOptOut
	for _, r := range c.recs {
		if len(r.pending) == 0 || r.lastOut == 0 {
			continue
		}
		keep := r.pending[:0]
		for _, p := range r.pending {
			if r.lastOut >= p.at-c.window {
				out = append(out, p)
				r.dirty = true
			} else {
				keep = append(keep, p)
			}
		}
		r.pending = keep
	}
	slices.SortFunc(out, func(a, b pendingOptOut) int { return bytes.Compare([]byte(a.sid), []byte(b.sid)) })
	return out
}

// flush writes the records that changed, in key order.
func (c *consentIndex) flush() error {
	peers := make([]uint64, 0, len(c.recs))
	for p, r := range c.recs {
		if r.dirty {
			peers = append(peers, p)
		}
	}
	slices.Sort(peers)
	c.b.FillPercent = ingestFill
	for _, p := range peers {
		r := c.recs[p]
		k := consentKey(c.account, p)
		var err error
		if r.empty() {
			err = c.b.Delete(k)
		} else {
			e := enc{b: make([]byte, 0, 32)}
			e.byte(recordV1)
			encodeConsent(&e, r)
			err = c.b.Put(k, e.b)
		}
		if err != nil {
			return fmt.Errorf("consent %s: %w", c.account, err)
		}
		r.dirty, r.storedOut = false, r.lastOut
	}
	return nil
}

// pruneConsent drops, from up to pruneChunk consent records from resume
// on, what lies wholly before before (Unix seconds): a record none of whose
// times reaches it is deleted, older unsolicited opt-outs are forgotten. It
// returns where to resume, nil when done.
func pruneConsent(b *bolt.Bucket, before int64, resume []byte) (next []byte, err error) {
	type change struct {
		k, v []byte // v nil: delete
	}
	var changes []change
	c := b.Cursor()
	n := 0
	k, v := c.Seek(resume)
	for ; k != nil && n < pruneChunk; k, v = c.Next() {
		n++
		r, err := decodeRec(v, decodeConsent)
		if err != nil {
			return nil, corrupt(bkConsent, k, err)
		}
		keep := r.pending[:0]
		for _, p := range r.pending {
			if p.at >= before {
				keep = append(keep, p)
			}
		}
		changed := len(keep) != len(r.pending)
		r.pending = keep
		if r.first != 0 && r.last < before {
			r.first, r.last, changed = 0, 0, true
		}
		if r.lastOut != 0 && r.lastOut < before {
			r.lastOut, changed = 0, true
		}
		switch {
		case r.empty():
			changes = append(changes, change{k: bytes.Clone(k)})
		case changed:
			e := enc{b: make([]byte, 0, 32)}
			e.byte(recordV1)
			encodeConsent(&e, r)
			changes = append(changes, change{bytes.Clone(k), e.b})
		}
	}
	if k != nil {
		next = bytes.Clone(k)
	}
	for _, ch := range changes {
		if ch.v == nil {
			err = b.Delete(ch.k)
		} else {
			err = b.Put(ch.k, ch.v)
		}
		if err != nil {
			return nil, err
		}
	}
	return next, nil
}
