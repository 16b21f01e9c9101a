package main

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/slack/slackfake"
	"sentinel/internal/twiliofake"
)

// Slack secrets of the button tests: none may appear in any output.
const (
	buttonsBotToken = "xoxb-1-2-SECRETBOTTOKENFORBUTTONS"
	buttonsAppToken = "xapp-1-A0FAKE-2-SECRETAPPTOKENFORBUTTONS"
	buttonsSigning  = "SECRETSIGNINGSECRETFORBUTTONS"
)

// TestSlackButtons runs the daemon with Socket Mode against the fake
// Slack, as a compliance team would use it: the suspension message offers
// buttons, someone who may not decide is refused and changes nothing, a
// decider reinstates with a reason (the subaccount is reactivated, the
// message updated in place, the thread told, the audit log names her), a
// second submission and a click on the stale message are refused, and
// Twilio is asked once.
func TestSlackButtons(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 5, true)
	fake := slackfake.New(slackfake.Options{BotToken: buttonsBotToken, AppToken: buttonsAppToken})
	t.Cleanup(fake.Close)
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + w.dir, "USER=tester",
		"TWILIO_ACCOUNT_SID=" + w.fake.ParentSID(), "TWILIO_AUTH_TOKEN=" + w.fake.ParentToken(),
		"SLACK_BOT_TOKEN=" + buttonsBotToken, "SLACK_APP_TOKEN=" + buttonsAppToken, "SLACK_SIGNING_SECRET=" + buttonsSigning,
	}
	secrets := []string{w.fake.ParentToken(), buttonsBotToken, buttonsAppToken, buttonsSigning, "SECRET"}
	d := startEnv(t, env, secrets, daemonArgs(w, "-slack-channel", "#compliance", "-slack-api-url", fake.URL(),
		"-slack-deciders", "U0ANA,S0LEADS", "-log-level", "debug")...)
	addr := d.addr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fake.WaitConnected(ctx); err != nil {
		t.Fatalf("%v\n%s", err, d.stderr)
	}

	var suspended slackfake.Message
	eventually(t, 30*time.Second, "the suspension message with its buttons", func() bool {
		for _, m := range fake.Messages() {
			if strings.Contains(m.Text, "Suspended: acme-blaster") && strings.Contains(string(m.Blocks), `"sentinel.reinstate"`) {
				suspended = m
				return true
			}
		}
		return false
	})
	if got := statusOf(t, w.fake, offender)[offender]; got != "suspended" {
		t.Fatalf("offender is %s in Twilio", got)
	}
	if err := slackfake.ValidateBlocks(suspended.Blocks); err != nil {
		t.Errorf("the suspension message is not valid Block Kit: %v", err)
	}
	ana := slackfake.User{ID: "U0ANA", Name: "ana"}
	eve := slackfake.User{ID: "U0EVE", Name: "eve"}
	// A click on this message as it is now, kept to be replayed later.
	stale, err := fake.ClickPayload(ana, suspended.TS, "sentinel.keep")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a non-decider is refused and changes nothing", func(t *testing.T) {
		if _, err := fake.Click(ctx, eve, suspended.TS, "sentinel.reinstate"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "eve told why", func() bool {
			for _, e := range fake.Ephemerals() {
				// S0LEADS cannot be read: it lets nobody in, and says so.
				if e.User == eve.ID && strings.Contains(e.Text, "U0EVE is not one of sentinel's deciders") &&
					strings.Contains(e.Text, "S0LEADS (no_such_subteam)") {
					return true
				}
			}
			return false
		})
		if len(fake.Views()) != 0 || statusOf(t, w.fake, offender)[offender] != "suspended" {
			t.Error("eve's click opened a modal or changed the subaccount")
		}
	})

	t.Run("a decider reinstates with a reason", func(t *testing.T) {
		ack, err := fake.Click(ctx, ana, suspended.TS, "sentinel.reinstate")
		if err != nil {
			t.Fatal(err)
		}
		if ack.After > 3*time.Second {
			t.Errorf("click acknowledged after %v", ack.After)
		}
		eventually(t, 10*time.Second, "the modal", func() bool { return len(fake.Views()) == 1 })
		view := fake.Views()[0]
		if !strings.Contains(string(view.View), "Probation follows until") {
			t.Errorf("the modal does not show the probation:\n%s", view.View)
		}
		payload, err := fake.SubmitPayload(ana, view.ID, map[string]string{"reason": "list cleaned, reviewed with the client"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fake.Interact(ctx, payload); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the subaccount active again", func() bool {
			return statusOf(t, w.fake, offender)[offender] == "active"
		})
		eventually2(t, d, 10*time.Second, "the message updated in place", func() bool {
			m, _ := fake.Message(suspended.TS)
			return m.Updates == 1 && strings.Contains(texts(t, m.Blocks), "by <@U0ANA> at ") &&
				!strings.Contains(string(m.Blocks), `"sentinel.reinstate"`)
		})
		eventually(t, 10*time.Second, "the thread told", func() bool {
			for _, m := range fake.Messages() {
				if m.ThreadTS != "" && m.ThreadTS == suspended.ThreadTS && strings.Contains(m.Text, "Reinstated: acme-blaster") &&
					strings.Contains(m.Text, "U0ANA (ana) via Slack") {
					return true
				}
			}
			return false
		})

		// The same submission again, and a click on the message as it was.
		if _, err := fake.Interact(ctx, payload); err != nil {
			t.Fatal(err)
		}
		if _, err := fake.Interact(ctx, stale); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "both refused as stale", func() bool {
			n := 0
			for _, e := range fake.Ephemerals() {
				if e.User == ana.ID && strings.Contains(e.Text, "stale: the subaccount was already reinstated by U0ANA (ana) via Slack") {
					n++
				}
			}
			return n == 2
		})
		if got := statusPosts(w.fake, "active"); len(got) != 1 {
			t.Errorf("Twilio asked to reactivate %d times, want once", len(got))
		}
	})

	t.Run("-history names her", func(t *testing.T) {
		r := runEnv(t, env, secrets, w.args("-history", offender, "-json", "-slack-channel", "#compliance")...)
		if r.code != 0 {
			t.Fatalf("-history: %s", r)
		}
		var entries []actions.HistoryEntry
		if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
			t.Fatal(err)
		}
		var ok, refusals int
		for _, e := range entries {
			switch {
			case e.Kind == actions.KindOutcome && e.Action == actions.ActionReinstate && e.Outcome == actions.OutcomeOK:
				if e.Actor != "U0ANA (ana) via Slack" || e.Reason != "list cleaned, reviewed with the client" {
					t.Errorf("reinstatement recorded as %+v", e)
				}
				ok++
			case e.Kind == actions.KindRefusal && strings.HasSuffix(e.Actor, "via Slack"):
				refusals++
			}
		}
		if ok != 1 || refusals != 3 {
			t.Errorf("history has %d reinstatements and %d Slack refusals, want 1 and 3 (eve, the resubmission, the stale click):\n%s", ok, refusals, r.stdout)
		}
	})

	_, body := get(t, "http://"+addr+"/metrics")
	for _, re := range []string{`(?m)^sentinel_slack_socket_up 1$`, `(?m)^sentinel_slack_interactions_total\{action="reinstate",result="done"\} 1$`} {
		if !regexp.MustCompile(re).Match(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, d.stderr)
	}
}

// texts is every "text" in blocks, one a line.
func texts(t *testing.T, blocks json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(blocks, &v); err != nil {
		t.Fatalf("blocks: %v", err)
	}
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "text" {
					b.WriteString(s + "\n")
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return b.String()
}

func eventually2(t *testing.T, d *proc, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v\n%s", what, timeout, d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
