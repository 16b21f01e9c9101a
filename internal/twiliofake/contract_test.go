package twiliofake_test

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	twilio "github.com/twilio/twilio-go"
	"github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/twiliofake"
)

const (
	parentSID   = "AC0123456789abcdef0123456789abcdef"
	parentToken = "0123456789abcdef0123456789abcdef"
)

var epoch = time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)

// mustStart starts a fake with a fixed clock and parent credentials.
func mustStart(tb testing.TB, opts twiliofake.Options) *twiliofake.Server {
	tb.Helper()
	if opts.ParentSID == "" {
		opts.ParentSID, opts.ParentToken = parentSID, parentToken
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return epoch }
	}
	s := twiliofake.New(opts)
	s.Start()
	tb.Cleanup(s.Close)
	return s
}

// wire records the responses twilio-go received, headers included, which
// twilio-go itself does not expose.
type wire struct {
	next http.RoundTripper
	mu   sync.Mutex
	resp []*http.Response
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := w.next.RoundTrip(r)
	if err == nil {
		w.mu.Lock()
		w.resp = append(w.resp, res)
		w.mu.Unlock()
	}
	return res, err
}

func (w *wire) last() *http.Response {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resp[len(w.resp)-1]
}

// restClient builds a twilio-go client that reaches the fake through a
// transport rewriting api.twilio.com to it, as sentinel's twilioapi does.
func restClient(s *twiliofake.Server, sid, token string) (*api.ApiService, *wire) {
	w := &wire{next: s.Transport()}
	c := &client.Client{Credentials: client.NewCredentials(sid, token), HTTPClient: &http.Client{Transport: w}}
	c.SetAccountSid(sid)
	return twilio.NewRestClientWithParams(twilio.ClientParams{Client: c}).Api, w
}

func mustAdd(tb testing.TB, s *twiliofake.Server, a twiliofake.Account) twiliofake.Account {
	tb.Helper()
	got, err := s.AddSubaccount(a)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func restErr(t *testing.T, err error) *client.TwilioRestError {
	t.Helper()
	var re *client.TwilioRestError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v (%T), want *client.TwilioRestError", err, err)
	}
	return re
}

