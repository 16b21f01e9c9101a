// Package store keeps sentinel's state in one bbolt file behind domain
// methods: subaccounts, every ingested message in its latest state, the
// bucketed aggregates the policies judge, poll bookkeeping, usage, rule and
// breaker state, the audit log, incidents and the Slack outbox. No bbolt type
// leaves the package and every value is copied out before its transaction
// ends.
//
// # Layout
//
// Top-level bbolt buckets and their keys ("/" is a literal separator; account
// SIDs never contain it; T8 is a time as 8 big-endian bytes with the sign bit
// flipped, so keys sort by time; ID8 is a big-endian uint64):
//
//	meta        "app" = "sentinel", "schema" = uint64, "horizon" = prune horizon,
//	            "slackhold" = SlackHold
//	accounts    accountSID                   → Account
//	messages    accountSID/messageSID        → traffic.Message
//	msgtime     accountSID/T8(UnixNano)/sid  → empty (per-account time index)
//	aggregates  accountSID/T8(hour, seconds) → the hour's totals and its 12 five-minute buckets
//	coverage    accountSID                   → traffic.Coverage
//	polls       accountSID/stream            → PollState
//	usage       accountSID/day               → traffic.Usage
//	rulestate   accountSID                   → all of the account's RuleStates
//	breaker     accountSID                   → Breaker
//	audit       ID8                          → AuditRecord
//	auditacct   accountSID/ID8               → empty (per-account audit index)
//	intents     ID8                          → empty (intents without an outcome)
//	incidents   accountSID/rule              → Incident
//	outbox      ID8                          → OutboxItem
//	consent     accountSID/peer (8 bytes)    → consent record (consent.go)
//	spenddays   accountSID/day               → empty (a spend rule fired that day)
//
// meta also holds "peerkey", the per-installation key of traffic.Peers,
// made at random when the database is created (or upgraded to version 3).
//
// Values are a version byte followed by a compact varint encoding (codec.go).
// Times are stored as UnixNano and returned in UTC. A value that does not
// decode is reported as an error naming its bucket and key, never a panic.
//
// Raw messages are keyed by account, then SID, and the time index by
// account, then time, so that each account's records are contiguous: a
// PutMessages of one account's batch rewrites that account's few pages of
// each bucket, where a key of the SID alone, random across the fleet, put
// every message of a batch on a page of its own and had a commit of 5,000
// messages write some 5,000 pages. It follows that a message is known by
// its account and SID together (Message takes both); Twilio's SIDs are
// unique across accounts anyway, and nothing here checks it.
//
// Aggregates are grouped per account and UTC hour so that reading a day of
// one account's buckets is one cursor seek and about 25 reads, and
// ScanBuckets reads every account in one pass. PutMessages keeps them equal
// to a recount of the raw messages, including the samples: per bucket and
// sample key, the traffic.MaxSamples smallest qualifying SIDs in sorted
// order, a rule that an incremental update can keep exactly (a full list
// that loses a SID is refilled from the bucket's raw messages).
//
// Each hour record also holds the hour's totals: its buckets summed, with
// the same sample rule over the hour (exact, since the hour's smallest SIDs
// are among its buckets' smallest). HourBuckets and ScanHourBuckets return
// an hour that no window starts in as that one bucket (traffic.Bucket.Width
// is an hour) and decode only its totals, so a cycle that judges a day of
// every account reads about 46 buckets per account instead of 288.
// ScanHourBuckets also leaves samples out and decodes them on demand for
// the few decisions that carry examples. The totals were added as hour
// record version 2 (codec.go) without a schema step: version 1 records,
// which lack them, are still read, summed when asked for whole, and
// rewritten as version 2 by their next change.
//
// The evaluator's cycle reads the small per-account records of every
// account (breakers, coverage, usage, poll and rule states) with the All*
// methods, one transaction each, and writes the rule states that changed
// with PutRuleStatesBatch, one commit: per account, a cycle over ten
// thousand accounts would be tens of thousands of transactions and ten
// thousand fsyncs. WriteSynthetic builds large synthetic databases for
// benchmarks.
//
// # Schema
//
// "schema" is the layout version; this binary writes version 3. Open runs the
// steps from the stored version up to the current one in a single
// transaction, so a v4 is added by appending a step to schema(). Version 2
// re-keyed raw messages from the SID alone to account and SID; version 3
// added the consent records, the spend days and the peer key. A file that
// is not a sentinel database, or that has a newer schema, is refused
// without a single byte written: existing files are inspected read-only
// before they are opened for writing, and an empty (zero-length) file is
// refused rather than initialised. A valid bbolt file with no buckets at all
// is what an Open that died before its first commit leaves, and is
// initialised.
//
// Open takes time in proportion to the size of the file: bbolt's list of free
// pages is not written by commits but rebuilt by each Open (boltOptions).
//
// Options.ReadOnly opens an existing database for reading only, as
// backtests and explanations do: it never creates, initialises or migrates
// a file, and every write fails with ErrReadOnly. It takes bbolt's shared
// lock, so it waits for (and then fails with ErrLocked against) a daemon
// that holds the file, and any number of readers share it.
//
// # Pruning
//
// Prune deletes raw messages before a horizon but keeps their aggregates
// longer. Once a message is gone its contribution can no longer be
// subtracted, so Prune records the horizon and PutMessages ignores (counts as
// Unchanged) any message it does not hold whose Time is before the horizon: a
// late update of a pruned message changes nothing, and a message first seen
// after its retention has passed is never counted. The one case this misses
// is a pruned message that comes back with a different Time at or after the
// horizon (a message stuck without date_sent for longer than the raw
// retention): it is counted again in its new bucket. Recount is only defined
// over the retained range. Aggregates must not be pruned before raw
// messages (aggBefore <= before), or a change to a kept message would be
// subtracted from a bucket that is gone.
//
// # Concurrency
//
// All methods are safe for concurrent use. bbolt runs one write transaction
// at a time and any number of read transactions beside it; every method is
// one transaction, except Prune, which deletes in chunks so that it never
// holds the writer for long. ScanBuckets calls its fn inside its read
// transaction, so fn must not write to the store. The file is locked: a
// second Open of the same
// path, from this process or another, fails with ErrLocked after
// Options.LockTimeout.
package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"sentinel/internal/traffic"
)

