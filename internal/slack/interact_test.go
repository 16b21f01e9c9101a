package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"sentinel/internal/slack/slackfake"
)

// Test secrets of interactivity; like testToken, each holds testSecretPart.
const (
	testAppToken      = "xapp-1-A0FAKE-1-SECRETAPPTOKEN"
	testSigningSecret = "SECRETSIGNINGSECRET"
)

var (
	ana = slackfake.User{ID: "U0ANA", Name: "ana"}
	bob = slackfake.User{ID: "U0BOB", Name: "bob"}
	eve = slackfake.User{ID: "U0EVE", Name: "eve"}
)

// scriptDecider is a Decider that acts once per incident, as the actions
// package does, and records what it was asked.
type scriptDecider struct {
	mu       sync.Mutex
	decided  map[string]string // incident -> who
	decides  []Decision
	previews []Decision
	refused  []string
	gate     chan struct{} // if set, Decide waits for it
	fail     error
}

func newScriptDecider() *scriptDecider { return &scriptDecider{decided: map[string]string{}} }

func key(d Decision) string { return d.Subaccount + "/" + d.Rule + "/" + d.Opened.String() }

func (s *scriptDecider) Preview(_ context.Context, d Decision) (Preview, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.previews = append(s.previews, d)
	if who, ok := s.decided[key(d)]; ok {
		return Preview{Refused: "stale: already decided by " + who}, nil
	}
	return Preview{Follows: "Probation follows until 2026-11-27 22:50 UTC."}, nil
}

func (s *scriptDecider) Decide(_ context.Context, d Decision) (Outcome, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decides = append(s.decides, d)
	if s.fail != nil {
		return Outcome{}, s.fail
	}
	if who, ok := s.decided[key(d)]; ok {
		return Outcome{Refused: "stale: already decided by " + who}, nil
	}
	s.decided[key(d)] = d.By
	return Outcome{Done: "reinstated; on probation until 2026-11-27 22:50 UTC"}, nil
}

func (s *scriptDecider) Refused(_ context.Context, d Decision, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = append(s.refused, d.By+": "+why)
	return nil
}

func (s *scriptDecider) snapshot() (decides []Decision, refused []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.decides), slices.Clone(s.refused)
}

// harness is Slack (the fake), Interactions and a Socket connected to it,
// all stopped when the test ends.
type harness struct {
	fake *slackfake.Server
	in   *Interactions
	dec  *scriptDecider
	reg  *prometheus.Registry
	logs *syncBuffer
	bot  *Client
}

type harnessOptions struct {
	deciders []string
	groups   map[string][]string
	dryRun   bool
	noSocket bool
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	h := &harness{dec: newScriptDecider(), reg: prometheus.NewRegistry()}
	h.fake = slackfake.New(slackfake.Options{BotToken: testToken, AppToken: testAppToken, Groups: o.groups})
	t.Cleanup(h.fake.Close)
	var log *slog.Logger
	log, h.logs = newLogger()
	var err error
	h.in, err = NewInteractions(InteractionsConfig{
		BotToken: testToken, APIURL: h.fake.URL(), Deciders: o.deciders, DryRun: o.dryRun, Registerer: h.reg,
	}, h.dec, log)
	if err != nil {
		t.Fatal(err)
	}
	h.bot, err = NewClient(Config{BotToken: testToken, Channel: "#compliance", APIURL: h.fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		noSecret(t, "the log", h.logs.String())
		if strings.Contains(h.logs.String(), testSigningSecret) || strings.Contains(h.logs.String(), testAppToken) {
			t.Errorf("the log holds a secret:\n%s", h.logs)
		}
	})
	wg.Go(func() { h.in.Run(ctx) })
	if o.noSocket {
		return h
	}
	sock, err := NewSocket(SocketConfig{AppToken: testAppToken, BotToken: testToken, APIURL: h.fake.URL(), Registerer: h.reg}, h.in, log)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { sock.Run(ctx) })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := h.fake.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return h
}

// post posts ev's message with its buttons, as the dispatcher does, and
// returns its ts.
func (h *harness) post(t *testing.T, ev Event) string {
	t.Helper()
	ts, err := h.bot.Post(context.Background(), RenderInteractive(ev, h.in.Interactivity()), "")
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	return ts
}