func TestListAccounts(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	a := mustAdd(t, s, twiliofake.Account{FriendlyName: "alpha"})
	b := mustAdd(t, s, twiliofake.Account{FriendlyName: "beta", Status: twiliofake.StatusSuspended})
	c := mustAdd(t, s, twiliofake.Account{FriendlyName: "gamma", Status: twiliofake.StatusClosed})
	tw, _ := restClient(s, parentSID, parentToken)

	// PageSize 2 over four accounts makes twilio-go follow next_page_uri.
	got, err := tw.ListAccount((&api.ListAccountParams{}).SetPageSize(2))
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, acct := range got {
		status[*acct.Sid] = *acct.Status
		if *acct.OwnerAccountSid != parentSID {
			t.Errorf("owner of %s = %s, want %s", *acct.Sid, *acct.OwnerAccountSid, parentSID)
		}
	}
	want := map[string]string{parentSID: "active", a.SID: "active", b.SID: "suspended", c.SID: "closed"}
	if diff := cmp.Diff(want, status); diff != "" {
		t.Errorf("accounts (-want +got):\n%s", diff)
	}
	if n := len(s.Requests()); n != 2 {
		t.Errorf("requests = %d, want 2 pages", n)
	}

	for _, tc := range []struct {
		name   string
		params *api.ListAccountParams
		want   []string
	}{
		{"status", (&api.ListAccountParams{}).SetStatus("suspended"), []string{b.SID}},
		{"friendly name", (&api.ListAccountParams{}).SetFriendlyName("gamma"), []string{c.SID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tw.ListAccount(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			var sids []string
			for _, a := range got {
				sids = append(sids, *a.Sid)
			}
			if diff := cmp.Diff(tc.want, sids); diff != "" {
				t.Errorf("sids (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("hidden parent", func(t *testing.T) {
		s := mustStart(t, twiliofake.Options{HideParent: true})
		mustAdd(t, s, twiliofake.Account{})
		tw, _ := restClient(s, parentSID, parentToken)
		got, err := tw.ListAccount(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || *got[0].Sid == parentSID {
			t.Errorf("got %d accounts (first %s), want one subaccount", len(got), *got[0].Sid)
		}
	})
}

func TestPageMessages(t *testing.T) {
	t.Parallel()
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	sids, err := s.Generate(twiliofake.Traffic{AccountSID: sub.SID, N: 2500, From: epoch.Add(-48 * time.Hour), To: epoch, Seed: 1, Inbound: 0.2, Failed: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	tw, _ := restClient(s, parentSID, parentToken)
	params := (&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(1000)

	seen := map[string]bool{}
	var pages int
	var prev time.Time
	resp, err := tw.PageMessage(params, "", "")
	for {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, m := range resp.Messages {
			if seen[*m.Sid] {
				t.Errorf("duplicate %s", *m.Sid)
			}
			seen[*m.Sid] = true
			at, err := time.Parse(time.RFC1123Z, *m.DateSent)
			if err != nil {
				t.Fatal(err)
			}
			if !prev.IsZero() && at.After(prev) {
				t.Errorf("%s sent %v after the previous %v: not newest first", *m.Sid, at, prev)
			}
			prev = at
		}
		// New traffic arriving while paging must not shift the pages.
		if _, err := s.Generate(twiliofake.Traffic{AccountSID: sub.SID, N: 7, From: epoch, To: epoch.Add(time.Minute), Seed: uint64(pages)}); err != nil {
			t.Fatal(err)
		}
		if resp.NextPageUri == nil {
			break
		}
		u, perr := url.Parse(*resp.NextPageUri)
		if perr != nil {
			t.Fatal(perr)
		}
		q := u.Query()
		resp, err = tw.PageMessage(params, q.Get("PageToken"), q.Get("Page"))
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3", pages)
	}
	if len(seen) != len(sids) {
		t.Errorf("saw %d messages, want %d", len(seen), len(sids))
	}
	for _, sid := range sids {
		if !seen[sid] {
			t.Errorf("missed %s", sid)
		}
	}

	// twilio-go's own paging follows next_page_uri to the end.
	all, err := tw.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	if want := s.MessageCount(sub.SID); len(all) != want {
		t.Errorf("ListMessage = %d messages, want %d", len(all), want)
	}
}

func TestUpdateAccountStatus(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{FriendlyName: "shop"})
	tw, _ := restClient(s, parentSID, parentToken)

	for _, status := range []string{"suspended", "active"} {
		got, err := tw.UpdateAccount(sub.SID, (&api.UpdateAccountParams{}).SetStatus(status))
		if err != nil {
			t.Fatalf("set %s: %v", status, err)
		}
		if *got.Status != status {
			t.Errorf("status = %s, want %s", *got.Status, status)
		}
		fetched, err := tw.FetchAccount(sub.SID)
		if err != nil {
			t.Fatal(err)
		}
		if *fetched.Status != status {
			t.Errorf("fetched status = %s, want %s", *fetched.Status, status)
		}
	}
	want := []twiliofake.StatusChange{
		{SID: sub.SID, From: "active", To: "suspended", At: epoch, By: "api"},
		{SID: sub.SID, From: "suspended", To: "active", At: epoch, By: "api"},
	}
	if diff := cmp.Diff(want, s.StatusChanges()); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if r := s.Requests()[0]; r.Method != http.MethodPost || r.Form.Get("Status") != "suspended" {
		t.Errorf("first request = %s form %v, want POST Status=suspended", r.Method, r.Form)
	}

	closed := mustAdd(t, s, twiliofake.Account{Status: twiliofake.StatusClosed})
	byTwilio := mustAdd(t, s, twiliofake.Account{})
	if err := s.SuspendByTwilio(byTwilio.SID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		sid        string
		status     string
		setup      func()
		wantStatus int
		wantCode   int
	}{
		{"closed stays closed", closed.SID, "active", nil, 400, 21479},
		{"suspended by twilio", byTwilio.SID, "active", nil, 400, 21478},
		{"unknown status", sub.SID, "paused", nil, 400, 21100},
		{"parent's own status", parentSID, "suspended", nil, 400, 21100},
		{"unknown sid", "AC00000000000000000000000000000000", "active", nil, 404, 20404},
		{"parent suspended", sub.SID, "suspended", func() {
			if err := s.SetStatus(parentSID, "suspended"); err != nil {
				t.Fatal(err)
			}
		}, 400, 21476},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			_, err := tw.UpdateAccount(tc.sid, (&api.UpdateAccountParams{}).SetStatus(tc.status))
			re := restErr(t, err)
			if re.Status != tc.wantStatus || re.Code != tc.wantCode {
				t.Errorf("got %d/%d, want %d/%d", re.Status, re.Code, tc.wantStatus, tc.wantCode)
			}
			if want := "https://www.twilio.com/docs/errors/"; !strings.HasPrefix(re.MoreInfo, want) {
				t.Errorf("more_info = %q, want prefix %q", re.MoreInfo, want)
			}
		})
	}
	if got, _ := s.Account(closed.SID); got.Status != "closed" {
		t.Errorf("closed account is %s", got.Status)
	}
}

func TestInjected429(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	tw, w := restClient(s, parentSID, parentToken)
	s.Inject(twiliofake.Fault{Kind: twiliofake.FaultTooManyRequests, Path: "/2010-04-01/Accounts.json", Times: 1, RetryAfter: 7 * time.Second})

	_, err := tw.PageAccount(nil, "", "")
	re := restErr(t, err)
	if re.Code != 20429 || re.Status != 429 {
		t.Errorf("got %d/%d, want 429/20429", re.Status, re.Code)
	}
	if got := w.last().Header.Get("Retry-After"); got != "7" {
		t.Errorf("Retry-After = %q, want 7", got)
	}
	// Times: 1 means the retry goes through.
	if _, err := tw.PageAccount(nil, "", ""); err != nil {
		t.Errorf("retry: %v", err)
	}
	st := s.Stats()
	if st.Requests != 2 || st.Faults != 1 || st.ByStatus[429] != 1 || st.ByStatus[200] != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// The account's pool of concurrent requests is shared with its other
// traffic: past ConcurrencyLimit, Twilio answers 20429, and every response
// says how many requests are in flight.
func TestConcurrencyLimit(t *testing.T) {
	s := mustStart(t, twiliofake.Options{Latency: 200 * time.Millisecond, ConcurrencyLimit: 4, ReportConcurrency: true})
	s.SetBackground(2)
	tw, w := restClient(s, parentSID, parentToken)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { _, errs[i] = tw.FetchAccount(parentSID) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		if re := restErr(t, err); re.Code != 20429 || re.Status != 429 {
			t.Errorf("got %d/%d, want 429/20429", re.Status, re.Code)
		}
	}
	// Two places are the background's; whatever the timing, no request
	// with more than two of its own in flight was served.
	for _, r := range s.Requests() {
		if r.Status == http.StatusOK && r.InFlight > 2 {
			t.Errorf("served a request with %d in flight beside 2 of the background, limit 4", r.InFlight)
		}
	}
	st := s.Stats()
	if ok == 0 || st.Throttled != 5-ok || st.ByStatus[429] != 5-ok {
		t.Errorf("%d served; stats %+v", ok, st)
	}
	if st.MaxInFlight < 1 || st.MaxInFlight > 5 {
		t.Errorf("MaxInFlight = %d", st.MaxInFlight)
	}
	w.mu.Lock()
	for _, resp := range w.resp {
		n, err := strconv.Atoi(resp.Header.Get("Twilio-Concurrent-Requests"))
		if err != nil || n < 3 || n > 7 {
			t.Errorf("Twilio-Concurrent-Requests = %q, want 3..7", resp.Header.Get("Twilio-Concurrent-Requests"))
		}
	}
	w.mu.Unlock()

	// Alone, a request counts itself.
	s.SetBackground(0)
	s.Reset()
	if _, err := tw.FetchAccount(parentSID); err != nil {
		t.Fatal(err)
	}
	if got := w.last().Header.Get("Twilio-Concurrent-Requests"); got != "1" {
		t.Errorf("alone: Twilio-Concurrent-Requests = %q, want 1", got)
	}
}

func TestFaultSchedule(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	tw, _ := restClient(s, parentSID, parentToken)
	s.Inject(twiliofake.Fault{Kind: twiliofake.FaultServerError, Every: 3})
	var got []bool
	for range 6 {
		_, err := tw.FetchAccount(parentSID)
		got = append(got, err != nil)
		if err != nil {
			if re := restErr(t, err); re.Status != 503 || re.Code != 20503 {
				t.Errorf("got %d/%d, want 503/20503", re.Status, re.Code)
			}
		}
	}
	if diff := cmp.Diff([]bool{false, false, true, false, false, true}, got); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}

	// A seeded rate gives the same schedule every time.
	run := func() []bool {
		s := mustStart(t, twiliofake.Options{})
		tw, _ := restClient(s, parentSID, parentToken)
		s.Inject(twiliofake.Fault{Kind: twiliofake.FaultServerError, Rate: 0.5, Seed: 42})
		var out []bool
		for range 20 {
			_, err := tw.FetchAccount(parentSID)
			out = append(out, err != nil)
		}
		return out
	}
	first := run()
	if diff := cmp.Diff(first, run()); diff != "" {
		t.Errorf("seeded schedule differs (-first +second):\n%s", diff)
	}
}

func TestAuthAndNotFound(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	other := mustAdd(t, s, twiliofake.Account{})

	bad, w := restClient(s, parentSID, "ffffffffffffffffffffffffffffffff")
	_, err := bad.FetchAccount(parentSID)
	if re := restErr(t, err); re.Status != 401 || re.Code != 20003 {
		t.Errorf("bad auth: got %d/%d, want 401/20003", re.Status, re.Code)
	}
	if w.last().Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}

	tw, _ := restClient(s, parentSID, parentToken)
	_, err = tw.FetchAccount("ACffffffffffffffffffffffffffffffff")
	if re := restErr(t, err); re.Status != 404 || re.Code != 20404 {
		t.Errorf("unknown sid: got %d/%d, want 404/20404", re.Status, re.Code)
	}
	_, err = tw.PageMessage((&api.ListMessageParams{}).SetPathAccountSid("ACffffffffffffffffffffffffffffffff"), "", "")
	if re := restErr(t, err); re.Code != 20404 {
		t.Errorf("messages of unknown sid: got %d, want 20404", re.Code)
	}

	// A subaccount's own credentials reach its own resources only.
	own, _ := restClient(s, sub.SID, sub.Token)
	if _, err := own.PageMessage(nil, "", ""); err != nil {
		t.Errorf("own messages: %v", err)
	}
	_, err = own.PageMessage((&api.ListMessageParams{}).SetPathAccountSid(other.SID), "", "")
	if re := restErr(t, err); re.Code != 20003 {
		t.Errorf("other's messages: got %d, want 20003", re.Code)
	}
	accts, err := own.ListAccount(nil)
	if err != nil || len(accts) != 1 || *accts[0].Sid != sub.SID {
		t.Errorf("subaccount lists %d accounts (err %v), want only itself", len(accts), err)
	}
	if err := s.SetStatus(sub.SID, "suspended"); err != nil {
		t.Fatal(err)
	}
	_, err = own.FetchAccount(sub.SID)
	if re := restErr(t, err); re.Code != 10001 {
		t.Errorf("suspended account's own credentials: got %d, want 10001", re.Code)
	}
}

func TestUndecodableResponses(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind twiliofake.FaultKind
	}{
		{"truncated json", twiliofake.FaultTruncated},
		{"html page", twiliofake.FaultHTML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustStart(t, twiliofake.Options{})
			tw, _ := restClient(s, parentSID, parentToken)
			s.FailNext(1, "", tc.kind)
			_, err := tw.PageAccount(nil, "", "")
			var re *client.TwilioRestError
			if err == nil || errors.As(err, &re) {
				t.Fatalf("err = %v, want a decode error that is not a TwilioRestError", err)
			}
			if _, err := tw.PageAccount(nil, "", ""); err != nil {
				t.Errorf("after the fault: %v", err)
			}
		})
	}
	t.Run("dropped connection", func(t *testing.T) {
		s := mustStart(t, twiliofake.Options{})
		tw, _ := restClient(s, parentSID, parentToken)
		s.FailNext(1, "", twiliofake.FaultDrop)
		if _, err := tw.FetchAccount(parentSID); err == nil {
			t.Error("no error from a dropped connection")
		}
	})
}

func TestPageLoop(t *testing.T) {
	t.Parallel()
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	if _, err := s.Generate(twiliofake.Traffic{AccountSID: sub.SID, N: 1500, From: epoch.Add(-time.Hour), To: epoch}); err != nil {
		t.Fatal(err)
	}
	path := "/2010-04-01/Accounts/" + sub.SID + "/Messages.json"
	s.LoopPages(path, 1)
	tw, _ := restClient(s, parentSID, parentToken)

	first, err := tw.PageMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(1000), "", "")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(*first.NextPageUri)
	second, err := tw.PageMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(1000), u.Query().Get("PageToken"), "1")
	if err != nil {
		t.Fatal(err)
	}
	if second.NextPageUri == nil || *second.NextPageUri != second.Uri {
		t.Fatalf("page 1 next_page_uri = %v, want its own uri %s", second.NextPageUri, second.Uri)
	}
	// Unbounded, twilio-go would follow the loop forever; Limit stops it
	// after duplicates that a real page sequence could not produce.
	got, err := tw.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(1000).SetLimit(3000))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3000 {
		t.Errorf("ListMessage with Limit 3000 = %d messages, want 3000 (1500 exist)", len(got))
	}

	s.LoopPages(path, -1)
	got, err = tw.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(1000))
	if err != nil || len(got) != 1500 {
		t.Errorf("without the loop: %d messages (err %v), want 1500", len(got), err)
	}
}

