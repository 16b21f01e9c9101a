package twilioapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/traffic"
)

// Usage categories that make up a traffic.Usage.
const (
	categoryTotalPrice = "totalprice"
	categorySMS        = "sms"
	categoryMMS        = "mms"
)

const dayLayout = "2006-01-02"

// usageRecord holds the fields shared by Twilio's usage record types.
type usageRecord struct {
	category, startDate, count, asOf, priceUnit *string
	price                                       *float32
}

// UsageToday returns accountSID's usage for Twilio's current UTC day. It
// makes one listing of every category for that account alone
// (IncludeSubaccounts=false), usually one request, and keeps the
// categories sentinel reads (totalprice, sms, mms).
func (c *Client) UsageToday(ctx context.Context, accountSID string) (traffic.Usage, error) {
	if err := validSID(accountSID); err != nil {
		return traffic.Usage{}, fmt.Errorf("usage today: %w", err)
	}
	days := map[string]*traffic.Usage{}
	params := (&openapi.ListUsageRecordTodayParams{}).
		SetPathAccountSid(accountSID).SetIncludeSubaccounts(false).SetPageSize(c.cfg.PageSize)
	err := walk(ctx, c, endpointUsageToday,
		func(api *openapi.ApiService) (*openapi.ListUsageRecordTodayResponse, error) {
			return api.PageUsageRecordToday(params, "", "")
		},
		func(p *openapi.ListUsageRecordTodayResponse) *string { return p.NextPageUri },
		func(p *openapi.ListUsageRecordTodayResponse, _ int) (bool, error) {
			for _, r := range p.UsageRecords {
				rec := usageRecord{r.Category, r.StartDate, r.Count, r.AsOf, r.PriceUnit, r.Price}
				if err := addUsage(days, rec, "", ""); err != nil {
					return false, err
				}
			}
			return true, nil
		})
	if err != nil {
		return traffic.Usage{}, fmt.Errorf("usage today of %s: %w", accountSID, err)
	}
	switch len(days) {
	case 0:
		return traffic.Usage{}, fmt.Errorf("usage today of %s: %w: no usage records", accountSID, ErrMalformed)
	case 1:
		for _, u := range days {
			return *u, nil
		}
	}
	// Midnight UTC passed while the pages were read: the records disagree
	// on the day. The next poll will see one day again.
	return traffic.Usage{}, fmt.Errorf("usage today of %s: records span %d days", accountSID, len(days))
}

// UsageDaily returns accountSID's usage per UTC day for the days in
// [fromDay, toDay] ("2006-01-02", inclusive) that Twilio reports, oldest
// first. It makes one listing of every category over the whole range, for
// that account alone.
func (c *Client) UsageDaily(ctx context.Context, accountSID string, fromDay, toDay string) ([]traffic.Usage, error) {
	if err := validSID(accountSID); err != nil {
		return nil, fmt.Errorf("daily usage: %w", err)
	}
	from, err1 := time.Parse(dayLayout, fromDay)
	to, err2 := time.Parse(dayLayout, toDay)
	if err := errors.Join(err1, err2); err != nil || to.Before(from) {
		return nil, fmt.Errorf("daily usage of %s: days %q..%q must be YYYY-MM-DD, in order", accountSID, truncate(fromDay, 20), truncate(toDay, 20))
	}
	days := map[string]*traffic.Usage{}
	params := (&openapi.ListUsageRecordDailyParams{}).
		SetPathAccountSid(accountSID).SetStartDate(fromDay).SetEndDate(toDay).
		SetIncludeSubaccounts(false).SetPageSize(c.cfg.PageSize)
	err := walk(ctx, c, endpointUsageDaily,
		func(api *openapi.ApiService) (*openapi.ListUsageRecordDailyResponse, error) {
			return api.PageUsageRecordDaily(params, "", "")
		},
		func(p *openapi.ListUsageRecordDailyResponse) *string { return p.NextPageUri },
		func(p *openapi.ListUsageRecordDailyResponse, _ int) (bool, error) {
			for _, r := range p.UsageRecords {
				rec := usageRecord{r.Category, r.StartDate, r.Count, r.AsOf, r.PriceUnit, r.Price}
				if err := addUsage(days, rec, fromDay, toDay); err != nil {
					return false, err
				}
			}
			return true, nil
		})
	if err != nil {
		return nil, fmt.Errorf("daily usage of %s: %w", accountSID, err)
	}
	out := make([]traffic.Usage, 0, len(days))
	for _, u := range days {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b traffic.Usage) int { return cmp.Compare(a.Day, b.Day) })
	return out, nil
}

// addUsage folds a record into days: the categories sentinel reads
// (totalprice, sms, mms) and no other, and days outside [from, to] when
// those are given are skipped. A day's AsOf is the oldest of its records':
// the day is known complete up to then.
func addUsage(days map[string]*traffic.Usage, r usageRecord, from, to string) error {
	cat := deref(r.category)
	switch cat {
	case categoryTotalPrice, categorySMS, categoryMMS:
	default:
		return nil
	}
	day := deref(r.startDate)
	if _, err := time.Parse(dayLayout, day); err != nil {
		return fmt.Errorf("%w: %s usage record: start_date %q is not YYYY-MM-DD", ErrMalformed, cat, truncate(day, 20))
	}
	if (from != "" && day < from) || (to != "" && day > to) {
		return nil
	}
	var asOf time.Time
	if s := deref(r.asOf); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return fmt.Errorf("%w: %s usage record %s: as_of %q is not RFC 3339", ErrMalformed, cat, day, truncate(s, 40))
		}
		asOf = t.UTC()
	}
	u := days[day]
	if u == nil {
		u = &traffic.Usage{Day: day, AsOf: asOf}
		days[day] = u
	} else if !asOf.IsZero() && (u.AsOf.IsZero() || asOf.Before(u.AsOf)) {
		u.AsOf = asOf
	}
	switch cat {
	case categoryTotalPrice:
		u.TotalPrice = widen(r.price)
		u.Currency = strings.ToUpper(strings.TrimSpace(deref(r.priceUnit)))
	case categorySMS, categoryMMS:
		var n int64
		if s := deref(r.count); s != "" {
			var err error
			if n, err = strconv.ParseInt(s, 10, 64); err != nil || n < 0 {
				return fmt.Errorf("%w: %s usage record %s: count %q is not a count", ErrMalformed, cat, day, truncate(s, 20))
			}
		}
		if cat == categorySMS {
			u.SMS = n
		} else {
			u.MMS = n
		}
	}
	return nil
}

// widen turns twilio-go's float32 price into the float64 a person would
// read: float64(float32(0.1)) is 0.10000000149011612, but the shortest
// decimal that the float32 stands for is 0.1.
func widen(p *float32) float64 {
	if p == nil || math.IsNaN(float64(*p)) || math.IsInf(float64(*p), 0) {
		return 0
	}
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(*p), 'g', -1, 32), 64)
	return f
}
