package ingest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// A subaccount's owner holds the token its status callbacks are signed
// with. A callback it signs claiming a status later in a message's life
// than the carrier's verdict ("read", or "canceled") must not stick: the
// truth read by a later poll (or pushed by Event Streams) still counts,
// so that the owner cannot hide its failures or its volume, nor stop the
// poll reading back to the message.
func TestSelfSignedCallbackCannotHideTheTruth(t *testing.T) {
	for _, tc := range []struct {
		forged string // what the owner signs
		truth  traffic.Message
	}{
		{"read", traffic.Message{Status: "undelivered", ErrorCode: 30007}},
		{"canceled", traffic.Message{Status: "sent"}},
		{"delivered", traffic.Message{Status: "undelivered", ErrorCode: 30007}},
	} {
		t.Run(tc.forged, func(t *testing.T) {
			e := newEnv(t)
			sent := received.Add(-time.Minute)
			queued := traffic.Message{SID: msgA, AccountSID: acctA, Direction: traffic.OutboundAPI,
				Status: "queued", Time: sent, Updated: sent}
			if _, err := e.st.PutMessages(acctA, []traffic.Message{queued}); err != nil {
				t.Fatal(err)
			}
			form := url.Values{"MessageSid": {msgA}, "AccountSid": {subSID}, "MessageStatus": {tc.forged}}
			h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
				"X-Twilio-Signature": {sign(subToken, publicURL+StatusPath, form)}}
			if w := e.post(StatusPath, form.Encode(), h); w.Code != http.StatusOK {
				t.Fatalf("the owner's own callback: %d %s", w.Code, w.Body)
			}
			// The poll still reads back to it: the owner cannot end the
			// re-reading of its messages that may yet fail.
			if _, pending, err := e.st.OldestPending(acctA, sent.Add(-time.Hour), received); err != nil || !pending {
				t.Errorf("after a self-signed %q: the message is no longer pending (%v)", tc.forged, err)
			}
			// The poll reads the message as Twilio has it, changed since.
			truth := queued
			truth.Status, truth.ErrorCode, truth.Updated = tc.truth.Status, tc.truth.ErrorCode, received.Add(time.Minute)
			if _, err := e.st.PutMessages(acctA, []traffic.Message{truth}); err != nil {
				t.Fatal(err)
			}
			if m := e.stored1(msgA); m.Status != truth.Status || m.ErrorCode != truth.ErrorCode {
				t.Errorf("after a self-signed %q and a poll reading %s %d: stored %s %d", tc.forged,
					truth.Status, truth.ErrorCode, m.Status, m.ErrorCode)
			}
		})
	}
}

// Anyone can post a callback naming a subaccount of the fleet with a
// forged signature; checking it reads the subaccount's token from Twilio,
// through the request budget the polls share. A burst of them at once
// reads it once, not once per request: unauthenticated requests must not
// multiply sentinel's requests to Twilio.
func TestForgedCallbacksReadTheTokenOnce(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.srv.cfg.SubaccountToken = func(ctx context.Context, sid string) (string, error) {
		e.mu.Lock()
		e.fetches++
		e.mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return subToken, nil
	}
	form := url.Values{"MessageSid": {msgA}, "AccountSid": {subSID}, "MessageStatus": {"failed"}, "ErrorCode": {"30007"}}
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {"Zm9yZ2Vk"}}
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Go(func() { codes[i] = e.post(StatusPath, form.Encode(), h).Code })
	}
	time.Sleep(200 * time.Millisecond) // every request is waiting for the token
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusForbidden {
			t.Errorf("forged callback %d: %d, want 403", i, c)
		}
	}
	if e.fetches != 1 {
		t.Errorf("%d forged callbacks at once read the token %d times, want once", len(codes), e.fetches)
	}
}

// Checking a callback's signature concatenates its parameters, once per
// URL and port variant, each concatenation copying all before it: a body of
// thousands of parameters, posted by anyone and naming the parent (whose
// SID is no secret), held a core for ten seconds. Such a body is refused
// before its signature is checked: Twilio's callbacks are a few dozen
// parameters.
func TestManyParameterCallbackIsCheap(t *testing.T) {
	e := newEnv(t)
	form := func(n, size int) string {
		var b strings.Builder
		b.WriteString("MessageSid=" + msgA + "&AccountSid=" + parentSID + "&MessageStatus=failed")
		pad := strings.Repeat("x", max(size/n-6, 0))
		for i := range n {
			fmt.Fprintf(&b, "&%04d=%s", i, pad)
		}
		return b.String()
	}
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {"Zm9yZ2Vk"}}
	for _, body := range []string{
		form(9990, MaxBody-200), // as many as url.ParseQuery takes, as long as fit
		form(6000, 60<<10),
	} {
		done := make(chan int, 1)
		go func() { done <- e.post(StatusPath, body, h).Code }()
		select {
		case code := <-done:
			if code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge {
				t.Errorf("a forged callback of %d bytes of parameters: %d, want it refused before its signature is checked", len(body), code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("a forged callback of %d bytes of parameters still checked after 5 s", len(body))
		}
	}
}

// An event whose time the store cannot keep (outside 1678 to 2262) is
// malformed: 400, not a store failure that Twilio retries for hours,
// taking the good events of its batch down with it each time.
func TestUnstorableTimeIsMalformed(t *testing.T) {
	e := newEnv(t)
	good := ce("EZ1", "com.twilio.messaging.message.sent", outboundData("sent", "null"))
	bad := strings.Replace(ce("EZ2", "com.twilio.messaging.message.delivered", outboundData("delivered", "null")),
		"2026-03-02T10:00:01.250Z", "2300-01-01T00:00:00Z", 1)
	bad = strings.ReplaceAll(bad, msgA, "SM"+strings.Repeat("7", 32)) // a message no poll has read
	w := e.post(EventsPath, "["+good+","+bad+"]", basic("twilio", "s3cret-events"))
	if w.Code != http.StatusBadRequest {
		t.Errorf("an event dated 2300: %d %q, want 400", w.Code, w.Body)
	}
}

// A record the store cannot read fails its own account, not the fleet's:
// Event Streams batches mix accounts, and one account's corrupt message
// must not keep every other account's events out while Twilio retries
// the batch for hours. The request still fails (Twilio sends it again);
// what could be stored is, and its retry counts it once.
func TestCorruptRecordFailsOnlyItsAccount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	bad := "SM" + strings.Repeat("b", 32)
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutMessages(parentSID, []traffic.Message{{SID: bad, AccountSID: parentSID, Direction: traffic.OutboundAPI,
		Status: "sent", Time: received.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("messages")).Put([]byte(parentSID+"/"+bad), []byte{0xff, 0xfe})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	e := newEnvAt(t, path)
	parentEvent := strings.NewReplacer(acctA, parentSID, msgA, bad).Replace(
		ce("EZp", "com.twilio.messaging.message.delivered", outboundData("delivered", "null")))
	good := ce("EZa", "com.twilio.messaging.message.undelivered", outboundData("undelivered", "30007"))
	w := e.post(EventsPath, "["+parentEvent+","+good+"]", basic("twilio", "s3cret-events"))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("a batch with a corrupt record: %d, want 503", w.Code)
	}
	if _, err := e.st.Message(acctA, msgA); err != nil {
		t.Errorf("the other account's event was not stored: %v", err)
	}
	if len(e.stored) != 1 || e.stored[0][acctA].IsZero() {
		t.Errorf("Stored told %v, want the other account", e.stored)
	}
}