func (h *harness) click(t *testing.T, u slackfake.User, ts, action string) slackfake.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := h.fake.Click(ctx, u, ts, action)
	if err != nil {
		t.Fatalf("click %s: %v", action, err)
	}
	if ack.After > 3*time.Second {
		t.Errorf("click acknowledged after %v; Slack wants it within 3s", ack.After)
	}
	return ack
}

func (h *harness) submit(t *testing.T, u slackfake.User, view, reason string) slackfake.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := h.fake.Submit(ctx, u, view, map[string]string{blockReason: reason})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return ack
}

// waitFor polls cond until it holds, for at most 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) views(n int) func() bool {
	return func() bool { return len(h.fake.Views()) >= n }
}

func (h *harness) ephemeralTo(u slackfake.User) []string {
	var out []string
	for _, e := range h.fake.Ephemerals() {
		if e.User == u.ID {
			out = append(out, e.Text)
		}
	}
	return out
}

// TestReinstateFromSocket: a decider clicks Reinstate…, gets the modal with
// the message's evidence and what follows, submits a reason; the decision
// reaches the Decider once, named after the person, and the message is
// updated in place: the evidence stays, the buttons give way to who did
// what and when.
func TestReinstateFromSocket(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}})
	ev := suspendedEvent()
	ev.Offer = OfferSuspended
	ts := h.post(t, ev)

	if ack := h.click(t, ana, ts, actionReinstate); len(ack.Payload) != 0 {
		t.Errorf("click acknowledged with %s, want an empty ack", ack.Payload)
	}
	waitFor(t, "the modal", h.views(1))
	v := h.fake.Views()[0]
	var view struct {
		Title  struct{ Text string } `json:"title"`
		Blocks json.RawMessage       `json:"blocks"`
	}
	if err := json.Unmarshal(v.View, &view); err != nil {
		t.Fatal(err)
	}
	texts := strings.Join(blockTexts(t, string(view.Blocks)), "\n")
	for _, want := range []string{":rotating_light: Suspended: Acme Corp", "*Volume*\n25 of 200", "Probation follows until 2026-11-27 22:50 UTC.",
		"U0ANA (ana) via Slack"} {
		if !strings.Contains(texts, want) {
			t.Errorf("modal lacks %q:\n%s", want, texts)
		}
	}
	if !strings.Contains(string(view.Blocks), `"text":"Reason (required)"`) {
		t.Errorf("modal asks for no reason:\n%s", view.Blocks)
	}
	if strings.Contains(texts, "Keep suspended") || view.Title.Text != "Reinstate subaccount" {
		t.Errorf("modal %q shows the message's buttons or the wrong title:\n%s", view.Title.Text, texts)
	}

	// A blank reason is refused in the modal itself.
	ack := h.submit(t, ana, v.ID, "   ")
	if !strings.Contains(string(ack.Payload), `"response_action":"errors"`) || !strings.Contains(string(ack.Payload), `"reason"`) {
		t.Errorf("blank reason acknowledged with %s, want errors on the reason", ack.Payload)
	}
	if ack := h.submit(t, ana, v.ID, "list cleaned; reviewed with the client"); len(ack.Payload) != 0 {
		t.Errorf("submission acknowledged with %s, want an empty ack (closes the modal)", ack.Payload)
	}
	waitFor(t, "the message update", func() bool { m, _ := h.fake.Message(ts); return m.Updates == 1 })
	decides, _ := h.dec.snapshot()
	want := Decision{Action: DecideReinstate, Subaccount: ev.Subaccount, Rule: ev.Rule, Opened: ev.Opened,
		By: "U0ANA (ana) via Slack", Reason: "list cleaned; reviewed with the client"}
	if len(decides) != 1 || decides[0] != want {
		t.Errorf("decisions = %+v, want %+v", decides, want)
	}
	m, _ := h.fake.Message(ts)
	if err := slackfake.ValidateBlocks(m.Blocks); err != nil {
		t.Errorf("updated message: %v", err)
	}
	texts = strings.Join(blockTexts(t, string(m.Blocks)), "\n")
	for _, want := range []string{"*Volume*\n25 of 200", ":white_check_mark: *Reinstated; on probation until 2026-11-27 22:50 UTC* by <@U0ANA> at ",
		"*Why* list cleaned; reviewed with the client"} {
		if !strings.Contains(texts, want) {
			t.Errorf("updated message lacks %q:\n%s", want, texts)
		}
	}
	if strings.Contains(string(m.Blocks), actionReinstate) {
		t.Errorf("updated message still has buttons:\n%s", m.Blocks)
	}
	if got := metricLabels(t, h.reg, "sentinel_slack_interactions_total", "reinstate", "done"); got != 1 {
		t.Errorf("interactions{reinstate,done} = %g, want 1", got)
	}
	if got := metric(t, h.reg, "sentinel_slack_socket_up", ""); got != 1 {
		t.Errorf("sentinel_slack_socket_up = %g, want 1", got)
	}
}

