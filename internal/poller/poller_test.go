package poller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

func TestFirstPollBackfillsWindow(t *testing.T) {
	e := newEnv(t, envOptions{})
	sub := e.addSub("")
	old := e.append(twiliofake.Message{AccountSID: sub, DateSent: t0.Add(-20 * time.Hour)})
	recent := e.append(twiliofake.Message{AccountSID: sub, DateSent: t0.Add(-time.Minute)})

	e.mustSucceed()

	e.checkStored(sub, append(old, recent...))
	want := traffic.Coverage{From: t0.Add(-24 * time.Hour), Until: t0}
	if got := e.coverage(sub); !got.From.Equal(want.From) || !got.Until.Equal(want.Until) {
		t.Errorf("coverage = %v, want %v", got, want)
	}
	e.checkConsistent(sub)
}

// A message read as "sent" that the carrier later filters is counted once,
// in its final state, when the change comes within the settle window.
// Pages of ten put a page of newer messages in front of it, so that only a
// poll that re-reads the settle window reaches it again.
func TestLateStatusChangeCountedOnce(t *testing.T) {
	e := newEnv(t, envOptions{client: func(c *twilioapi.Config) { c.PageSize = 10 }})
	sub := e.addSub("")
	e.generate(sub, 50, t0.Add(-3*time.Hour), t0.Add(-time.Hour))
	late := e.append(twiliofake.Message{AccountSID: sub, Status: "sent", DateSent: t0.Add(-10 * time.Minute),
		MessagingServiceSID: "MG00000000000000000000000000000001", Price: "-0.00790"})[0]
	e.generate(sub, 15, t0.Add(-9*time.Minute), t0.Add(-time.Minute))

	e.mustSucceed()
	before := e.sum(sub)

	if err := e.fake.UpdateMessage(late, func(m *twiliofake.Message) { m.Status, m.ErrorCode = "undelivered", 30007 }); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Minute)
	e.mustSucceed()
	e.clock.Advance(5 * time.Minute)
	e.mustSucceed() // a re-read of the final state changes nothing

	got := e.sum(sub)
	if got.Finished != before.Finished {
		t.Errorf("Finished = %d after the change, want %d as before", got.Finished, before.Finished)
	}
	if got.Outbound != before.Outbound {
		t.Errorf("Outbound = %d after the change, want %d as before", got.Outbound, before.Outbound)
	}
	if d := got.Errors[30007] - before.Errors[30007]; d != 1 {
		t.Errorf("30007 count grew by %d, want exactly 1", d)
	}
	if d := got.Failed - before.Failed; d != 1 {
		t.Errorf("Failed grew by %d, want exactly 1", d)
	}
	e.checkStored(sub, []string{late})
	e.checkConsistent(sub)
	if n := e.metric("sentinel_message_status_updates_total", nil); n != 1 {
		t.Errorf("status updates metric = %v, want 1", n)
	}
}

// A change that comes after the message has left the settle window is not
// seen when the message is not on a page the poll reads anyway (see the
// package doc): the message stays counted, once, in its earlier state.
func TestChangeAfterSettleWindowNotSeen(t *testing.T) {
	e := newEnv(t, envOptions{client: func(c *twilioapi.Config) { c.PageSize = 10 }})
	sub := e.addSub("")
	target := e.append(twiliofake.Message{AccountSID: sub, Status: "sent", DateSent: t0.Add(-10 * time.Minute)})[0]
	e.mustSucceed()

	// Twenty messages between the target and the next poll's lower bound
	// and twenty after it: with pages of ten, the poll stops two pages
	// before the target.
	e.generate(sub, 20, t0.Add(10*time.Minute), t0.Add(50*time.Minute))
	e.generate(sub, 21, t0.Add(90*time.Minute), t0.Add(150*time.Minute))
	e.clock.Advance(3 * time.Hour)
	e.mustSucceed()
	before := e.sum(sub)

	if err := e.fake.UpdateMessage(target, func(m *twiliofake.Message) { m.Status, m.ErrorCode = "undelivered", 30007 }); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.fake.Reset()
	e.mustSucceed()

	if n := len(e.requests(messagesPath(sub))); n != 3 {
		t.Fatalf("the poll read %d pages, want 3 (the test's premise)", n)
	}
	m, err := e.st.Message(sub, target)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != "sent" || m.ErrorCode != 0 {
		t.Errorf("message changed after the settle window stored as %s/%d, want the documented sent/0", m.Status, m.ErrorCode)
	}
	if diff := cmp.Diff(before, e.sum(sub)); diff != "" {
		t.Errorf("counts changed (-before +after):\n%s", diff)
	}
	e.checkConsistent(sub)
}