func TestDateSentWholeDays(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	day := func(h, m, sec int) time.Time { return time.Date(2024, 3, 10, h, m, sec, 0, time.UTC) }
	at := map[string]time.Time{
		"before":    day(0, 0, -1),
		"start":     day(0, 0, 0),
		"noon":      day(12, 0, 0),
		"end":       day(23, 59, 59),
		"next day":  day(24, 0, 0),
		"two after": day(48, 0, 0),
	}
	name := map[string]string{}
	for n, t0 := range at {
		sids, err := s.AppendMessages(twiliofake.Message{AccountSID: sub.SID, DateSent: t0, To: "+15550001111", From: "+15550002222", Body: n})
		if err != nil {
			t.Fatal(err)
		}
		name[sids[0]] = n
	}
	// Never handed to a carrier: date_sent null, listed by date_created.
	sids, err := s.AppendMessages(twiliofake.Message{AccountSID: sub.SID, DateCreated: day(6, 0, 0), Status: "failed", ErrorCode: 30034, To: "+15550001111"})
	if err != nil {
		t.Fatal(err)
	}
	name[sids[0]] = "unsent"

	tw, _ := restClient(s, parentSID, parentToken)
	mid := day(15, 4, 5)
	for _, tc := range []struct {
		name   string
		params *api.ListMessageParams
		want   []string
	}{
		{"on or after the day", (&api.ListMessageParams{}).SetDateSentAfter(mid), []string{"two after", "next day", "end", "noon", "unsent", "start"}},
		{"on or before the day", (&api.ListMessageParams{}).SetDateSentBefore(mid), []string{"end", "noon", "unsent", "start", "before"}},
		{"on the day", (&api.ListMessageParams{}).SetDateSent(mid), []string{"end", "noon", "unsent", "start"}},
		{"the date as written, offset ignored", (&api.ListMessageParams{}).SetDateSent(mid.In(time.FixedZone("X", 10*3600))), []string{"next day"}},
		{"both bounds", (&api.ListMessageParams{}).SetDateSentAfter(mid.Add(24 * time.Hour)).SetDateSentBefore(mid.Add(24 * time.Hour)), []string{"next day"}},
		{"to", (&api.ListMessageParams{}).SetTo("+15550001111").SetDateSent(mid), []string{"end", "noon", "unsent", "start"}},
		{"from nobody", (&api.ListMessageParams{}).SetFrom("+19999999999"), nil},
		{"no filter", &api.ListMessageParams{}, []string{"two after", "next day", "end", "noon", "unsent", "start", "before"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tw.ListMessage(tc.params.SetPathAccountSid(sub.SID))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range got {
				names = append(names, name[*m.Sid])
			}
			if diff := cmp.Diff(tc.want, names); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}

	// What twilio-go puts on the wire: DateSent> as the key, RFC 3339.
	s.Reset()
	if _, err := tw.PageMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetDateSentAfter(mid), "", ""); err != nil {
		t.Fatal(err)
	}
	r := s.Requests()[0]
	if got := r.Query.Get("DateSent>"); got != "2024-03-10T15:04:05Z" {
		t.Errorf("DateSent> = %q, want 2024-03-10T15:04:05Z", got)
	}
	if !strings.Contains(r.RawQuery, "DateSent%3E=") {
		t.Errorf("raw query %q lacks DateSent%%3E=", r.RawQuery)
	}

	t.Run("strict", func(t *testing.T) {
		s2 := mustStart(t, twiliofake.Options{StrictDateSent: true})
		sub2 := mustAdd(t, s2, twiliofake.Account{})
		if _, err := s2.AppendMessages(twiliofake.Message{AccountSID: sub2.SID, DateCreated: day(6, 0, 0), Status: "queued"}); err != nil {
			t.Fatal(err)
		}
		tw2, _ := restClient(s2, parentSID, parentToken)
		got, err := tw2.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub2.SID).SetDateSent(mid))
		if err != nil || len(got) != 0 {
			t.Errorf("strict DateSent listed %d (err %v), want 0", len(got), err)
		}
		got, err = tw2.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub2.SID))
		if err != nil || len(got) != 1 || got[0].DateSent != nil {
			t.Errorf("unfiltered listed %d (err %v), want the one with null date_sent", len(got), err)
		}
	})
}

