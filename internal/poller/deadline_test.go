package poller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

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
// same cycle. With one concurrency slot and the hung account first in line,
// the others are polled only if the hung poll gives its slot back.
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
