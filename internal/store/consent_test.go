package store

import (
	"testing"
	"time"

	"sentinel/internal/traffic"
)

// consentMsgs builds the messages of a consent test: outbound to peers, and
// STOPs from them.
type consentMsgs struct {
	acct string
	n    int
}

func (c *consentMsgs) out(peer uint64, at time.Time) traffic.Message {
	c.n++
	return traffic.Message{SID: testSID(c.n), AccountSID: c.acct, Direction: traffic.OutboundAPI,
		Status: "delivered", MessagingService: true, Time: at, Peer: peer}
}

func (c *consentMsgs) stop(peer uint64, at time.Time) traffic.Message {
	c.n++
	return traffic.Message{SID: testSID(c.n), AccountSID: c.acct, Direction: traffic.Inbound,
		Status: "received", Keyword: traffic.OptOut, Time: at, Peer: peer}
}

// optOuts returns the account's counted, repeated and unsolicited opt-outs
// over the first day after testBase, and checks that they are a recount.
func optOuts(t *testing.T, s *Store, acct string) (counted, repeated, unsolicited int64) {
	t.Helper()
	bs := checkRecount(t, s, acct, testBase.Add(-time.Hour), testBase.Add(30*24*time.Hour))
	c := traffic.Sum(bs, testBase.Add(-time.Hour), testBase.Add(30*24*time.Hour))
	return c.OptOuts, c.RepeatedOptOuts, c.UnsolicitedOptOuts
}

func TestOptOutConsent(t *testing.T) {
	const alice, mallory = 1, 2 // peers: one the account messaged, one it did not
	t.Run("one number's repeated STOPs count once", func(t *testing.T) {
		s := MustOpen(t)
		c := &consentMsgs{acct: testAccount(1)}
		msgs := []traffic.Message{c.out(alice, testBase)}
		for i := range 13 {
			msgs = append(msgs, c.stop(alice, testBase.Add(time.Duration(i+1)*time.Minute)))
		}
		in := mustPut(t, s, c.acct, msgs...)
		if in.Repeated != 12 {
			t.Errorf("Ingest.Repeated = %d, want 12", in.Repeated)
		}
		if got, rep, _ := optOuts(t, s, c.acct); got != 1 || rep != 12 {
			t.Errorf("opt-outs counted %d, repeated %d; want 1 and 12", got, rep)
		}
		// The same STOPs read again change nothing.
		if in := mustPut(t, s, c.acct, msgs...); in.Unchanged != len(msgs) {
			t.Errorf("re-read = %+v, want all unchanged", in)
		}
	})
	t.Run("an unsolicited STOP does not count", func(t *testing.T) {
		s := MustOpen(t)
		c := &consentMsgs{acct: testAccount(1)}
		in := mustPut(t, s, c.acct, c.out(alice, testBase), c.stop(mallory, testBase.Add(time.Minute)), c.stop(mallory, testBase.Add(2*time.Minute)))
		if in.Unsolicited != 2 {
			t.Errorf("Ingest.Unsolicited = %d, want 2", in.Unsolicited)
		}
		if got, _, uns := optOuts(t, s, c.acct); got != 0 || uns != 2 {
			t.Errorf("opt-outs counted %d, unsolicited %d; want 0 and 2", got, uns)
		}
	})
	t.Run("a STOP read before the message it answers counts", func(t *testing.T) {
		// Newest first: a backfill can store the STOP in one batch and the
		// outbound message it answers in a later one.
		s := MustOpen(t)
		c := &consentMsgs{acct: testAccount(1)}
		stop := c.stop(alice, testBase.Add(time.Hour))
		mustPut(t, s, c.acct, stop)
		if got, _, uns := optOuts(t, s, c.acct); got != 0 || uns != 1 {
			t.Fatalf("before the outbound message: counted %d, unsolicited %d; want 0 and 1", got, uns)
		}
		in := mustPut(t, s, c.acct, c.out(alice, testBase))
		if in.Reclassified != 1 {
			t.Errorf("Ingest.Reclassified = %d, want 1", in.Reclassified)
		}
		if got, _, uns := optOuts(t, s, c.acct); got != 1 || uns != 0 {
			t.Errorf("after: counted %d, unsolicited %d; want 1 and 0", got, uns)
		}
	})
	t.Run("a number messaged outside the consent window is unsolicited", func(t *testing.T) {
		s := mustOpenOpts(t, Options{ConsentWindow: 24 * time.Hour})
		c := &consentMsgs{acct: testAccount(1)}
		mustPut(t, s, c.acct, c.out(alice, testBase), c.stop(alice, testBase.Add(25*time.Hour)))
		if got, _, uns := optOuts(t, s, c.acct); got != 0 || uns != 1 {
			t.Errorf("counted %d, unsolicited %d; want 0 and 1", got, uns)
		}
	})
	t.Run("opt-outs further apart than the window count again", func(t *testing.T) {
		s := mustOpenOpts(t, Options{ConsentWindow: 24 * time.Hour})
		c := &consentMsgs{acct: testAccount(1)}
		// Read newest first, as a backfill does.
		mustPut(t, s, c.acct, c.out(alice, testBase.Add(48*time.Hour)), c.stop(alice, testBase.Add(49*time.Hour)))
		mustPut(t, s, c.acct, c.out(alice, testBase.Add(23*time.Hour)), c.stop(alice, testBase.Add(24*time.Hour)))
		mustPut(t, s, c.acct, c.out(alice, testBase), c.stop(alice, testBase.Add(time.Minute)))
		// 49h and 24h are 25h apart: both count. 1m is within 24h of the
		// 24h one: repeated.
		if got, rep, _ := optOuts(t, s, c.acct); got != 2 || rep != 1 {
			t.Errorf("counted %d, repeated %d; want 2 and 1", got, rep)
		}
	})
	t.Run("a STOP without a number counts", func(t *testing.T) {
		s := MustOpen(t)
		c := &consentMsgs{acct: testAccount(1)}
		mustPut(t, s, c.acct, c.stop(0, testBase), c.stop(0, testBase.Add(time.Minute)))
		if got, _, _ := optOuts(t, s, c.acct); got != 2 {
			t.Errorf("counted %d, want 2", got)
		}
	})
	t.Run("accounts are apart", func(t *testing.T) {
		s := MustOpen(t)
		a := &consentMsgs{acct: testAccount(1)}
		b := &consentMsgs{acct: testAccount(2), n: 100}
		mustPut(t, s, a.acct, a.out(alice, testBase))
		mustPut(t, s, b.acct, b.stop(alice, testBase.Add(time.Minute)))
		if got, _, uns := optOuts(t, s, b.acct); got != 0 || uns != 1 {
			t.Errorf("STOP to an account that never messaged the number: counted %d, unsolicited %d; want 0 and 1", got, uns)
		}
	})
}