// Pages of ten and a page of messages between the late arrivals and the
// last poll make only a read of the whole settle window (the sweep) reach
// the late arrivals, after a restart as before.
func TestRestartLosesNothing(t *testing.T) {
	e := newEnv(t, envOptions{client: func(c *twilioapi.Config) { c.PageSize = 10 }})
	sub := e.addSub("")
	first := e.generate(sub, 300, t0.Add(-20*time.Hour), t0.Add(-2*time.Hour))
	first = append(first, e.generate(sub, 15, t0.Add(-50*time.Minute), t0)...)
	e.mustSucceed()

	e.restart()
	// Messages that show up late with times before the last poll (within
	// the settle window), and new ones.
	var late []twiliofake.Message
	for i := range 5 {
		late = append(late, twiliofake.Message{AccountSID: sub, DateSent: t0.Add(-time.Hour - time.Duration(i)*7*time.Minute)})
	}
	for i := range 10 {
		late = append(late, twiliofake.Message{AccountSID: sub, DateSent: t0.Add(time.Duration(i+1) * 20 * time.Second)})
	}
	second := e.append(late...)
	e.clock.Advance(5 * time.Minute)
	e.mustSucceed()
	// The late arrivals predate the last poll by more than the overlap:
	// the regular poll does not reach back to them, the sweep does.
	e.sweep()

	all := append(first, second...)
	e.checkStored(sub, all)
	c := e.sum(sub)
	if got, want := int(c.Outbound+c.Inbound), e.fake.MessageCount(sub); got != want || want != len(all) {
		t.Errorf("store counts %d messages, fake holds %d (%d appended)", got, want, len(all))
	}
	e.checkConsistent(sub)
	if got := e.coverage(sub); !got.From.Equal(t0.Add(-24*time.Hour)) || !got.Until.Equal(e.clock.Now()) {
		t.Errorf("coverage after restart = %v, want continuous from the first poll", got)
	}
}

func TestPagesAcross1000MessagePages(t *testing.T) {
	e := newEnv(t, envOptions{})
	sub := e.addSub("")
	sids := e.generate(sub, 2500, t0.Add(-10*time.Hour), t0)
	e.accounts()
	e.fake.Reset()

	e.mustSucceed()

	reqs := e.requests(messagesPath(sub))
	if len(reqs) != 3 {
		t.Fatalf("%d requests for 2,500 messages, want 3", len(reqs))
	}
	for i, r := range reqs {
		if got := r.Query.Get("PageSize"); got != "1000" {
			t.Errorf("request %d: PageSize %q, want 1000", i, got)
		}
		if hasToken := r.Query.Get("PageToken") != ""; hasToken != (i > 0) {
			t.Errorf("request %d: PageToken %q", i, r.Query.Get("PageToken"))
		}
	}
	e.checkStored(sub, sids)
	if c := e.sum(sub); c.Outbound+c.Inbound != 2500 {
		t.Errorf("stored %d messages, want 2500", c.Outbound+c.Inbound)
	}
	e.checkConsistent(sub)
}

