package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/traffic"
)

// usageRecordJSON is one usage record; price is raw JSON (a number, a
// string or null).
func usageRecordJSON(category, day, count, price, asOf string) string {
	return fmt.Sprintf(`{"account_sid": %q, "category": %q, "start_date": %q, "end_date": %q, "count": %q,
		"count_unit": "messages", "price": %s, "price_unit": "usd", "as_of": %q, "usage": %q}`,
		subSID, category, day, day, count, price, asOf, count)
}

func usagePage(records ...string) string {
	return fmt.Sprintf(`{"first_page_uri": "/x", "next_page_uri": null, "page": 0, "page_size": 1000, "uri": "/x",
		"usage_records": [%s]}`, strings.Join(records, ","))
}

func TestUsageToday(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Query().Has("Category") {
			writeJSON(w, 400, twilioError(400, 20001))
			return
		}
		writeJSON(w, 200, usagePage(
			usageRecordJSON("totalprice", "2024-05-01", "0", `"12.34"`, "2024-05-01T10:00:00+00:00"),
			usageRecordJSON("sms", "2024-05-01", "1500", `11.85`, "2024-05-01T09:58:00+00:00"),
			usageRecordJSON("calls", "2024-05-01", "7", `0.49`, "2024-05-01T09:00:00+00:00"), // not read
			usageRecordJSON("mms", "2024-05-01", "3", `null`, "2024-05-01T10:01:00+00:00")))
	})
	tc := newTestClient(t, srv.URL, nil)
	got, err := tc.UsageToday(context.Background(), subSID)
	if err != nil {
		t.Fatalf("UsageToday: %v", err)
	}
	want := traffic.Usage{Day: "2024-05-01", TotalPrice: 12.34, SMS: 1500, MMS: 3,
		AsOf: time.Date(2024, 5, 1, 9, 58, 0, 0, time.UTC), Currency: "USD"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UsageToday (-want +got):\n%s", diff)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests: got %d, want 1 (every category in one listing)", len(reqs))
	}
	if r := reqs[0]; r.Path != "/2010-04-01/Accounts/"+subSID+"/Usage/Records/Today.json" || r.Query.Get("IncludeSubaccounts") != "false" {
		t.Errorf("request: got %s?%s", r.Path, r.RawQuery)
	}
}

func TestUsageTodayAcrossMidnight(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, usagePage(
			usageRecordJSON("totalprice", "2024-05-01", "1", "1", "2024-05-01T23:59:00+00:00"),
			usageRecordJSON("mms", "2024-05-02", "1", "1", "2024-05-02T00:00:10+00:00")))
	})
	tc := newTestClient(t, srv.URL, nil)
	if _, err := tc.UsageToday(context.Background(), subSID); err == nil || !strings.Contains(err.Error(), "2 days") {
		t.Errorf("UsageToday: got %v, want an error about two days", err)
	}
}

func TestUsageDaily(t *testing.T) {
	// One listing of every category; the ones sentinel does not read, and
	// days outside the range, are left out.
	all := usagePage(
		usageRecordJSON("totalprice", "2024-05-01", "0", "10.5", "2024-05-03T01:00:00+00:00"),
		usageRecordJSON("totalprice", "2024-05-02", "0", `"0.0079"`, "2024-05-03T01:00:00+00:00"),
		usageRecordJSON("sms", "2024-05-01", "1000", "7.9", "2024-05-03T01:00:00+00:00"),
		usageRecordJSON("sms", "2024-05-02", "1", "0.0079", "2024-05-03T01:00:00+00:00"),
		usageRecordJSON("mms", "2024-05-01", "20", "0.4", "2024-05-03T00:30:00+00:00"),
		usageRecordJSON("mms", "2024-04-30", "99", "9", "2024-05-03T00:30:00+00:00"), // outside the range
		usageRecordJSON("calls", "2024-05-01", "5", "1", "2024-05-03T01:00:00+00:00"),
	)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, all)
	})
	tc := newTestClient(t, srv.URL, nil)
	got, err := tc.UsageDaily(context.Background(), subSID, "2024-05-01", "2024-05-02")
	if err != nil {
		t.Fatalf("UsageDaily: %v", err)
	}
	want := []traffic.Usage{
		{Day: "2024-05-01", TotalPrice: 10.5, SMS: 1000, MMS: 20, AsOf: time.Date(2024, 5, 3, 0, 30, 0, 0, time.UTC), Currency: "USD"},
		{Day: "2024-05-02", TotalPrice: 0.0079, SMS: 1, AsOf: time.Date(2024, 5, 3, 1, 0, 0, 0, time.UTC), Currency: "USD"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UsageDaily (-want +got):\n%s", diff)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests: got %d, want 1", len(reqs))
	}
	q := reqs[0].Query
	if reqs[0].Path != "/2010-04-01/Accounts/"+subSID+"/Usage/Records/Daily.json" || q.Has("Category") ||
		q.Get("StartDate") != "2024-05-01" || q.Get("EndDate") != "2024-05-02" || q.Get("IncludeSubaccounts") != "false" {
		t.Errorf("request: got %s?%s", reqs[0].Path, reqs[0].RawQuery)
	}
}

func TestUsageDailyBadRange(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, usagePage())
	})
	tc := newTestClient(t, srv.URL, nil)
	for _, r := range [][2]string{{"2024-05-02", "2024-05-01"}, {"2024-5-1", "2024-05-02"}, {"", ""}, {"2024-05-01", "-30days"}} {
		if _, err := tc.UsageDaily(context.Background(), subSID, r[0], r[1]); err == nil {
			t.Errorf("UsageDaily(%q, %q): got no error", r[0], r[1])
		}
	}
	if got := len(srv.requests()); got != 0 {
		t.Errorf("requests: got %d, want none", got)
	}
}

func TestUsageMalformed(t *testing.T) {
	tests := []struct {
		name, record, want string
	}{
		{"bad as_of", usageRecordJSON("totalprice", "2024-05-01", "0", "1", "yesterday"), "as_of"},
		{"bad start_date", usageRecordJSON("totalprice", "May 1", "0", "1", "2024-05-01T10:00:00+00:00"), "start_date"},
		{"bad count", usageRecordJSON("totalprice", "2024-05-01", "0", "1", "2024-05-01T10:00:00+00:00") + "," +
			usageRecordJSON("sms", "2024-05-01", "1.5", "1", "2024-05-01T10:00:00+00:00"), "count"},
		{"price not a number", usageRecordJSON("totalprice", "2024-05-01", "0", `"lots"`, "2024-05-01T10:00:00+00:00"), "lots"},
		{"price an object", usageRecordJSON("totalprice", "2024-05-01", "0", `{}`, "2024-05-01T10:00:00+00:00"), "float32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, usagePage(tt.record))
			})
			tc := newTestClient(t, srv.URL, nil)
			_, err := tc.UsageDaily(context.Background(), subSID, "2024-05-01", "2024-05-01")
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("UsageDaily: got %v, want ErrMalformed mentioning %q", err, tt.want)
			}
		})
	}
}

func TestWiden(t *testing.T) {
	for _, tt := range []struct {
		in   float32
		want float64
	}{{0.1, 0.1}, {12.34, 12.34}, {0.0079, 0.0079}, {1234567, 1234567}} {
		if got := widen(&tt.in); got != tt.want {
			t.Errorf("widen(%v): got %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := widen(nil); got != 0 {
		t.Errorf("widen(nil): got %v, want 0", got)
	}
}
