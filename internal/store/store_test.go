package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"sentinel/internal/traffic"
)

// MustOpen opens a new store in a temporary directory, closed at cleanup.
func MustOpen(tb testing.TB) *Store {
	tb.Helper()
	return mustOpenPath(tb, filepath.Join(tb.TempDir(), "sentinel.db"))
}

func mustOpenPath(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			tb.Error(err)
		}
	})
	return s
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func schemaVersion(t *testing.T, s *Store) uint64 {
	t.Helper()
	var v uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		v = binary.BigEndian.Uint64(tx.Bucket([]byte(bkMeta)).Get([]byte(keySchema)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpenCreatesAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := schemaVersion(t, s), uint64(len(schema())); got != want {
		t.Errorf("schema version = %d, want %d", got, want)
	}
	if _, err := s.SyncAccounts([]Account{{SID: testAccount(1), Status: "active"}}, testBase); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %v, want 0600", perm)
	}
	// An up-to-date database is opened without a write.
	sum := fileSum(t, path)
	s = mustOpenPath(t, path)
	if _, err := s.Account(testAccount(1)); err != nil {
		t.Errorf("account after reopen: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, path) != sum {
		t.Error("reopening an up-to-date database changed the file")
	}
}

func TestOpenLocked(t *testing.T) {
	s := MustOpen(t)
	path := s.db.Path()
	for _, timeout := range []time.Duration{0, 20 * time.Millisecond} {
		_, err := Open(path, Options{LockTimeout: timeout})
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open (timeout %v) = %v, want ErrLocked", timeout, err)
		}
		if want := "open store " + path + ": locked by another process"; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	}
	// The holder is unaffected.
	if _, err := s.Accounts(); err != nil {
		t.Error(err)
	}
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
		want  error
	}{
		{"text", writeFile("hello, this is not a database\n"), ErrNotSentinel},
		{"long text", writeFile(strings.Repeat("not a database at all\n", 1000)), ErrNotSentinel},
		{"empty file", writeFile(""), ErrNotSentinel},
		{"other bbolt", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("widgets"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			}); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}, ErrNotSentinel},
		{"bbolt with foreign meta", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte(bkMeta))
				if err != nil {
					return err
				}
				return b.Put([]byte(keyApp), []byte("someone-else"))
			}); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}, ErrNotSentinel},
		{"newer schema", func(t *testing.T, path string) {
			s, err := open(path, Options{}, append(schema(), func(*bolt.Tx) error { return nil }))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}, ErrNewerSchema},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			tt.write(t, path)
			before := fileSum(t, path)
			s, err := Open(path, Options{})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			if fileSum(t, path) != before {
				t.Error("file changed")
			}
		})
	}
}

func writeFile(content string) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenInvalid(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrNotSentinel) {
		t.Errorf("Open(directory) = %v, want ErrNotSentinel", err)
	}
	if _, err := Open(filepath.Join(dir, "x.db"), Options{LockTimeout: -1}); err == nil {
		t.Error("Open with a negative lock timeout succeeded")
	}
	if _, err := Open(filepath.Join(dir, "missing", "x.db"), Options{}); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

// An empty bbolt file is what an Open that died before its first
// transaction leaves behind: it is initialised, not refused.
func TestOpenEmptyBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := mustOpenPath(t, path)
	if got, want := schemaVersion(t, s), uint64(len(schema())); got != want {
		t.Errorf("schema version = %d, want %d", got, want)
	}
}

func TestMigrate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	s := mustOpenPath(t, path)
	if _, err := s.SyncAccounts([]Account{{SID: testAccount(1), Status: "active"}}, testBase); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A failing step leaves the database at the current version.
	cur := uint64(len(schema()))
	broken := append(schema(), func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("next")); err != nil {
			return err
		}
		return errors.New("step failed")
	})
	if _, err := open(path, Options{}, broken); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("migrate schema to version %d: step failed", cur+1)) {
		t.Fatalf("open with a failing step = %v", err)
	}
	s = mustOpenPath(t, path)
	if got := schemaVersion(t, s); got != cur {
		t.Errorf("schema version after failed migration = %d, want %d", got, cur)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A next step runs once, in order, with the current data in place.
	runs := 0
	next := append(schema(), func(tx *bolt.Tx) error {
		runs++
		if tx.Bucket([]byte(bkAccounts)).Get([]byte(testAccount(1))) == nil {
			return errors.New("current data missing")
		}
		_, err := tx.CreateBucket([]byte("next"))
		return err
	})
	for range 2 {
		s, err := open(path, Options{}, next)
		if err != nil {
			t.Fatal(err)
		}
		if got := schemaVersion(t, s); got != cur+1 {
			t.Errorf("schema version = %d, want %d", got, cur+1)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if runs != 1 {
		t.Errorf("next step ran %d times, want 1", runs)
	}
	if _, err := Open(path, Options{}); !errors.Is(err, ErrNewerSchema) {
		t.Errorf("Open of a newer database = %v, want ErrNewerSchema", err)
	}
}

func TestCorruptValues(t *testing.T) {
	s := MustOpen(t)
	acct := testAccount(1)
	if _, err := s.PutMessages(acct, []traffic.Message{testMessage(acct, 1, testBase)}); err != nil {
		t.Fatal(err)
	}
	hour := hourKey(acct, testBase.Truncate(time.Hour))
	garbage := []byte{1, 0xff, 0xff, 0xff}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, kv := range []struct {
			bucket string
			key    []byte
		}{
			{bkMessages, msgKey(acct, testSID(1))},
			{bkAccounts, []byte(acct)},
			{bkAggregates, hour},
			{bkBreaker, []byte(acct)},
		} {
			if err := tx.Bucket([]byte(kv.bucket)).Put(kv.key, garbage); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, bucket string
		call         func() error
	}{
		{"Message", bkMessages, func() error { _, err := s.Message(acct, testSID(1)); return err }},
		{"PutMessages", bkMessages, func() error {
			_, err := s.PutMessages(acct, []traffic.Message{testMessage(acct, 1, testBase.Add(time.Second))})
			return err
		}},
		{"Account", bkAccounts, func() error { _, err := s.Account(acct); return err }},
		{"Accounts", bkAccounts, func() error { _, err := s.Accounts(); return err }},
		{"Buckets", bkAggregates, func() error { _, err := s.Buckets(acct, testBase, testBase.Add(time.Hour)); return err }},
		{"ScanBuckets", bkAggregates, func() error {
			return s.ScanBuckets(testBase, testBase.Add(time.Hour), func(string, []traffic.Bucket) error { return nil })
		}},
		{"Recount", bkMessages, func() error { _, err := s.Recount(acct, testBase, testBase.Add(time.Hour)); return err }},
		{"Breaker", bkBreaker, func() error { _, err := s.Breaker(acct); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("err = %v, want errCorrupt", err)
			}
			if want := fmt.Sprintf("decode %s ", tt.bucket); !strings.Contains(err.Error(), want) {
				t.Errorf("err = %q, want it to contain %q", err, want)
			}
		})
	}
}