func TestParentKeptApart(t *testing.T) {
	e := newEnv(t, envOptions{})
	parent := e.fake.ParentSID()
	sub := e.addSub("")
	fromParent := e.append(
		twiliofake.Message{AccountSID: parent, DateSent: t0.Add(-time.Hour)},
		twiliofake.Message{AccountSID: parent, DateSent: t0.Add(-2 * time.Hour)},
	)
	fromSub := e.generate(sub, 7, t0.Add(-3*time.Hour), t0)

	e.accounts()
	e.mustSucceed()

	pa, err := e.st.Account(parent)
	if err != nil {
		t.Fatal(err)
	}
	if !pa.Parent {
		t.Errorf("parent stored with Parent=false")
	}
	if sa, err := e.st.Account(sub); err != nil || sa.Parent {
		t.Errorf("subaccount stored as %+v, %v; want Parent=false", sa, err)
	}
	e.checkStored(parent, fromParent)
	e.checkStored(sub, fromSub)
	for sid, want := range map[string]int64{parent: 2, sub: 7} {
		if c := e.sum(sid); c.Outbound+c.Inbound != want {
			t.Errorf("%s: %d messages stored, want %d", sid, c.Outbound+c.Inbound, want)
		}
		e.checkConsistent(sid)
	}

	// Spend rules judge subaccounts: the parent's usage is not read.
	if _, err := e.p.Usage(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.fake.Requests() {
		if strings.HasPrefix(r.Path, "/2010-04-01/Accounts/"+parent+"/Usage") {
			t.Errorf("parent usage read: %s", r.Path)
		}
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, envOptions{})
	sub := e.addSub("")
	sids := e.generate(sub, 20, t0.Add(-time.Hour), t0)
	e.accounts()
	e.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultTooManyRequests, Path: messagesPath(sub), Times: 1, RetryAfter: 7 * time.Second})

	e.mustSucceed()

	if n := e.fake.Stats().ByStatus[http.StatusTooManyRequests]; n != 1 {
		t.Errorf("fake answered %d 429s, want 1", n)
	}
	if got := e.sleeps.got(); !slices.Contains(got, 7*time.Second) {
		t.Errorf("retry sleeps %v, want one of 7s (Retry-After)", got)
	}
	if got := e.coverage(sub); !got.Until.Equal(t0) {
		t.Errorf("coverage until %v, want %v", got.Until, t0)
	}
	e.checkStored(sub, sids)
}

func TestFailingAccountMarkedUnknown(t *testing.T) {
	e := newEnv(t, envOptions{})
	good, bad := e.addSub(""), e.addSub("")
	e.generate(good, 10, t0.Add(-time.Hour), t0)
	e.generate(bad, 10, t0.Add(-time.Hour), t0)
	e.mustSucceed()
	fault := e.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultServerError, Path: messagesPath(bad)})

	for range 2 {
		e.clock.Advance(time.Minute)
		res := e.messages()
		if len(res.Failed) != 1 || !errors.Is(res.Failed[bad], twilioapi.ErrExhausted) {
			t.Fatalf("Failed = %v, want only %s with ErrExhausted", res.Failed, bad)
		}
		if err := res.Err(); err != nil {
			t.Errorf("Result.Err() = %v with one account of three failing, want nil", err)
		}
	}

	if got := e.coverage(bad); !got.Until.Equal(t0) {
		t.Errorf("failing account covered until %v, want %v (the last success)", got.Until, t0)
	}
	if got := e.coverage(good); !got.Until.Equal(e.clock.Now()) {
		t.Errorf("healthy account covered until %v, want %v", got.Until, e.clock.Now())
	}
	ps, err := e.st.PollState(bad, StreamMessages)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Failures != 2 || ps.LastError == "" || !ps.LastSuccess.Equal(t0) {
		t.Errorf("poll state = %+v, want 2 failures since %v", ps, t0)
	}
	if ps, _ := e.st.PollState(good, StreamMessages); ps.Failures != 0 || !ps.LastSuccess.Equal(e.clock.Now()) {
		t.Errorf("healthy poll state = %+v", ps)
	}
	if n := e.metric("sentinel_poll_failures_total", map[string]string{"stream": "messages", "subaccount": bad}); n != 2 {
		t.Errorf("failures metric for %s = %v, want 2", bad, n)
	}
	if n := e.metric("sentinel_poll_failures_total", map[string]string{"stream": "messages", "subaccount": good}); n != 0 {
		t.Errorf("failures metric for %s = %v, want 0", good, n)
	}

	e.fake.RemoveFault(fault)
	e.clock.Advance(time.Minute)
	e.mustSucceed()
	if ps, _ := e.st.PollState(bad, StreamMessages); ps.Failures != 0 {
		t.Errorf("after recovery Failures = %d, want 0", ps.Failures)
	}
	if got := e.coverage(bad); !got.Until.Equal(e.clock.Now()) {
		t.Errorf("recovered account covered until %v, want %v", got.Until, e.clock.Now())
	}
}

