package twiliofake_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/twiliofake"
)

// owned is a subaccount with messages in final and in-flight states, and
// clients for the parent and for the subaccount's owner, who holds its
// credentials.
type owned struct {
	s      *twiliofake.Server
	now    *time.Time
	sub    twiliofake.Account
	parent *api.ApiService
	owner  *api.ApiService
	// SIDs by name: filtered (undelivered 30007), stop (an inbound opt-out),
	// sent, sending, queued and scheduled.
	sid map[string]string
}

func newOwned(t *testing.T) *owned {
	t.Helper()
	now := epoch
	o := &owned{now: &now, sid: map[string]string{}}
	o.s = mustStart(t, twiliofake.Options{Now: func() time.Time { return *o.now }})
	o.sub = mustAdd(t, o.s, twiliofake.Account{})
	msgs := []struct {
		name string
		m    twiliofake.Message
	}{
		{"filtered", twiliofake.Message{Status: "undelivered", ErrorCode: 30007, Body: "WIN a prize http://x.example", Price: "-0.00790"}},
		{"stop", twiliofake.Message{Direction: "inbound", Body: "STOP", Price: "-0.00790"}},
		{"sent", twiliofake.Message{Status: "sent", Body: "Your code is 123456"}},
		{"sending", twiliofake.Message{Status: "sending", Body: "Your order has shipped"}},
		{"queued", twiliofake.Message{Status: "queued", Body: "Reminder"}},
		{"scheduled", twiliofake.Message{Status: "scheduled", Body: "Sale tomorrow", MessagingServiceSID: "MG00000000000000000000000000000001"}},
	}
	for i, m := range msgs {
		m.m.AccountSID = o.sub.SID
		m.m.To, m.m.From = "+15550001111", "+15550002222"
		if m.m.Status != "queued" && m.m.Status != "scheduled" {
			m.m.DateSent = epoch.Add(-time.Duration(i+1) * time.Minute)
		} else {
			m.m.DateCreated = epoch.Add(-time.Duration(i+1) * time.Minute)
		}
		sids, err := o.s.AppendMessages(m.m)
		if err != nil {
			t.Fatal(err)
		}
		o.sid[m.name] = sids[0]
	}
	o.parent, _ = restClient(o.s, parentSID, parentToken)
	o.owner, _ = restClient(o.s, o.sub.SID, o.sub.Token)
	return o
}

// fetch reads a message with the parent's credentials.
func (o *owned) fetch(t *testing.T, sid string) api.ApiV2010Message {
	t.Helper()
	m, err := o.parent.FetchMessage(sid, (&api.FetchMessageParams{}).SetPathAccountSid(o.sub.SID))
	if err != nil {
		t.Fatalf("fetch %s: %v", sid, err)
	}
	return *m
}

// list reads the subaccount's whole log with the parent's credentials.
func (o *owned) list(t *testing.T) map[string]api.ApiV2010Message {
	t.Helper()
	got, err := o.parent.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(o.sub.SID))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.ApiV2010Message{}
	for _, m := range got {
		out[*m.Sid] = m
	}
	return out
}

// usageToday returns today's usage count and price of a category.
func (o *owned) usageToday(t *testing.T, category string) (string, float32) {
	t.Helper()
	recs, err := o.parent.ListUsageRecordToday((&api.ListUsageRecordTodayParams{}).SetPathAccountSid(o.sub.SID).SetCategory(category))
	if err != nil || len(recs) != 1 {
		t.Fatalf("usage %s: %d records, err %v", category, len(recs), err)
	}
	return *recs[0].Count, *recs[0].Price
}

func TestFetchMessage(t *testing.T) {
	o := newOwned(t)
	other := mustAdd(t, o.s, twiliofake.Account{})
	theirs, err := o.s.AppendMessages(twiliofake.Message{AccountSID: other.SID, DateSent: epoch})
	if err != nil {
		t.Fatal(err)
	}
	listed := o.list(t)
	for name, sid := range o.sid {
		if diff := cmp.Diff(listed[sid], o.fetch(t, sid)); diff != "" {
			t.Errorf("%s: fetched differs from listed (-listed +fetched):\n%s", name, diff)
		}
	}
	// The owner's credentials default to its own account's path.
	got, err := o.owner.FetchMessage(o.sid["filtered"], nil)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Body != "WIN a prize http://x.example" || *got.ErrorCode != 30007 || *got.AccountSid != o.sub.SID {
		t.Errorf("owner's fetch = %s %v %s", *got.Body, got.ErrorCode, *got.AccountSid)
	}

	otherOwner, _ := restClient(o.s, other.SID, other.Token)
	for _, tc := range []struct {
		name       string
		tw         *api.ApiService
		acct, sid  string
		wantStatus int
		wantCode   int
	}{
		{"unknown sid", o.parent, o.sub.SID, "SM00000000000000000000000000000000", 404, 20404},
		{"another account's message", o.parent, o.sub.SID, theirs[0], 404, 20404},
		{"under another account's path", o.parent, other.SID, o.sid["filtered"], 404, 20404},
		{"another owner's credentials", otherOwner, o.sub.SID, o.sid["filtered"], 401, 20003},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tw.FetchMessage(tc.sid, (&api.FetchMessageParams{}).SetPathAccountSid(tc.acct))
			if re := restErr(t, err); re.Status != tc.wantStatus || re.Code != tc.wantCode {
				t.Errorf("got %d/%d, want %d/%d", re.Status, re.Code, tc.wantStatus, tc.wantCode)
			}
		})
	}
}

