package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ---- breaker

// Breaker is the per-account state of the actions package's circuit breaker.
type Breaker struct {
	// State is closed, open, probation, external_suspended,
	// twilio_suspended, account_closed or protected.
	State string
	Since time.Time
	// ReinstatedAt is the last reinstatement by a person; rule windows never
	// reach before it.
	ReinstatedAt time.Time
	// Offences counts suspensions by sentinel (probation doubles per repeat).
	Offences       int
	ProbationUntil time.Time
	// Manual marks an open breaker that a person opened (sentinel
	// -suspend): it does not count against sentinel's own blast radius.
	Manual bool
	// SpendDay and SpendBase are the UTC day of the last reinstatement and
	// the account's spend that day as known at the reinstatement: spend
	// rules judge that day's spend after it, SpendBase less.
	SpendDay  string
	SpendBase float64
}

func encodeBreaker(e *enc, b Breaker) {
	e.str(b.State)
	e.time(b.Since)
	e.time(b.ReinstatedAt)
	e.int(b.Offences)
	e.time(b.ProbationUntil)
	e.bool(b.Manual)
	e.str(b.SpendDay)
	e.float(b.SpendBase)
}

func decodeBreaker(d *dec) Breaker {
	b := Breaker{State: d.str(), Since: d.time(), ReinstatedAt: d.time(), Offences: d.int(), ProbationUntil: d.time()}
	if d.more() { // added after the first release
		b.Manual, b.SpendDay, b.SpendBase = d.bool(), d.str(), d.float()
	}
	return b
}

// Breaker returns accountSID's breaker; Breaker{State: "closed"} if none is
// stored.
func (s *Store) Breaker(accountSID string) (Breaker, error) {
	var b Breaker
	err := s.db.View(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		b, ok, err = getRec(tx, bkBreaker, []byte(accountSID), decodeBreaker)
		if err == nil && !ok {
			b = Breaker{State: "closed"}
		}
		return err
	})
	if err != nil {
		return Breaker{}, fmt.Errorf("breaker %s: %w", accountSID, err)
	}
	return b, nil
}

// Transition stores accountSID's new breaker state and appends rec to the
// audit log in one transaction. rec.Subaccount defaults to accountSID.
func (s *Store) Transition(accountSID string, b Breaker, rec AuditRecord) error {
	err := checkAuditOf(accountSID, &rec)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			if err := putRec(tx, bkBreaker, []byte(accountSID), b, encodeBreaker); err != nil {
				return err
			}
			_, err := appendAudit(tx, rec)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("transition %s: %w", accountSID, err)
	}
	return nil
}

// checkAuditOf checks accountSID, and that rec, written with a change to
// it, is about it; rec.Subaccount defaults to accountSID.
func checkAuditOf(accountSID string, rec *AuditRecord) error {
	if rec.Subaccount == "" {
		rec.Subaccount = accountSID
	}
	if err := checkSID(accountSID); err != nil {
		return err
	}
	if rec.Subaccount != accountSID {
		return fmt.Errorf("audit record of %s", rec.Subaccount)
	}
	return nil
}

// ---- audit

// AuditRecord is one entry of the append-only audit log.
type AuditRecord struct {
	// ID is assigned by the store, increasing with every record.
	ID         uint64
	At         time.Time
	Subaccount string
	// Kind is intent, outcome, transition, decision, refusal, ...
	Kind string
	// Action is suspend, reinstate, alert, ...
	Action string
	Rule   string
	// Actor is "sentinel" or the person who acted.
	Actor  string
	Reason string
	DryRun bool
	// IntentID is, for an outcome, the intent it closes.
	IntentID uint64
	// Outcome is ok, refused or error.
	Outcome string
	// Detail is the evidence, or Twilio's error code and message.
	Detail string
}

// Audit kinds the store treats specially.
const (
	kindIntent  = "intent"
	kindOutcome = "outcome"
)

func encodeAudit(e *enc, r AuditRecord) {
	e.uvarint(r.ID)
	e.time(r.At)
	e.str(r.Subaccount)
	e.str(r.Kind)
	e.str(r.Action)
	e.str(r.Rule)
	e.str(r.Actor)
	e.str(r.Reason)
	e.bool(r.DryRun)
	e.uvarint(r.IntentID)
	e.str(r.Outcome)
	e.str(r.Detail)
}