func TestPageLoopEndsInError(t *testing.T) {
	e := newEnv(t, envOptions{})
	loops, fine := e.addSub(""), e.addSub("")
	e.generate(loops, 2500, t0.Add(-10*time.Hour), t0)
	e.generate(fine, 10, t0.Add(-time.Hour), t0)
	e.accounts()
	e.fake.LoopPages(messagesPath(loops), 1)
	e.fake.Reset()

	res := e.messages()

	if len(res.Failed) != 1 || !errors.Is(res.Failed[loops], twilioapi.ErrPageLoop) {
		t.Fatalf("Failed = %v, want only %s with ErrPageLoop", res.Failed, loops)
	}
	if n := len(e.requests(messagesPath(loops))); n > 3 {
		t.Errorf("%d requests to the looping log, want at most 3", n)
	}
	if got := e.coverage(loops); !got.Until.IsZero() {
		t.Errorf("looping account covered until %v, want no coverage", got.Until)
	}
	if got := e.coverage(fine); !got.Until.Equal(t0) {
		t.Errorf("other account covered until %v, want %v", got.Until, t0)
	}
	e.checkConsistent(loops)
}

// With pages of 100, re-reading the whole backfill would take two requests
// per subaccount; the settle window takes one.
func TestSteadyStateOneRequestPerAccount(t *testing.T) {
	e := newEnv(t, envOptions{client: func(c *twilioapi.Config) { c.PageSize = 100 }})
	var accts []string
	for range 3 {
		sub := e.addSub("")
		e.generate(sub, 150, t0.Add(-20*time.Hour), t0.Add(-3*time.Hour))
		e.generate(sub, 20, t0.Add(-time.Hour), t0)
		accts = append(accts, sub)
	}
	accts = append(accts, e.fake.ParentSID())
	e.mustSucceed()
	e.clock.Advance(time.Minute)
	e.fake.Reset()

	e.mustSucceed()

	got := map[string]int{}
	for _, r := range e.fake.Requests() {
		got[r.Path]++
	}
	want := map[string]int{}
	for _, sid := range accts {
		want[messagesPath(sid)] = 1
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests by path (-want +got):\n%s", diff)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		now  time.Time
		// refetch: whether the second poll reads the past days again.
		refetch bool
	}{
		{"past days final", t0, false},
		// Yesterday was read less than an hour after it ended: Twilio may
		// still add to it.
		{"yesterday not final", time.Date(2026, 3, 10, 0, 30, 0, 0, time.UTC), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.clock.Advance(tc.now.Sub(t0))
			now := e.clock.Now()
			sub := e.addSub("")
			e.generate(sub, 30, now.Add(-10*24*time.Hour), now)
			today := now.Format(time.DateOnly)
			if err := e.fake.SetUsage(sub, today, twiliofake.CategoryTotalPrice, twiliofake.UsageRecord{Price: 12.5}); err != nil {
				t.Fatal(err)
			}
			e.accounts()
			daily := "/2010-04-01/Accounts/" + sub + "/Usage/Records/Daily.json"
			todayPath := "/2010-04-01/Accounts/" + sub + "/Usage/Records/Today.json"

			e.fake.Reset()
			res, err := e.p.Usage(context.Background())
			if err != nil || len(res.Failed) > 0 {
				t.Fatalf("Usage: %v %v", err, res.Failed)
			}
			if n := len(e.requests(daily)); n != 1 {
				t.Errorf("first poll: %d daily requests, want 1", n)
			}
			want, err := e.tw.UsageToday(context.Background(), sub)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.st.Usage(sub, today, today)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]traffic.Usage{want}, got); diff != "" || want.TotalPrice != 12.5 {
				t.Errorf("today's usage (-twilio +stored):\n%s", diff)
			}
			first, last := now.AddDate(0, 0, -7).Format(time.DateOnly), now.AddDate(0, 0, -1).Format(time.DateOnly)
			past, err := e.st.Usage(sub, first, last)
			if err != nil {
				t.Fatal(err)
			}
			if len(past) != 7 || past[0].Day != first || past[6].Day != last {
				t.Errorf("past days stored: %+v, want the 7 days %s..%s", past, first, last)
			}
			var sms int64
			for _, u := range past {
				sms += u.SMS
			}
			if sms == 0 {
				t.Errorf("past days carry no SMS: %+v", past)
			}

			e.clock.Advance(10 * time.Minute)
			e.fake.Reset()
			if _, err := e.p.Usage(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Nothing sent since: today's usage cannot have changed, and is
			// read again only with past days that were not final.
			if n, want := len(e.requests(daily)), map[bool]int{true: 1, false: 0}[tc.refetch]; n != want {
				t.Errorf("second poll: %d daily requests, want %d", n, want)
			}
			if n, want := len(e.requests(todayPath)), map[bool]int{true: 1, false: 0}[tc.refetch]; n != want {
				t.Errorf("second poll: %d requests for today, want %d", n, want)
			}
			// After a message, or the refresh interval, it is read again.
			e.generate(sub, 1, e.clock.Now().Add(-time.Minute), e.clock.Now())
			e.clock.Advance(time.Minute)
			e.mustSucceed()
			e.fake.Reset()
			if _, err := e.p.Usage(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(e.requests(todayPath)); n != 1 {
				t.Errorf("after a message: %d requests for today, want 1", n)
			}
			e.clock.Advance(31 * time.Minute)
			e.fake.Reset()
			if _, err := e.p.Usage(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(e.requests(todayPath)); n != 1 {
				t.Errorf("after the refresh interval: %d requests for today, want 1", n)
			}
		})
	}
}

