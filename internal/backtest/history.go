package backtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// Fields of a slot, in the order History.Counts holds them; the error codes
// of History.Codes follow.
const (
	fieldOutbound = iota
	fieldFinished
	fieldFailed
	fieldNoService
	fieldOptOuts
	fieldCodes // the first error code
)

// minUsageDays is how many UTC days of usage a subject carries, today
// included, as the daemon's cycle gives it.
const minUsageDays = 8

// Request says what Load reads.
type Request struct {
	// Since and To bound the five-minute buckets read: those that start in
	// [Since, To], and those of To's day up to its usage's as_of, for
	// spreading that day's spend over it (see the package doc).
	Since, To time.Time
	// Codes are the error codes the rules read.
	Codes []int
	// UsageFrom is the first UTC day of usage read ("2006-01-02").
	UsageFrom string
	// SID, if not empty, loads that one account only.
	SID string
}

// RequestFor returns what a replay of set over [from, to] reads: buckets
// from the longest window before from (and from from's midnight, for the
// spend of its day), the set's error codes, and usage far enough back for
// spend_spike's baseline.
func RequestFor(set *policy.Set, from, to time.Time) Request {
	midnight := from.UTC().Truncate(24 * time.Hour)
	since := traffic.WindowStart(from, set.MaxWindow())
	if midnight.Before(since) {
		since = midnight
	}
	days := max(minUsageDays, set.UsageDays())
	return Request{
		Since:     since,
		To:        to,
		Codes:     Codes(set),
		UsageFrom: midnight.AddDate(0, 0, 1-days).Format(time.DateOnly),
	}
}

// Codes returns the error codes set's rules read, ascending.
func Codes(set *policy.Set) []int {
	var codes []int
	for _, r := range set.Rules() {
		codes = append(codes, r.Codes...)
	}
	slices.Sort(codes)
	return slices.Compact(codes)
}

// History is what a replay reads of the store, loaded once: every
// account's five-minute counts over the period and the longest window
// before it, and the few records that say what happened to it (breaker
// changes, coverage, usage). A daemon serves it over its control socket,
// so that the replay itself runs in the process that asked for it.
type History struct {
	// Start is the start of slot 0; slot i covers
	// [Start+i*BucketWidth, Start+(i+1)*BucketWidth).
	Start time.Time `json:"start"`
	// Slots is how many slots every account has.
	Slots int `json:"slots"`
	// Codes are the error codes counted, after the five fixed fields.
	Codes []int `json:"codes"`
	// Horizon is the store's prune horizon: raw messages before it are
	// gone, so a window that starts exactly at an earlier reinstatement
	// cannot be counted.
	Horizon time.Time `json:"horizon,omitzero"`
	// Loaded is when the history was read.
	Loaded   time.Time `json:"loaded"`
	Accounts []Account `json:"accounts"`

	mu     sync.Mutex
	summed bool // Counts hold running sums (see sum)
}

// Account is one account's history.
type Account struct {
	Info    store.Account `json:"account"`
	Breaker store.Breaker `json:"breaker"`
	// Coverage is the stretch of the message log known complete now.
	Coverage traffic.Coverage `json:"coverage"`
	// Usage holds the stored usage days, oldest first, each as last read.
	Usage []traffic.Usage `json:"usage,omitempty"`
	// UsagePolled is the last successful read of its usage.
	UsagePolled time.Time `json:"usage_polled,omitzero"`
	// SpendDays are the days on which a spend rule fired for it.
	SpendDays []string `json:"spend_days,omitempty"`
	// Changes are its breaker changes, oldest first (actions.Changes).
	Changes []actions.Change `json:"changes,omitempty"`
	// Heads hold, for each reinstatement that is not on a bucket boundary,
	// the counts from it to the next boundary, recounted from the raw
	// messages: a window that starts there starts exactly there.
	Heads []Head `json:"heads,omitempty"`
	// Counts holds Slots rows of 5+len(Codes) counts: outbound, finished,
	// failed, without a Messaging Service, opt-outs, then each code.
	Counts []int64 `json:"counts"`
}

// Head is the counts of [At, the next bucket boundary).
type Head struct {
	At     time.Time `json:"at"`
	Counts []int64   `json:"counts"`
}

// fields returns how many counts a slot holds.
func (h *History) fields() int { return fieldCodes + len(h.Codes) }