func decodeAudit(d *dec) AuditRecord {
	return AuditRecord{
		ID: d.uvarint(), At: d.time(), Subaccount: d.str(), Kind: d.str(), Action: d.str(),
		Rule: d.str(), Actor: d.str(), Reason: d.str(), DryRun: d.bool(), IntentID: d.uvarint(),
		Outcome: d.str(), Detail: d.str(),
	}
}

// AppendAudit appends rec to the audit log and returns its ID. An intent is
// open until an outcome whose IntentID names it is appended.
func (s *Store) AppendAudit(rec AuditRecord) (uint64, error) {
	var id uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		id, err = appendAudit(tx, rec)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("append audit: %w", err)
	}
	return id, nil
}

func appendAudit(tx *bolt.Tx, rec AuditRecord) (uint64, error) {
	if strings.Contains(rec.Subaccount, "/") {
		return 0, fmt.Errorf("invalid account sid %q", rec.Subaccount)
	}
	id, err := tx.Bucket([]byte(bkAudit)).NextSequence()
	if err != nil {
		return 0, err
	}
	rec.ID, rec.At = id, utc(rec.At)
	if err := putRec(tx, bkAudit, id8(id), rec, encodeAudit); err != nil {
		return 0, err
	}
	if rec.Subaccount != "" {
		if err := tx.Bucket([]byte(bkAuditAcct)).Put(binary.BigEndian.AppendUint64(prefix(rec.Subaccount), id), []byte{}); err != nil {
			return 0, err
		}
	}
	intents := tx.Bucket([]byte(bkIntents))
	switch {
	case rec.Kind == kindIntent:
		err = intents.Put(id8(id), []byte{})
	case rec.Kind == kindOutcome && rec.IntentID != 0:
		err = intents.Delete(id8(rec.IntentID))
	}
	return id, err
}

// Audit returns up to limit of accountSID's audit records, newest first;
// accountSID "" means all accounts and limit <= 0 means no limit.
func (s *Store) Audit(accountSID string, limit int) ([]AuditRecord, error) {
	var out []AuditRecord
	full := func() bool { return limit > 0 && len(out) >= limit }
	err := s.db.View(func(tx *bolt.Tx) error {
		if accountSID == "" {
			c := tx.Bucket([]byte(bkAudit)).Cursor()
			for k, v := c.Last(); k != nil && !full(); k, v = c.Prev() {
				r, err := decodeRec(v, decodeAudit)
				if err != nil {
					return corrupt(bkAudit, k, err)
				}
				out = append(out, r)
			}
			return nil
		}
		p := prefix(accountSID)
		c := tx.Bucket([]byte(bkAuditAcct)).Cursor()
		k, _ := c.Seek(afterPrefix(accountSID))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; bytes.HasPrefix(k, p) && !full(); k, _ = c.Prev() {
			id := k[len(p):]
			r, ok, err := getRec(tx, bkAudit, id, decodeAudit)
			if err == nil && !ok {
				err = corrupt(bkAuditAcct, k, fmt.Errorf("%w: no audit record", errCorrupt))
			}
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", accountSID, err)
	}
	return out, nil
}

// OpenIntents returns the intents that no outcome has closed, oldest first.
func (s *Store) OpenIntents() ([]AuditRecord, error) {
	var out []AuditRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bkIntents)).ForEach(func(k, _ []byte) error {
			r, ok, err := getRec(tx, bkAudit, k, decodeAudit)
			if err == nil && !ok {
				err = corrupt(bkIntents, k, fmt.Errorf("%w: no audit record", errCorrupt))
			}
			out = append(out, r)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open intents: %w", err)
	}
	return out, nil
}

// ---- incidents

// Incident is the notification state of one rule firing for one account.
type Incident struct {
	Subaccount, Rule     string
	Opened, LastNotified time.Time
	// State is firing, suspended, resolved or reinstated.
	State string
	// Thread is the Slack thread ts (bot token) or incident key.
	Thread   string
	Resolved time.Time
	// Decision is a person's decision on the incident (from Slack); the
	// zero Decision is none.
	Decision Decision
}

// Decision is what a person decided about an incident without changing the
// subaccount: keep it suspended, acknowledge an alert, or (in dry-run) that
// it would be reinstated. Reminders respect it.
type Decision struct {
	// What is kept_suspended, acknowledged or would_reinstate.
	What string
	// By is who decided ("U123 (ana) via Slack"), At when, Reason why.
	By     string
	At     time.Time
	Reason string
	// Severity is the rule's severity when it was decided: an
	// acknowledgement holds only while the severity stays the same.
	Severity string
}

func encodeIncident(e *enc, inc Incident) {
	e.str(inc.Subaccount)
	e.str(inc.Rule)
	e.time(inc.Opened)
	e.time(inc.LastNotified)
	e.str(inc.State)
	e.str(inc.Thread)
	e.time(inc.Resolved)
	// Added after the first release, and written only when there is a
	// decision: an incident nobody decided on keeps the original layout.
	if inc.Decision != (Decision{}) {
		e.str(inc.Decision.What)
		e.str(inc.Decision.By)
		e.time(inc.Decision.At)
		e.str(inc.Decision.Reason)
		e.str(inc.Decision.Severity)
	}
}

func decodeIncident(d *dec) Incident {
	inc := Incident{
		Subaccount: d.str(), Rule: d.str(), Opened: d.time(), LastNotified: d.time(),
		State: d.str(), Thread: d.str(), Resolved: d.time(),
	}
	if d.more() { // added after the first release
		inc.Decision = Decision{What: d.str(), By: d.str(), At: d.time(), Reason: d.str(), Severity: d.str()}
	}
	return inc
}

func incidentKey(accountSID, rule string) []byte { return append(prefix(accountSID), rule...) }

// Incident returns the incident of accountSID's rule, or ErrNotFound.
func (s *Store) Incident(accountSID, rule string) (Incident, error) {
	var inc Incident
	err := s.db.View(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		inc, ok, err = getRec(tx, bkIncidents, incidentKey(accountSID, rule), decodeIncident)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Incident{}, fmt.Errorf("incident %s %s: %w", accountSID, rule, err)
	}
	return inc, nil
}

// PutIncident upserts inc by Subaccount and Rule.
func (s *Store) PutIncident(inc Incident) error {
	err := checkSID(inc.Subaccount)
	if err == nil && inc.Rule == "" {
		err = fmt.Errorf("no rule")
	}
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			return putRec(tx, bkIncidents, incidentKey(inc.Subaccount, inc.Rule), inc, encodeIncident)
		})
	}
	if err != nil {
		return fmt.Errorf("put incident %s %s: %w", inc.Subaccount, inc.Rule, err)
	}
	return nil
}