// Errors callers branch on. Errors from Open wrap them with the path.
var (
	ErrLocked      = errors.New("locked by another process")
	ErrNotSentinel = errors.New("not a sentinel database")
	ErrNewerSchema = errors.New("schema newer than this binary")
	ErrNotFound    = errors.New("not found")
	// ErrOldSchema means a read-only Open found a database that this
	// binary would first have to migrate.
	ErrOldSchema = errors.New("schema older than this binary")
	// ErrReadOnly is what every write to a store opened with
	// Options.ReadOnly fails with.
	ErrReadOnly = berrors.ErrDatabaseReadOnly
)

// DefaultLockTimeout is Options.LockTimeout when it is zero.
const DefaultLockTimeout = time.Second

// Options configure Open.
type Options struct {
	// LockTimeout bounds the wait for another process's lock on the file;
	// zero means DefaultLockTimeout. Negative is invalid.
	LockTimeout time.Duration
	// ConsentWindow is how far apart two opt-outs from one number must be
	// to count twice, and how recently the account must have messaged a
	// number for its opt-out to count (see consent.go): the raw message
	// retention. Zero means 7 days.
	ConsentWindow time.Duration
	// ReadOnly opens an existing, up-to-date database for reading only
	// (see the package doc): nothing in the file can change.
	ReadOnly bool
}

// Store is sentinel's database. Its methods are safe for concurrent use.
type Store struct {
	db      *bolt.DB
	path    string
	consent time.Duration
}

