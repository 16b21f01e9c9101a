package poller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

// hang makes every request to paths under prefix wait until the client
// gives up, as a Twilio log that never answers: a delay far beyond any
// deadline, which the fake cuts short when the request's context ends.
func (e *env) hang(prefix string) int {
	return e.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDelay, Path: prefix, Delay: time.Hour})
}

// One account whose Twilio log hangs must not stall the fleet: its poll is
// abandoned at its deadline, recorded and counted as a failure, its
// coverage stays where it was, and every other account is polled in the
// same cycle, and the cycle ends soon after the deadline.
func TestHungAccountAbandonedAtDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	for _, tc := range []struct {
		stream string
		prefix func(sid string) string
		cycle  func(*Poller, context.Context) (Result, error)
	}{
		{StreamMessages, messagesPath, (*Poller).Messages},
		{StreamUsage, func(sid string) string { return "/2010-04-01/Accounts/" + sid + "/Usage/" }, (*Poller).Usage},
	} {
		t.Run(tc.stream, func(t *testing.T) {
			e := newEnv(t, envOptions{poller: func(c *Config) {
				c.Concurrency = 1
				c.MessagesDeadline, c.UsageDeadline = deadline, deadline
			}})
			for range 4 {
				sub := e.addSub("")
				e.generate(sub, 10, t0.Add(-time.Hour), t0)
			}
			e.accounts()
			accts, err := e.st.Accounts()
			if err != nil {
				t.Fatal(err)
			}
			var hung string
			var others []string
			for _, a := range accts {
				switch {
				case a.Parent:
				case hung == "":
					hung = a.SID // the first polled
				default:
					others = append(others, a.SID)
				}
			}
			e.mustSucceed()
			if _, err := e.p.Usage(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.hang(tc.prefix(hung))
			e.clock.Advance(time.Minute)
			leaks := goleak.IgnoreCurrent()

			// A cycle that waits for the hang fails here instead of hanging
			// the test.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			res, err := tc.cycle(e.p, ctx)
			took := time.Since(start)

			if err != nil {
				t.Fatalf("%s cycle: %v", tc.stream, err)
			}
			if took > 10*time.Second {
				t.Errorf("the cycle took %v with a %v deadline: it waited for the hang", took, deadline)
			}
			if len(res.Failed) != 1 || !errors.Is(res.Failed[hung], ErrDeadline) {
				t.Fatalf("Failed = %v, want only %s with ErrDeadline", res.Failed, hung)
			}
			wantErr := "poll of " + hung + " exceeded its 300ms deadline"
			if got := res.Failed[hung].Error(); !strings.HasPrefix(got, wantErr) {
				t.Errorf("error %q, want it to start %q", got, wantErr)
			}
			ps, err := e.st.PollState(hung, tc.stream)
			if err != nil {
				t.Fatal(err)
			}
			if ps.Failures != 1 || !strings.HasPrefix(ps.LastError, wantErr) || !ps.LastSuccess.Equal(t0) {
				t.Errorf("hung poll state = %+v, want 1 failure (%q) since %v", ps, wantErr, t0)
			}
			if n := e.metric("sentinel_poll_timeouts_total", map[string]string{"stream": tc.stream}); n != 1 {
				t.Errorf("sentinel_poll_timeouts_total{stream=%q} = %v, want 1", tc.stream, n)
			}
			if n := e.metric("sentinel_poll_failures_total", map[string]string{"stream": tc.stream, "subaccount": hung}); n != 1 {
				t.Errorf("failures metric for %s = %v, want 1", hung, n)
			}
			for _, sid := range others {
				if ps, _ := e.st.PollState(sid, tc.stream); ps.Failures != 0 || !ps.LastSuccess.Equal(e.clock.Now()) {
					t.Errorf("%s: poll state %+v, want polled in the same cycle", sid, ps)
				}
			}
			if tc.stream == StreamMessages {
				if got := e.coverage(hung); !got.Until.Equal(t0) {
					t.Errorf("hung account covered until %v, want %v (its last complete poll)", got.Until, t0)
				}
				for _, sid := range others {
					if got := e.coverage(sid); !got.Until.Equal(e.clock.Now()) {
						t.Errorf("%s covered until %v, want %v", sid, got.Until, e.clock.Now())
					}
					e.checkConsistent(sid)
				}
				e.checkConsistent(hung)
			}
			// The client gave up on the hung request (the fake logs 499),
			// and nothing of the abandoned poll keeps running.
			var gaveUp bool
			for _, r := range e.fake.Requests() {
				gaveUp = gaveUp || (strings.HasPrefix(r.Path, tc.prefix(hung)) && r.Status == 499)
			}
			if !gaveUp {
				t.Errorf("no request to %s was abandoned by the client", tc.prefix(hung))
			}
			goleak.VerifyNone(t, leaks,
				// Keep-alive connections of the client and the fake, which
				// the env closes at cleanup.
				goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
				goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
				goleak.IgnoreAnyFunction("net/http.(*conn).serve"))
		})
	}
}