// Thread returns the Slack thread of the incident of accountSID's rule that
// was opened at opened, or "" when there is none or the stored incident is a
// later one: a message that waited in the outbox never joins the thread of
// an incident opened after it.
func (s *Store) Thread(accountSID, rule string, opened time.Time) (string, error) {
	inc, err := s.Incident(accountSID, rule)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil || !inc.Opened.Equal(opened) {
		return "", err
	}
	return inc.Thread, nil
}

// SetThread records the Slack thread of the incident of accountSID's rule
// opened at opened. It reads and writes in one transaction, so it never
// overwrites a concurrent change to the incident's other fields, and it does
// nothing when the stored incident is another one.
func (s *Store) SetThread(accountSID, rule string, opened time.Time, thread string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		key := incidentKey(accountSID, rule)
		inc, ok, err := getRec(tx, bkIncidents, key, decodeIncident)
		if err != nil || !ok || !inc.Opened.Equal(opened) {
			return err
		}
		inc.Thread = thread
		return putRec(tx, bkIncidents, key, inc, encodeIncident)
	})
	if err != nil {
		return fmt.Errorf("set thread %s %s: %w", accountSID, rule, err)
	}
	return nil
}

// Decide records dec on the incident of accountSID's rule opened at
// opened and appends rec to the audit log, in one transaction, so that a
// decision is never recorded without its audit record or the other way
// round. It returns ErrNotFound, writing nothing, when the stored incident
// is another one (or there is none).
func (s *Store) Decide(accountSID, rule string, opened time.Time, dec Decision, rec AuditRecord) error {
	err := checkAuditOf(accountSID, &rec)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			key := incidentKey(accountSID, rule)
			inc, ok, err := getRec(tx, bkIncidents, key, decodeIncident)
			switch {
			case err != nil:
				return err
			case !ok || !inc.Opened.Equal(opened):
				return ErrNotFound
			}
			dec.At = utc(dec.At)
			inc.Decision = dec
			if err := putRec(tx, bkIncidents, key, inc, encodeIncident); err != nil {
				return err
			}
			_, err = appendAudit(tx, rec)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("decide incident %s %s: %w", accountSID, rule, err)
	}
	return nil
}

