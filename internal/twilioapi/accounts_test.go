package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func accountsPage(next string, accts ...string) string {
	nextJSON := "null"
	if next != "" {
		nextJSON = fmt.Sprintf("%q", next)
	}
	return fmt.Sprintf(`{"first_page_uri": "/2010-04-01/Accounts.json?PageSize=1000&Page=0", "next_page_uri": %s,
		"page": 0, "page_size": 1000, "uri": "/2010-04-01/Accounts.json", "accounts": [%s]}`, nextJSON, strings.Join(accts, ","))
}

func TestAccounts(t *testing.T) {
	const other = "AC0123456789abcdef0123456789abcdee"
	next := "/2010-04-01/Accounts.json?PageSize=1000&Page=1&PageToken=PA" + subSID
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			writeJSON(w, 200, accountsPage(next, accountJSON(parentSID, "active"), accountJSON(subSID, "suspended")))
			return
		}
		writeJSON(w, 200, accountsPage("", accountJSON(other, "closed")))
	})
	tc := newTestClient(t, srv.URL, nil)
	got, err := tc.Accounts(context.Background())
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	want := []Account{
		{SID: parentSID, FriendlyName: "shop 0001", Status: "active", OwnerSID: parentSID},
		{SID: subSID, FriendlyName: "shop cdef", Status: "suspended", OwnerSID: parentSID},
		{SID: other, FriendlyName: "shop cdee", Status: "closed", OwnerSID: parentSID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Accounts (-want +got):\n%s", diff)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].Path != "/2010-04-01/Accounts.json" || reqs[0].Query.Get("PageSize") != "1000" {
		t.Errorf("requests: got %+v", reqs)
	}
}

func TestAccountsMalformed(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, accountsPage("", `{"sid": null, "status": "active"}`))
	})
	tc := newTestClient(t, srv.URL, nil)
	if _, err := tc.Accounts(context.Background()); !errors.Is(err, ErrMalformed) {
		t.Errorf("Accounts: got %v, want ErrMalformed", err)
	}
}

func TestSetStatusRefusesWithoutRequest(t *testing.T) {
	tests := []struct {
		name, sid, status string
		want              error
	}{
		{"closed", subSID, "closed", ErrStatus},
		{"empty status", subSID, "", ErrStatus},
		{"capitalised", subSID, "Suspended", ErrStatus},
		{"parent", parentSID, StatusSuspended, ErrParent},
		{"parent in other case", "AC" + strings.ToUpper(parentSID[2:]), StatusActive, ErrParent},
		{"parent closed", parentSID, "closed", ErrStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, accountJSON(subSID, tt.status))
			})
			tc := newTestClient(t, srv.URL, nil)
			_, err := tc.SetStatus(context.Background(), tt.sid, tt.status)
			if !errors.Is(err, tt.want) {
				t.Fatalf("SetStatus(%q, %q): got %v, want %v", tt.sid, tt.status, err, tt.want)
			}
			if got := len(srv.requests()); got != 0 {
				t.Errorf("requests: got %d, want none", got)
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	for _, status := range []string{StatusSuspended, StatusActive} {
		t.Run(status, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 0 {
					writeJSON(w, 503, twilioError(503, 20503)) // retried: the update is idempotent
					return
				}
				writeJSON(w, 200, accountJSON(subSID, r.PostForm.Get("Status")))
			})
			tc := newTestClient(t, srv.URL, nil)
			got, err := tc.SetStatus(context.Background(), subSID, status)
			if err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			if got.SID != subSID || got.Status != status {
				t.Errorf("SetStatus: got %+v, want %s %s", got, subSID, status)
			}
			reqs := srv.requests()
			if len(reqs) != 2 {
				t.Fatalf("requests: got %d, want 2", len(reqs))
			}
			for _, r := range reqs {
				if r.Method != http.MethodPost || r.Path != "/2010-04-01/Accounts/"+subSID+".json" {
					t.Errorf("request: got %s %s", r.Method, r.Path)
				}
				if diff := cmp.Diff(map[string][]string{"Status": {status}}, map[string][]string(r.Form)); diff != "" {
					t.Errorf("form (-want +got):\n%s", diff)
				}
			}
			if got := tc.counter(t, "sentinel_twilio_requests_total", map[string]string{"endpoint": "account_update", "code": "200"}); got != 1 {
				t.Errorf("requests_total{account_update,200}: got %v, want 1", got)
			}
		})
	}
}

func TestSetStatusTwilioRefusal(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 400, twilioError(400, 21478))
	})
	tc := newTestClient(t, srv.URL, nil)
	_, err := tc.SetStatus(context.Background(), subSID, StatusActive)
	if Code(err) != 21478 {
		t.Errorf("SetStatus: got %v (code %d), want code 21478", err, Code(err))
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("requests: got %d, want 1", got)
	}
}

func TestInvalidSIDsAreNotSent(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, "{}")
	})
	tc := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	for _, sid := range []string{"", "AC123", "../Accounts", subSID + "/Messages", "SM" + subSID[2:]} {
		if _, err := tc.FetchAccount(ctx, sid); err == nil {
			t.Errorf("FetchAccount(%q): got no error", sid)
		}
		if _, err := tc.SetStatus(ctx, sid, StatusSuspended); err == nil {
			t.Errorf("SetStatus(%q): got no error", sid)
		}
		if err := tc.Messages(ctx, sid, MessageList{}, collect(new([][]string))); err == nil {
			t.Errorf("Messages(%q): got no error", sid)
		}
		if _, err := tc.UsageToday(ctx, sid); err == nil {
			t.Errorf("UsageToday(%q): got no error", sid)
		}
		if _, err := tc.UsageDaily(ctx, sid, "2024-05-01", "2024-05-02"); err == nil {
			t.Errorf("UsageDaily(%q): got no error", sid)
		}
	}
	if got := len(srv.requests()); got != 0 {
		t.Errorf("requests: got %d, want none", got)
	}
}