func TestLateStatusChange(t *testing.T) {
	now := epoch
	s := mustStart(t, twiliofake.Options{Now: func() time.Time { return now }})
	sub := mustAdd(t, s, twiliofake.Account{})
	sids, err := s.AppendMessages(twiliofake.Message{AccountSID: sub.SID, DateSent: epoch.Add(-time.Minute), Status: "sent", To: "+15550001111"})
	if err != nil {
		t.Fatal(err)
	}
	tw, _ := restClient(s, parentSID, parentToken)
	read := func() api.ApiV2010Message {
		t.Helper()
		got, err := tw.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID))
		if err != nil || len(got) != 1 {
			t.Fatalf("list: %d messages, err %v", len(got), err)
		}
		return got[0]
	}
	before := read()
	if *before.Status != "sent" || before.ErrorCode != nil {
		t.Fatalf("before: %s/%v", *before.Status, before.ErrorCode)
	}
	now = epoch.Add(2 * time.Hour)
	err = s.UpdateMessage(sids[0], func(m *twiliofake.Message) {
		m.Status, m.ErrorCode = "undelivered", 30007
	})
	if err != nil {
		t.Fatal(err)
	}
	after := read()
	if *after.Status != "undelivered" || after.ErrorCode == nil || *after.ErrorCode != 30007 {
		t.Errorf("after: status %s code %v, want undelivered 30007", *after.Status, after.ErrorCode)
	}
	if *after.ErrorMessage != "Message filtered" {
		t.Errorf("error_message = %q", *after.ErrorMessage)
	}
	if *after.DateUpdated != now.Format(time.RFC1123Z) || *after.DateSent != *before.DateSent {
		t.Errorf("dates: updated %s sent %s", *after.DateUpdated, *after.DateSent)
	}
}

