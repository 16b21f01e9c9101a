package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// Ingest counts what PutMessages did with the messages it was given.
type Ingest struct {
	New, Changed, Unchanged int
	// OptOuts counts the opt-outs first kept in this call that count;
	// Repeated and Unsolicited those that do not (see traffic.Ignored).
	// Reclassified counts earlier unsolicited opt-outs that an outbound
	// message in this call showed were solicited after all.
	OptOuts, Repeated, Unsolicited, Reclassified int
	// Duplicates counts reports whose event id was seen before
	// (PutReports): not stored again.
	Duplicates int
	// MissedNew and MissedStatus count, for ReconcileMessages, the
	// messages last updated before its cutoff that the read was the first
	// to store, or whose status it was the first to see: what pushed
	// events should have brought.
	MissedNew, MissedStatus int
}

// msgKey is a message's key: its account's SID, "/" and its own, so that
// an account's messages are contiguous.
func msgKey(account, sid string) []byte {
	return append(prefix(account), sid...)
}

// hourKey is the key of an account's aggregates for the hour that starts at hour.
func hourKey(account string, hour time.Time) []byte {
	return appendT8(prefix(account), hour.Unix())
}

// nanos returns t.UnixNano, clamped to the int64 range, for range bounds
// such as the zero time.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// validTime reports whether t can be stored: UnixNano covers 1678 to 2262.
func validTime(t time.Time) bool {
	return !t.IsZero() && time.Unix(0, t.UnixNano()).Equal(t)
}

// horizon returns the prune horizon: the latest `before` Prune was given.
func horizon(tx *bolt.Tx) (time.Time, error) {
	v := tx.Bucket([]byte(bkMeta)).Get([]byte(keyHorizon))
	switch len(v) {
	case 0:
		return time.Time{}, nil
	case 8:
		return time.Unix(0, readT8(v)).UTC(), nil
	}
	return time.Time{}, corrupt(bkMeta, []byte(keyHorizon), fmt.Errorf("%w: %d bytes", errCorrupt, len(v)))
}

// PutMessages upserts msgs, all of accountSID, by SID in one transaction and
// adjusts that account's bucket aggregates and samples so that they always
// equal a recount of the raw messages. A message whose AccountSID is empty is
// taken to be accountSID's. A message that is stored already and has not
// changed is counted Unchanged and not written; so is a message that is not
// stored and whose Time is before the prune horizon (see the package doc).
// Messages are stored in SID order, and of two with the same SID the later
// one wins; msgs itself is left as it is.
func (s *Store) PutMessages(accountSID string, msgs []traffic.Message) (Ingest, error) {
	return s.putMessages(accountSID, msgs, window{})
}

// ReconcileMessages is PutMessages for a read that checks what pushed
// events brought: it also counts (Ingest.MissedNew, MissedStatus) the
// messages last updated in [pushedFrom, pushedBefore) that no event had
// stored or brought to the status read. Changes after pushedBefore may
// simply not have arrived yet; those before pushedFrom were made while
// nothing was pushed. Only statuses that events report count
// (traffic.Pushed): Event Streams has no event for "sending", for one.
func (s *Store) ReconcileMessages(accountSID string, msgs []traffic.Message, pushedFrom, pushedBefore time.Time) (Ingest, error) {
	return s.putMessages(accountSID, msgs, window{pushedFrom, pushedBefore})
}

// window is a time range [from, to); the zero window is none.
type window struct{ from, to time.Time }

func (s *Store) putMessages(accountSID string, msgs []traffic.Message, missed window) (Ingest, error) {
	if err := checkSID(accountSID); err != nil {
		return Ingest{}, fmt.Errorf("put messages: %w", err)
	}
	// In key order, bbolt appends to its nodes instead of inserting into
	// their middle.
	order := sidOrder(msgs)
	var in Ingest
	err := s.db.Update(func(tx *bolt.Tx) error {
		in = Ingest{}
		w, err := newIngest(tx, accountSID, len(msgs), s.consent)
		if err != nil {
			return err
		}
		w.missed = missed
		return w.upsert(msgs, order, &in, nil)
	})
	if err != nil {
		return Ingest{}, fmt.Errorf("put messages %s: %w", accountSID, err)
	}
	return in, nil
}

// upsert stores msgs, whose keys in SID order are order, and commits the
// aggregates: the one write path of polled messages and pushed reports.
// adapt, if not nil, makes the message to store of one already stored as
// old (see fromReport).
func (w *ingest) upsert(msgs []traffic.Message, order []sidKey, in *Ingest, adapt func(old []byte, m traffic.Message) (traffic.Message, error)) error {
	// Every number the batch messages is known before any opt-out of the
	// batch is judged: newest first, a page lists a STOP before the
	// message that it answers.
	if err := w.noteOutbound(msgs); err != nil {
		return err
	}
	olds := w.stored(order)
	var cur []byte // the stored value of the previous message's SID
	for n, k := range order {
		old := olds[n]
		if n > 0 && k.head == order[n-1].head && k.sid == order[n-1].sid {
			old = cur // olds[n] predates the previous message
		}
		m := msgs[k.pos]
		var err error
		if adapt != nil && old != nil {
			if m, err = adapt(old, msgs[k.pos]); err != nil {
				return corrupt(bkMessages, w.msgKey(k.sid), err)
			}
		}
		if cur, err = w.put(m, old, in); err != nil {
			return err
		}
	}
	if err := w.reclassify(in); err != nil {
		return err
	}
	return w.flush()
}

// sidKey is a message's place in sidOrder.
type sidKey struct {
	head uint64 // the SID's first eight bytes, big endian, zero padded
	sid  string
	pos  int // in the messages given to sidOrder
}

// sidOrder returns the keys of msgs in SID order, and of two with the same
// SID the earlier first. It sorts small keys rather than the messages: the
// heads order almost every pair without reading the strings.
func sidOrder(msgs []traffic.Message) []sidKey {
	keys := make([]sidKey, len(msgs))
	for i := range msgs {
		sid := msgs[i].SID
		var b [8]byte
		copy(b[:], sid)
		keys[i] = sidKey{binary.BigEndian.Uint64(b[:]), sid, i}
	}
	// The padded head orders SIDs as strings.Compare does, except that it
	// ties SIDs that share their first eight bytes (or differ only by
	// trailing zero bytes within them): the strings decide those.
	slices.SortFunc(keys, func(a, b sidKey) int {
		if c := cmp.Compare(a.head, b.head); c != 0 {
			return c
		}
		if c := strings.Compare(a.sid, b.sid); c != 0 {
			return c
		}
		return cmp.Compare(a.pos, b.pos)
	})
	return keys
}

