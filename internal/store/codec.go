package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"sentinel/internal/traffic"
)

// Every stored value starts with a version byte so that a later encoding can
// be told apart from this one. Values are varints, strings are length
// prefixed, times are UnixNano (see enc.time).
const (
	recordV1  = 1
	messageV1 = 1
	// hourV1 records hold the hour's slots; hourV2 records also hold the
	// hour's totals, ahead of the slots, so that a read of whole hours need
	// not decode the slots. hourV3 records store a bucket's counts as their
	// number followed by the counts, so that a count added later reads as
	// zero in an older record; V1 and V2 have seven. All decode; hourV3 is
	// written.
	hourV1 = 1
	hourV2 = 2
	hourV3 = 3
)

// countFields is how many counts a bucket has (see bucketCounts).
const countFields = 11

// bucketCounts returns pointers to a bucket's counts in their stored order.
// Append only: the stored order is the format.
func bucketCounts(c *traffic.Counts) [countFields]*int64 {
	return [countFields]*int64{&c.Outbound, &c.Finished, &c.Failed, &c.NoService, &c.Inbound, &c.OptOuts, &c.OptIns,
		&c.RepeatedOptOuts, &c.UnsolicitedOptOuts, &c.UnknownStatus, &c.Pending}
}

// errCorrupt is wrapped by decoding errors; corrupt names the bucket and key.
var errCorrupt = errors.New("corrupt value")

func corrupt(bucket string, key []byte, err error) error {
	return fmt.Errorf("decode %s %q: %w", bucket, key, err)
}

// enc appends the compact binary encoding shared by all stored values.
type enc struct{ b []byte }

func (e *enc) byte(v byte)      { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) int(v int)        { e.varint(int64(v)) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }

func (e *enc) float(f float64) { e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(f)) }

func (e *enc) bool(v bool) {
	if v {
		e.byte(1)
		return
	}
	e.byte(0)
}

// zeroTime encodes time.Time{}, whose UnixNano is not representable.
const zeroTime = math.MinInt64

// time stores t as nanoseconds since the Unix epoch; location and monotonic
// reading are dropped and decoding returns UTC.
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.varint(zeroTime)
		return
	}
	e.varint(t.UnixNano())
}

// code stores s as its 1-based index in table, or 0 and the string itself.
// Tables are part of the format: only ever append to them.
func (e *enc) code(table []string, s string) {
	if i := slices.Index(table, s); i >= 0 {
		e.uvarint(uint64(i + 1))
		return
	}
	e.uvarint(0)
	e.str(s)
}

// dec reads what enc wrote. The first error sticks: later reads return zero
// values, and done reports it, so decoders read straight through without
// checking each field.
type dec struct {
	b   []byte
	err error
	// n is the length of the value; with shared, s holds the whole value
	// once str has been called, and str returns substrings of it instead of
	// allocating one string per field.
	n      int
	shared bool
	src    []byte
	s      string
}

func newDec(b []byte) *dec { return &dec{b: b, n: len(b)} }

// newSharedDec is newDec for values with many small strings: at the first
// string it copies the whole value into one string, and returns substrings
// of that.
func newSharedDec(b []byte) *dec { return &dec{b: b, n: len(b), shared: true, src: b} }

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errCorrupt}, args...)...)
	}
	d.b = nil
}

func (d *dec) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) int() int {
	v := d.varint()
	if int64(int(v)) != v {
		d.fail("int out of range")
		return 0
	}
	return int(v)
}

// count reads the length of a list whose elements take at least one byte
// each, so a corrupt length cannot cause a huge allocation.
func (d *dec) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("count %d exceeds value", n)
		return 0
	}
	return int(n)
}

func (d *dec) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length %d exceeds value", n)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

// skip passes over n bytes, which count or raw has checked are there.
func (d *dec) skip(n int) {
	if n > len(d.b) {
		d.fail("length %d exceeds value", n)
		return
	}
	d.b = d.b[n:]
}