func TestUsage(t *testing.T) {
	s := mustStart(t, twiliofake.Options{UsageLag: 5 * time.Minute})
	sub := mustAdd(t, s, twiliofake.Account{})
	other := mustAdd(t, s, twiliofake.Account{})
	// Ten outbound SMS today, priced, and an explicit record yesterday.
	if _, err := s.Generate(twiliofake.Traffic{AccountSID: sub.SID, N: 10, From: epoch.Add(-time.Hour), To: epoch, Price: "-0.0079"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUsage(sub.SID, "2024-03-09", "totalprice", twiliofake.UsageRecord{Price: 12.5}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUsage(other.SID, "2024-03-10", "totalprice", twiliofake.UsageRecord{Price: 1}); err != nil {
		t.Fatal(err)
	}
	tw, _ := restClient(s, parentSID, parentToken)

	today, err := tw.ListUsageRecordToday((&api.ListUsageRecordTodayParams{}).SetPathAccountSid(sub.SID).SetCategory("sms-outbound"))
	if err != nil {
		t.Fatal(err)
	}
	if len(today) != 1 || *today[0].Count != "10" || *today[0].StartDate != "2024-03-10" || *today[0].AsOf != "2024-03-10T11:55:00+00:00" {
		t.Errorf("today = %+v", today)
	}
	daily, err := tw.ListUsageRecordDaily((&api.ListUsageRecordDailyParams{}).SetPathAccountSid(sub.SID).
		SetCategory("totalprice").SetStartDate("2024-03-08").SetEndDate("2024-03-10"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var prices []float32
	for _, r := range daily {
		got = append(got, *r.StartDate)
		prices = append(prices, *r.Price)
	}
	if diff := cmp.Diff([]string{"2024-03-08", "2024-03-09", "2024-03-10"}, got); diff != "" {
		t.Errorf("days (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]float32{0, 12.5, 0.079}, prices); diff != "" {
		t.Errorf("prices (-want +got):\n%s", diff)
	}

	// The parent's usage includes its subaccounts unless told otherwise.
	for _, tc := range []struct {
		include *bool
		want    float32
	}{{nil, 1.079}, {ptr(false), 0}} {
		p := (&api.ListUsageRecordTodayParams{}).SetCategory("totalprice")
		if tc.include != nil {
			p.SetIncludeSubaccounts(*tc.include)
		}
		recs, err := tw.ListUsageRecordToday(p)
		if err != nil || len(recs) != 1 || *recs[0].Price != tc.want {
			t.Errorf("parent include=%v: %v (err %v), want price %v", tc.include, recs, err, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDelayHonoursClientTimeout(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	s.Inject(twiliofake.Fault{Kind: twiliofake.FaultDelay, Delay: time.Hour, Times: 1})
	c := &client.Client{Credentials: client.NewCredentials(parentSID, parentToken),
		HTTPClient: &http.Client{Transport: s.Transport(), Timeout: 50 * time.Millisecond}}
	c.SetAccountSid(parentSID)
	tw := twilio.NewRestClientWithParams(twilio.ClientParams{Client: c}).Api
	if _, err := tw.FetchAccount(parentSID); err == nil {
		t.Fatal("no error from a request delayed past the client's timeout")
	}
	// The server notices the client leaving rather than sleeping on.
	c.HTTPClient.Timeout = 0
	if _, err := tw.FetchAccount(parentSID); err != nil {
		t.Fatalf("after the delay fault: %v", err)
	}
	// The server learns that the client left only when it reads the closed
	// connection, which may come after the second call: Close waits for
	// the delayed handler to record it, and would wait the hour if the
	// handler slept on.
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the delayed handler still waits after its client left")
	}
	var delayed int
	for _, r := range s.Requests() {
		if r.Fault == twiliofake.FaultDelay {
			delayed++
		}
	}
	if delayed != 1 {
		t.Errorf("delayed requests = %d, want 1", delayed)
	}
}

// TestTrafficWhilePaging appends from another goroutine, as the demo's
// simulator does, while a client pages; run with -race.
func TestTrafficWhilePaging(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	old, err := s.Generate(twiliofake.Traffic{AccountSID: sub.SID, N: 600, From: epoch.Add(-time.Hour), To: epoch})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		var err error
		for i := range 50 {
			at := epoch.Add(time.Duration(i) * time.Second)
			var sids []string
			sids, err = s.AppendMessages(twiliofake.Message{AccountSID: sub.SID, DateSent: at})
			if err == nil {
				err = s.UpdateMessage(sids[0], func(m *twiliofake.Message) { m.Status = "delivered" })
			}
			if err != nil {
				break
			}
		}
		done <- err
	}()
	tw, _ := restClient(s, parentSID, parentToken)
	got, err := tw.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(50))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range got {
		seen[*m.Sid]++
	}
	for _, sid := range old {
		if seen[sid] != 1 {
			t.Errorf("%s seen %d times, want once", sid, seen[sid])
		}
	}
}