func TestCompleteDays(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	asOf := time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC)
	past := []traffic.Usage{
		{Day: "2026-03-07", SMS: 3, AsOf: asOf},
		{Day: "2026-03-09", SMS: 5}, // no as_of
		{Day: "2026-02-01", SMS: 9}, // out of range
	}
	want := []traffic.Usage{
		{Day: "2026-03-07", SMS: 3, AsOf: asOf},
		{Day: "2026-03-08", AsOf: now},
		{Day: "2026-03-09", SMS: 5, AsOf: now},
	}
	got := completeDays(past, now, 3)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("completeDays (-want +got):\n%s", diff)
	}
	if !usageFinal(got, 3) {
		t.Errorf("completed days are not final, so they would be fetched on every poll")
	}
}

func TestAccountStatusChangesNoticed(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b, c := e.addSub(""), e.addSub(""), e.addSub("")
	for _, sid := range []string{a, b, c} {
		e.generate(sid, 5, t0.Add(-time.Hour), t0)
	}
	changes, err := e.p.Accounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 4 { // three subaccounts and the parent are new
		t.Errorf("first sync: %d changes, want 4: %+v", len(changes), changes)
	}

	for sid, status := range map[string]string{a: "suspended", b: "closed"} {
		if err := e.fake.SetStatus(sid, status); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Minute)
	changes, err = e.p.Accounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	at := e.clock.Now()
	want := []store.AccountChange{{SID: a, From: "active", To: "suspended", At: at}, {SID: b, From: "active", To: "closed", At: at}}
	slices.SortFunc(want, func(x, y store.AccountChange) int { return strings.Compare(x.SID, y.SID) })
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	for sid, status := range map[string]string{a: "suspended", b: "closed", c: "active"} {
		acct, err := e.st.Account(sid)
		if err != nil || acct.Status != status || !acct.StatusSince.Equal(map[bool]time.Time{true: at, false: t0}[sid != c]) {
			t.Errorf("stored %s: %+v, %v; want %s", sid, acct, err, status)
		}
	}

	e.fake.Reset()
	e.mustSucceed()
	if n := len(e.requests(messagesPath(b))); n != 0 {
		t.Errorf("closed account polled: %d requests", n)
	}
	// A suspended account's messages still get late status changes.
	for _, sid := range []string{a, c} {
		if n := len(e.requests(messagesPath(sid))); n != 1 {
			t.Errorf("%s: %d requests, want 1", sid, n)
		}
	}
}