// Bucket names.
const (
	bkMeta       = "meta"
	bkAccounts   = "accounts"
	bkMessages   = "messages"
	bkMsgTime    = "msgtime"
	bkAggregates = "aggregates"
	bkCoverage   = "coverage"
	bkPolls      = "polls"
	bkUsage      = "usage"
	bkRuleState  = "rulestate"
	bkBreaker    = "breaker"
	bkAudit      = "audit"
	bkAuditAcct  = "auditacct"
	bkIntents    = "intents"
	bkIncidents  = "incidents"
	bkOutbox     = "outbox"
	bkConsent    = "consent"
	bkSpendDays  = "spenddays"
	bkEvents     = "events"
)

// Keys of the meta bucket.
const (
	keyApp     = "app"
	keySchema  = "schema"
	keyHorizon = "horizon"
	keyPeerKey = "peerkey"
	appName    = "sentinel"
)

// A migration moves the layout from version N to N+1 inside the transaction
// that Open runs all pending steps in.
type migration func(tx *bolt.Tx) error

// schema returns the steps from an empty file to the current layout: step i
// turns version i into version i+1, so the current version is len(schema()).
// Append only.
func schema() []migration {
	return []migration{createV1, rekeyMessagesV2, consentV3, eventsV4}
}

// eventsV4 adds the ids of pushed events seen (see PutReports). Message
// records may now end with their Updated time, which an older sentinel
// would refuse: the version step keeps it from reading them.
func eventsV4(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists([]byte(bkEvents)); err != nil {
		return fmt.Errorf("create bucket %s: %w", bkEvents, err)
	}
	return nil
}

// consentV3 adds the consent records, the spend days and the peer key, and
// recounts the aggregates of the retained range (recountRetained).
func consentV3(tx *bolt.Tx) error {
	if err := recountRetained(tx); err != nil {
		return err
	}
	for _, name := range []string{bkConsent, bkSpendDays} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	key := make([]byte, traffic.PeerKeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("make peer key: %w", err)
	}
	return tx.Bucket([]byte(bkMeta)).Put([]byte(keyPeerKey), key)
}

// createV1 creates the initial layout.
func createV1(tx *bolt.Tx) error {
	for _, name := range []string{
		bkMeta, bkAccounts, bkMessages, bkMsgTime, bkAggregates, bkCoverage, bkPolls, bkUsage,
		bkRuleState, bkBreaker, bkAudit, bkAuditAcct, bkIntents, bkIncidents, bkOutbox,
	} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return tx.Bucket([]byte(bkMeta)).Put([]byte(keyApp), []byte(appName))
}

// rekeyMessagesV2 moves raw messages from version 1's key, the message SID,
// to "accountSID/messageSID" (see msgKey). The message values and the time
// index are unchanged. The bucket is rebuilt rather than edited in place:
// the messages are read into memory, the bucket is dropped and the new keys
// are written in order into a fresh one, which packs its pages as tightly
// as a key-ordered load allows. That holds every message in memory once,
// which a one-off step can afford.
func rekeyMessagesV2(tx *bolt.Tx) error {
	type rec struct{ key, value []byte }
	var recs []rec
	err := tx.Bucket([]byte(bkMessages)).ForEach(func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil {
			return corrupt(bkMessages, k, err)
		}
		if m.SID != string(k) || checkSID(m.AccountSID) != nil {
			return corrupt(bkMessages, k, fmt.Errorf("%w: holds message %s of account %q", errCorrupt, m.SID, m.AccountSID))
		}
		recs = append(recs, rec{msgKey(m.AccountSID, m.SID), bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b rec) int { return bytes.Compare(a.key, b.key) })
	if err := tx.DeleteBucket([]byte(bkMessages)); err != nil {
		return fmt.Errorf("delete bucket %s: %w", bkMessages, err)
	}
	msgs, err := tx.CreateBucket([]byte(bkMessages))
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bkMessages, err)
	}
	msgs.FillPercent = ingestFill
	for _, r := range recs {
		if err := msgs.Put(r.key, r.value); err != nil {
			return err
		}
	}
	return nil
}

