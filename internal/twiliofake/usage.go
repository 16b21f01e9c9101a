package twiliofake

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Usage categories the fake knows, in listing order.
const (
	CategoryMMS         = "mms"
	CategorySMS         = "sms"
	CategorySMSInbound  = "sms-inbound"
	CategorySMSOutbound = "sms-outbound"
	CategoryTotalPrice  = "totalprice"
)

var categories = []string{CategoryMMS, CategorySMS, CategorySMSInbound, CategorySMSOutbound, CategoryTotalPrice}

var categoryInfo = map[string]struct{ description, countUnit, usageUnit string }{
	CategoryMMS:         {"MMS Messages", "messages", "messages"},
	CategorySMS:         {"SMS Messages", "messages", "messages"},
	CategorySMSInbound:  {"Inbound SMS Messages", "messages", "messages"},
	CategorySMSOutbound: {"Outbound SMS Messages", "messages", "messages"},
	CategoryTotalPrice:  {"Total Price", "", "usd"},
}

// UsageRecord is one account's usage in one category on one UTC day.
type UsageRecord struct {
	// Count is the number of messages; Usage the billed amount (segments;
	// for totalprice, unused).
	Count, Usage int64
	// Price is the positive price in USD.
	Price float64
}

type usageKey struct {
	day      int64 // UTC day number since the Unix epoch
	category string
}

// dayAgg is the usage derived from one day of messages, by category index.
type dayAgg struct {
	count, usage, micros [5]int64
}

func dayNumber(t time.Time) int64 { return t.Unix() / 86400 }

// addUsage adds (sign 1) or removes (sign -1) m's contribution to the
// derived usage of the day of its sort key. The caller holds s.mu.
func (a *account) addUsage(m *msg, sign int64, strs *interner) {
	d := m.key / 86400
	g := a.agg[d]
	if g == nil {
		g = &dayAgg{}
		a.agg[d] = g
	}
	var micros int64
	if p, ok := strs.str(m.price); ok {
		f, _ := strconv.ParseFloat(p, 64)
		micros = int64(math.Round(math.Abs(f) * 1e6))
	}
	add := func(cat string) {
		i := slices.Index(categories, cat)
		g.count[i] += sign
		g.usage[i] += sign * int64(m.segments)
		g.micros[i] += sign * micros
	}
	if m.mms || m.media > 0 {
		add(CategoryMMS)
	} else {
		add(CategorySMS)
		if directions[m.dir] == "inbound" {
			add(CategorySMSInbound)
		} else {
			add(CategorySMSOutbound)
		}
	}
	i := slices.Index(categories, CategoryTotalPrice)
	g.micros[i] += sign * micros
}

// record returns a's usage for one day and category: the explicit record
// if SetUsage set one, else what its messages add up to. The caller holds
// s.mu.
func (a *account) record(d int64, cat string) UsageRecord {
	if r, ok := a.usage[usageKey{d, cat}]; ok {
		return r
	}
	g := a.agg[d]
	if g == nil {
		return UsageRecord{}
	}
	i := slices.Index(categories, cat)
	return UsageRecord{Count: g.count[i], Usage: g.usage[i], Price: float64(g.micros[i]) / 1e6}
}