func TestOptOutsClassified(t *testing.T) {
	bodies := []string{"STOP", " stop ", "Stop please", "ARRET", "hello"}
	for _, tc := range []struct {
		name       string
		classifier *traffic.Classifier
		want       int64
	}{
		{"default keywords", nil, 2},
		{"extra keyword", traffic.NewClassifier("arret"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{client: func(c *twilioapi.Config) { c.Classifier = tc.classifier }})
			sub := e.addSub("")
			for i, body := range bodies {
				e.append(twiliofake.Message{AccountSID: sub, Direction: "inbound", Body: body, DateSent: t0.Add(-time.Duration(i+1) * time.Minute)})
			}
			e.mustSucceed()
			c := e.sum(sub)
			if c.OptOuts != tc.want || c.Inbound != int64(len(bodies)) {
				t.Errorf("opt-outs %d of %d inbound, want %d of %d", c.OptOuts, c.Inbound, tc.want, len(bodies))
			}
			e.checkConsistent(sub)
		})
	}
}

func TestShutdownMidCycle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var slowSID atomic.Value // the handler runs on the server's goroutines
	slowSID.Store("")
	e := newEnv(t, envOptions{
		poller: func(c *Config) { c.Concurrency = 1 }, // accounts in SID order
		handler: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Cancel while the slow account's second page is in
				// flight, and answer it only when the client gives up.
				if slow := slowSID.Load().(string); slow != "" && r.URL.Path == messagesPath(slow) && r.URL.Query().Get("PageToken") != "" {
					cancel()
					<-r.Context().Done()
					return
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	var subs []string
	for range 4 {
		subs = append(subs, e.addSub(""))
	}
	for _, sid := range subs {
		e.generate(sid, 30, t0.Add(-2*time.Hour), t0)
	}
	e.accounts()
	accts, err := e.st.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	slowAt := len(accts) / 2
	slow := accts[slowAt].SID
	slowSID.Store(slow)
	e.generate(slow, 2500, t0.Add(-10*time.Hour), t0.Add(-2*time.Hour))

	res, err := e.p.Messages(ctx)

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Messages = %v, want context.Canceled", err)
	}
	// Two accounts per concurrency slot are read at once (readersPerSlot):
	// those after the slow one may have been read beside it, before the
	// cancel; each is either covered or in Failed.
	for i, a := range accts {
		cov := e.coverage(a.SID)
		_, failed := res.Failed[a.SID]
		switch {
		case i < slowAt && (!cov.Until.Equal(t0) || failed):
			t.Errorf("%s (polled before the cancel) covered until %v, in Failed %v; want %v, false", a.SID, cov.Until, failed, t0)
		case i == slowAt && (!cov.Until.IsZero() || !failed):
			t.Errorf("%s (cancelled mid-read) covered until %v, in Failed %v; want no coverage, true", a.SID, cov.Until, failed)
		case i > slowAt && failed == !cov.Until.IsZero():
			t.Errorf("%s (after the slow one): in Failed = %v, covered until %v; want one or the other", a.SID, failed, cov.Until)
		}
		// Shutting down is not the account's failure.
		if ps, _ := e.st.PollState(a.SID, StreamMessages); ps.Failures != 0 {
			t.Errorf("%s: %d failures recorded", a.SID, ps.Failures)
		}
		e.checkConsistent(a.SID)
	}
	if n := e.metric("sentinel_poll_failures_total", map[string]string{"stream": "messages", "subaccount": slow}); n != 0 {
		t.Errorf("failure metric for the cancelled account = %v, want 0", n)
	}
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t, envOptions{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"negative concurrency", Config{Concurrency: -1}},
		{"negative settle", Config{Settle: -time.Minute}},
		{"negative usage days", Config{UsageDays: -1}},
		{"negative deadline", Config{MessagesDeadline: -time.Second}},
		{"foreign parent", Config{Parent: "AC00000000000000000000000000000009"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, e.tw, e.st, nil, log, e.clock.Now); err == nil {
				t.Errorf("New(%+v) succeeded, want an error", tc.cfg)
			}
		})
	}
	p, err := New(Config{}, e.tw, e.st, nil, log, e.clock.Now)
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	if p.cfg.Parent != e.fake.ParentSID() {
		t.Errorf("default parent %q, want the client's %q", p.cfg.Parent, e.fake.ParentSID())
	}
}

// A longer backfill raises the raw retention; aggregates must be kept at
// least as long or the store refuses to prune.
func TestSetBackfillKeepsPruneValid(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.p.SetBackfill(60 * 24 * time.Hour)
	if err := e.p.prune(); err != nil {
		t.Errorf("prune after SetBackfill: %v", err)
	}
	if e.p.backfill() != 60*24*time.Hour {
		t.Errorf("backfill = %v", e.p.backfill())
	}
}

