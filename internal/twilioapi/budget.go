package twilioapi

import (
	"context"
	"math"
	"sync"
	"time"
)

// Twilio limits REST traffic by concurrent requests per account (429, error
// 20429, when exceeded; no requests-per-second figure is published), and
// that pool is shared with the ISV's own production traffic: a monitor that
// crowds it out hurts the customers it protects. So the Client's request
// budget is a number of requests in flight, adaptive:
//
//   - at most Config.Concurrency requests are in flight at once; a new
//     Client starts with one and adds one per good response (doubling per
//     round trip) until the first 429 or the configured concurrency, so
//     that it knows what the account's other traffic is before it has more
//     than one request out;
//   - a 429 halves that limit (never below 1; at most once per
//     SuccessInterval, so that a burst of 429s to requests already in flight
//     counts once), and the request that drew it waits out its Retry-After
//     before it is sent again (Client.do);
//   - each SuccessInterval with successes and no 429 grows the limit back by
//     one, up to Config.Concurrency;
//   - where Twilio's Twilio-Concurrent-Requests response header says how
//     many requests the account has in flight (?: Twilio does not document
//     the header; it is read as the account's requests in flight, this one
//     included), sentinel keeps its own share of them at most
//     Config.ConcurrencyShare: with `others` requests of the account's own
//     in flight, at most share/(1-share)*others of sentinel's (at least one).
//     With no other traffic there is nothing to crowd out, and only the
//     limit applies;
//   - a caller that marks its context with PriorityLow (usage reads,
//     backfills) waits behind every normal request, so that watching the
//     message logs goes first.

// Priority orders requests waiting for the budget.
type Priority int

// Priorities.
const (
	PriorityNormal Priority = iota
	PriorityLow
)

type priorityKey struct{}

// WithPriority marks ctx's requests with p.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

func priorityOf(ctx context.Context) Priority {
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok && p == PriorityLow {
		return PriorityLow
	}
	return PriorityNormal
}

// budget bounds the requests in flight.
type budget struct {
	max      int
	share    float64
	interval time.Duration
	now      func() time.Time
	m        *metrics

	mu       sync.Mutex
	limit    int // current limit, 1..max
	capped   int // the share's cap from the last header; 0: none
	inFlight int // requests holding a place
	waiters  [2][]chan struct{}
	lastCut  time.Time // the last halving
	lastGrow time.Time // the last growth, or the start of the success interval
	okSince  bool      // a success since lastGrow
	slow     bool      // slow start: one more per good response, until a 429
}

func newBudget(max int, share float64, interval time.Duration, now func() time.Time, m *metrics) *budget {
	b := &budget{max: max, share: share, interval: interval, now: now, m: m, limit: 1, slow: true, lastGrow: now()}
	m.limit.Set(1)
	return b
}

// effective returns the limit in force: the adaptive limit, capped by the
// share. The caller holds b.mu.
func (b *budget) effective() int {
	l := b.limit
	if b.capped > 0 && b.capped < l {
		l = b.capped
	}
	return l
}

// acquire waits for a place in the budget or for ctx to end. Waiting
// counts in the budget-wait metric.
func (b *budget) acquire(ctx context.Context) error {
	start := b.now()
	b.mu.Lock()
	if b.free() && len(b.waiters[PriorityNormal]) == 0 && len(b.waiters[PriorityLow]) == 0 {
		b.inFlight++
		b.m.inFlight.Set(float64(b.inFlight))
		b.mu.Unlock()
		return nil
	}
	p := priorityOf(ctx)
	ch := make(chan struct{})
	b.waiters[p] = append(b.waiters[p], ch)
	b.wake()
	b.mu.Unlock()
	select {
	case <-ch:
		b.m.wait.Add(b.now().Sub(start).Seconds())
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-ch:
			// Granted as the context ended: give the place back.
			b.inFlight--
			b.m.inFlight.Set(float64(b.inFlight))
			b.wake()
		default:
			q := b.waiters[p]
			for i, w := range q {
				if w == ch {
					b.waiters[p] = append(q[:i], q[i+1:]...)
					break
				}
			}
		}
		b.m.wait.Add(b.now().Sub(start).Seconds())
		return ctx.Err()
	}
}

// free reports whether a request may start now. The caller holds b.mu.
func (b *budget) free() bool {
	return b.inFlight < b.effective()
}

// wake hands free places to waiters, normal priority first. The caller
// holds b.mu.
func (b *budget) wake() {
	for b.free() {
		p := PriorityNormal
		if len(b.waiters[p]) == 0 {
			p = PriorityLow
		}
		if len(b.waiters[p]) == 0 {
			return
		}
		ch := b.waiters[p][0]
		b.waiters[p] = b.waiters[p][1:]
		b.inFlight++
		b.m.inFlight.Set(float64(b.inFlight))
		close(ch)
	}
}

// release gives back a place after a request's response was read.
func (b *budget) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
	b.m.inFlight.Set(float64(b.inFlight))
	b.wake()
}

// answered adjusts the budget to a response: its status and Twilio's
// Twilio-Concurrent-Requests header (-1 for none).
func (b *budget) answered(status int, concurrent int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if concurrent >= 0 {
		b.capped = 0
		if others := concurrent - b.inFlight; others > 0 && b.share < 1 {
			c := int(math.Floor(b.share / (1 - b.share) * float64(others)))
			b.capped = max(1, min(c, b.max))
		}
		b.m.capped.Set(float64(b.capped))
	}
	switch {
	case status == 429:
		b.m.throttled.Inc()
		b.slow = false
		if now.Sub(b.lastCut) >= b.interval {
			b.limit = max(1, b.limit/2)
			b.lastCut = now
		}
		b.lastGrow, b.okSince = now, false
	case status > 0 && status < 500 && b.slow:
		b.limit = min(b.limit+1, b.max)
		b.slow = b.limit < b.max
	case status > 0 && status < 500:
		b.okSince = true
		if now.Sub(b.lastGrow) >= b.interval {
			if b.limit < b.max && b.okSince {
				b.limit++
			}
			b.lastGrow, b.okSince = now, false
		}
	}
	b.m.limit.Set(float64(b.effective()))
	b.wake()
}
