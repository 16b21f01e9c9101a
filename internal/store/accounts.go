package store

import (
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Account is a Twilio account as sentinel last saw it.
type Account struct {
	SID, FriendlyName string
	// Status is Twilio's: active, suspended or closed.
	Status string
	// Parent marks the parent account itself, which is kept apart. Once
	// stored as true it stays true.
	Parent bool
	// FirstSeen is when sentinel first saw the account.
	FirstSeen time.Time
	// StatusSince is when sentinel first saw the current status.
	StatusSince time.Time
	// Updated is Twilio's date_updated of the account as last read: for a
	// status change made outside sentinel, the best known time of the
	// change (see actions' reinstatement). Zero when Twilio gave none.
	Updated time.Time
}

// AccountChange is a new account (From == "") or a change of status.
type AccountChange struct {
	SID, From, To string
	At            time.Time
}

func encodeAccount(e *enc, a Account) {
	e.str(a.SID)
	e.str(a.FriendlyName)
	e.str(a.Status)
	e.bool(a.Parent)
	e.time(a.FirstSeen)
	e.time(a.StatusSince)
	e.time(a.Updated)
}

func decodeAccount(d *dec) Account {
	a := Account{
		SID:          d.str(),
		FriendlyName: d.str(),
		Status:       d.str(),
		Parent:       d.bool(),
		FirstSeen:    d.time(),
		StatusSince:  d.time(),
	}
	if d.more() { // added after the first release
		a.Updated = d.time()
	}
	return a
}

// SyncAccounts upserts the complete list of accounts read from Twilio at
// `at` and returns, sorted by SID, the accounts it did not know and those
// whose status changed. FirstSeen and StatusSince are the store's: the
// values in accts are ignored. Accounts missing from accts are left as they
// were.
func (s *Store) SyncAccounts(accts []Account, at time.Time) ([]AccountChange, error) {
	at = utc(at)
	var changes []AccountChange
	err := s.db.Update(func(tx *bolt.Tx) error {
		changes = nil
		for _, a := range accts {
			if err := checkSID(a.SID); err != nil {
				return err
			}
			key := []byte(a.SID)
			old, ok, err := getRec(tx, bkAccounts, key, decodeAccount)
			if err != nil {
				return err
			}
			switch {
			case !ok:
				a.FirstSeen, a.StatusSince = at, at
				changes = append(changes, AccountChange{SID: a.SID, To: a.Status, At: at})
			case old.Status != a.Status:
				a.FirstSeen, a.StatusSince = old.FirstSeen, at
				a.Parent = a.Parent || old.Parent
				changes = append(changes, AccountChange{SID: a.SID, From: old.Status, To: a.Status, At: at})
			default:
				a.FirstSeen, a.StatusSince = old.FirstSeen, old.StatusSince
				a.Parent = a.Parent || old.Parent
				if a == old {
					continue
				}
			}
			if err := putRec(tx, bkAccounts, key, a, encodeAccount); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync accounts: %w", err)
	}
	slices.SortStableFunc(changes, func(a, b AccountChange) int { return strings.Compare(a.SID, b.SID) })
	return changes, nil
}

// Accounts returns every stored account, the parent included, by SID.
func (s *Store) Accounts() ([]Account, error) {
	var out []Account
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bkAccounts)).ForEach(func(k, v []byte) error {
			a, err := decodeRec(v, decodeAccount)
			if err != nil {
				return corrupt(bkAccounts, k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return out, nil
}

// Account returns the stored account sid, or ErrNotFound.
func (s *Store) Account(sid string) (Account, error) {
	var a Account
	err := s.db.View(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		a, ok, err = getRec(tx, bkAccounts, []byte(sid), decodeAccount)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", sid, err)
	}
	return a, nil
}

// SetAccountStatus records a status that sentinel itself set, or read from
// Twilio, at `at`, so that the next SyncAccounts does not report it as a
// change. Setting the current status again changes nothing. Unknown
// accounts are ErrNotFound.
func (s *Store) SetAccountStatus(sid, status string, at time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		a, ok, err := getRec(tx, bkAccounts, []byte(sid), decodeAccount)
		switch {
		case err != nil:
			return err
		case !ok:
			return ErrNotFound
		case a.Status == status:
			return nil
		}
		a.Status, a.StatusSince = status, utc(at)
		return putRec(tx, bkAccounts, []byte(sid), a, encodeAccount)
	})
	if err != nil {
		return fmt.Errorf("set account status %s: %w", sid, err)
	}
	return nil
}
