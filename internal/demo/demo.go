// Package demo builds the fleet that `sentinel -demo` watches: a Twilio fake
// with a parent account, steady subaccounts, and three offenders that
// sentinel's default policies should catch: one whose messages carriers
// start filtering (30007), one hit by an opt-out storm, and one whose spend
// runs away. A few messages are also sent straight from the parent.
//
// The fleet starts with 24 hours of history (so rules can judge from the
// first cycle, as after a real installation) and then keeps sending in real
// time: Run appends new traffic on every tick and delivers the delivery
// receipts of earlier messages late, as carriers do, so that the poller's
// settle window is exercised. A suspended subaccount stops sending, as it
// would in Twilio.
package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"sentinel/internal/twiliofake"
)

// Friendly names of the demo's subaccounts. The shipped spend policy gives
// accounts named sentinel-demo-* a $50 daily budget.
const (
	namePrefix   = "sentinel-demo-"
	FilteredName = namePrefix + "filtered"
	StormName    = namePrefix + "opt-out-storm"
	SpenderName  = namePrefix + "runaway-spend"
)

// Options shape the fleet. Zero values take the defaults.
type Options struct {
	// Subaccounts is the fleet size, offenders included. Default 30.
	Subaccounts int
	// Rate is each steady subaccount's outbound messages per hour.
	// Default 120.
	Rate int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Seed makes the fleet deterministic.
	Seed uint64
}

// Fleet is the demo's Twilio fake and what it knows about its accounts.
type Fleet struct {
	Server   *twiliofake.Server
	Filtered string // SIDs of the offenders
	Storm    string
	Spender  string

	opts  Options
	rng   *rand.Rand
	mu    sync.Mutex
	spend float64   // the spender's spend today, raised on every tick
	late  []pending // sent messages waiting for their delivery receipt
}

type pending struct {
	sid string
	due time.Time
	// filtered marks a message that the carrier will filter (30007).
	filtered bool
}

// New builds the fleet with its 24 hours of history and 7 days of usage.
func New(opts Options) (*Fleet, error) {
	if opts.Subaccounts == 0 {
		opts.Subaccounts = 30
	}
	if opts.Rate == 0 {
		opts.Rate = 120
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Subaccounts < 4 {
		return nil, fmt.Errorf("demo: %d subaccounts: need at least 4", opts.Subaccounts)
	}
	f := &Fleet{
		Server: twiliofake.New(twiliofake.Options{Now: opts.Now, Seed: opts.Seed, MaxRecorded: 1000}),
		opts:   opts,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed)),
	}
	now := opts.Now().UTC()
	for i := range opts.Subaccounts {
		name := fmt.Sprintf("%sclient-%02d", namePrefix, i+1)
		switch i {
		case 0:
			name = FilteredName
		case 1:
			name = StormName
		case 2:
			name = SpenderName
		}
		a, err := f.Server.AddSubaccount(twiliofake.Account{FriendlyName: name})
		if err != nil {
			return nil, err
		}
		switch i {
		case 0:
			f.Filtered = a.SID
		case 1:
			f.Storm = a.SID
		case 2:
			f.Spender = a.SID
		}
		if err := f.history(a.SID, now); err != nil {
			return nil, err
		}
	}
	// A few messages sent straight from the parent in the last half hour.
	if _, err := f.Server.Generate(twiliofake.Traffic{
		AccountSID: f.Server.ParentSID(), N: 3, From: now.Add(-30 * time.Minute), To: now, Seed: opts.Seed + 1,
	}); err != nil {
		return nil, err
	}
	f.spend = 40
	return f, f.setSpend(now)
}

// stormList is how many numbers live traffic (and the opt-out storm) goes
// to.
const stormList = 300

// price is what the demo's messages cost: low enough that a day of steady
// traffic stays well inside the demo's $50 budget.
const price = "-0.00500"

