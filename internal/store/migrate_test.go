package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// writeV1 turns the current database s into schema version 1, whose
// messages bucket is keyed by the message SID alone, and closes it. The rest
// of version 1's layout is version 2's.
func writeV1(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		msgs := tx.Bucket([]byte(bkMessages))
		type rec struct{ old, sid, v []byte }
		var recs []rec
		err := msgs.ForEach(func(k, v []byte) error {
			_, sid, ok := splitSID(k)
			if !ok {
				t.Fatalf("message key %q has no account", k)
			}
			recs = append(recs, rec{append([]byte(nil), k...), append([]byte(nil), sid...), append([]byte(nil), v...)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := msgs.Delete(r.old); err != nil {
				return err
			}
			if err := msgs.Put(r.sid, r.v); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bkMeta)).Put([]byte(keySchema), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateV2 opens a version 1 database with messages of three accounts,
// some pruned, and checks that they are all found under their new keys,
// consistent with the time index and the aggregates, and that ingest and
// Prune carry on from them.
func TestMigrateV2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	s := mustOpenPath(t, path)
	rng := rand.New(rand.NewPCG(3, 0))
	accounts := []string{testAccount(1), testAccount(2), testAccount(3)}
	want := map[string][]traffic.Message{}
	for ai, acct := range accounts {
		var msgs []traffic.Message
		for i := range 300 {
			m := randomMessage(rng, acct, ai*1000+i)
			m.Time = m.Time.Add(time.Duration(rng.IntN(4)) * time.Hour)
			msgs = append(msgs, m)
		}
		mustPut(t, s, acct, msgs...)
		want[acct] = msgs
	}
	end := testBase.Add(6 * time.Hour)
	pruned, err := s.Prune(testBase.Add(time.Hour), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	writeV1(t, s)

	s = mustOpenPath(t, path)
	if got, want := schemaVersion(t, s), uint64(len(schema())); got != want {
		t.Fatalf("schema version after migration = %d, want %d", got, want)
	}
	kept := 0
	for acct, msgs := range want {
		for _, m := range msgs {
			m.Time = m.Time.UTC()
			got, err := s.Message(acct, m.SID)
			m.Ignored = got.Ignored // the consent records decide it
			switch {
			case m.Time.Before(testBase.Add(time.Hour)):
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("pruned Message(%s) = %+v, %v, want ErrNotFound", m.SID, got, err)
				}
			case err != nil || got != m:
				t.Errorf("Message(%s) = %+v, %v, want %+v", m.SID, got, err, m)
			default:
				kept++
			}
		}
		checkRecount(t, s, acct, testBase.Add(time.Hour), end)
	}
	if total := 3 * 300; kept+pruned != total {
		t.Errorf("%d messages kept and %d pruned, want %d in all", kept, pruned, total)
	}

	// Ingest finds the migrated messages: a resend changes them and a
	// pruned one stays ignored.
	for acct, msgs := range want {
		for i := range msgs {
			msgs[i].Status, msgs[i].ErrorCode = "undelivered", 30007
		}
		in := mustPut(t, s, acct, msgs...)
		if in.New != 0 || in.Changed+in.Unchanged != len(msgs) {
			t.Errorf("%s: resend = %+v, want only changed and unchanged", acct, in)
		}
		checkRecount(t, s, acct, testBase.Add(time.Hour), end)
	}
	n, err := s.Prune(end, time.Time{})
	if err != nil || n != kept {
		t.Errorf("Prune = %d, %v, want %d", n, err, kept)
	}
	for acct, msgs := range want {
		for _, m := range msgs {
			if _, err := s.Message(acct, m.SID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Message(%s) after pruning everything = %v, want ErrNotFound", m.SID, err)
			}
		}
	}
}

// A version 1 message that does not decode stops the migration, and the
// database stays at version 1, untouched.
func TestMigrateV2Corrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	s := mustOpenPath(t, path)
	acct := testAccount(1)
	mustPut(t, s, acct, testMessage(acct, 1, testBase), testMessage(acct, 2, testBase))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bkMessages)).Put(msgKey(acct, testSID(2)), []byte{1, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	writeV1(t, s)
	sum := fileSum(t, path)
	if _, err := Open(path, Options{}); !errors.Is(err, errCorrupt) {
		t.Fatalf("Open of a corrupt v1 database = %v, want errCorrupt", err)
	}
	if fileSum(t, path) != sum {
		t.Error("a failed migration changed the file")
	}
}

// TestMigratePending: a version 2 database's hour records lack the count of
// messages that can still change (and the other counts version 3 added);
// the migration recounts the retained range from the raw messages, so the
// poller's re-read finds a message still waiting for its receipt.
func TestMigratePending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	s := mustOpenPath(t, path)
	acct := testAccount(1)
	var msgs []traffic.Message
	for i := range 30 {
		m := testMessage(acct, i, testBase.Add(time.Duration(i)*3*time.Minute))
		m.Status = "delivered"
		if i == 17 {
			m.Status = "sent" // no receipt yet
		}
		msgs = append(msgs, m)
	}
	mustPut(t, s, acct, msgs...)
	if _, err := s.Prune(testBase.Add(10*time.Minute), time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Back to version 2: hour records without the new counts, no consent
	// records.
	err := s.db.Update(func(tx *bolt.Tx) error {
		aggs := tx.Bucket([]byte(bkAggregates))
		type kv struct{ k, v []byte }
		var old []kv
		err := aggs.ForEach(func(k, v []byte) error {
			hour := time.Unix(readT8(k[len(k)-8:]), 0).UTC()
			slots, err := decodeHour(hour, v)
			if err != nil {
				return err
			}
			old = append(old, kv{bytes.Clone(k), encodeHourAs(hourV2, &slots)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, o := range old {
			if err := aggs.Put(o.k, o.v); err != nil {
				return err
			}
		}
		for _, b := range []string{bkConsent, bkSpendDays} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bkMeta)).Put([]byte(keySchema), binary.BigEndian.AppendUint64(nil, 2))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.OldestPending(acct, testBase, testBase.Add(2*time.Hour)); found {
		t.Fatal("a version 2 record knows of pending messages (the test's premise)")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpenPath(t, path)
	at, found, err := s.OldestPending(acct, testBase, testBase.Add(2*time.Hour))
	if err != nil || !found || !at.Equal(msgs[17].Time) {
		t.Errorf("oldest pending after migration = %v, %v, %v; want %v", at, found, err, msgs[17].Time)
	}
	checkRecount(t, s, acct, testBase.Add(10*time.Minute), testBase.Add(2*time.Hour))
	// Before the horizon the counts stay as they were.
	bs, err := s.Buckets(acct, testBase, testBase.Add(10*time.Minute))
	if err != nil || traffic.Sum(bs, testBase, testBase.Add(10*time.Minute)).Outbound != 4 {
		t.Errorf("buckets before the horizon = %+v, %v; want their 4 messages kept", bs, err)
	}
}