// TestEvidenceSticks covers what a subaccount's owner can do to its own
// log after sentinel read it: redact a STOP's body, mask its number, or
// have a failed message read back without its failure.
func TestEvidenceSticks(t *testing.T) {
	s := MustOpen(t)
	c := &consentMsgs{acct: testAccount(1)}
	out := c.out(1, testBase)
	out.Status, out.ErrorCode = "undelivered", 30007
	stop := c.stop(1, testBase.Add(time.Minute))
	mustPut(t, s, c.acct, out, stop)
	before := checkRecount(t, s, c.acct, testBase, testBase.Add(time.Hour))

	redacted := stop
	redacted.Keyword, redacted.Peer = traffic.NoKeyword, 0 // empty Body, masked From
	cleaned := out
	cleaned.Status, cleaned.ErrorCode = "delivered", 0
	if in := mustPut(t, s, c.acct, redacted, cleaned); in.Unchanged != 2 {
		t.Errorf("redacted re-read = %+v, want both unchanged", in)
	}
	after := checkRecount(t, s, c.acct, testBase, testBase.Add(time.Hour))
	sb, sa := traffic.Sum(before, testBase, testBase.Add(time.Hour)), traffic.Sum(after, testBase, testBase.Add(time.Hour))
	if sa.OptOuts != 1 || sa.ErrorCount(30007) != 1 || sa.Failed != 1 || sa.OptOuts != sb.OptOuts {
		t.Errorf("after redaction: opt-outs %d, 30007 %d, failed %d; want 1, 1, 1", sa.OptOuts, sa.ErrorCount(30007), sa.Failed)
	}
	got, err := s.Message(c.acct, stop.SID)
	if err != nil || got.Keyword != traffic.OptOut || got.Peer != 1 {
		t.Errorf("stored STOP = %+v, %v; want an opt-out from peer 1", got, err)
	}
}

func mustOpenOpts(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(t.TempDir()+"/sentinel.db", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