// TestNonDeciderRefused: a click by someone who may not decide opens no
// modal and reaches no decision; they are told why and it is audited.
func TestNonDeciderRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID, "S0LEADS"}, groups: map[string][]string{"S0LEADS": {bob.ID}}})
	ev := suspendedEvent()
	ev.Offer = OfferSuspended
	ts := h.post(t, ev)
	for _, action := range []string{actionReinstate, actionKeep} {
		h.click(t, eve, ts, action)
	}
	waitFor(t, "two answers to eve", func() bool { return len(h.ephemeralTo(eve)) == 2 })
	for _, text := range h.ephemeralTo(eve) {
		if !strings.Contains(text, "Not done: U0EVE is not one of sentinel's deciders (-slack-deciders)") {
			t.Errorf("eve was told %q", text)
		}
	}
	decides, refused := h.dec.snapshot()
	if len(decides) != 0 || len(h.fake.Views()) != 0 {
		t.Errorf("a non-decider's click reached %d decisions and %d modals", len(decides), len(h.fake.Views()))
	}
	if len(refused) != 2 || !strings.HasPrefix(refused[0], "U0EVE (eve) via Slack: U0EVE is not one") {
		t.Errorf("refusals audited: %q", refused)
	}
	if m, _ := h.fake.Message(ts); m.Updates != 0 {
		t.Error("a refused click changed the message")
	}

	// bob is let in through the user group.
	h.click(t, bob, ts, actionReinstate)
	waitFor(t, "bob's modal", h.views(1))
	if v := h.fake.Views()[0]; v.User != bob {
		t.Errorf("modal opened for %v, want bob", v.User)
	}
}

// TestGroupMembershipCached: a group's members are read once and kept; an
// unknown group lets nobody in and says so.
func TestGroupMembershipCached(t *testing.T) {
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	fake := slackfake.New(slackfake.Options{BotToken: testToken, Groups: map[string][]string{"S0LEADS": {bob.ID}}})
	defer fake.Close()
	in, err := NewInteractions(InteractionsConfig{BotToken: testToken, APIURL: fake.URL(), Deciders: []string{"S0LEADS", "S0GONE"}, Now: clock},
		newScriptDecider(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	calls := func() int { return len(fake.Calls("usergroups.users.list")) }
	if ok, why := in.deciders.allow(ctx, bob.ID); !ok {
		t.Fatalf("bob refused: %s", why)
	}
	for range 3 {
		in.deciders.allow(ctx, bob.ID)
	}
	if n := calls(); n != 1 {
		t.Errorf("%d reads of S0LEADS for bob's four clicks, want 1", n)
	}
	ok, why := in.deciders.allow(ctx, eve.ID)
	if ok || !strings.Contains(why, "the members of S0GONE (no_such_subteam) could not be read") {
		t.Errorf("eve: %v, %q; want refused naming the unreadable group", ok, why)
	}
	n := calls()
	in.deciders.allow(ctx, eve.ID)
	if calls() != n {
		t.Error("a refused person's second click read the groups again at once")
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	in.deciders.allow(ctx, bob.ID)
	if calls() == n {
		t.Error("the groups were not read again after a minute")
	}
}

// TestDoubleClickActsOnce: the same submission twice, and two people
// submitting at once: one decision is carried out, the rest refused.
func TestDoubleClickActsOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID, bob.ID}})
	ev := suspendedEvent()
	ev.Offer = OfferSuspended
	ts := h.post(t, ev)
	h.click(t, ana, ts, actionReinstate)
	h.click(t, bob, ts, actionReinstate)
	waitFor(t, "two modals", h.views(2))
	views := h.fake.Views()
	payload, err := h.fake.SubmitPayload(ana, views[0].ID, map[string]string{blockReason: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, err := h.fake.Interact(ctx, payload); err != nil {
			t.Fatal(err)
		}
	}
	h.submit(t, bob, views[1].ID, "me too")
	waitFor(t, "three decisions", func() bool { d, _ := h.dec.snapshot(); return len(d) == 3 })
	waitFor(t, "two refusals told", func() bool { return len(h.ephemeralTo(ana))+len(h.ephemeralTo(bob)) == 2 })
	if m, _ := h.fake.Message(ts); m.Updates != 1 {
		t.Errorf("message updated %d times, want once", m.Updates)
	}
	for _, text := range append(h.ephemeralTo(ana), h.ephemeralTo(bob)...) {
		if !strings.Contains(text, "Not done: stale: already decided by") {
			t.Errorf("second submission told %q", text)
		}
	}
	// The updated message has no buttons left to click.
	if _, err := h.fake.ClickPayload(ana, ts, actionReinstate); err == nil {
		t.Error("the decided message still offers Reinstate…")
	}
}