func (d *dec) str() string {
	p := d.raw()
	if d.err != nil {
		return ""
	}
	if d.shared {
		end := d.n - len(d.b)
		if d.s == "" {
			d.s = string(d.src)
		}
		return d.s[end-len(p) : end]
	}
	return string(p)
}

func (d *dec) bytes() []byte {
	p := d.raw()
	if d.err != nil || len(p) == 0 {
		return nil
	}
	return slices.Clone(p)
}

func (d *dec) float() float64 {
	if len(d.b) < 8 {
		d.fail("truncated float")
		return 0
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *dec) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *dec) time() time.Time {
	v := d.varint()
	if v == zeroTime || d.err != nil {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *dec) code(table []string) string {
	i := d.uvarint()
	switch {
	case d.err != nil:
		return ""
	case i == 0:
		return d.str()
	case i > uint64(len(table)):
		d.fail("unknown code %d", i)
		return ""
	}
	return table[i-1]
}

func (d *dec) version(want byte) {
	if v := d.byte(); d.err == nil && v != want {
		d.fail("unknown encoding version %d", v)
	}
}

// more reports whether the value has bytes left: fields appended to a record
// after its first release are read only when present, and take their zero
// value in an older record.
func (d *dec) more() bool { return d.err == nil && len(d.b) > 0 }

// done reports the first error, or trailing bytes that no field claimed.
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// directions and statuses are the encoding's tables of common values; any
// other value is stored as a string. Append only.
var (
	directions = []string{
		string(traffic.Inbound), string(traffic.OutboundAPI),
		string(traffic.OutboundCall), string(traffic.OutboundReply),
	}
	statuses = []string{
		"queued", "sending", "sent", "failed", "delivered", "undelivered",
		"receiving", "received", "accepted", "scheduled", "read", "canceled",
		"partially_delivered",
	}
)

// Message flags. flagPeer says that the message's Peer follows the flags,
// as 8 bytes; a message without one (0) does not store it.
const (
	flagMessagingService = 1 << 0
	flagPeer             = 1 << 1
)

// encodeMessage returns m's stored form. m.Time must be representable as
// UnixNano (see validTime).
func encodeMessage(m traffic.Message) []byte {
	return appendMessage(make([]byte, 0, 2*len(m.SID)+32), &m)
}

// appendMessage appends m's stored form to b.
func appendMessage(b []byte, m *traffic.Message) []byte {
	e := enc{b: b}
	e.byte(messageV1)
	e.str(m.SID)
	e.str(m.AccountSID)
	e.code(directions, string(m.Direction))
	e.code(statuses, m.Status)
	e.int(m.ErrorCode)
	e.time(m.Time)
	e.varint(m.PriceMicros)
	var flags byte
	if m.MessagingService {
		flags |= flagMessagingService
	}
	if m.Peer != 0 {
		flags |= flagPeer
	}
	e.byte(flags)
	if m.Peer != 0 {
		e.b = binary.BigEndian.AppendUint64(e.b, m.Peer)
	}
	// The keyword in the low four bits, why an opt-out is ignored in the
	// high four: records written before Ignored existed read as Counted.
	e.byte(byte(m.Keyword) | byte(m.Ignored)<<4)
	// Optional, last: Updated in whole seconds after Time (records written
	// before it existed have none).
	if !m.Updated.IsZero() {
		e.varint(m.Updated.Unix() - m.Time.Unix())
	}
	return e.b
}

func decodeMessage(b []byte) (traffic.Message, error) {
	d := newDec(b)
	d.version(messageV1)
	var m traffic.Message
	m.SID = d.str()
	m.AccountSID = d.str()
	m.Direction = traffic.Direction(d.code(directions))
	m.Status = d.code(statuses)
	m.ErrorCode = d.int()
	m.Time = d.time()
	m.PriceMicros = d.varint()
	flags := d.byte()
	if flags&^(flagMessagingService|flagPeer) != 0 {
		d.fail("unknown flags %#x", flags)
	}
	m.MessagingService = flags&flagMessagingService != 0
	if flags&flagPeer != 0 {
		if len(d.b) < 8 {
			d.fail("truncated peer")
		} else {
			m.Peer = binary.BigEndian.Uint64(d.b)
			d.b = d.b[8:]
		}
	}
	kw := d.byte()
	m.Keyword, m.Ignored = traffic.Keyword(kw&0x0f), traffic.Ignored(kw>>4)
	if d.more() {
		if delta := d.varint(); d.err == nil {
			m.Updated = time.Unix(m.Time.Unix()+delta, 0).UTC()
		}
	}
	if err := d.done(); err != nil {
		return traffic.Message{}, err
	}
	return m, nil
}

// slotsPerHour is the number of traffic.BucketWidth buckets in one stored
// hour record.
const slotsPerHour = int(time.Hour / traffic.BucketWidth)

// empty reports whether b has nothing worth storing.
func empty(b *traffic.Bucket) bool {
	for _, p := range bucketCounts(&b.Counts) {
		if *p != 0 {
			return false
		}
	}
	return len(b.Counts.Errors) == 0 && len(b.Samples) == 0
}

// encodeHour returns the stored form of one hour of buckets, or nil when all
// of them are empty. slots[i] holds the bucket that starts i*BucketWidth
// after the hour; Start is not stored (the key holds the hour).
//
// Layout (hourV2): the version; the length of the totals, then the totals,
// the hour's buckets summed into one (see hourTotal); a uvarint mask of the
// slots present; then each present slot. A bucket is its seven counts as
// varints, its error codes (count, then code and n pairs by code) and the
// length of its samples followed by them (nothing when it has none: count,
// then key, count and SIDs by key). Lengths let a reader skip the totals or
// the samples without parsing them. hourV1 is the version, the mask and the
// slots, with no sample length before samples.
func encodeHour(slots *[slotsPerHour]traffic.Bucket) []byte {
	return encodeHourAs(hourV3, slots)
}

// encodeHourAs encodes slots in the layout of version ver; hourV1 is for
// tests of the reading of old records.
func encodeHourAs(ver byte, slots *[slotsPerHour]traffic.Bucket) []byte {
	var mask uint64
	for i := range slots {
		if !empty(&slots[i]) {
			mask |= 1 << i
		}
	}
	if mask == 0 {
		return nil
	}
	e := enc{b: make([]byte, 0, 512)}
	e.byte(ver)
	if ver >= hourV2 {
		total := hourTotal(slots)
		e.bytes(encodeTotalAs(ver, &total))
	}
	e.uvarint(mask)
	for i := range slots {
		if mask&(1<<i) != 0 {
			e.bucket(ver, &slots[i])
		}
	}
	return e.b
}

// encodeTotalAs returns the stored form of an hour's totals in the layout
// of version ver.
func encodeTotalAs(ver byte, total *traffic.Bucket) []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.bucket(ver, total)
	return e.b
}