// Open opens the sentinel database at path, creating it if path does not
// exist, and brings its layout up to date. It fails with ErrLocked when
// another Store holds the file for longer than opts.LockTimeout, with
// ErrNotSentinel for any other existing file (including an empty one) and
// with ErrNewerSchema for a database written by a newer sentinel; in those
// cases the file is not modified.
func Open(path string, opts Options) (*Store, error) {
	return open(path, opts, schema())
}

// open is Open with the migration steps as a parameter, for tests.
func open(path string, opts Options, steps []migration) (*Store, error) {
	if opts.LockTimeout < 0 {
		return nil, fmt.Errorf("open store %s: negative lock timeout %v", path, opts.LockTimeout)
	}
	if opts.ConsentWindow < 0 {
		return nil, fmt.Errorf("open store %s: negative consent window %v", path, opts.ConsentWindow)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.ReadOnly {
		return openReadOnly(path, opts, len(steps))
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// bbolt creates and initialises the file; migrate fills it in.
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	case !fi.Mode().IsRegular() || fi.Size() == 0:
		// bbolt would initialise an empty file in place, even read-only.
		return nil, fmt.Errorf("open store %s: %w", path, ErrNotSentinel)
	default:
		if err := inspect(path, opts.LockTimeout, len(steps)); err != nil {
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, boltOptions(opts.LockTimeout))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, openErr(err))
	}
	if err := migrate(db, steps); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db, path: path, consent: opts.ConsentWindow}, nil
}

// openReadOnly opens an existing database at the current schema version
// for reading only.
func openReadOnly(path string, opts Options, target int) (*Store, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store %s: no such database: %w", path, fs.ErrNotExist)
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	case !fi.Mode().IsRegular() || fi.Size() == 0:
		return nil, fmt.Errorf("open store %s: %w", path, ErrNotSentinel)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: opts.LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, openErr(err))
	}
	err = db.View(func(tx *bolt.Tx) error {
		v, err := version(tx, target)
		switch {
		case err != nil:
			return err
		case v == 0:
			return fmt.Errorf("%w: an empty database", ErrNotSentinel)
		case v < target:
			return fmt.Errorf("schema version %d, this binary writes %d; run sentinel on it once to upgrade it: %w", v, target, ErrOldSchema)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db, path: path, consent: opts.ConsentWindow}, nil
}

// PeerKey returns the per-installation key that traffic.Peers hashes phone
// numbers with.
func (s *Store) PeerKey() ([]byte, error) {
	var key []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		key = bytes.Clone(tx.Bucket([]byte(bkMeta)).Get([]byte(keyPeerKey)))
		if len(key) != traffic.PeerKeySize {
			return fmt.Errorf("%w: peer key of %d bytes", errCorrupt, len(key))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peer key: %w", err)
	}
	return key, nil
}

// boltOptions returns the options of a read-write bolt.Open.
//
// The freelist, the list of the file's free pages, is not written by each
// commit (NoFreelistSync) but rebuilt by every read-write open, which walks
// the whole file: about 130ms per million messages with the file in the
// page cache, more from a cold disk. In exchange commits stay small once
// Prune has freed many pages, whose list every commit would otherwise
// write again: when this was chosen, after pruning half of 1M messages,
// polls of 20 new messages wrote 40% less. The hashmap freelist keeps
// allocation from that list cheap when it is long. Opened without
// NoFreelistSync, bbolt rebuilds the list and writes it back, so the
// choice can be undone.
func boltOptions(timeout time.Duration) *bolt.Options {
	return &bolt.Options{
		Timeout:        timeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
}

// inspect checks, read-only, that an existing file is a sentinel database
// this binary can open. bbolt takes a shared lock for that, so a file that
// another Store holds fails here with ErrLocked.
func inspect(path string, timeout time.Duration, target int) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return openErr(err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		_, err := version(tx, target)
		return err
	})
}

// openErr translates bbolt's errors from opening a file.
func openErr(err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return ErrLocked
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("%w (%v)", ErrNotSentinel, err)
	}
	return err
}