// history gives an account a steady day of traffic and a week of usage, and
// the offenders their trouble.
func (f *Fleet) history(sid string, now time.Time) error {
	rate := f.opts.Rate
	seed := f.rng.Uint64()
	steady := twiliofake.Traffic{
		AccountSID: sid, N: 24 * rate, From: now.Add(-24 * time.Hour), To: now.Add(-time.Minute), Seed: seed,
		// Failures from a tidy list: unreachable, unknown and landline
		// numbers, no carrier filtering (30007 is the filtered
		// offender's), so that no healthy client trips a warning.
		Inbound: 0.05, OptOut: 0.02, Failed: 0.01, ErrorCodes: []int{30003, 30005, 30006},
		Price: price,
	}
	switch sid {
	case f.Filtered:
		// Busier, and for the last 40 minutes carriers filter one in eight.
		steady.N = 24 * 2 * rate
		steady.To = now.Add(-40 * time.Minute)
		bad := twiliofake.Traffic{
			AccountSID: sid, N: 2 * rate * 40 / 60, From: now.Add(-40 * time.Minute), To: now.Add(-time.Minute), Seed: seed + 1,
			Price: price,
		}
		sids, err := f.Server.Generate(bad)
		if err != nil {
			return err
		}
		// Exactly one in eight, not a random share: the demo must show the
		// rule tripping whatever the seed.
		for i := 0; i < len(sids); i += 8 {
			err := f.Server.UpdateMessage(sids[i], func(m *twiliofake.Message) {
				if m.Direction != "inbound" {
					m.Status, m.ErrorCode = "undelivered", 30007
				}
			})
			if err != nil {
				return err
			}
		}
	case f.Storm:
		// A campaign in the last three hours drew hundreds of STOP replies.
		// Its recipients are a purchased list of a few hundred numbers,
		// and the STOPs come from them: opt-outs that count.
		storm := twiliofake.Traffic{
			AccountSID: sid, N: 3 * rate * 3, From: now.Add(-3 * time.Hour), To: now.Add(-time.Minute), Seed: seed + 1,
			Inbound: 0.5, OptOut: 0.9, Price: price, Recipients: stormList,
		}
		if _, err := f.Server.Generate(storm); err != nil {
			return err
		}
	}
	if _, err := f.Server.Generate(steady); err != nil {
		return err
	}
	// A week of ordinary spend, the baseline the spend-spike rule compares
	// today against.
	for d := 1; d <= 7; d++ {
		day := now.AddDate(0, 0, -d).Format(time.DateOnly)
		price := 12 + 6*f.rng.Float64()
		if err := f.Server.SetUsage(sid, day, twiliofake.CategoryTotalPrice, twiliofake.UsageRecord{Price: price}); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fleet) setSpend(now time.Time) error {
	return f.Server.SetUsage(f.Spender, now.Format(time.DateOnly), twiliofake.CategoryTotalPrice,
		twiliofake.UsageRecord{Price: f.spend})
}

// Run keeps the fleet sending until ctx ends: every tick each active
// subaccount sends its share of traffic, earlier messages get their
// delivery receipts, the storm goes on, and the spender spends more.
func (f *Fleet) Run(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := f.Tick(tick); err != nil {
				return err
			}
		}
	}
}

// Tick appends one tick's worth of traffic and delivers due receipts.
func (f *Fleet) Tick(tick time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.opts.Now().UTC()
	for _, a := range f.Server.Accounts() {
		if a.Parent || a.Status != twiliofake.StatusActive {
			continue // a suspended subaccount cannot send
		}
		n := f.share(tick, a.SID)
		for range n {
			// Live traffic goes to, and STOPs come from, a list of
			// numbers each account messages: opt-outs count only from
			// numbers the account messaged.
			peer := fmt.Sprintf("+1202%07d", f.rng.IntN(stormList))
			msg := twiliofake.Message{AccountSID: a.SID, DateSent: now, Status: "sent", MessagingServiceSID: "MG" + a.SID[2:], To: peer}
			if a.SID == f.Storm && f.rng.Float64() < 0.4 {
				msg = twiliofake.Message{AccountSID: a.SID, DateSent: now, Direction: "inbound", Body: "STOP", From: peer}
			}
			sids, err := f.Server.AppendMessages(msg)
			if err != nil {
				return err
			}
			if msg.Direction == "" {
				filtered := a.SID == f.Filtered && f.rng.Float64() < 0.15
				f.late = append(f.late, pending{sid: sids[0], due: now.Add(time.Duration(3+f.rng.IntN(10)) * time.Second), filtered: filtered})
			}
		}
		if a.SID == f.Spender {
			f.spend += 4
			if err := f.setSpend(now); err != nil {
				return err
			}
		}
	}
	return f.deliver(now)
}

// share is how many messages an account sends in one tick: its hourly rate
// scaled to the tick, rounded at random so that small shares still add up.
func (f *Fleet) share(tick time.Duration, sid string) int {
	rate := float64(f.opts.Rate)
	if sid == f.Filtered {
		rate *= 2
	}
	if sid == f.Spender {
		rate *= 40 // the runaway loop: its spend comes from these messages
	}
	x := rate * tick.Hours()
	n := int(x)
	if f.rng.Float64() < x-float64(n) {
		n++
	}
	return n
}

// deliver hands out the delivery receipts that are due: delivered, or
// undelivered with 30007 for messages the carrier filters.
func (f *Fleet) deliver(now time.Time) error {
	keep := f.late[:0]
	for _, p := range f.late {
		if p.due.After(now) {
			keep = append(keep, p)
			continue
		}
		err := f.Server.UpdateMessage(p.sid, func(m *twiliofake.Message) {
			m.Status, m.Price = "delivered", price
			if p.filtered {
				m.Status, m.ErrorCode = "undelivered", 30007
			}
		})
		if err != nil {
			return err
		}
	}
	f.late = keep
	return nil
}