// bucket appends b's counts, error codes and samples in the layout of
// version ver.
func (e *enc) bucket(ver byte, b *traffic.Bucket) {
	counts := bucketCounts(&b.Counts)
	nc := countFields
	if ver < hourV3 {
		nc = 7 // what V1 and V2 hold; the rest is lost in them
	} else {
		for nc > 7 && *counts[nc-1] == 0 {
			nc-- // trailing zeros cost nothing to leave out
		}
		e.uvarint(uint64(nc))
	}
	for _, p := range counts[:nc] {
		e.varint(*p)
	}
	codes := sortedKeys(b.Errors)
	e.uvarint(uint64(len(codes)))
	for _, code := range codes {
		e.int(code)
		e.varint(b.Errors[code])
	}
	keys := sortedKeys(b.Samples)
	n := 0
	for _, k := range keys {
		if len(b.Samples[k]) > 0 {
			n++
		}
	}
	var se enc
	if n > 0 || ver == hourV1 {
		se.uvarint(uint64(n))
	}
	for _, k := range keys {
		sids := b.Samples[k]
		if len(sids) == 0 {
			continue
		}
		se.int(k)
		se.uvarint(uint64(len(sids)))
		for _, sid := range sids {
			se.str(sid)
		}
	}
	if ver == hourV1 {
		e.b = append(e.b, se.b...)
		return
	}
	e.bytes(se.b)
}