func TestRedactMessage(t *testing.T) {
	o := newOwned(t)
	countBefore, priceBefore := o.usageToday(t, twiliofake.CategorySMS)
	*o.now = epoch.Add(time.Hour)

	for _, tc := range []struct {
		name string
		tw   *api.ApiService
		msg  string
	}{
		{"owner redacts filtered spam", o.owner, "filtered"},
		{"owner redacts an opt-out", o.owner, "stop"},
		{"sent, as in the spec's example", o.owner, "sent"},
		{"parent redacts", o.parent, "filtered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sid := o.sid[tc.msg]
			before := o.fetch(t, sid)
			got, err := tc.tw.UpdateMessage(sid, (&api.UpdateMessageParams{}).SetPathAccountSid(o.sub.SID).SetBody(""))
			if err != nil {
				t.Fatal(err)
			}
			want := before
			want.Body = ptr("")
			want.DateUpdated = ptr(o.now.Format(time.RFC1123Z))
			if diff := cmp.Diff(want, *got); diff != "" {
				t.Errorf("redacted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, o.fetch(t, sid)); diff != "" {
				t.Errorf("fetched after redaction (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, o.list(t)[sid]); diff != "" {
				t.Errorf("listed after redaction (-want +got):\n%s", diff)
			}
		})
	}
	if c, p := o.usageToday(t, twiliofake.CategorySMS); c != countBefore || p != priceBefore {
		t.Errorf("usage after redaction = %s/%v, want %s/%v as before", c, p, countBefore, priceBefore)
	}

	t.Run("cancel a scheduled message", func(t *testing.T) {
		got, err := o.owner.UpdateMessage(o.sid["scheduled"], (&api.UpdateMessageParams{}).SetStatus("canceled"))
		if err != nil {
			t.Fatal(err)
		}
		if *got.Status != "canceled" || *got.Body != "Sale tomorrow" {
			t.Errorf("canceled = %s %q, want canceled with its body", *got.Status, *got.Body)
		}
	})

	for _, tc := range []struct {
		name       string
		msg        string
		params     *api.UpdateMessageParams
		wantStatus int
		wantCode   int
	}{
		{"queued", "queued", (&api.UpdateMessageParams{}).SetBody(""), 409, 20409},
		{"sending", "sending", (&api.UpdateMessageParams{}).SetBody(""), 409, 20409},
		{"a new body", "filtered", (&api.UpdateMessageParams{}).SetBody("Hello"), 400, 30400},
		{"no parameters", "filtered", &api.UpdateMessageParams{}, 400, 30400},
		{"redact and cancel", "queued", (&api.UpdateMessageParams{}).SetBody("").SetStatus("canceled"), 400, 30400},
		{"another status", "queued", (&api.UpdateMessageParams{}).SetStatus("failed"), 400, 30400},
		{"cancel what is not scheduled", "queued", (&api.UpdateMessageParams{}).SetStatus("canceled"), 400, 30409},
		{"unknown sid", "", (&api.UpdateMessageParams{}).SetBody(""), 404, 20404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sid := o.sid[tc.msg]
			if sid == "" {
				sid = "SM00000000000000000000000000000000"
			}
			var before api.ApiV2010Message
			if tc.msg != "" {
				before = o.fetch(t, sid)
			}
			_, err := o.owner.UpdateMessage(sid, tc.params)
			if re := restErr(t, err); re.Status != tc.wantStatus || re.Code != tc.wantCode {
				t.Errorf("got %d/%d, want %d/%d", re.Status, re.Code, tc.wantStatus, tc.wantCode)
			}
			if tc.msg != "" {
				if diff := cmp.Diff(before, o.fetch(t, sid)); diff != "" {
					t.Errorf("a refused update changed the message (-before +after):\n%s", diff)
				}
			}
		})
	}

	t.Run("another owner's credentials", func(t *testing.T) {
		other := mustAdd(t, o.s, twiliofake.Account{})
		tw, _ := restClient(o.s, other.SID, other.Token)
		_, err := tw.UpdateMessage(o.sid["sent"], (&api.UpdateMessageParams{}).SetPathAccountSid(o.sub.SID).SetBody(""))
		if re := restErr(t, err); re.Status != 401 || re.Code != 20003 {
			t.Errorf("got %d/%d, want 401/20003", re.Status, re.Code)
		}
	})
}