// SetUsage sets an account's usage record for a UTC day ("2006-01-02") and
// category, replacing what its messages add up to.
func (s *Server) SetUsage(accountSID, dayStr, category string, r UsageRecord) error {
	t, err := time.Parse("2006-01-02", dayStr)
	if err != nil {
		return fmt.Errorf("set usage %s: day %q: %w", accountSID, dayStr, ErrInvalid)
	}
	if !slices.Contains(categories, category) {
		return fmt.Errorf("set usage %s: category %q: %w", accountSID, category, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[accountSID]
	if a == nil {
		return fmt.Errorf("set usage %s: %w", accountSID, ErrNoAccount)
	}
	a.usage[usageKey{dayNumber(t), category}] = r
	return nil
}

type usageJSON struct {
	AccountSID      string            `json:"account_sid"`
	APIVersion      string            `json:"api_version"`
	AsOf            string            `json:"as_of"`
	Category        string            `json:"category"`
	Count           string            `json:"count"`
	CountUnit       string            `json:"count_unit"`
	Description     string            `json:"description"`
	EndDate         string            `json:"end_date"`
	Price           string            `json:"price"`
	PriceUnit       string            `json:"price_unit"`
	StartDate       string            `json:"start_date"`
	SubresourceURIs map[string]string `json:"subresource_uris"`
	URI             string            `json:"uri"`
	Usage           string            `json:"usage"`
	UsageUnit       string            `json:"usage_unit"`
}

type usagePage struct {
	envelope
	UsageRecords []usageJSON `json:"usage_records"`
}

var usageSubresources = map[string]string{
	"all_time": "AllTime", "daily": "Daily", "last_month": "LastMonth", "monthly": "Monthly",
	"this_month": "ThisMonth", "today": "Today", "yearly": "Yearly", "yesterday": "Yesterday",
}

// listUsage serves Usage/Records/Today and Usage/Records/Daily.
func (s *Server) listUsage(w http.ResponseWriter, r *http.Request, a *account, kind string) {
	q := r.URL.Query()
	p, e := parsePaging(q)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	now := s.now()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	filters := url.Values{}
	cats := categories
	if v, ok := q["Category"]; ok {
		filters.Set("Category", v[0])
		cats = nil
		if slices.Contains(categories, v[0]) {
			cats = []string{v[0]}
		}
	}
	include := true
	if v, ok := q["IncludeSubaccounts"]; ok {
		b, err := strconv.ParseBool(v[0])
		if err != nil {
			writeAPIError(w, badParam("IncludeSubaccounts must be true or false, got %q", v[0]))
			return
		}
		include = b
		filters.Set("IncludeSubaccounts", v[0])
	}
	from, to := today, today
	if kind == "Daily" {
		from = today.AddDate(0, 0, -29)
		for _, f := range []struct {
			name string
			t    *time.Time
		}{{"StartDate", &from}, {"EndDate", &to}} {
			v, ok := q[f.name]
			if !ok {
				continue
			}
			t, ok := parseUsageDate(v[0], today)
			if !ok {
				writeAPIError(w, badParam("Invalid %s %q: want YYYY-MM-DD", f.name, v[0]))
				return
			}
			*f.t = t
			filters.Set(f.name, v[0])
		}
		if to.Sub(from) > 3660*day {
			writeAPIError(w, badParam("Date range too large"))
			return
		}
	}

	s.mu.RLock()
	accts := []*account{a}
	if a.Parent && include {
		accts = accts[:0]
		for _, x := range s.accounts {
			accts = append(accts, x)
		}
	}
	asOf := now.Add(-s.opts.UsageLag).Format("2006-01-02T15:04:05+00:00")
	var recs []usageJSON
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		for _, cat := range cats {
			var sum UsageRecord
			for _, x := range accts {
				rec := x.record(dayNumber(d), cat)
				sum.Count += rec.Count
				sum.Usage += rec.Usage
				sum.Price += rec.Price
			}
			recs = append(recs, s.usageJSON(a.SID, kind, cat, d, sum, asOf))
		}
	}
	s.mu.RUnlock()

	key := func(u usageJSON) string { return u.StartDate + "_" + u.Category }
	if p.token != "" {
		tok, e := parseToken(p.token)
		if e == nil {
			d, c, ok := strings.Cut(tok.key, "_")
			if _, err := time.Parse("2006-01-02", d); err != nil || !ok || !slices.Contains(categories, c) {
				e = badParam("Invalid PageToken %q", p.token)
			}
		}
		if e != nil {
			writeAPIError(w, e)
			return
		}
	}
	page, next, prev, _ := pageByKey(recs, key, p.size, p.token)
	out := usagePage{envelope: s.newEnvelope(r, filters, p, len(page), next, prev), UsageRecords: append(make([]usageJSON, 0, len(page)), page...)}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) usageJSON(acct, kind, cat string, d time.Time, rec UsageRecord, asOf string) usageJSON {
	base := "/2010-04-01/Accounts/" + acct + "/Usage/Records/"
	subs := make(map[string]string, len(usageSubresources))
	for k, v := range usageSubresources {
		subs[k] = base + v + ".json?Category=" + cat
	}
	info := categoryInfo[cat]
	day := d.Format("2006-01-02")
	price := strconv.FormatFloat(math.Round(rec.Price*1e5)/1e5, 'f', -1, 64)
	u := usageJSON{
		AccountSID:      acct,
		APIVersion:      "2010-04-01",
		AsOf:            asOf,
		Category:        cat,
		Count:           strconv.FormatInt(rec.Count, 10),
		CountUnit:       info.countUnit,
		Description:     info.description,
		EndDate:         day,
		Price:           price,
		PriceUnit:       "usd",
		StartDate:       day,
		SubresourceURIs: subs,
		URI:             base + kind + ".json?Category=" + cat + "&StartDate=" + day + "&EndDate=" + day,
		Usage:           strconv.FormatInt(rec.Usage, 10),
		UsageUnit:       info.usageUnit,
	}
	if cat == CategoryTotalPrice {
		u.Count, u.Usage = "0", price
	}
	return u
}