// counts reads a bucket's counts in the layout of version ver into c.
func (d *dec) counts(ver byte, c *traffic.Counts) {
	n := 7
	if ver >= hourV3 {
		n = int(d.uvarint())
		if n > countFields {
			d.fail("%d counts, this binary knows %d", n, countFields)
			return
		}
	}
	ps := bucketCounts(c)
	for _, p := range ps[:n] {
		*p = d.varint()
	}
}

// hourTotal returns the buckets of one hour summed into one bucket of Width
// time.Hour. Its samples follow the rule of a slot's, over the whole hour:
// per key, the traffic.MaxSamples smallest SIDs, sorted. Each slot keeps its
// own smallest, so the hour's smallest are among them: the totals are exact.
func hourTotal(slots *[slotsPerHour]traffic.Bucket) traffic.Bucket {
	t := traffic.Bucket{Start: slots[0].Start, Width: time.Hour}
	for i := range slots {
		t.Counts.Add(slots[i].Counts)
		for k, sids := range slots[i].Samples {
			for _, sid := range sids {
				addSample(&t, k, sid)
			}
		}
	}
	return t
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp.Compare)
	return keys
}

// hourReader decodes hour records into buckets. A zero hourReader allocates
// fresh memory for every bucket; ScanBuckets calls recycle between accounts
// to reuse the maps and sample lists of the buckets it handed out before,
// which is what keeps a scan of every account cheap.
type hourReader struct {
	errMaps    []map[int]int64
	sampleMaps []map[int][]string
	// sids backs the sample lists: each list is a capacity-limited window
	// of it, so appending to one list reallocates instead of overwriting
	// its neighbour.
	sids []string
}

// recycle takes back the maps of buckets, which must no longer be used.
func (r *hourReader) recycle(buckets []traffic.Bucket) {
	for i := range buckets {
		if m := buckets[i].Errors; m != nil {
			clear(m)
			r.errMaps = append(r.errMaps, m)
		}
		if m := buckets[i].Samples; m != nil {
			clear(m)
			r.sampleMaps = append(r.sampleMaps, m)
		}
	}
	r.sids = r.sids[:0]
}

func (r *hourReader) errMap() map[int]int64 {
	if n := len(r.errMaps); n > 0 {
		m := r.errMaps[n-1]
		r.errMaps = r.errMaps[:n-1]
		return m
	}
	return make(map[int]int64)
}

func (r *hourReader) sampleMap() map[int][]string {
	if n := len(r.sampleMaps); n > 0 {
		m := r.sampleMaps[n-1]
		r.sampleMaps = r.sampleMaps[:n-1]
		return m
	}
	return make(map[int][]string)
}

// slotSection splits the hour record v into its version, its totals (nil
// for hourV1) and its slots (from the mask on). Their bytes are not checked.
func slotSection(v []byte) (ver byte, totals, slots []byte, err error) {
	d := newDec(v)
	switch ver = d.byte(); {
	case d.err != nil:
	case ver == hourV1:
	case ver == hourV2, ver == hourV3:
		totals = d.raw()
	default:
		d.fail("unknown encoding version %d", ver)
	}
	return ver, totals, d.b, d.err
}