// Incidents returns accountSID's incidents ("" for all accounts), newest
// Opened first, then by account and rule.
func (s *Store) Incidents(accountSID string) ([]Incident, error) {
	var out []Incident
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bkIncidents)).Cursor()
		var p []byte
		k, v := c.First()
		if accountSID != "" {
			p = prefix(accountSID)
			k, v = c.Seek(p)
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			inc, err := decodeRec(v, decodeIncident)
			if err != nil {
				return corrupt(bkIncidents, k, err)
			}
			out = append(out, inc)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("incidents %s: %w", accountSID, err)
	}
	// Keys are in account and rule order already; the stable sort keeps it.
	slices.SortStableFunc(out, func(a, b Incident) int { return b.Opened.Compare(a.Opened) })
	return out, nil
}

// ---- outbox

// OutboxItem is a notification waiting for delivery.
type OutboxItem struct {
	ID      uint64
	Created time.Time
	// NotBefore is when the next attempt is due.
	NotBefore time.Time
	Attempts  int
	// Payload is opaque to the store.
	Payload   []byte
	LastError string
}

func encodeOutbox(e *enc, o OutboxItem) {
	e.uvarint(o.ID)
	e.time(o.Created)
	e.time(o.NotBefore)
	e.int(o.Attempts)
	e.bytes(o.Payload)
	e.str(o.LastError)
}

func decodeOutbox(d *dec) OutboxItem {
	return OutboxItem{ID: d.uvarint(), Created: d.time(), NotBefore: d.time(), Attempts: d.int(), Payload: d.bytes(), LastError: d.str()}
}

// Enqueue adds payload to the outbox, due at `at`, and returns its ID.
func (s *Store) Enqueue(payload []byte, at time.Time) (uint64, error) {
	var id uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if id, err = tx.Bucket([]byte(bkOutbox)).NextSequence(); err != nil {
			return err
		}
		at := utc(at)
		return putRec(tx, bkOutbox, id8(id), OutboxItem{ID: id, Created: at, NotBefore: at, Payload: payload}, encodeOutbox)
	})
	if err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	return id, nil
}

// Due returns up to limit (<= 0: all) outbox items from the head of the
// queue, by ID, that are due at `at`. It stops at the first item whose
// NotBefore is after `at`: the outbox is a queue, and a newer message never
// overtakes an older one that waits for a retry, in this process or the
// next.
func (s *Store) Due(at time.Time, limit int) ([]OutboxItem, error) {
	var out []OutboxItem
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bkOutbox)).Cursor()
		for k, v := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			o, err := decodeRec(v, decodeOutbox)
			if err != nil {
				return corrupt(bkOutbox, k, err)
			}
			if o.NotBefore.After(at) {
				break
			}
			out = append(out, o)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("due: %w", err)
	}
	return out, nil
}

// Delivered removes item id from the outbox; ErrNotFound if it is not there.
func (s *Store) Delivered(id uint64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bkOutbox))
		if b.Get(id8(id)) == nil {
			return ErrNotFound
		}
		return b.Delete(id8(id))
	})
	if err != nil {
		return fmt.Errorf("delivered %d: %w", id, err)
	}
	return nil
}

// Retry records a failed attempt at item id and defers it to notBefore;
// ErrNotFound if it is not in the outbox.
func (s *Store) Retry(id uint64, notBefore time.Time, errText string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		o, ok, err := getRec(tx, bkOutbox, id8(id), decodeOutbox)
		if err == nil && !ok {
			err = ErrNotFound
		}
		if err != nil {
			return err
		}
		o.Attempts++
		o.NotBefore, o.LastError = utc(notBefore), errText
		return putRec(tx, bkOutbox, id8(id), o, encodeOutbox)
	})
	if err != nil {
		return fmt.Errorf("retry %d: %w", id, err)
	}
	return nil
}

// OutboxLen returns the number of items in the outbox.
func (s *Store) OutboxLen() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bkOutbox)).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox len: %w", err)
	}
	return n, nil
}
