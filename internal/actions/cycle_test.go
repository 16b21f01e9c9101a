package actions_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"sentinel/internal/actions"
	"sentinel/internal/policy"
	"sentinel/internal/slack"
	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// budgetRule suspends at a $10 daily budget.
const budgetRule = `
  - name: budget
    description: Today's spend reached the $10 daily budget
    signal: spend_budget
    window: today
    budget: 10
    trip: 100%
    severity: critical
    action: suspend
`

// TestJudgeAccountWithoutTraffic: the cycle reads buckets in one scan,
// which visits only accounts with buckets in range. An account without any
// (it never sent, or only long ago) is judged all the same: on its spend,
// and on its message rules, whose states are stored.
func TestJudgeAccountWithoutTraffic(t *testing.T) {
	e := newEnv(t, envOptions{subs: 3, policy: basePolicy + budgetRule})
	busy, spender, silent := e.subs[0], e.subs[1], e.subs[2]
	e.send(silent, 100, 50) // filtered, but three hours before the cycle: outside every window
	e.clock.Advance(3 * time.Hour)
	e.send(busy, 100, 0)
	// spender sent no message, but spent $50 today.
	now := e.clock.Now().Add(time.Minute) // the cycle's
	if err := e.st.PutUsage(spender, []traffic.Usage{{Day: now.Format(time.DateOnly), TotalPrice: 50, AsOf: now}}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.RecordPoll(spender, "usage", now, nil); err != nil {
		t.Fatal(err)
	}

	sum := e.judge()
	if want := 1 + len(e.subs); sum.Accounts != want {
		t.Errorf("accounts judged %d, want %d (the parent and every subaccount)", sum.Accounts, want)
	}
	if diff := cmp.Diff([]string{spender}, e.posts("suspended")); diff != "" {
		t.Errorf("suspensions (-want +got):\n%s", diff)
	}
	for _, sid := range []string{silent, spender} {
		states, err := e.st.RuleStates(sid)
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range []string{"filtered", "opt-outs"} {
			if st, ok := states[rule]; !ok || !st.LastEval.Equal(now) {
				t.Errorf("%s: rule state of %s = %+v (stored %v), want judged at %v", sid, rule, st, ok, now)
			}
		}
	}
	if n := len(e.notes.of(slack.KindFiring)); n != 1 {
		t.Errorf("firing events %d, want 1 (the budget)", n)
	}
}

// TestQuietCycleKeepsRuleStates: a cycle in which no rule changes what the
// next evaluation reads stores nothing; one that does stores at once.
func TestQuietCycleKeepsRuleStates(t *testing.T) {
	e := newEnv(t, envOptions{subs: 2, policy: strings.Replace(basePolicy, "trip: 5%", "trip: 5%\n    for: 3", 1)})
	sid := e.subs[0]
	states := func() map[string]store.RuleState {
		t.Helper()
		s, err := e.st.RuleStates(sid)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	e.send(sid, 100, 2) // 2%: under the trip
	e.judge()
	first := states()
	if st := first["filtered"]; !st.LastEval.Equal(e.clock.Now()) || st.Consecutive != 0 {
		t.Fatalf("first cycle stored %+v, want judged now, not over the trip", st)
	}
	e.judge()
	if diff := cmp.Diff(first, states()); diff != "" {
		t.Errorf("a quiet cycle rewrote the rule states (-before +after):\n%s", diff)
	}

	e.send(sid, 100, 50) // over the trip: pending 1/3
	e.judge()
	if st := states()["filtered"]; st.Consecutive != 1 || !st.LastEval.Equal(e.clock.Now()) {
		t.Errorf("after a cycle over the trip, stored %+v, want Consecutive 1 judged now", st)
	}
	e.judge()
	e.judge() // the third in a row: fires and suspends
	if diff := cmp.Diff([]string{sid}, e.posts("suspended")); diff != "" {
		t.Errorf("suspensions (-want +got):\n%s", diff)
	}
}

// TestJudgeCorruptRecords: the cycle reads every account's records in bulk,
// but a record that does not decode still fails only its own account, as
// reading account by account did: the others are judged and alerted on.
func TestJudgeCorruptRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sentinel.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := start
	sids := []string{"AC00000000000000000000000000000001", "AC00000000000000000000000000000002", "AC00000000000000000000000000000003"}
	brokenBuckets, alerting, brokenBreaker := sids[0], sids[1], sids[2]
	var accts []store.Account
	for i, sid := range sids {
		accts = append(accts, store.Account{SID: sid, FriendlyName: fmt.Sprintf("client %d", i), Status: "active"})
	}
	if _, err := st.SyncAccounts(accts, now); err != nil {
		t.Fatal(err)
	}
	for i, sid := range sids {
		if err := st.SetCoverage(sid, traffic.Coverage{From: now.Add(-48 * time.Hour), Until: now}); err != nil {
			t.Fatal(err)
		}
		var msgs []traffic.Message
		for j := range 100 {
			m := traffic.Message{SID: fmt.Sprintf("SM%030x%02x", j, i), AccountSID: sid, Direction: traffic.OutboundAPI,
				Status: "delivered", Time: now.Add(-time.Duration(j%20)*time.Minute - time.Second), MessagingService: true}
			if j < 20 { // 20% opt-outs: the alert fires
				m.Direction, m.Status, m.Keyword = traffic.Inbound, "received", traffic.OptOut
			}
			msgs = append(msgs, m)
		}
		if _, err := st.PutMessages(sid, msgs); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	corrupt(t, path, func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("aggregates")).Cursor()
		for k, _ := c.Seek([]byte(brokenBuckets + "/")); bytes.HasPrefix(k, []byte(brokenBuckets+"/")); k, _ = c.Next() {
			if err := c.Bucket().Put(bytes.Clone(k), []byte{2, 0xff}); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("breaker")).Put([]byte(brokenBreaker), []byte{1, 0xff})
	})
	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	set, err := policy.Load(writePolicy(t, basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	notes := &recorder{}
	clk := &clock{t: now.Add(time.Minute)}
	a, err := actions.New(actions.Config{}, st, &quietTwilio{}, func() *policy.Set { return set }, notes, nil, nil, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := a.Judge(context.Background())
	for _, sid := range []string{brokenBuckets, brokenBreaker} {
		if err == nil || !strings.Contains(err.Error(), sid) {
			t.Errorf("Judge error %v, want one naming %s", err, sid)
		}
	}
	if sum.Accounts != 1 {
		t.Errorf("accounts judged %d, want 1", sum.Accounts)
	}
	if fired := notes.of(slack.KindFiring); len(fired) != 1 || fired[0].Subaccount != alerting {
		t.Errorf("firing events %+v, want one for %s", fired, alerting)
	}
}

// corrupt runs fn on the bbolt file at path, which no Store holds.
func corrupt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// writePolicy writes src as the only policy file of a new directory.
func writePolicy(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