// version returns the schema version of a sentinel database: 0 for a new,
// empty bbolt file. It fails for any other file and for a version above
// target.
func version(tx *bolt.Tx, target int) (int, error) {
	meta := tx.Bucket([]byte(bkMeta))
	if meta == nil {
		if k, _ := tx.Cursor().First(); k == nil {
			return 0, nil
		}
		return 0, ErrNotSentinel
	}
	if string(meta.Get([]byte(keyApp))) != appName {
		return 0, ErrNotSentinel
	}
	v := meta.Get([]byte(keySchema))
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: bad schema version %x", ErrNotSentinel, v)
	}
	n := binary.BigEndian.Uint64(v)
	if n > uint64(target) {
		return 0, fmt.Errorf("schema version %d, this binary knows %d: %w", n, target, ErrNewerSchema)
	}
	return int(n), nil
}

// migrate runs the pending steps, all in one transaction, and records the
// new version. A database that is up to date is only read.
func migrate(db *bolt.DB, steps []migration) error {
	var v int
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		v, err = version(tx, len(steps))
		return err
	})
	if err != nil || v == len(steps) {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		// Read again: another process may have migrated in between.
		v, err := version(tx, len(steps))
		if err != nil {
			return err
		}
		for ; v < len(steps); v++ {
			if err := steps[v](tx); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
		meta := tx.Bucket([]byte(bkMeta))
		if meta == nil {
			return fmt.Errorf("migrate schema: no %s bucket after version %d", bkMeta, v)
		}
		return meta.Put([]byte(keySchema), binary.BigEndian.AppendUint64(nil, uint64(v)))
	})
}

// Close closes the database, waiting for running transactions.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// ---- keys

// checkSID rejects account SIDs that cannot be a key prefix.
func checkSID(sid string) error {
	if sid == "" || strings.Contains(sid, "/") {
		return fmt.Errorf("invalid account sid %q", sid)
	}
	return nil
}

// prefix returns "sid/".
func prefix(sid string) []byte {
	k := make([]byte, 0, len(sid)+1+8+34)
	return append(append(k, sid...), '/')
}

// afterPrefix returns the smallest key greater than every key with the
// prefix "sid/": '0' follows '/'.
func afterPrefix(sid string) []byte {
	return append([]byte(sid), '0')
}

// appendT8 appends v so that keys sort by v, negative values first.
func appendT8(k []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(k, uint64(v)^(1<<63))
}

func readT8(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63))
}

func id8(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// splitSID splits "sid/rest" at the first '/'.
func splitSID(k []byte) (sid string, rest []byte, ok bool) {
	i := bytes.IndexByte(k, '/')
	if i <= 0 {
		return "", nil, false
	}
	return string(k[:i]), k[i+1:], true
}

// utc returns t as the store returns it: UTC, nanosecond precision, no
// monotonic reading; the zero time stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(0, t.UnixNano()).UTC()
}

// ---- records

// getRec decodes the record under key in bucket, reporting whether it exists.
func getRec[T any](tx *bolt.Tx, bucket string, key []byte, decode func(*dec) T) (T, bool, error) {
	var zero T
	v := tx.Bucket([]byte(bucket)).Get(key)
	if v == nil {
		return zero, false, nil
	}
	r, err := decodeRec(v, decode)
	if err != nil {
		return zero, false, corrupt(bucket, key, err)
	}
	return r, true, nil
}

func decodeRec[T any](v []byte, decode func(*dec) T) (T, error) {
	d := newDec(v)
	d.version(recordV1)
	r := decode(d)
	if err := d.done(); err != nil {
		var zero T
		return zero, err
	}
	return r, nil
}

// putRec stores r under key in bucket.
func putRec[T any](tx *bolt.Tx, bucket string, key []byte, r T, encode func(*enc, T)) error {
	e := enc{b: make([]byte, 0, 64)}
	e.byte(recordV1)
	encode(&e, r)
	return tx.Bucket([]byte(bucket)).Put(key, e.b)
}