func TestDeleteMessage(t *testing.T) {
	o := newOwned(t)
	countBefore, priceBefore := o.usageToday(t, twiliofake.CategorySMS)
	tw, w := restClient(o.s, o.sub.SID, o.sub.Token)

	for _, name := range []string{"filtered", "stop"} {
		sid := o.sid[name]
		if err := tw.DeleteMessage(sid, nil); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		if res := w.last(); res.StatusCode != http.StatusNoContent {
			t.Errorf("delete %s: status %d, want 204", name, res.StatusCode)
		}
		_, err := o.parent.FetchMessage(sid, (&api.FetchMessageParams{}).SetPathAccountSid(o.sub.SID))
		if re := restErr(t, err); re.Status != 404 || re.Code != 20404 {
			t.Errorf("fetch deleted %s: got %d/%d, want 404/20404", name, re.Status, re.Code)
		}
		if _, listed := o.list(t)[sid]; listed {
			t.Errorf("deleted %s still listed", name)
		}
		if _, err := o.s.Message(sid); err == nil {
			t.Errorf("the Message knob still finds deleted %s", name)
		}
		err = tw.DeleteMessage(sid, nil)
		if re := restErr(t, err); re.Status != 404 || re.Code != 20404 {
			t.Errorf("delete %s again: got %d/%d, want 404/20404", name, re.Status, re.Code)
		}
	}
	if n := o.s.MessageCount(o.sub.SID); n != len(o.sid)-2 {
		t.Errorf("MessageCount = %d, want %d", n, len(o.sid)-2)
	}
	// Deleting a message does not refund it.
	if c, p := o.usageToday(t, twiliofake.CategorySMS); c != countBefore || p != priceBefore {
		t.Errorf("usage after deletion = %s/%v, want %s/%v as before", c, p, countBefore, priceBefore)
	}

	for _, name := range []string{"sent", "sending", "queued", "scheduled"} {
		t.Run("refused while "+name, func(t *testing.T) {
			err := tw.DeleteMessage(o.sid[name], nil)
			if re := restErr(t, err); re.Status != 400 || re.Code != 20009 {
				t.Errorf("got %d/%d, want 400/20009", re.Status, re.Code)
			}
			o.fetch(t, o.sid[name])
		})
	}
	t.Run("once delivered", func(t *testing.T) {
		if err := o.s.UpdateMessage(o.sid["sent"], func(m *twiliofake.Message) { m.Status = "delivered" }); err != nil {
			t.Fatal(err)
		}
		if err := o.parent.DeleteMessage(o.sid["sent"], (&api.DeleteMessageParams{}).SetPathAccountSid(o.sub.SID)); err != nil {
			t.Errorf("parent deletes a delivered message: %v", err)
		}
	})
	t.Run("another owner's credentials", func(t *testing.T) {
		other := mustAdd(t, o.s, twiliofake.Account{})
		otw, _ := restClient(o.s, other.SID, other.Token)
		err := otw.DeleteMessage(o.sid["queued"], (&api.DeleteMessageParams{}).SetPathAccountSid(o.sub.SID))
		if re := restErr(t, err); re.Status != 401 || re.Code != 20003 {
			t.Errorf("got %d/%d, want 401/20003", re.Status, re.Code)
		}
	})
}

// Deleting the message a page token names, or one on the next page, while
// a client pages neither repeats nor skips any other message.
func TestDeleteWhilePaging(t *testing.T) {
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{})
	sids, err := s.Generate(twiliofake.Traffic{AccountSID: sub.SID, N: 30, From: epoch.Add(-time.Hour), To: epoch})
	if err != nil {
		t.Fatal(err)
	}
	tw, _ := restClient(s, parentSID, parentToken)
	params := (&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(10)
	first, err := tw.PageMessage(params, "", "")
	if err != nil {
		t.Fatal(err)
	}
	// Newest first: sids[29] leads page one, sids[20] ends it, sids[15]
	// is on page two.
	deleted := map[string]bool{sids[20]: true, sids[15]: true}
	if got := *first.Messages[9].Sid; got != sids[20] {
		t.Fatalf("page one ends with %s, want %s (the test's premise)", got, sids[20])
	}
	for sid := range deleted {
		if err := tw.DeleteMessage(sid, (&api.DeleteMessageParams{}).SetPathAccountSid(sub.SID)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for _, m := range first.Messages {
		seen[*m.Sid]++
	}
	next := first.NextPageUri
	for next != nil {
		u, err := url.Parse(*next)
		if err != nil {
			t.Fatal(err)
		}
		page, err := tw.PageMessage(params, u.Query().Get("PageToken"), u.Query().Get("Page"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			seen[*m.Sid]++
		}
		next = page.NextPageUri
	}
	for i, sid := range sids {
		want := 1
		if deleted[sid] && i != 20 {
			want = 0 // sids[20] was served before its deletion
		}
		if seen[sid] != want {
			t.Errorf("message %d seen %d times, want %d", i, seen[sid], want)
		}
	}
}