// A poll reads back only to the oldest message that can still change: a
// busy account whose messages reach a final state costs a page or two, not
// its whole settle window.
func TestRereadToOldestPending(t *testing.T) {
	e := newEnv(t, envOptions{client: func(c *twilioapi.Config) { c.PageSize = 10 }})
	sub := e.addSub("")
	e.generate(sub, 120, t0.Add(-60*time.Minute), t0.Add(-time.Minute))
	waiting := e.append(twiliofake.Message{AccountSID: sub, Status: "sent", DateSent: t0.Add(-30 * time.Minute)})[0]
	if err := e.fake.UpdateMessage(waiting, func(m *twiliofake.Message) { m.Status = "sent" }); err != nil {
		t.Fatal(err)
	}
	// Every generated message has its receipt.
	for _, m := range e.fake.Messages(sub) {
		if m.SID != waiting && m.Status == "sent" {
			e.fake.UpdateMessage(m.SID, func(m *twiliofake.Message) { m.Status = "delivered" })
		}
	}
	e.mustSucceed()

	pages := func() int {
		e.fake.Reset()
		e.clock.Advance(time.Minute)
		e.mustSucceed()
		return len(e.requests(messagesPath(sub)))
	}
	// The sent message 30 minutes back: about 60 messages to re-read.
	if n := pages(); n < 6 || n > 8 {
		t.Errorf("with a message waiting 30 minutes for its receipt, the poll read %d pages, want 6 to 8", n)
	}
	if err := e.fake.UpdateMessage(waiting, func(m *twiliofake.Message) { m.Status, m.ErrorCode = "undelivered", 30007 }); err != nil {
		t.Fatal(err)
	}
	if n := pages(); n < 6 || n > 8 {
		t.Errorf("reading the late receipt took %d pages, want 6 to 8", n)
	}
	if m, err := e.st.Message(sub, waiting); err != nil || m.ErrorCode != 30007 {
		t.Errorf("the late receipt was not read: %+v, %v", m, err)
	}
	// Nothing can change any more: one page.
	if n := pages(); n != 1 {
		t.Errorf("with nothing pending the poll read %d pages, want 1", n)
	}
	e.checkConsistent(sub)
}

// A first start backfills every log: it is followed (Backfill, for
// /readyz), counted and logged, and over when the cycle is.
func TestBackfillProgress(t *testing.T) {
	var e *env
	var seen []Backfill
	var mu sync.Mutex
	e = newEnv(t, envOptions{
		poller: func(c *Config) { c.Concurrency = 1 },
		handler: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/Messages.json") && e != nil && e.p != nil {
					mu.Lock()
					seen = append(seen, e.p.Backfill())
					mu.Unlock()
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	for range 3 {
		sub := e.addSub("")
		e.generate(sub, 40, t0.Add(-10*time.Hour), t0)
	}
	e.mustSucceed()
	mu.Lock()
	got := slices.Clone(seen)
	seen = nil
	mu.Unlock()
	if len(got) == 0 || got[0].Total != 4 { // three and the parent
		t.Fatalf("progress during the first cycle = %+v, want 4 accounts to backfill", got)
	}
	if last := got[len(got)-1]; last.Done < 1 {
		t.Errorf("progress at the last request = %+v, want accounts done and messages read", last)
	}
	if b := e.p.Backfill(); b.Total != 0 {
		t.Errorf("progress after the cycle = %+v, want none", b)
	}
	if n := e.metric("sentinel_backfill_messages_read_total", nil); n != 120 {
		t.Errorf("backfilled messages metric = %v, want 120", n)
	}
	if !strings.Contains(e.logs.String(), `msg="backfill done" done=4 accounts=4 failed=0 messages=120`) {
		t.Errorf("no backfill summary in the log:\n%s", e.logs.String())
	}
	// The next cycle reads incrementally: nothing to backfill.
	e.clock.Advance(time.Minute)
	e.mustSucceed()
	mu.Lock()
	defer mu.Unlock()
	for _, b := range seen {
		if b.Total != 0 {
			t.Errorf("second cycle backfilling %+v", b)
		}
	}
}