// TestStaleButtonRefused: a click on the buttons of an incident the
// Decider says is over opens no modal and says why.
func TestStaleButtonRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}})
	ev := suspendedEvent()
	ev.Offer = OfferSuspended
	ts := h.post(t, ev)
	h.dec.mu.Lock()
	h.dec.decided[key(Decision{Subaccount: ev.Subaccount, Rule: ev.Rule, Opened: ev.Opened})] = "U0BOB (bob) via Slack"
	h.dec.mu.Unlock()
	h.click(t, ana, ts, actionReinstate)
	waitFor(t, "an answer", func() bool { return len(h.ephemeralTo(ana)) == 1 })
	if got := h.ephemeralTo(ana)[0]; got != ":no_entry: Not done: stale: already decided by U0BOB (bob) via Slack" {
		t.Errorf("told %q", got)
	}
	if len(h.fake.Views()) != 0 {
		t.Error("a stale button opened a modal")
	}
	if _, refused := h.dec.snapshot(); len(refused) != 1 {
		t.Errorf("refusals audited: %q, want the stale click", refused)
	}
}

// TestAcknowledgeAndFailure: Acknowledge acts on the click, without a
// modal; a decision that fails is reported in the incident's thread.
func TestAcknowledgeAndFailure(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}})
	ev := suspendedEvent()
	ev.Kind, ev.Offer, ev.Action = KindFiring, OfferAlert, "alert only"
	root := h.post(t, ev)
	h.click(t, ana, root, actionAck)
	waitFor(t, "the update", func() bool { m, _ := h.fake.Message(root); return m.Updates == 1 })
	decides, _ := h.dec.snapshot()
	if len(decides) != 1 || decides[0].Action != DecideAck || decides[0].Reason != "" {
		t.Errorf("decisions = %+v, want one acknowledgement", decides)
	}

	ev.Opened = ev.Opened.Add(time.Hour)
	ts := h.post(t, ev)
	h.dec.mu.Lock()
	h.dec.fail = fmt.Errorf("acknowledge: store is closed (token %s)", testToken)
	h.dec.mu.Unlock()
	h.click(t, ana, ts, actionAck)
	waitFor(t, "the failure in the thread", func() bool {
		for _, m := range h.fake.Messages() {
			if m.ThreadTS == ts && strings.Contains(m.Text, ":x: Acknowledgement of `AC0123456789abcdef0123456789abcdef` by U0ANA (ana) via Slack failed") {
				noSecret(t, "the thread", m.Text)
				return true
			}
		}
		return false
	})
}

// TestSlowDecisionAckedAtOnce: the acknowledgement does not wait for the
// decision, however long Twilio takes.
func TestSlowDecisionAckedAtOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}})
	h.dec.gate = make(chan struct{})
	ev := suspendedEvent()
	ev.Kind, ev.Offer = KindFiring, OfferAlert
	ts := h.post(t, ev)
	start := time.Now()
	h.click(t, ana, ts, actionAck)
	if d := time.Since(start); d > time.Second {
		t.Errorf("ack took %v while the decision was still running", d)
	}
	close(h.dec.gate)
	waitFor(t, "the decision", func() bool { d, _ := h.dec.snapshot(); return len(d) == 1 })
}

