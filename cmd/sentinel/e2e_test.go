package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/actions"
	"sentinel/internal/store"
	"sentinel/internal/twiliofake"
)

// statusOf returns the fake's status of every account in sids.
func statusOf(t *testing.T, fake *twiliofake.Server, sids ...string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, sid := range sids {
		a, err := fake.Account(sid)
		if err != nil {
			t.Fatal(err)
		}
		got[sid] = a.Status
	}
	return got
}

// statusPosts returns the SIDs that received a POST setting Status=status,
// in order.
func statusPosts(fake *twiliofake.Server, status string) []string {
	var sids []string
	re := regexp.MustCompile(`^/2010-04-01/Accounts/(AC[0-9a-f]{32})\.json$`)
	for _, r := range fake.Requests() {
		if m := re.FindStringSubmatch(r.Path); r.Method == http.MethodPost && m != nil && r.Form.Get("Status") == status {
			sids = append(sids, m[1])
		}
	}
	return sids
}

// statusRows runs `sentinel -status -json` (with extra flags) and returns
// its rows by SID.
func (w *world) statusRows(t *testing.T, extra ...string) map[string]actions.StatusRow {
	t.Helper()
	r := w.run(t, w.args(append([]string{"-status", "-json"}, extra...)...)...)
	if r.code != 0 {
		t.Fatalf("-status -json: %s", r)
	}
	var rows []actions.StatusRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("-status -json printed no JSON array: %v\n%s", err, r)
	}
	bySID := map[string]actions.StatusRow{}
	for _, row := range rows {
		bySID[row.SID] = row
	}
	return bySID
}

// want is an account's Twilio status and breaker state.
type want struct{ Status, Breaker string }

// checkRows compares the -status rows of sids with want.
func checkRows(t *testing.T, rows map[string]actions.StatusRow, wants map[string]want) {
	t.Helper()
	got := map[string]want{}
	for sid := range wants {
		got[sid] = want{rows[sid].Status, rows[sid].Breaker}
	}
	if diff := cmp.Diff(wants, got); diff != "" {
		t.Errorf("-status -json (-want +got):\n%s", diff)
	}
}