// A read that needs more pages than fit in the deadline, such as the first
// backfill of a very busy account, is not hung: abandoning it would leave
// the account unread forever. It leaves its cycle, which goes on with the
// other accounts, reads on to the end, and is recorded then; the cycles
// meanwhile skip its account, and the backfill stays in the progress until
// it ends.
func TestLongReadOutlivesItsCycle(t *testing.T) {
	const deadline = 300 * time.Millisecond
	e := newEnv(t, envOptions{
		client: func(c *twilioapi.Config) { c.PageSize = 50 },
		poller: func(c *Config) {
			c.Concurrency = 1
			c.MessagesDeadline = deadline
		},
	})
	busy := e.addSub("")
	e.generate(busy, 1000, t0.Add(-20*time.Hour), t0) // 20 pages
	var others []string
	for range 3 {
		sub := e.addSub("")
		e.generate(sub, 10, t0.Add(-time.Hour), t0)
		others = append(others, sub)
	}
	e.accounts()
	// 100ms a page: 2s for the busy log, ten times its deadline, and a
	// page well within it.
	e.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDelay, Path: messagesPath(busy), Delay: 100 * time.Millisecond})
	leaks := goleak.IgnoreCurrent()

	start := time.Now()
	res, err := e.p.Messages(context.Background())
	took := time.Since(start)
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("first cycle: %v %v", err, res.Failed)
	}
	if took > time.Second {
		t.Errorf("the first cycle took %v: it waited for the long read", took)
	}
	if !slices.Equal(res.CatchingUp, []string{busy}) {
		t.Errorf("CatchingUp = %v, want [%s]", res.CatchingUp, busy)
	}
	for _, sid := range others {
		if got := e.coverage(sid); !got.Until.Equal(t0) {
			t.Errorf("%s covered until %v, want %v: polled in the same cycle", sid, got.Until, t0)
		}
	}
	if b := e.p.Backfill(); b.Total != 5 || b.Done != 4 {
		t.Errorf("progress after the first cycle = %+v, want 4 of 5 done", b)
	}

	// The next cycle skips the account whose read goes on.
	e.clock.Advance(time.Minute)
	before := len(e.requests(messagesPath(busy)))
	res, err = e.p.Messages(context.Background())
	if err != nil || len(res.Failed) > 0 || !slices.Equal(res.CatchingUp, []string{busy}) {
		t.Fatalf("second cycle: %v %v, catching up %v", err, res.Failed, res.CatchingUp)
	}
	e.p.Wait()
	if n := len(e.requests(messagesPath(busy))) - before; n > 20 {
		t.Errorf("%d requests for the busy log after the first cycle: it was read twice at once", n)
	}
	ps, err := e.st.PollState(busy, StreamMessages)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Failures != 0 || !ps.LastSuccess.Equal(t0) {
		t.Errorf("busy poll state = %+v, want a success at %v, when its read started", ps, t0)
	}
	if got := e.coverage(busy); !got.Until.Equal(t0) {
		t.Errorf("busy covered until %v, want %v", got.Until, t0)
	}
	if c := e.sum(busy); c.Outbound+c.Inbound != 1000 {
		t.Errorf("busy log: %d messages stored, want 1000", c.Outbound+c.Inbound)
	}
	e.checkConsistent(busy)
	if b := e.p.Backfill(); b.Total != 0 {
		t.Errorf("progress after the long read = %+v, want none", b)
	}
	if !strings.Contains(e.logs.String(), `msg="backfill done" done=5 accounts=5 failed=0`) {
		t.Errorf("no backfill summary in the log:\n%s", e.logs.String())
	}
	// The third cycle reads it again, incrementally.
	e.clock.Advance(time.Minute)
	if res := e.messages(); len(res.CatchingUp) != 0 || len(res.Failed) != 0 {
		t.Errorf("third cycle: %+v", res)
	}
	goleak.VerifyNone(t, leaks,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"))
}