// ingestFill is the bbolt FillPercent of the buckets PutMessages writes.
const ingestFill = 0.9

// ingest is the state of one PutMessages transaction: the hour records it
// has loaded and changed and the changes to the time index, written by
// flush.
//
// A first poll stores hundreds of thousands of messages, so the work per
// message is kept to bbolt's own: keys are built in one reused buffer
// (bbolt copies keys), values are cut from large shared chunks (bbolt keeps
// values until the commit), and stored messages are found by walking a
// cursor along the sorted batch instead of a lookup per message.
type ingest struct {
	account           string
	n                 int // messages the ingest was made for
	msgs, times, aggs *bolt.Bucket
	horizon           time.Time
	// key holds "account/" followed by the key being built.
	key []byte
	// vals is the free end of the chunk that values are cut from.
	vals []byte
	// timeOps are the time index's changes in the order they were made,
	// which is by SID (messages are put in SID order) and then seq; flush
	// puts them in key order. SID order is random in time.
	timeOps []timeOp
	// hours holds loaded hour records by the hour's Unix seconds.
	hours map[int64]*[slotsPerHour]traffic.Bucket
	// refill holds, by bucket start in UnixNano, the sample keys whose full
	// list lost a SID: the next smallest SID is unknown until a rescan.
	refill map[int64]map[int]bool
	// consent is the account's consent records that this ingest read or
	// changed (see consent.go).
	consent consentIndex
	// missed, if set, makes put count what pushed events missed in it
	// (Ingest.MissedNew, MissedStatus).
	missed window
}

// newIngest starts an ingest of up to n messages; window is the consent
// window (Options.ConsentWindow).
func newIngest(tx *bolt.Tx, account string, n int, window time.Duration) (*ingest, error) {
	h, err := horizon(tx)
	if err != nil {
		return nil, err
	}
	w := &ingest{
		account: account,
		msgs:    tx.Bucket([]byte(bkMessages)),
		times:   tx.Bucket([]byte(bkMsgTime)),
		aggs:    tx.Bucket([]byte(bkAggregates)),
		horizon: h,
		key:     prefix(account),
		n:       n,
		timeOps: make([]timeOp, 0, n),
		hours:   make(map[int64]*[slotsPerHour]traffic.Bucket),
		refill:  make(map[int64]map[int]bool),
		consent: newConsentIndex(tx, account, window),
	}
	// Pages split at bbolt's default of half full suit inserts in random
	// order. Here both buckets are written in key order within an account:
	// the time index mostly at its end (new messages are the latest), the
	// messages of a first poll or backfill into an empty range. Splitting
	// them 90/10 instead nearly halves what the first cycle of a fleet
	// writes (BenchmarkPutMessages/Fleet), and when this was chosen, later
	// polls of a few messages with random SIDs into those full pages were
	// measured to write slightly less than into half-full ones, not more.
	w.times.FillPercent = ingestFill
	w.msgs.FillPercent = ingestFill
	return w, nil
}

// msgKey returns the key of the account's message sid, valid until the
// next key is built.
func (w *ingest) msgKey(sid string) []byte {
	w.key = append(w.key[:len(w.account)+1], sid...)
	return w.key
}

// timeKey returns the key in the per-account time index of the account's
// message sid at t (in UnixNano), "account/", T8 and sid, valid until the
// next key is built.
func (w *ingest) timeKey(t int64, sid string) []byte {
	w.key = append(appendT8(w.key[:len(w.account)+1], t), sid...)
	return w.key
}

// stored returns the values stored, when the transaction began, under the
// SIDs of order, which are sorted: for each, nil if none. One cursor walks
// the account's keys along with them, stepping where stored keys are dense
// and seeking where they are sparse; a first poll, into an empty range,
// costs one seek.
func (w *ingest) stored(order []sidKey) [][]byte {
	olds := make([][]byte, len(order))
	c := w.msgs.Cursor()
	var k, v []byte
	for n := range order {
		key := w.msgKey(order[n].sid)
		if n == 0 {
			k, v = c.Seek(key)
		}
		for steps := 0; k != nil && bytes.Compare(k, key) < 0; steps++ {
			if steps == maxSteps {
				k, v = c.Seek(key)
				break
			}
			k, v = c.Next()
		}
		if bytes.Equal(k, key) {
			olds[n] = v
		}
	}
	return olds
}

// maxSteps is how far stored walks its cursor before it seeks.
const maxSteps = 8

