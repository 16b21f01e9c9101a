package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/traffic"
)

// TestOpenReadOnly: a read-only store reads what a read-write one wrote,
// refuses every write, and leaves the file byte for byte as it was.
func TestOpenReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	rw, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	acct := testAccount(1)
	if _, err := rw.SyncAccounts([]Account{{SID: acct, FriendlyName: "acme", Status: "active"}}, testBase); err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, path)

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ro.Account(acct)
	if err != nil || a.FriendlyName != "acme" {
		t.Errorf("Account = %+v, %v; want acme", a, err)
	}
	writes := map[string]error{
		"SyncAccounts": func() error {
			_, err := ro.SyncAccounts([]Account{{SID: testAccount(2), Status: "active"}}, testBase)
			return err
		}(),
		"SetCoverage": ro.SetCoverage(acct, traffic.Coverage{From: testBase, Until: testBase}),
		"AppendAudit": func() error {
			_, err := ro.AppendAudit(AuditRecord{At: testBase, Subaccount: acct, Kind: "decision"})
			return err
		}(),
		"PutMessages": func() error {
			_, err := ro.PutMessages(acct, []traffic.Message{{SID: testSID(1), AccountSID: acct, Direction: traffic.OutboundAPI, Status: "sent", Time: testBase}})
			return err
		}(),
	}
	for name, err := range writes {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v, want ErrReadOnly", name, err)
		}
	}
	// Readers share the file.
	ro2, err := Open(path, Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Errorf("a second read-only Open: %v", err)
	} else {
		ro2.Close()
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, path) != before {
		t.Error("a read-only store changed the file")
	}
}

// TestOpenReadOnlyRefuses: a read-only Open never creates a database, never
// initialises or migrates one, and waits for a writer's lock.
func TestOpenReadOnlyRefuses(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	if _, err := Open(missing, Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a read-only Open created %s", missing)
	}

	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(empty, Options{ReadOnly: true}); !errors.Is(err, ErrNotSentinel) {
		t.Errorf("empty file: %v, want ErrNotSentinel", err)
	}

	// A database one schema step behind: a writer would migrate it.
	old := filepath.Join(dir, "old.db")
	s, err := open(old, Options{}, schema()[:len(schema())-1])
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := fileSum(t, old)
	if _, err := Open(old, Options{ReadOnly: true}); !errors.Is(err, ErrOldSchema) {
		t.Errorf("older schema: %v, want ErrOldSchema", err)
	}
	if fileSum(t, old) != before {
		t.Error("a read-only Open changed an old database")
	}

	// A bbolt file with no buckets is what a crashed first Open leaves;
	// a writer initialises it, a reader must not.
	bare := filepath.Join(dir, "bare.db")
	db, err := bolt.Open(bare, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(bare, Options{ReadOnly: true}); !errors.Is(err, ErrNotSentinel) {
		t.Errorf("bare bbolt file: %v, want ErrNotSentinel", err)
	}

	held := filepath.Join(dir, "held.db")
	mustOpenPath(t, held)
	if _, err := Open(held, Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("database held by a writer: %v, want ErrLocked", err)
	}
}