// Load reads the history req asks for. It only reads, in a handful of
// read transactions, so it works on a database a daemon holds (from the
// daemon's own process) as well as on one opened read-only.
func Load(ctx context.Context, st *store.Store, req Request) (*History, error) {
	if !req.Since.Before(req.To) {
		return nil, fmt.Errorf("load history: empty range [%v, %v]", req.Since, req.To)
	}
	h := &History{
		Start:  traffic.BucketStart(req.Since),
		Codes:  slices.Clone(req.Codes),
		Loaded: time.Now().UTC(),
	}
	accts, err := st.Accounts()
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	if req.SID != "" {
		i := slices.IndexFunc(accts, func(a store.Account) bool { return a.SID == req.SID })
		if i < 0 {
			return nil, fmt.Errorf("load history: no subaccount %s in this fleet, as of sentinel's last read of Twilio's account list (sentinel -status lists them): %w",
				req.SID, actions.ErrUnknownAccount)
		}
		accts = accts[i : i+1]
	}
	slices.SortFunc(accts, func(a, b store.Account) int { return cmp.Compare(a.SID, b.SID) })
	toDay := req.To.UTC().Format(time.DateOnly)
	breakers, err := st.AllBreakers()
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	coverage, err := st.AllCoverage()
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	usage, err := st.AllUsage(req.UsageFrom, toDay)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	polls, err := st.AllPollStates("usage")
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	spendDays, err := st.AllSpendDays(req.UsageFrom, toDay)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	recs, err := st.Audit(req.SID, 0)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	if h.Horizon, err = st.Horizon(); err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	audit := map[string][]store.AuditRecord{}
	for _, r := range recs {
		audit[r.Subaccount] = append(audit[r.Subaccount], r)
	}

	// The buckets end with To's, or with the end of To's spend as last
	// read, whichever is later: that day's spend is spread over its
	// messages up to then.
	end := traffic.CeilBucket(req.To)
	midnight := req.To.UTC().Truncate(24 * time.Hour)
	for _, days := range usage {
		for _, u := range days {
			if u.Day == toDay {
				end = latest(end, traffic.CeilBucket(earliest(u.AsOf, midnight.Add(24*time.Hour))))
			}
		}
	}
	h.Slots = int(end.Sub(h.Start) / traffic.BucketWidth)
	f := h.fields()

	index := make(map[string]int, len(accts))
	h.Accounts = make([]Account, len(accts))
	for i, a := range accts {
		index[a.SID] = i
		br, ok := breakers[a.SID]
		if !ok {
			br = store.Breaker{State: actions.StateClosed}
		}
		ha := &h.Accounts[i]
		*ha = Account{
			Info:        a,
			Breaker:     br,
			Coverage:    coverage[a.SID],
			Usage:       usage[a.SID],
			UsagePolled: polls[a.SID].LastSuccess,
			Changes:     actions.Changes(audit[a.SID]),
			Counts:      make([]int64, h.Slots*f),
		}
		for day := range spendDays[a.SID] {
			ha.SpendDays = append(ha.SpendDays, day)
		}
		slices.Sort(ha.SpendDays)
		// The breaker knows its last reinstatement to the nanosecond; the
		// audit log's record of an outside one, to the second.
		if r := br.ReinstatedAt; !r.IsZero() {
			for j := len(ha.Changes) - 1; j >= 0; j-- {
				if c := &ha.Changes[j]; c.Reinstatement() {
					if d := c.ReinstatedAt.Sub(r); d > -time.Second && d < time.Second {
						c.ReinstatedAt = r
					}
					break
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	add := func(sid string, bs []traffic.Bucket) error {
		i, ok := index[sid]
		if !ok {
			return nil // not in the account list (yet), or not asked for
		}
		counts := h.Accounts[i].Counts
		for k := range bs {
			b := &bs[k]
			slot := int(b.Start.Sub(h.Start) / traffic.BucketWidth)
			if slot < 0 || slot >= h.Slots {
				continue
			}
			row := counts[slot*f : (slot+1)*f]
			fill(row, &b.Counts, h.Codes)
		}
		return ctx.Err()
	}
	if req.SID != "" {
		bs, err := st.Buckets(req.SID, h.Start, end)
		if err == nil {
			err = add(req.SID, bs)
		}
		if err != nil {
			return nil, fmt.Errorf("load history: %w", err)
		}
	} else if err := st.ScanCounts(h.Start, end, add); err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}

	for i := range h.Accounts {
		ha := &h.Accounts[i]
		for _, c := range ha.Changes {
			r := c.ReinstatedAt
			if !c.Reinstatement() || r.IsZero() || !r.After(h.Start) || r.After(req.To) || traffic.BucketStart(r).Equal(r) {
				continue
			}
			if slices.ContainsFunc(ha.Heads, func(hd Head) bool { return hd.At.Equal(r) }) {
				continue
			}
			b, err := st.CountRange(ha.Info.SID, r, traffic.CeilBucket(r))
			if err != nil {
				return nil, fmt.Errorf("load history: %w", err)
			}
			row := make([]int64, f)
			fill(row, &b.Counts, h.Codes)
			ha.Heads = append(ha.Heads, Head{At: r, Counts: row})
		}
	}
	return h, nil
}

// fill writes c into row, in History's field order.
func fill(row []int64, c *traffic.Counts, codes []int) {
	row[fieldOutbound] = c.Outbound
	row[fieldFinished] = c.Finished
	row[fieldFailed] = c.Failed
	row[fieldNoService] = c.NoService
	row[fieldOptOuts] = c.OptOuts
	for j, code := range codes {
		row[fieldCodes+j] = c.Errors[code]
	}
}

// sum turns every account's Counts into running sums, once: afterwards
// Counts[i*F+f] is field f summed over slots 0 to i. A History is replayed
// from its running sums, which is what makes any window's sum two reads.
func (h *History) sum() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.summed {
		return nil
	}
	f := h.fields()
	for i := range h.Accounts {
		c := h.Accounts[i].Counts
		if len(c) != h.Slots*f {
			return fmt.Errorf("history of %s: %d counts, want %d slots of %d", h.Accounts[i].Info.SID, len(c), h.Slots, f)
		}
		for j := f; j < len(c); j++ {
			c[j] += c[j-f]
		}
		for _, hd := range h.Accounts[i].Heads {
			if len(hd.Counts) != f {
				return fmt.Errorf("history of %s: a head of %d counts, want %d", h.Accounts[i].Info.SID, len(hd.Counts), f)
			}
		}
	}
	h.summed = true
	return nil
}

// Covers returns the stretch that the accounts' message logs are known
// complete over, together: from the earliest start of a coverage to the
// latest end. ok is false when no account has any.
func (h *History) Covers() (from, until time.Time, ok bool) {
	for _, a := range h.Accounts {
		c := a.Coverage
		if c.Until.IsZero() {
			continue
		}
		if !ok || c.From.Before(from) {
			from = c.From
		}
		if !ok || c.Until.After(until) {
			until = c.Until
		}
		ok = true
	}
	return from, until, ok
}

// ErrNoData means a period holds no data to judge.
var ErrNoData = errors.New("no data")

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