// put stores m, whose stored value is old (nil for none), and returns the
// value stored for its SID afterwards.
func (w *ingest) put(m traffic.Message, old []byte, in *Ingest) ([]byte, error) {
	if m.SID == "" {
		return nil, errors.New("message without sid")
	}
	switch m.AccountSID {
	case "":
		m.AccountSID = w.account
	case w.account:
	default:
		return nil, fmt.Errorf("message %s: account %s is not %s", m.SID, m.AccountSID, w.account)
	}
	if !validTime(m.Time) {
		return nil, fmt.Errorf("message %s: invalid time %v", m.SID, m.Time)
	}
	m.Time = utc(m.Time)
	if !m.Updated.IsZero() {
		// Whole seconds, as stored; a time the store cannot keep is unknown.
		if m.Updated = m.Updated.Truncate(time.Second).UTC(); !validTime(m.Updated) {
			m.Updated = time.Time{}
		}
	}
	v := w.encode(&m)
	if bytes.Equal(old, v) {
		w.unencode(v)
		in.Unchanged++
		return old, nil
	}
	var prev *traffic.Message
	switch {
	case old != nil:
		p, err := decodeMessage(old)
		if err != nil {
			return nil, corrupt(bkMessages, w.msgKey(m.SID), err)
		}
		if p.AccountSID != w.account || p.SID != m.SID {
			return nil, corrupt(bkMessages, w.msgKey(m.SID), fmt.Errorf("%w: holds message %s of %s", errCorrupt, p.SID, p.AccountSID))
		}
		prev = &p
		// What was seen stays seen: a redacted body, a masked number or
		// a failure that a later read no longer shows (traffic.Merge).
		merged := traffic.Merge(p, m)
		if merged != m {
			m = merged
			w.unencode(v)
			v = w.encode(&m)
			if bytes.Equal(old, v) {
				w.unencode(v)
				in.Unchanged++
				return old, nil
			}
		}
		in.Changed++
	case m.Time.Before(w.horizon):
		// Maybe pruned already: counting it again could double count.
		w.unencode(v)
		in.Unchanged++
		return old, nil
	default:
		in.New++
	}
	if m.Direction == traffic.Inbound && m.Keyword == traffic.OptOut && (prev == nil || prev.Keyword != traffic.OptOut) {
		// An opt-out kept for the first time: decide, once, whether it
		// counts.
		ig, err := w.consent.judge(&m)
		if err != nil {
			return nil, err
		}
		if ig != m.Ignored {
			m.Ignored = ig
			w.unencode(v)
			v = w.encode(&m)
		}
		switch ig {
		case traffic.Counted:
			in.OptOuts++
		case traffic.Repeated:
			in.Repeated++
		case traffic.Unsolicited:
			in.Unsolicited++
		}
	}
	if !w.missed.to.IsZero() {
		t := m.Updated
		if t.IsZero() {
			t = m.Time
		}
		switch {
		case t.Before(w.missed.from) || !t.Before(w.missed.to) || !traffic.Pushed(m.Status):
		case prev == nil:
			in.MissedNew++
		case prev.Status != m.Status:
			in.MissedStatus++
		}
	}
	if err := w.apply(prev, &m); err != nil {
		return nil, err
	}
	return v, w.msgs.Put(w.msgKey(m.SID), v)
}

// noteOutbound records, in the account's consent records, every number that
// msgs send to, having loaded the records of every number in msgs.
func (w *ingest) noteOutbound(msgs []traffic.Message) error {
	peers := make([]uint64, 0, len(msgs))
	for i := range msgs {
		if m := &msgs[i]; m.Peer != 0 && (m.Direction.Outbound() || m.Keyword == traffic.OptOut) {
			peers = append(peers, m.Peer)
		}
	}
	if err := w.consent.load(peers); err != nil {
		return err
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Direction.Outbound() && m.Peer != 0 && validTime(m.Time) {
			if err := w.consent.outbound(m.Peer, m.Time); err != nil {
				return err
			}
		}
	}
	return nil
}

// reclassify counts the earlier unsolicited opt-outs of numbers that this
// ingest showed the account did message: each is judged again as if it had
// arrived now, and its contribution moved.
func (w *ingest) reclassify(in *Ingest) error {
	for _, r := range w.consent.solicited() {
		key := w.msgKey(r.sid)
		v := w.msgs.Get(key)
		if v == nil {
			continue // pruned meanwhile
		}
		prev, err := decodeMessage(v)
		if err != nil {
			return corrupt(bkMessages, key, err)
		}
		if prev.Keyword != traffic.OptOut || prev.Ignored != traffic.Unsolicited {
			continue
		}
		m := prev
		if m.Ignored, err = w.consent.judge(&m); err != nil {
			return err
		}
		if m.Ignored == traffic.Unsolicited {
			continue
		}
		in.Reclassified++
		if err := w.apply(&prev, &m); err != nil {
			return err
		}
		if err := w.msgs.Put(w.msgKey(m.SID), w.encode(&m)); err != nil {
			return err
		}
	}
	return nil
}

// valChunk is the size of the chunks that values are cut from; valGuess
// is what a message's value is taken to need when an ingest of few
// messages sizes its only chunk.
const (
	valChunk = 64 << 10
	valGuess = 256
)

// encode returns m's stored form, cut from the current chunk. It must stay
// unchanged until the transaction ends unless unencode gives it back.
func (w *ingest) encode(m *traffic.Message) []byte {
	// At least what appendMessage writes: the strings, and at most 93
	// bytes of varints, version, flags and keyword.
	need := len(m.SID) + len(m.AccountSID) + len(m.Direction) + len(m.Status) + 96
	if cap(w.vals)-len(w.vals) < need {
		// A few pushed events need a few hundred bytes, not a chunk.
		w.vals = make([]byte, 0, max(min(valChunk, w.n*valGuess), need))
	}
	start := len(w.vals)
	w.vals = appendMessage(w.vals, m)
	return w.vals[start:len(w.vals):len(w.vals)]
}

// unencode returns v, the last value encode returned, to the chunk.
func (w *ingest) unencode(v []byte) {
	w.vals = w.vals[:len(w.vals)-len(v)]
}

// apply moves the message's contribution, samples and index entry from prev
// (nil for a new message) to m.
func (w *ingest) apply(prev, m *traffic.Message) error {
	start := traffic.BucketStart(m.Time)
	c, code := contribution(m)
	var keysArr, oldKeysArr [4]int
	keys := appendSampleKeys(keysArr[:0], &c, code)
	var oldKeys []int
	moved := true
	if prev != nil {
		ps := traffic.BucketStart(prev.Time)
		moved = !ps.Equal(start)
		pc, pcode := contribution(prev)
		oldKeys = appendSampleKeys(oldKeysArr[:0], &pc, pcode)
		b, err := w.bucket(ps)
		if err != nil {
			return err
		}
		addCounts(&b.Counts, &pc, pcode, -1)
		for _, k := range oldKeys {
			if moved || !slices.Contains(keys, k) {
				w.removeSample(b, k, prev.SID)
			}
		}
		if !prev.Time.Equal(m.Time) {
			w.timeOps = append(w.timeOps, timeOp{prev.Time.UnixNano(), prev.SID, len(w.timeOps), false})
		}
	}
	b, err := w.bucket(start)
	if err != nil {
		return err
	}
	addCounts(&b.Counts, &c, code, 1)
	for _, k := range keys {
		if moved || !slices.Contains(oldKeys, k) {
			addSample(b, k, m.SID)
		}
	}
	if prev == nil || !prev.Time.Equal(m.Time) {
		w.timeOps = append(w.timeOps, timeOp{m.Time.UnixNano(), m.SID, len(w.timeOps), true})
	}
	return nil
}

