package poller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

// Messages refused before they were sent (21610: the recipient had opted
// out) have no date_sent. Whether Twilio's DateSent filter lists them is not
// documented (?): the fake's default lists them by date_created, its strict
// mode leaves them out. The poller counts them under either answer, on the
// first poll and when they appear later.
func TestNeverSentFailuresCounted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		strict bool
	}{
		{"filter lists them by date_created", false},
		{"filter leaves them out", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{
				fake:   twiliofake.Options{StrictDateSent: tc.strict},
				client: func(c *twilioapi.Config) { c.PageSize = 20 },
			})
			sub := e.addSub("")
			n := 0
			refuse := func(at time.Time, count int, every time.Duration) []string {
				msgs := make([]twiliofake.Message, count)
				for i := range msgs {
					n++
					msgs[i] = twiliofake.Message{AccountSID: sub, Status: "failed", ErrorCode: 21610,
						DateCreated: at.Add(time.Duration(i) * every), Body: "Sale today",
						From: "+15550009999", To: fmt.Sprintf("+1555100%04d", n)}
				}
				return e.append(msgs...)
			}

			// Among a day of normal traffic (with its own 30007s).
			e.generate(sub, 200, t0.Add(-20*time.Hour), t0)
			refused := refuse(t0.Add(-19*time.Hour), 9, 2*time.Hour)
			// The premise: a DateSent-filtered read would see all of them
			// or none, as the mode says.
			want := map[bool]int{false: 9, true: 0}[tc.strict]
			if got := filteredErrors(t, e, sub, t0.Add(-24*time.Hour), 21610); got != want {
				t.Fatalf("a DateSent-filtered listing shows %d of the 9 refused messages, want %d", got, want)
			}

			e.mustSucceed()
			if got := e.sum(sub).Errors[21610]; got != 9 {
				t.Errorf("first poll: 21610 counted %d times, want 9", got)
			}
			e.checkStored(sub, refused)

			// Later: new ones, and one dated before the last poll that
			// shows up only now, inside the settle window.
			e.clock.Advance(30 * time.Minute)
			e.generate(sub, 30, t0, t0.Add(30*time.Minute))
			later := refuse(t0.Add(5*time.Minute), 4, 6*time.Minute)
			later = append(later, refuse(t0.Add(-10*time.Minute), 1, 0)...)

			e.mustSucceed()
			e.sweep() // the one shown late, before the last poll
			if got := e.sum(sub).Errors[21610]; got != 14 {
				t.Errorf("incremental poll: 21610 counted %d times, want 14", got)
			}
			e.checkStored(sub, later)
			e.checkConsistent(sub)
		})
	}
}

// filteredErrors lists sid's log with DateSent> at since's UTC day, as a
// client filtering by DateSent would, and counts the messages with code.
func filteredErrors(t *testing.T, e *env, sid string, since time.Time, code int) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.fake.URL()+messagesPath(sid)+"?PageSize=1000&DateSent%3E="+since.UTC().Format(time.DateOnly), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(e.fake.ParentSID(), e.fake.ParentToken())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page struct {
		Messages []struct {
			ErrorCode *int `json:"error_code"`
		} `json:"messages"`
		NextPageURI *string `json:"next_page_uri"`
	}
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("filtered listing: status %d, err %v", res.StatusCode, err)
	}
	if page.NextPageURI != nil {
		t.Fatalf("filtered listing has more than one page")
	}
	count := 0
	for _, m := range page.Messages {
		if m.ErrorCode != nil && *m.ErrorCode == code {
			count++
		}
	}
	return count
}