// TestSocketReconnects: a dropped connection is made again, and the
// buttons work through it.
func TestSocketReconnects(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}})
	h.fake.Disconnect()
	waitFor(t, "a second connection", func() bool { return h.fake.Connects() >= 2 && metric(t, h.reg, "sentinel_slack_socket_up", "") == 1 })
	ev := suspendedEvent()
	ev.Kind, ev.Offer = KindFiring, OfferAlert
	h.click(t, ana, h.post(t, ev), actionAck)
	waitFor(t, "the decision", func() bool { d, _ := h.dec.snapshot(); return len(d) == 1 })
}

// TestNoDecidersDisabled: with nobody allowed, the buttons say they are
// disabled and a click is refused saying why.
func TestNoDecidersDisabled(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ev := suspendedEvent()
	ev.Offer = OfferSuspended
	ts := h.post(t, ev)
	m, _ := h.fake.Message(ts)
	if !strings.Contains(string(m.Blocks), "Buttons disabled: nobody may decide from Slack until -slack-deciders names people or user groups.") ||
		strings.Contains(string(m.Blocks), `"primary"`) {
		t.Errorf("message with no deciders:\n%s", m.Blocks)
	}
	h.click(t, ana, ts, actionReinstate)
	waitFor(t, "an answer", func() bool { return len(h.ephemeralTo(ana)) == 1 })
	if got := h.ephemeralTo(ana)[0]; !strings.Contains(got, "nobody may decide from Slack: sentinel's -slack-deciders names nobody") {
		t.Errorf("told %q", got)
	}
}

// TestEndpoint: the HTTP interactions endpoint takes only what Slack
// signed, recently, and acknowledges it like Socket Mode.
func TestEndpoint(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}, noSocket: true})
	ep, err := NewEndpoint(testSigningSecret, h.in)
	if err != nil {
		t.Fatal(err)
	}
	ev := suspendedEvent()
	ev.Kind, ev.Offer = KindFiring, OfferAlert
	ts := h.post(t, ev)
	payload, err := h.fake.ClickPayload(ana, ts, actionAck)
	if err != nil {
		t.Fatal(err)
	}
	const target = "/slack/interactions"
	now := time.Now()
	tamper := func(r *http.Request) *http.Request {
		r.Header.Set("X-Slack-Signature", "v0="+strings.Repeat("ab", 32))
		return r
	}
	big := make([]byte, maxRequest+1)
	for i := range big {
		big[i] = 'a'
	}
	for _, tc := range []struct {
		name   string
		req    *http.Request
		code   int
		reason string
	}{
		{"bad signature", tamper(slackfake.SignedRequest(target, testSigningSecret, now, payload)), http.StatusUnauthorized, "signature"},
		{"another secret", slackfake.SignedRequest(target, "SECRETnotours", now, payload), http.StatusUnauthorized, "signature"},
		{"unsigned", func() *http.Request {
			r := slackfake.SignedRequest(target, testSigningSecret, now, payload)
			r.Header.Del("X-Slack-Signature")
			return r
		}(), http.StatusUnauthorized, "signature"},
		{"six minutes old", slackfake.SignedRequest(target, testSigningSecret, now.Add(-6*time.Minute), payload), http.StatusUnauthorized, "timestamp"},
		{"from the future", slackfake.SignedRequest(target, testSigningSecret, now.Add(6*time.Minute), payload), http.StatusUnauthorized, "timestamp"},
		{"too large", slackfake.SignedRequest(target, testSigningSecret, now, big), http.StatusRequestEntityTooLarge, "body"},
		{"GET", httptest.NewRequest(http.MethodGet, target, nil), http.StatusMethodNotAllowed, "method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metricLabels(t, h.reg, "sentinel_slack_interaction_requests_rejected_total", tc.reason)
			w := httptest.NewRecorder()
			ep.ServeHTTP(w, tc.req)
			if w.Code != tc.code {
				t.Errorf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if got := metricLabels(t, h.reg, "sentinel_slack_interaction_requests_rejected_total", tc.reason); got != before+1 {
				t.Errorf("rejected{reason=%s} went %g -> %g", tc.reason, before, got)
			}
		})
	}
	if d, _ := h.dec.snapshot(); len(d) != 0 {
		t.Fatalf("rejected requests reached %d decisions", len(d))
	}

	w := httptest.NewRecorder()
	ep.ServeHTTP(w, slackfake.SignedRequest(target, testSigningSecret, now.Add(-4*time.Minute), payload))
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Fatalf("signed click: %d %q, want 200 and an empty ack", w.Code, w.Body)
	}
	waitFor(t, "the decision", func() bool { d, _ := h.dec.snapshot(); return len(d) == 1 })
	waitFor(t, "the update", func() bool { m, _ := h.fake.Message(ts); return m.Updates == 1 })
}