// contribution returns traffic.Contribution(*m) without its Errors, a map
// allocated for every message with an error code, and the error code it
// would hold (0 for none).
func contribution(m *traffic.Message) (c traffic.Counts, code int) {
	mc := *m
	mc.ErrorCode = 0
	c = traffic.Contribution(mc)
	if c.Finished != 0 {
		code = m.ErrorCode
	}
	return c, code
}

// appendSampleKeys appends traffic.SampleKeys of the message whose
// contribution returned c and code.
func appendSampleKeys(keys []int, c *traffic.Counts, code int) []int {
	if code != 0 {
		keys = append(keys, code)
	}
	if c.OptOuts > 0 {
		keys = append(keys, traffic.SampleOptOut)
	}
	if c.NoService > 0 {
		keys = append(keys, traffic.SampleNoService)
	}
	if c.Failed > 0 {
		keys = append(keys, traffic.SampleFailed)
	}
	return keys
}

// addCounts adds sign times the contribution c and code to counts: Add for
// 1, Sub for -1.
func addCounts(counts, c *traffic.Counts, code int, sign int64) {
	counts.Outbound += sign * c.Outbound
	counts.Finished += sign * c.Finished
	counts.Failed += sign * c.Failed
	counts.NoService += sign * c.NoService
	counts.Inbound += sign * c.Inbound
	counts.OptOuts += sign * c.OptOuts
	counts.OptIns += sign * c.OptIns
	counts.RepeatedOptOuts += sign * c.RepeatedOptOuts
	counts.UnsolicitedOptOuts += sign * c.UnsolicitedOptOuts
	counts.UnknownStatus += sign * c.UnknownStatus
	counts.Pending += sign * c.Pending
	if code == 0 {
		return
	}
	if counts.Errors == nil {
		counts.Errors = map[int]int64{}
	}
	if counts.Errors[code] += sign; counts.Errors[code] == 0 {
		delete(counts.Errors, code)
	}
}

// timeOp puts (or deletes) the key of sid at t (in UnixNano) in the time
// index; seq orders the changes.
type timeOp struct {
	t   int64
	sid string
	seq int
	put bool
}

// sortByTime sorts ops by t, stably, by a least significant digit radix
// sort: a few linear passes, where a comparison sort of the thousands of
// changes of a large batch costs more than everything else PutMessages does
// besides bbolt. It may sort in place or return a new slice.
func sortByTime(ops []timeOp) []timeOp {
	if len(ops) < 2 {
		return ops
	}
	// T8's order: the sign bit flipped makes int64 order unsigned.
	digit := func(op *timeOp, shift int) byte { return byte((uint64(op.t) ^ 1<<63) >> shift) }
	var buf []timeOp
	for shift := 0; shift < 64; shift += 8 {
		var count [256]int
		for i := range ops {
			count[digit(&ops[i], shift)]++
		}
		if count[digit(&ops[0], shift)] == len(ops) {
			continue // every t has this digit: the pass would change nothing
		}
		at := 0
		for d, n := range count {
			count[d] = at
			at += n
		}
		if buf == nil {
			buf = make([]timeOp, len(ops))
		}
		for i := range ops {
			d := digit(&ops[i], shift)
			buf[count[d]] = ops[i]
			count[d]++
		}
		ops, buf = buf, ops
	}
	return ops
}

// bucket returns the bucket that starts at start, loading its hour record.
func (w *ingest) bucket(start time.Time) (*traffic.Bucket, error) {
	hour := start.Truncate(time.Hour)
	h, ok := w.hours[hour.Unix()]
	if !ok {
		h = new([slotsPerHour]traffic.Bucket)
		k := hourKey(w.account, hour)
		if v := w.aggs.Get(k); v != nil {
			slots, err := decodeHour(hour, v)
			if err != nil {
				return nil, corrupt(bkAggregates, k, err)
			}
			*h = slots
		} else {
			for i := range h {
				h[i].Start = hour.Add(time.Duration(i) * traffic.BucketWidth)
			}
		}
		w.hours[hour.Unix()] = h
	}
	return &h[start.Sub(hour)/traffic.BucketWidth], nil
}

// Samples are the traffic.MaxSamples smallest qualifying SIDs per bucket and
// key, sorted: a rule that Recount reproduces exactly. Adding a SID never
// needs more than the list; removing one from a full list does (the next
// smallest qualifying SID is not in it), so that list is marked for refill.

func addSample(b *traffic.Bucket, k int, sid string) {
	list := b.Samples[k]
	i, found := slices.BinarySearch(list, sid)
	if found || i >= traffic.MaxSamples {
		return
	}
	list = slices.Insert(list, i, sid)
	if len(list) > traffic.MaxSamples {
		list = list[:traffic.MaxSamples]
	}
	if b.Samples == nil {
		b.Samples = make(map[int][]string)
	}
	b.Samples[k] = list
}

func (w *ingest) removeSample(b *traffic.Bucket, k int, sid string) {
	list := b.Samples[k]
	i, found := slices.BinarySearch(list, sid)
	if !found {
		return
	}
	if len(list) >= traffic.MaxSamples {
		at := b.Start.UnixNano()
		if w.refill[at] == nil {
			w.refill[at] = make(map[int]bool)
		}
		w.refill[at][k] = true
	}
	list = slices.Delete(list, i, i+1)
	if len(list) == 0 {
		delete(b.Samples, k)
		return
	}
	b.Samples[k] = list
}

