package poller

import (
	"context"
	"testing"
	"time"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twiliofake"
)

// An account whose pushed events arrive and miss nothing is read on the
// reconcile schedule; a reconciling read that finds a message no event
// brought counts it and sends the account back to every cycle.
func TestPushTrust(t *testing.T) {
	e := newEnv(t, envOptions{poller: func(c *Config) { c.Reconcile = 10 * time.Minute }})
	sub := e.addSub("")
	quiet := e.addSub("")
	e.generate(sub, 20, t0.Add(-time.Hour), t0)
	e.accounts()
	e.mustSucceed()

	// send adds a message to sub's log, dated now, and pushes it unless
	// missed.
	n := 0
	send := func(pushed bool) {
		t.Helper()
		n++
		now := e.clock.Now()
		sids := e.append(twiliofake.Message{AccountSID: sub, From: "+15550001000", To: "+12025550100", Body: "hi",
			Status: "sent", DateSent: now, DateCreated: now, MessagingServiceSID: "MG" + "0123456789abcdef0123456789abcdef"})
		if !pushed {
			return
		}
		m := traffic.Message{SID: sids[0], AccountSID: sub, Direction: traffic.OutboundAPI, Status: "sent", Time: now, Updated: now}
		if _, err := e.st.PutReports([]store.Reports{{Account: sub, Reports: []store.Report{{ID: "EV" + string(rune('a'+n)), Message: m}}}}, now); err != nil {
			t.Fatal(err)
		}
		e.p.Pushed(map[string]time.Time{sub: now}, now)
	}
	reads := func() int { return len(e.requests(messagesPath(sub))) }
	cycle := func() Result {
		t.Helper()
		e.fake.Reset()
		e.clock.Advance(time.Minute)
		return e.messages()
	}

	send(true)
	// The first read after the first push checks nothing yet (the grace
	// has not passed): it neither trusts nor distrusts.
	if cycle(); reads() == 0 || e.p.Allowance(sub) != 0 {
		t.Fatalf("first cycle after a push: %d reads, allowance %v; want a read, none", reads(), e.p.Allowance(sub))
	}
	for range 3 {
		send(true)
		cycle()
	}
	if a := e.p.Allowance(sub); a != 10*time.Minute {
		t.Fatalf("after reads that missed nothing: allowance %v, want the reconcile interval", a)
	}
	// Trusted: the next cycles leave sub alone, not the quiet account.
	for i := range 5 {
		send(true)
		res := cycle()
		if reads() != 0 || res.BackedOff != 1 {
			t.Errorf("trusted cycle %d: %d reads of sub, %d backed off; want none, 1", i, reads(), res.BackedOff)
		}
		if len(e.requests(messagesPath(quiet))) != 1 {
			t.Errorf("trusted cycle %d: the account without pushes was not read", i)
		}
	}
	if got := e.metric("sentinel_push_trusted_subaccounts", nil); got != 1 {
		t.Errorf("trusted gauge = %v, want 1", got)
	}
	// Its data may lag by the reconcile interval more before it is stale.
	if f := e.p.Freshness(5 * time.Minute); f.Stale != 0 {
		t.Errorf("freshness with a trusted account %v minutes behind: %+v, want none stale", 5, f)
	}
	// A message the pushes missed: the reconciling read, due after the
	// interval, finds it.
	send(false)
	for range 5 {
		send(true)
		cycle()
	}
	if reads() == 0 {
		t.Fatal("no reconciling read after the interval")
	}
	if got := e.metric("sentinel_push_missed_total", map[string]string{"reason": "new"}); got != 1 {
		t.Errorf("missed new = %v, want 1", got)
	}
	if a := e.p.Allowance(sub); a != 0 {
		t.Errorf("allowance after a miss = %v, want none", a)
	}
	send(true)
	if cycle(); reads() == 0 {
		t.Error("after a miss, the log was not read the next cycle")
	}
	// Trust returns after a whole interval of reads that miss nothing.
	for range 5 {
		send(true)
		cycle()
	}
	if a := e.p.Allowance(sub); a != 0 {
		t.Errorf("allowance within an interval of a miss = %v, want none", a)
	}
	for range 6 {
		send(true)
		cycle()
	}
	if a := e.p.Allowance(sub); a != 10*time.Minute {
		t.Errorf("allowance an interval after a miss = %v, want it back", a)
	}
	e.checkConsistent(sub)
}

// Usage is read again once the account has stored a message since it was
// last read: a pushed one too. An account whose pushes are trusted is
// polled only on the reconcile schedule, and its spend must not wait for
// the refresh interval meanwhile.
func TestPushedMessageRefreshesUsage(t *testing.T) {
	e := newEnv(t, envOptions{poller: func(c *Config) { c.Reconcile = 10 * time.Minute }})
	sub := e.addSub("")
	e.generate(sub, 5, t0.Add(-time.Hour), t0)
	e.accounts()
	e.mustSucceed()
	e.clock.Advance(time.Minute)
	if _, err := e.p.Usage(context.Background()); err != nil {
		t.Fatal(err)
	}
	todayPath := "/2010-04-01/Accounts/" + sub + "/Usage/Records/Today.json"
	e.clock.Advance(5 * time.Minute)
	e.p.Pushed(map[string]time.Time{sub: e.clock.Now()}, e.clock.Now())
	e.clock.Advance(time.Minute)
	e.fake.Reset()
	if _, err := e.p.Usage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.requests(todayPath)); n != 1 {
		t.Errorf("after a pushed message: %d requests for today's usage, want 1", n)
	}
}