func TestInteractionMetricsLint(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}})
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
}

func TestCheckDeciders(t *testing.T) {
	if err := CheckDeciders([]string{"U0ANA", "W0ANA", "S0LEADS"}); err != nil {
		t.Errorf("valid deciders: %v", err)
	}
	for _, bad := range []string{"ana", "u0ana", "C0CHAN", "U", "@ana", "S0 LEADS"} {
		if err := CheckDeciders([]string{bad}); err == nil {
			t.Errorf("decider %q accepted", bad)
		}
	}
}

// metricLabels is the value of the counter name whose label values are
// values, in order.
func metricLabels(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != values[i] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, values)
	return 0
}

// TestKeepSuspendedDryRun: Keep suspended… asks for a reason in its own
// modal; with -dry-run every button and modal says so and the decision
// reaches the Decider as a dry-run one, whatever the message's buttons said.
func TestKeepSuspendedDryRun(t *testing.T) {
	h := newHarness(t, harnessOptions{deciders: []string{ana.ID}, dryRun: true})
	ev := suspendedEvent()
	ev.Offer = OfferSuspended
	ts := h.post(t, ev)
	m, _ := h.fake.Message(ts)
	if !strings.Contains(string(m.Blocks), "Keep suspended… (dry-run)") || !strings.Contains(string(m.Blocks), "nothing is sent to Twilio") {
		t.Errorf("dry-run buttons do not say so:\n%s", m.Blocks)
	}
	h.click(t, ana, ts, actionKeep)
	waitFor(t, "the modal", h.views(1))
	v := h.fake.Views()[0]
	if !strings.Contains(string(v.View), `"text":"Keep suspended (dry-run)"`) || !strings.Contains(string(v.View), `"callback_id":"sentinel.keep"`) {
		t.Errorf("keep modal:\n%s", v.View)
	}
	h.submit(t, ana, v.ID, "fraud confirmed by the client")
	waitFor(t, "the decision", func() bool { d, _ := h.dec.snapshot(); return len(d) == 1 })
	d, _ := h.dec.snapshot()
	if d[0].Action != DecideKeep || !d[0].DryRun || d[0].Reason != "fraud confirmed by the client" {
		t.Errorf("decision = %+v, want a dry-run keep with the reason", d[0])
	}
}

// TestSocketRefusedToken: Slack refusing the app-level token does not stop
// Run (alerts must keep flowing); it is logged without the token, the
// socket is down in the metric, and it is tried again.
func TestSocketRefusedToken(t *testing.T) {
	fake := slackfake.New(slackfake.Options{BotToken: testToken, AppToken: "xapp-1-A0FAKE-9-SECRETOTHERTOKEN"})
	defer fake.Close()
	log, logs := newLogger()
	reg := prometheus.NewRegistry()
	in, err := NewInteractions(InteractionsConfig{BotToken: testToken, APIURL: fake.URL()}, newScriptDecider(), log)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := NewSocket(SocketConfig{AppToken: testAppToken, BotToken: testToken, APIURL: fake.URL(), Registerer: reg,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, in, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sock.Run(ctx) }()
	waitFor(t, "three refused attempts", func() bool { return len(fake.Calls("apps.connections.open")) >= 3 })
	if got := metric(t, reg, "sentinel_slack_socket_up", ""); got != 0 {
		t.Errorf("sentinel_slack_socket_up = %g with a refused token", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after its context ended", err)
	}
	if !strings.Contains(logs.String(), "slack socket mode stopped") || strings.Count(logs.String(), "slack socket mode stopped") != 1 {
		t.Errorf("want the refusal logged once (rate-limited):\n%s", logs)
	}
	noSecret(t, "the log", logs.String())
	if _, err := NewSocket(SocketConfig{AppToken: testToken, BotToken: testToken}, in, log); err == nil || strings.Contains(err.Error(), testSecretPart) {
		t.Errorf("a bot token as the app token: %v, want an error without it", err)
	}
}
