package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// keySlackHold is the meta bucket's key for the Slack dispatcher's hold. It
// lives in the meta bucket, which every schema version has, so it needs no
// schema step; a database without it has no hold.
const keySlackHold = "slackhold"

// SlackHold is the Slack dispatcher's hold on the whole outbox: no delivery
// is attempted before Until because Slack refused sentinel or was
// unavailable. It is kept here rather than in the outbox items so that it
// survives a restart but not a new Slack configuration. The zero value is no
// hold.
type SlackHold struct {
	Until time.Time
	// Cause is "refused" or "unavailable".
	Cause string
	// Failures counts the consecutive failed attempts; the backoff grows
	// with it.
	Failures int
	// Config fingerprints the Slack configuration that failed: a hash,
	// never the webhook URL or token themselves.
	Config string
}

func encodeSlackHold(e *enc, h SlackHold) {
	e.time(h.Until)
	e.str(h.Cause)
	e.int(h.Failures)
	e.str(h.Config)
}

func decodeSlackHold(d *dec) SlackHold {
	return SlackHold{Until: d.time(), Cause: d.str(), Failures: d.int(), Config: d.str()}
}

// SlackHold returns the stored hold; the zero SlackHold if there is none.
func (s *Store) SlackHold() (SlackHold, error) {
	var h SlackHold
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		h, _, err = getRec(tx, bkMeta, []byte(keySlackHold), decodeSlackHold)
		return err
	})
	if err != nil {
		return SlackHold{}, fmt.Errorf("slack hold: %w", err)
	}
	return h, nil
}

// SetSlackHold stores h; the zero SlackHold removes the hold.
func (s *Store) SetSlackHold(h SlackHold) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if h == (SlackHold{}) {
			return tx.Bucket([]byte(bkMeta)).Delete([]byte(keySlackHold))
		}
		h.Until = utc(h.Until)
		return putRec(tx, bkMeta, []byte(keySlackHold), h, encodeSlackHold)
	})
	if err != nil {
		return fmt.Errorf("set slack hold: %w", err)
	}
	return nil
}