// TestOnceSuspendsOnlyTheOffender is the core acceptance line: two -once
// cycles over a fleet with one subaccount whose messages carriers filter
// suspend that one and no other, tell Slack through the store's outbox,
// and a person reinstates it from the command line.
func TestOnceSuspendsOnlyTheOffender(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, steady := w.fleet(t, 10, true)
	all := append([]string{offender}, steady...)

	t.Run("first -once: pending, nothing suspended", func(t *testing.T) {
		r := w.run(t, w.args("-once")...)
		if r.code != 0 {
			t.Fatalf("-once: %s", r)
		}
		for sid, st := range statusOf(t, w.fake, all...) {
			if st != "active" {
				t.Errorf("after one cycle %s is %s; carrier-filtering needs two evaluations (for: 2)", sid, st)
			}
		}
		if got := statusPosts(w.fake, "suspended"); len(got) != 0 {
			t.Errorf("suspension requests after one cycle: %v", got)
		}
		// The warning rule (for: 1) fires at once.
		if len(w.slack.find(offender, "carrier-filtering-warning")) == 0 {
			t.Errorf("no Slack warning naming %s and carrier-filtering-warning; posts: %q", offender, w.slack.Posts())
		}
	})

	t.Run("second -once suspends the offender", func(t *testing.T) {
		// Debug logging too must keep the secrets out of the log.
		r := w.run(t, w.args("-once", "-log-level", "debug")...)
		if r.code != 0 {
			t.Fatalf("-once: %s", r)
		}
		wantStatus := map[string]string{offender: "suspended"}
		for _, sid := range steady {
			wantStatus[sid] = "active"
		}
		if diff := cmp.Diff(wantStatus, statusOf(t, w.fake, all...)); diff != "" {
			t.Errorf("account statuses in Twilio (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{offender}, statusPosts(w.fake, "suspended")); diff != "" {
			t.Errorf("POST Status=suspended requests (-want +got):\n%s", diff)
		}
		// No daemon runs after -once: the command names the database, the
		// policies and Twilio.
		command := bin + " -db " + w.db + " -policies " + mustAbs(t, "../../policies") + " -twilio-api-url " + w.fake.URL() + " -reinstate " + offender
		posts := w.slack.find(offender, `carrier-filtering`, command, "Suspended")
		if len(posts) != 1 {
			t.Errorf("got %d Slack suspension messages naming %s, the rule and the reinstate command, want 1; posts:\n%s",
				len(posts), offender, strings.Join(w.slack.Posts(), "\n"))
		}
		// Alerts go through the store's outbox, which -once empties.
		st, err := store.Open(w.db, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if left, err := st.Due(time.Now().Add(24*time.Hour), 0); err != nil || len(left) != 0 {
			t.Errorf("outbox after -once: %d items, %v; want it empty", len(left), err)
		}
	})

	t.Run("-status -json reports it", func(t *testing.T) {
		wants := map[string]want{offender: {"suspended", "open"}}
		for _, sid := range steady {
			wants[sid] = want{"active", "closed"}
		}
		checkRows(t, w.statusRows(t), wants)
	})

	t.Run("-reinstate without a daemon restores it", func(t *testing.T) {
		r := w.run(t, w.args("-reinstate", offender, "-reason", "reviewed", "-by", "alice")...)
		if r.code != 0 {
			t.Fatalf("-reinstate: %s", r)
		}
		if want := offender + " reinstated by alice\n"; r.stdout != want {
			t.Errorf("-reinstate printed %q, want %q", r.stdout, want)
		}
		if got := statusOf(t, w.fake, offender)[offender]; got != "active" {
			t.Errorf("Twilio status after -reinstate: %s, want active", got)
		}
		if diff := cmp.Diff([]string{offender}, statusPosts(w.fake, "active")); diff != "" {
			t.Errorf("POST Status=active requests (-want +got):\n%s", diff)
		}
		if len(w.slack.find(offender, "Reinstated", "reviewed")) == 0 {
			t.Errorf("no Slack message about the reinstatement; posts:\n%s", strings.Join(w.slack.Posts(), "\n"))
		}
		checkRows(t, w.statusRows(t), map[string]want{offender: {"active", "probation"}})
	})

	t.Run("-history lists suspension and reinstatement newest first", func(t *testing.T) {
		r := w.run(t, w.args("-history", offender)...)
		if r.code != 0 {
			t.Fatalf("-history: %s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		reinstated, suspended := -1, -1
		for i, l := range lines {
			f := strings.Fields(l)
			if len(f) < 5 || f[2] != "outcome" {
				continue
			}
			switch {
			case f[3] == "reinstate" && reinstated < 0:
				reinstated = i
			case f[3] == "suspend" && suspended < 0:
				suspended = i
			}
		}
		if reinstated < 0 || suspended < 0 || reinstated > suspended {
			t.Errorf("want the reinstatement's outcome above the suspension's, got lines %d and %d:\n%s",
				reinstated, suspended, r.stdout)
		}
		if want := "alice " + osUserOf(t); !strings.Contains(r.stdout, want) {
			t.Errorf("-history names no %q:\n%s", want, r.stdout)
		}
	})
}

// TestNewWebhookReleasesHeldAlerts: Slack refusing the webhook (404, as
// for one removed from its workspace) holds the alerts in the outbox; once
// the operator configures a new webhook, the next run delivers them at once
// instead of waiting out a hold earned by the old one.
func TestNewWebhookReleasesHeldAlerts(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 3, true)
	w.slack.revoke(w.webhook)

	if r := w.run(t, w.args("-once")...); r.code != 0 {
		t.Fatalf("-once: %s", r)
	}
	if posts := w.slack.Posts(); len(posts) != 0 {
		t.Fatalf("the revoked webhook accepted %d posts", len(posts))
	}
	st, err := store.Open(w.db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	held, err := st.OutboxLen()
	if err != nil || held == 0 {
		t.Fatalf("outbox after the refusal: %d items, %v; want the alerts held", held, err)
	}
	hold, err := st.SlackHold()
	st.Close()
	if err != nil || hold.Cause != "refused" || hold.Config == "" {
		t.Errorf("stored hold after the refusal = %+v, %v; want cause refused with a configuration fingerprint", hold, err)
	}
	// The fingerprint, not the webhook, is what the database keeps.
	db, err := os.ReadFile(w.db)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{w.webhook, "xoxsecretwebhookpath"} {
		if bytes.Contains(db, []byte(secret)) {
			t.Errorf("the database holds the secret %q", secret)
		}
	}

	w.webhook = w.slack.srv.URL + "/services/T0SECRET/B0SECRET/xoxsecretreplacement"
	r := w.run(t, w.args("-once")...)
	if r.code != 0 {
		t.Fatalf("-once with the new webhook: %s", r)
	}
	if len(w.slack.find(offender, "carrier-filtering-warning")) == 0 {
		t.Errorf("the held warning was not delivered through the new webhook; posts: %q\n%s", w.slack.Posts(), r.stderr)
	}
	if !strings.Contains(r.stderr, "slack configuration changed") {
		t.Errorf("the lifted hold is not logged:\n%s", r.stderr)
	}
	st, err = store.Open(w.db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.OutboxLen(); err != nil || n != 0 {
		t.Errorf("outbox after the new webhook: %d items, %v; want it empty", n, err)
	}
}

// TestStatusTellsTheTruth: -status puts what needs a person first, says
// states in words, shows each suspension rule over its own window with the
// rule and reason for anything not healthy; -status SID shows one in
// full; -history -json is JSON; a database that never saw Twilio says so.
func TestStatusTellsTheTruth(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, steady := w.fleet(t, 4, true)
	for range 2 {
		if r := w.run(t, w.args("-once")...); r.code != 0 {
			t.Fatalf("-once: %s", r)
		}
	}
	r := w.run(t, w.args("-status")...)
	if r.code != 0 {
		t.Fatalf("-status: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !strings.Contains(lines[0], "CARRIER-FILTERING") || !strings.Contains(lines[0], "NOTE") {
		t.Errorf("-status header %q lacks the rule columns and NOTE", lines[0])
	}
	if !strings.HasPrefix(lines[1], offender) || !strings.Contains(lines[1], "suspended by sentinel") ||
		!strings.Contains(lines[1], "carrier-filtering") {
		t.Errorf("first row is not the suspended offender with its rule:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "watching") {
		t.Errorf("healthy subaccounts are not said to be watched:\n%s", r.stdout)
	}

	rows := w.statusRows(t)
	for _, sid := range steady {
		row := rows[sid]
		if row.Attention != "ok" || len(row.Rules) == 0 {
			t.Errorf("steady %s: attention %q, %d rules", sid, row.Attention, len(row.Rules))
		}
		for _, rv := range row.Rules {
			if rv.Rule == "carrier-filtering" && (rv.Window != "1h" || !strings.Contains(rv.Text, "in the last hour")) {
				t.Errorf("carrier-filtering judged over %s: %q", rv.Window, rv.Text)
			}
		}
	}

	one := w.run(t, w.args("-status", steady[0])...)
	if one.code != 0 || !strings.Contains(one.stdout, "RULE") || !strings.Contains(one.stdout, "opt-out-rate") {
		t.Errorf("-status SID: %s", one)
	}
	hist := w.run(t, w.args("-history", offender, "-json")...)
	var entries []actions.HistoryEntry
	if hist.code != 0 || json.Unmarshal([]byte(hist.stdout), &entries) != nil || len(entries) == 0 {
		t.Errorf("-history -json: %s", hist)
	}

	// A database whose daemon never reached Twilio.
	blind := newWorld(t, twiliofake.Options{})
	environ := blind.environ()
	for i, kv := range environ {
		if strings.HasPrefix(kv, "TWILIO_AUTH_TOKEN=") {
			environ[i] = "TWILIO_AUTH_TOKEN=WrOnGtOkEn0123456789abcdefABCDEF"
		}
	}
	runEnv(t, environ, nil, blind.args("-once")...)
	if r := blind.run(t, blind.args("-status")...); r.code == 0 || !strings.Contains(r.stderr, "has not read Twilio's account list") {
		t.Errorf("-status of a database that never saw Twilio: %s", r)
	}
}