// appendHour decodes the hour record v for the hour that starts at start and
// appends to dst its buckets that start in [from, to), oldest first, with
// their samples unless samples is false. Buckets outside the range are
// parsed but not built, so a read of a partial hour allocates only for what
// it returns.
func (r *hourReader) appendHour(dst []traffic.Bucket, start time.Time, v []byte, from, to time.Time, samples bool) ([]traffic.Bucket, error) {
	ver, _, sv, err := slotSection(v)
	if err != nil {
		return dst, err
	}
	d := newSharedDec(sv)
	mask := d.uvarint()
	if mask == 0 || mask>>slotsPerHour != 0 {
		d.fail("bad slot mask %#x", mask)
	}
	for i := 0; i < slotsPerHour && d.err == nil; i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		bs := start.Add(time.Duration(i) * traffic.BucketWidth)
		keep := !bs.Before(from) && bs.Before(to)
		b, ok := r.bucket(d, ver, keep, samples)
		if !ok && d.err == nil {
			d.fail("empty slot %d", i)
		}
		if !keep {
			continue
		}
		b.Start = bs
		dst = append(dst, b)
	}
	if err := d.done(); err != nil {
		return dst, err
	}
	return dst, nil
}

// appendTotal appends to dst the hour record v, for the hour that starts at
// start, as one bucket of Width time.Hour (see hourTotal), with its samples
// unless samples is false. Of an hourV2 record it reads the totals only; an
// hourV1 record is decoded and summed.
func (r *hourReader) appendTotal(dst []traffic.Bucket, start time.Time, v []byte, samples bool) ([]traffic.Bucket, error) {
	ver, tv, _, err := slotSection(v)
	if err != nil {
		return dst, err
	}
	if ver == hourV1 {
		slots, err := decodeHour(start, v)
		if err != nil {
			return dst, err
		}
		t := hourTotal(&slots)
		if !samples {
			t.Samples = nil
		}
		return append(dst, t), nil
	}
	d := newSharedDec(tv)
	b, ok := r.bucket(d, ver, true, samples)
	b.Start, b.Width = start, time.Hour
	if !ok && d.err == nil {
		d.fail("empty hour")
	}
	if err := d.done(); err != nil {
		return dst, err
	}
	return append(dst, b), nil
}

// bucket decodes one bucket, in the layout of version ver: counts, error
// codes and samples. When keep is false it only parses them and returns a
// zero bucket; when samples is false it leaves the samples out, and skips
// them unparsed if their length is stored. ok reports whether the stored
// bucket has anything in it, samples included.
func (r *hourReader) bucket(d *dec, ver byte, keep, samples bool) (b traffic.Bucket, ok bool) {
	c := &b.Counts
	d.counts(ver, c)
	nerr := d.count()
	for range nerr {
		code, n := d.int(), d.varint()
		if !keep || d.err != nil {
			continue
		}
		if n == 0 {
			d.fail("zero count for error %d", code)
		}
		if c.Errors == nil {
			c.Errors = r.errMap()
		}
		c.Errors[code] = n
	}
	if keep && len(c.Errors) != nerr && d.err == nil {
		d.fail("duplicate error code")
	}
	ok = !empty(&b)
	keepSamples := keep && samples
	end := -1 // len(d.b) after the samples, when their length is stored
	if ver >= hourV2 {
		n := d.count()
		ok = ok || n > 0
		if n == 0 || !keepSamples {
			d.skip(n)
			if !keep {
				return traffic.Bucket{}, ok
			}
			return b, ok
		}
		end = len(d.b) - n
	}
	nkeys := d.count()
	if end >= 0 && nkeys == 0 {
		d.fail("empty samples")
	}
	ok = ok || nkeys > 0
	var sm map[int][]string
	for range nkeys {
		k, n := d.int(), d.count()
		if n == 0 {
			d.fail("empty sample list")
		}
		first := len(r.sids)
		for range n {
			if !keepSamples {
				d.raw()
			} else if s := d.str(); d.err == nil {
				r.sids = append(r.sids, s)
			}
		}
		if !keepSamples || d.err != nil {
			continue
		}
		if sm == nil {
			sm = r.sampleMap()
		}
		sm[k] = r.sids[first:len(r.sids):len(r.sids)]
	}
	if keepSamples && len(sm) != nkeys && d.err == nil {
		d.fail("duplicate sample key")
	}
	if end >= 0 && len(d.b) != end && d.err == nil {
		d.fail("samples length mismatch")
	}
	if !keep {
		return traffic.Bucket{}, ok
	}
	b.Samples = sm
	return b, ok
}

