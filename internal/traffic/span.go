package traffic

import "time"

// Aggregates are kept per BucketWidth, but a reader that needs no such
// resolution over most of a window (a day judged as one sum) may merge them
// into wider buckets: a Bucket of Width w is the sum of the w/BucketWidth
// buckets, its "slots", that start at Start, Start+BucketWidth, and so on.
//
// A window of bucket starts [from, to) counts the slots that start in it,
// which for BucketWidth buckets is the rule this package has always used.
// A wider bucket counts only when all of its slots do (Within); one that has
// slots on both sides of a window's bound (Straddles) cannot be split and
// must not be summed over that window. Readers avoid it by never merging
// across a window bound (see store.HourBuckets and policy.Set.Cuts).
//
// A bucket may also be narrower than BucketWidth: a "head" that starts at
// an instant which is not a bucket boundary, such as a reinstatement, and
// ends at the next boundary. It is one slot of its own, recounted from the
// raw messages (store.CountRange), so that a window can start exactly at
// that instant; it counts in a window when its Start does.

// Span returns the time b covers: Width, or BucketWidth when Width is zero.
func (b *Bucket) Span() time.Duration {
	if b.Width == 0 {
		return BucketWidth
	}
	return b.Width
}

// End returns the end of the time b covers, Start+Span.
func (b *Bucket) End() time.Time { return b.Start.Add(b.Span()) }

// lastSlot returns the start of b's last slot.
func (b *Bucket) lastSlot() time.Time {
	if s := b.Span(); s > BucketWidth {
		return b.Start.Add(s - BucketWidth)
	}
	return b.Start
}

// Within reports whether every slot of b starts in [from, to), so that b
// counts, whole, in the window of bucket starts [from, to).
func (b *Bucket) Within(from, to time.Time) bool {
	return !b.Start.Before(from) && b.lastSlot().Before(to)
}

// Straddles reports whether some but not all slots of b start in
// [from, to): b cannot be counted in that window exactly.
func (b *Bucket) Straddles(from, to time.Time) bool {
	first, last := b.Start, b.lastSlot()
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	if in(first) != in(last) {
		return true
	}
	// Both ends outside: a slot in between may still start in the window.
	return first.Before(from) && !last.Before(to) && CeilBucket(from).Before(to)
}

// ExampleFunc returns what Examples would return for the BucketWidth
// buckets behind a read: up to n sample SIDs for any of keys from buckets
// that start in [from, to), newest bucket first. A bulk read that leaves
// samples out (store.ScanHourBuckets) offers one, so that the few decisions
// that need examples decode them, and the many that do not, do not.
type ExampleFunc func(from, to time.Time, n int, keys ...int) []string