// flush writes the changes to the time index, refills sample lists from it
// and writes the changed hour records.
func (w *ingest) flush() error {
	if err := w.consent.flush(); err != nil {
		return err
	}
	// Key order is (t, sid, seq): the account prefix is shared and T8 sorts
	// as its int64; of two changes to one key, the later one wins. The
	// changes were made in (sid, seq) order, so a stable sort by t is all
	// it takes.
	for _, op := range sortByTime(w.timeOps) {
		var err error
		if op.put {
			err = w.times.Put(w.timeKey(op.t, op.sid), []byte{})
		} else {
			err = w.times.Delete(w.timeKey(op.t, op.sid))
		}
		if err != nil {
			return err
		}
	}
	for _, at := range sortedKeys64(w.refill) {
		if err := w.refillSamples(time.Unix(0, at).UTC(), w.refill[at]); err != nil {
			return err
		}
	}
	for _, hour := range sortedKeys64(w.hours) {
		k := hourKey(w.account, time.Unix(hour, 0).UTC())
		v := encodeHour(w.hours[hour])
		var err error
		if v == nil {
			err = w.aggs.Delete(k)
		} else {
			err = w.aggs.Put(k, v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// refillSamples recomputes the sample lists keys of the bucket that starts at
// start from the raw messages in it.
func (w *ingest) refillSamples(start time.Time, keys map[int]bool) error {
	b, err := w.bucket(start)
	if err != nil {
		return err
	}
	lists := make(map[int][]string, len(keys))
	err = scanTimes(w.times, w.msgs, w.account, start, start.Add(traffic.BucketWidth), func(m traffic.Message) {
		for _, k := range traffic.SampleKeys(m) {
			if keys[k] {
				lists[k] = append(lists[k], m.SID)
			}
		}
	})
	if err != nil {
		return err
	}
	for k := range keys {
		list := lists[k]
		slices.Sort(list)
		list = list[:min(len(list), traffic.MaxSamples)]
		if len(list) == 0 {
			delete(b.Samples, k)
			continue
		}
		if b.Samples == nil {
			b.Samples = make(map[int][]string)
		}
		b.Samples[k] = list
	}
	return nil
}

// scanTimes calls fn with each of account's messages whose Time is in
// [from, to), in time order.
func scanTimes(times, msgs *bolt.Bucket, account string, from, to time.Time, fn func(traffic.Message)) error {
	p := prefix(account)
	c := times.Cursor()
	hi := nanos(to)
	mk := prefix(account) // the message's key, "account/sid"
	for k, _ := c.Seek(appendT8(p, nanos(from))); bytes.HasPrefix(k, p); k, _ = c.Next() {
		if len(k) < len(p)+8+1 {
			return corrupt(bkMsgTime, k, fmt.Errorf("%w: short key", errCorrupt))
		}
		if readT8(k[len(p):]) >= hi {
			break
		}
		mk = append(mk[:len(p)], k[len(p)+8:]...)
		v := msgs.Get(mk)
		if v == nil {
			return corrupt(bkMsgTime, k, fmt.Errorf("%w: no message %s", errCorrupt, mk[len(p):]))
		}
		m, err := decodeMessage(v)
		if err != nil {
			return corrupt(bkMessages, mk, err)
		}
		fn(m)
	}
	return nil
}

func sortedKeys64[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Message returns accountSID's stored message sid, or ErrNotFound.
func (s *Store) Message(accountSID, sid string) (traffic.Message, error) {
	var m traffic.Message
	err := checkSID(accountSID)
	if err == nil {
		err = s.db.View(func(tx *bolt.Tx) error {
			key := msgKey(accountSID, sid)
			v := tx.Bucket([]byte(bkMessages)).Get(key)
			if v == nil {
				return ErrNotFound
			}
			var err error
			if m, err = decodeMessage(v); err != nil {
				return corrupt(bkMessages, key, err)
			}
			return nil
		})
	}
	if err != nil {
		return traffic.Message{}, fmt.Errorf("message %s of %s: %w", sid, accountSID, err)
	}
	return m, nil
}

// Buckets returns the non-empty buckets of one account that start in
// [from, to), oldest first.
func (s *Store) Buckets(accountSID string, from, to time.Time) ([]traffic.Bucket, error) {
	var out []traffic.Bucket
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		var r hourReader
		out, err = readBuckets(tx.Bucket([]byte(bkAggregates)).Cursor(), &r, accountSID, from, to, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("buckets %s: %w", accountSID, err)
	}
	return out, nil
}

// readBuckets appends account's buckets that start in [from, to) to dst.
func readBuckets(c *bolt.Cursor, r *hourReader, account string, from, to time.Time, dst []traffic.Bucket) ([]traffic.Bucket, error) {
	from, to = from.UTC(), to.UTC()
	err := eachHour(c, account, from, to, func(hour time.Time, v []byte) (err error) {
		dst, err = r.appendHour(dst, hour, v, from, to, true)
		return err
	})
	return dst, err
}

// eachHour calls fn with each of account's hour records whose hour starts
// before to, from the hour that holds from on. An error from fn is reported
// as a corrupt record, naming its key.
func eachHour(c *bolt.Cursor, account string, from, to time.Time, fn func(hour time.Time, v []byte) error) error {
	p := prefix(account)
	for k, v := c.Seek(hourKey(account, from.Truncate(time.Hour))); bytes.HasPrefix(k, p); k, v = c.Next() {
		if len(k) != len(p)+8 {
			return corrupt(bkAggregates, k, fmt.Errorf("%w: bad key length", errCorrupt))
		}
		hour := time.Unix(readT8(k[len(p):]), 0).UTC()
		if !hour.Before(to) {
			return nil
		}
		if err := fn(hour, v); err != nil {
			return corrupt(bkAggregates, k, err)
		}
	}
	return nil
}

// ScanBuckets calls fn, in one read transaction and in order of account SID,
// with the non-empty buckets that start in [from, to) of every account that
// has any. It is the evaluator's bulk read: one cursor pass over all
// accounts.
//
// To keep a scan of every account cheap, the buckets slice, and the Errors
// and Samples maps in it, are reused for the next account: fn must not keep
// any of them once it returns (copy what it needs; traffic.Sum and
// traffic.Examples return fresh values). The sample SID strings are fn's to
// keep. fn runs inside the transaction, so it should be quick and must not
// write to the store. An error from fn stops the scan and is returned as is.
func (s *Store) ScanBuckets(from, to time.Time, fn func(accountSID string, buckets []traffic.Bucket) error) error {
	read := func(c *bolt.Cursor, r *hourReader, account string, dst []traffic.Bucket) ([]traffic.Bucket, error) {
		return readBuckets(c, r, account, from, to, dst)
	}
	return s.scan("scan buckets", read, fn)
}

// HourBuckets is Buckets at the coarsest resolution that cuts allow: each
// hour that lies wholly in [from, to) and has no time of cuts strictly
// inside it comes back as one bucket of Width time.Hour, the sum of its
// five-minute buckets, with per sample key the traffic.MaxSamples smallest
// SIDs of the hour (the rule of a five-minute bucket, over the hour). Every
// other hour comes back as its non-empty five-minute buckets that start in
// [from, to), as from Buckets. Oldest first.
//
// So no bucket straddles from, to or a cut: for any a and b among them,
// traffic.Sum over [a, b) equals the sum of Buckets over the same window.
// Pass the start of every window that will be summed (policy.Set.Cuts);
// a day read this way is about 23 hour buckets and two hours of five-minute
// ones, instead of 288 five-minute buckets.
func (s *Store) HourBuckets(accountSID string, from, to time.Time, cuts []time.Time) ([]traffic.Bucket, error) {
	var out []traffic.Bucket
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		var r hourReader
		out, err = readHours(tx.Bucket([]byte(bkAggregates)).Cursor(), &r, accountSID, from, to, cuts, nil, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hour buckets %s: %w", accountSID, err)
	}
	return out, nil
}

// ScanHourBuckets is ScanBuckets at HourBuckets' resolution, for the
// evaluator's cycle. cuts, when not nil, is called with each account's SID
// before its buckets are read and returns that account's cuts (see
// HourBuckets), which it need not keep; nil cuts split only the hours that
// straddle from or to.
//
// The buckets carry no samples: decoding and copying every sample SID is
// most of the cost of a read, and few accounts need any. Instead fn gets
// examples, which decodes the samples of the account's five-minute buckets
// on demand and returns exactly what traffic.Examples would return for
// Buckets(accountSID, from, to). It reads the transaction's memory, so it
// must not be called after fn returns (it panics); the SIDs it returns are
// fn's to keep. A record whose samples do not decode yields no examples
// (its counts were read). fn's buckets are reused as ScanBuckets' are.
func (s *Store) ScanHourBuckets(from, to time.Time, cuts func(accountSID string) []time.Time, fn func(accountSID string, buckets []traffic.Bucket, examples traffic.ExampleFunc) error) error {
	return s.ScanHourBucketsOf(nil, from, to, cuts, fn)
}

// ScanHourBucketsOf is ScanHourBuckets over the given accounts only, in
// SID order (every account when accounts is nil): the evaluation of a few
// accounts that pushed events touched reads only theirs.
func (s *Store) ScanHourBucketsOf(accounts []string, from, to time.Time, cuts func(accountSID string) []time.Time, fn func(accountSID string, buckets []traffic.Bucket, examples traffic.ExampleFunc) error) error {
	if accounts != nil {
		accounts = slices.Clone(accounts) // not nil: none is not every one
		slices.Sort(accounts)
		accounts = slices.Compact(accounts)
	}
	var x lazyExamples
	x.from, x.to = from.UTC(), to.UTC()
	var cur traffic.ExampleFunc
	read := func(c *bolt.Cursor, r *hourReader, account string, dst []traffic.Bucket) ([]traffic.Bucket, error) {
		var cs []time.Time
		if cuts != nil {
			cs = cuts(account)
		}
		cur = x.reset()
		return readHours(c, r, account, from, to, cs, dst, &x)
	}
	call := func(account string, buckets []traffic.Bucket) error {
		defer x.end()
		return fn(account, buckets, cur)
	}
	return s.scanOf(accounts, "scan hour buckets", read, call)
}

// lazyExamples keeps the hour records of the account being scanned, which
// stay valid until its read transaction ends, and decodes their samples for
// an ExampleFunc.
type lazyExamples struct {
	from, to time.Time // the scan's range
	hours    []rawHour // oldest first
	// gen counts accounts: a func made for an earlier one refuses to run.
	gen  uint64
	cand [][]byte // scratch for appendExamples
}

type rawHour struct {
	start time.Time
	v     []byte
}

// end forgets the hours read so far and retires the account's ExampleFunc.
func (x *lazyExamples) end() {
	clear(x.hours)
	x.hours = x.hours[:0]
	clear(x.cand)
	x.gen++
}

// reset ends the previous account and returns the ExampleFunc for the next.
func (x *lazyExamples) reset() traffic.ExampleFunc {
	x.end()
	gen := x.gen
	return func(from, to time.Time, n int, keys ...int) []string {
		if x.gen != gen {
			panic("store: examples of ScanHourBuckets called after its fn returned")
		}
		return x.examples(from, to, n, keys)
	}
}

func (x *lazyExamples) examples(from, to time.Time, n int, keys []int) []string {
	from, to = maxTime(from.UTC(), x.from), minTime(to.UTC(), x.to)
	var out []string
	for i := len(x.hours) - 1; i >= 0 && len(out) < n; i-- {
		h := &x.hours[i]
		if !h.start.Before(to) || !h.start.Add(time.Hour).After(from) {
			continue
		}
		var err error
		if out, x.cand, err = appendExamples(out, x.cand, h.start, h.v, from, to, n, keys); err != nil {
			continue // its counts were read; its samples are lost
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// scan runs one read transaction over the aggregates of every account, in
// order of SID, and calls fn with what read returns for each account that
// has buckets. An error from fn is returned as is, any other prefixed with op.
func (s *Store) scan(op string, read func(c *bolt.Cursor, r *hourReader, account string, dst []traffic.Bucket) ([]traffic.Bucket, error), fn func(string, []traffic.Bucket) error) error {
	return s.scanOf(nil, op, read, fn)
}

// scanOf is scan over the given accounts, sorted, or every account when
// accounts is nil.
func (s *Store) scanOf(accounts []string, op string, read func(c *bolt.Cursor, r *hourReader, account string, dst []traffic.Bucket) ([]traffic.Bucket, error), fn func(string, []traffic.Bucket) error) error {
	var fnErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bkAggregates)).Cursor()
		var r hourReader
		var buf []traffic.Bucket
		each := func(account string) error {
			r.recycle(buf)
			var err error
			if buf, err = read(c, &r, account, buf[:0]); err != nil {
				return err
			}
			if len(buf) > 0 {
				if fnErr = fn(account, buf); fnErr != nil {
					return fnErr
				}
			}
			return nil
		}
		if accounts != nil {
			for _, account := range accounts {
				if err := each(account); err != nil {
					return err
				}
			}
			return nil
		}
		k, _ := c.First()
		for k != nil {
			account, _, ok := splitSID(k)
			if !ok {
				return corrupt(bkAggregates, k, fmt.Errorf("%w: bad key", errCorrupt))
			}
			if err := each(account); err != nil {
				return err
			}
			k, _ = c.Seek(afterPrefix(account))
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// readHours appends account's buckets in [from, to) to dst at HourBuckets'
// resolution. With x, it leaves the samples out and keeps the records in x.
func readHours(c *bolt.Cursor, r *hourReader, account string, from, to time.Time, cuts []time.Time, dst []traffic.Bucket, x *lazyExamples) ([]traffic.Bucket, error) {
	from, to = from.UTC(), to.UTC()
	lo, hi := nanos(from), nanos(to)
	// An hour is whole when it lies in [from, to) and no cut is strictly
	// inside it. Times are compared as UnixNano.
	var cutsArr [8]int64
	cs := cutsArr[:0]
	for _, t := range cuts {
		cs = append(cs, nanos(t))
	}
	whole := func(hour time.Time) bool {
		h := hour.UnixNano()
		end := h + int64(time.Hour)
		if h < lo || end > hi {
			return false
		}
		for _, t := range cs {
			if h < t && t < end {
				return false
			}
		}
		return true
	}
	err := eachHour(c, account, from, to, func(hour time.Time, v []byte) (err error) {
		if whole(hour) {
			dst, err = r.appendTotal(dst, hour, v, x == nil)
		} else {
			dst, err = r.appendHour(dst, hour, v, from, to, x == nil)
		}
		if x != nil {
			x.hours = append(x.hours, rawHour{hour, v})
		}
		return err
	})
	return dst, err
}

// OldestPending returns the Time of accountSID's oldest message in
// [from, to) that can still change (traffic.Counts Pending), and whether
// there is one. The aggregates find its bucket; the raw messages of that
// bucket alone are read for the message, so that a poll reads back to it
// and not to the start of its bucket, five minutes of a busy log earlier.
func (s *Store) OldestPending(accountSID string, from, to time.Time) (time.Time, bool, error) {
	from, to = from.UTC(), to.UTC()
	var at time.Time
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var r hourReader
		times, msgs := tx.Bucket([]byte(bkMsgTime)), tx.Bucket([]byte(bkMessages))
		// The bucket that holds from starts before it.
		start := traffic.BucketStart(from)
		return eachHour(tx.Bucket([]byte(bkAggregates)).Cursor(), accountSID, start, to, func(hour time.Time, v []byte) error {
			if found {
				return nil
			}
			bs, err := r.appendHour(nil, hour, v, start, to, false)
			if err != nil {
				return err
			}
			for _, b := range bs {
				if b.Pending == 0 {
					continue
				}
				lo, hi := b.Start, b.Start.Add(traffic.BucketWidth)
				if lo.Before(from) {
					lo = from
				}
				if hi.After(to) {
					hi = to
				}
				err := scanTimes(times, msgs, accountSID, lo, hi, func(m traffic.Message) {
					if !found && traffic.Contribution(m).Pending > 0 {
						at, found = m.Time, true
					}
				})
				if err != nil || found {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest pending %s: %w", accountSID, err)
	}
	return at, found, nil
}

// Horizon returns the prune horizon: messages before it may have been
// pruned, and a message first seen before it is not counted (see the
// package doc). Zero before the first Prune.
func (s *Store) Horizon() (time.Time, error) {
	var h time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		h, err = horizon(tx)
		return err
	})
	return h, err
}

// CountRange returns, as one bucket that starts at from and is to-from
// wide, the counts and samples (the traffic.MaxSamples smallest SIDs per
// key) of accountSID's stored messages whose Time is in [from, to). It
// recounts raw messages, so it is for short ranges that are not whole
// buckets: the head of a window that starts at a reinstatement (see
// traffic.Bucket). Messages before the prune horizon are not counted.
func (s *Store) CountRange(accountSID string, from, to time.Time) (traffic.Bucket, error) {
	b := traffic.Bucket{Start: from.UTC(), Width: to.Sub(from)}
	err := s.db.View(func(tx *bolt.Tx) error {
		times, msgs := tx.Bucket([]byte(bkMsgTime)), tx.Bucket([]byte(bkMessages))
		return scanTimes(times, msgs, accountSID, from, to, func(m traffic.Message) {
			b.Counts.Add(traffic.Contribution(m))
			for _, k := range traffic.SampleKeys(m) {
				addSample(&b, k, m.SID)
			}
		})
	})
	if err != nil {
		return traffic.Bucket{}, fmt.Errorf("count range %s: %w", accountSID, err)
	}
	return b, nil
}

// Recount recomputes the buckets of one account that start in [from, to)
// from its raw messages, in the shape Buckets returns. It is for tests and
// verification, and meaningful only where no message has been pruned.
func (s *Store) Recount(accountSID string, from, to time.Time) ([]traffic.Bucket, error) {
	byStart := make(map[int64]*traffic.Bucket)
	err := s.db.View(func(tx *bolt.Tx) error {
		times, msgs := tx.Bucket([]byte(bkMsgTime)), tx.Bucket([]byte(bkMessages))
		// A bucket that starts in [from, to) holds the messages of
		// [ceil(from), ceil(to)).
		return scanTimes(times, msgs, accountSID, traffic.CeilBucket(from), traffic.CeilBucket(to), func(m traffic.Message) {
			start := traffic.BucketStart(m.Time)
			b := byStart[start.UnixNano()]
			if b == nil {
				b = &traffic.Bucket{Start: start}
				byStart[start.UnixNano()] = b
			}
			b.Counts.Add(traffic.Contribution(m))
			for _, k := range traffic.SampleKeys(m) {
				if b.Samples == nil {
					b.Samples = make(map[int][]string)
				}
				b.Samples[k] = append(b.Samples[k], m.SID)
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("recount %s: %w", accountSID, err)
	}
	var out []traffic.Bucket
	for _, at := range sortedKeys64(byStart) {
		b := byStart[at]
		for k, list := range b.Samples {
			slices.Sort(list)
			b.Samples[k] = list[:min(len(list), traffic.MaxSamples)]
		}
		if !empty(b) {
			out = append(out, *b)
		}
	}
	return out, nil
}

// pruneChunk bounds the deletions of one Prune transaction.
const pruneChunk = 10000

// Prune deletes the raw messages whose Time is before `before`, and the
// aggregate buckets that start before aggBefore, which must not be after
// before (aggregates would be lost under messages that can still change).
// It returns the number of messages deleted. It first raises the prune
// horizon to before (see the package doc), then deletes in transactions of
// a bounded size, so an interrupted Prune leaves a consistent store and can
// simply be run again.
func (s *Store) Prune(before, aggBefore time.Time) (int, error) {
	if aggBefore.After(before) {
		return 0, fmt.Errorf("prune: aggregates before %v would outlive messages before %v", aggBefore, before)
	}
	if !validTime(before) {
		return 0, fmt.Errorf("prune: invalid time %v", before)
	}
	before, aggBefore = utc(before), aggBefore.UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		h, err := horizon(tx)
		if err != nil || !before.After(h) {
			return err
		}
		return tx.Bucket([]byte(bkMeta)).Put([]byte(keyHorizon), appendT8(nil, before.UnixNano()))
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	n := 0
	for resume := []byte{}; resume != nil; {
		err := s.db.Update(func(tx *bolt.Tx) error {
			var dels [][]byte
			var err error
			dels, resume, err = expired(tx.Bucket([]byte(bkMsgTime)), bkMsgTime, resume, func(k []byte, p int) bool {
				return readT8(k[p:]) < before.UnixNano()
			}, 8+1)
			if err != nil {
				return err
			}
			times, msgs := tx.Bucket([]byte(bkMsgTime)), tx.Bucket([]byte(bkMessages))
			for _, k := range dels {
				if err := times.Delete(k); err != nil {
					return err
				}
				// "account/T8sid" → "account/sid"
				p := bytes.IndexByte(k, '/') + 1
				if err := msgs.Delete(append(k[:p:p], k[p+8:]...)); err != nil {
					return err
				}
			}
			n += len(dels)
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("prune messages: %w", err)
		}
	}
	for resume := []byte{}; resume != nil; {
		err := s.db.Update(func(tx *bolt.Tx) error {
			var err error
			resume, err = pruneConsent(tx.Bucket([]byte(bkConsent)), before.Unix(), resume)
			return err
		})
		if err != nil {
			return n, fmt.Errorf("prune consent records: %w", err)
		}
	}
	if aggBefore.IsZero() {
		return n, nil
	}
	// Coverage never claims what is no longer stored: a window that reaches
	// before the aggregates kept must read as a gap, not as quiet.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bkCoverage))
		var changed []string
		var covs []traffic.Coverage
		err := forEachRec(tx, bkCoverage, decodeCoverage, func(k []byte, c traffic.Coverage) {
			if !c.Until.IsZero() && c.From.Before(aggBefore) {
				c.From = aggBefore
				if c.Until.Before(aggBefore) {
					c = traffic.Coverage{}
				}
				changed = append(changed, string(k))
				covs = append(covs, c)
			}
		})
		if err != nil {
			return err
		}
		// Spend days are kept as long as aggregates are.
		var days [][]byte
		cutoff := aggBefore.Format(dayLayout)
		err = tx.Bucket([]byte(bkSpendDays)).ForEach(func(k, _ []byte) error {
			if _, day, ok := splitSID(k); ok && string(day) < cutoff {
				days = append(days, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range days {
			if err := tx.Bucket([]byte(bkSpendDays)).Delete(k); err != nil {
				return err
			}
		}
		for i, sid := range changed {
			if covs[i].Until.IsZero() {
				err = b.Delete([]byte(sid))
			} else {
				err = putRec(tx, bkCoverage, []byte(sid), covs[i], encodeCoverage)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("prune coverage: %w", err)
	}
	for resume := []byte{}; resume != nil; {
		err := s.db.Update(func(tx *bolt.Tx) error {
			aggs := tx.Bucket([]byte(bkAggregates))
			var dels [][]byte
			var err error
			dels, resume, err = expired(aggs, bkAggregates, resume, func(k []byte, p int) bool {
				return time.Unix(readT8(k[p:]), 0).Before(aggBefore)
			}, 8)
			if err != nil {
				return err
			}
			for _, k := range dels {
				if err := pruneHour(aggs, k, aggBefore); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("prune aggregates: %w", err)
		}
	}
	return n, nil
}

// expired walks the keys "account/T8..." of b, named name, from resume (empty for the
// start) and returns up to pruneChunk of them for which old(key, len of
// "account/") holds, and where to resume (nil when done). old is true for a
// prefix of each account's keys, so the walk skips the rest of an account.
func expired(b *bolt.Bucket, name string, resume []byte, old func(k []byte, p int) bool, minLen int) (dels [][]byte, next []byte, err error) {
	c := b.Cursor()
	k, _ := c.Seek(resume)
	for k != nil {
		account, _, ok := splitSID(k)
		if !ok || len(k) < len(account)+1+minLen {
			return nil, nil, corrupt(name, k, fmt.Errorf("%w: bad key", errCorrupt))
		}
		if !old(k, len(account)+1) {
			k, _ = c.Seek(afterPrefix(account))
			continue
		}
		if len(dels) == pruneChunk {
			return dels, bytes.Clone(k), nil
		}
		dels = append(dels, bytes.Clone(k))
		k, _ = c.Next()
	}
	return dels, nil, nil
}

// pruneHour deletes the buckets before aggBefore from the hour record k.
func pruneHour(aggs *bolt.Bucket, k []byte, aggBefore time.Time) error {
	hour := time.Unix(readT8(k[len(k)-8:]), 0).UTC()
	if !hour.Add(time.Hour).After(aggBefore) {
		return aggs.Delete(k)
	}
	slots, err := decodeHour(hour, aggs.Get(k))
	if err != nil {
		return corrupt(bkAggregates, k, err)
	}
	for i := range slots {
		if slots[i].Start.Before(aggBefore) {
			slots[i] = traffic.Bucket{Start: slots[i].Start}
		}
	}
	if v := encodeHour(&slots); v != nil {
		return aggs.Put(k, v)
	}
	return aggs.Delete(k)
}