// appendExamples appends to out, newest slot first, the sample SIDs for any
// of keys of the slots of hour record v (for the hour that starts at start)
// that start in [from, to), sorted within a slot, until out holds n: what
// traffic.Examples does over the slots. It builds no bucket and copies only
// the SIDs it returns. cand is scratch space, returned for reuse.
func appendExamples(out []string, cand [][]byte, start time.Time, v []byte, from, to time.Time, n int, keys []int) ([]string, [][]byte, error) {
	ver, _, sv, err := slotSection(v)
	if err != nil {
		return out, cand, err
	}
	d := newDec(sv)
	mask := d.uvarint()
	if mask>>slotsPerHour != 0 {
		d.fail("bad slot mask %#x", mask)
	}
	// cand holds the candidates of the slots in range, oldest first;
	// ends[i] is where slot i's end in cand.
	cand = cand[:0]
	var ends [slotsPerHour]int
	var in [slotsPerHour]bool
	for i := 0; i < slotsPerHour && d.err == nil; i++ {
		ends[i] = len(cand)
		if mask&(1<<i) == 0 {
			continue
		}
		bs := start.Add(time.Duration(i) * traffic.BucketWidth)
		in[i] = !bs.Before(from) && bs.Before(to)
		var c traffic.Counts
		d.counts(ver, &c)
		for range d.count() {
			d.int()
			d.varint()
		}
		end := -1
		if ver >= hourV2 {
			n := d.count()
			if n == 0 || !in[i] {
				d.skip(n)
				continue
			}
			end = len(d.b) - n
		}
		for range d.count() {
			k, m := d.int(), d.count()
			want := in[i] && slices.Contains(keys, k)
			for range m {
				if p := d.raw(); want && d.err == nil {
					cand = append(cand, p)
				}
			}
		}
		if end >= 0 && len(d.b) != end {
			d.fail("samples length mismatch")
		}
		ends[i] = len(cand)
	}
	if err := d.done(); err != nil {
		return out, cand, err
	}
	for i := slotsPerHour - 1; i >= 0 && len(out) < n; i-- {
		lo := 0
		if i > 0 {
			lo = ends[i-1]
		}
		if !in[i] || lo == ends[i] {
			continue
		}
		sids := cand[lo:ends[i]]
		slices.SortFunc(sids, bytes.Compare)
		for _, p := range sids {
			if len(out) == n {
				break
			}
			out = append(out, string(p))
		}
	}
	return out, cand, nil
}

// decodeHour decodes a whole hour record into its slots. The totals of an
// hourV2 record must equal the sum of its slots.
func decodeHour(start time.Time, v []byte) ([slotsPerHour]traffic.Bucket, error) {
	var slots [slotsPerHour]traffic.Bucket
	for i := range slots {
		slots[i].Start = start.Add(time.Duration(i) * traffic.BucketWidth)
	}
	var r hourReader
	bs, err := r.appendHour(make([]traffic.Bucket, 0, slotsPerHour), start, v, start, start.Add(time.Hour), true)
	if err != nil {
		return slots, err
	}
	for _, b := range bs {
		slots[b.Start.Sub(start)/traffic.BucketWidth] = b
	}
	if ver, tv, _, _ := slotSection(v); tv != nil {
		total := hourTotal(&slots)
		if !bytes.Equal(encodeTotalAs(ver, &total), tv) {
			return slots, fmt.Errorf("%w: totals do not match the slots", errCorrupt)
		}
	}
	return slots, nil
}
