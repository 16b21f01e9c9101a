package slack

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/slack/slackfake"
)

// TestRenderButtons: which messages carry which buttons, what the buttons
// carry, and that every rendering is Block Kit Slack accepts.
func TestRenderButtons(t *testing.T) {
	on := Interactivity{Enabled: true}
	suspended := suspendedEvent()
	suspended.Offer = OfferSuspended
	would := suspended
	would.Kind, would.Offer = KindWouldSuspend, OfferWouldSuspend
	alert := suspended
	alert.Kind, alert.Offer = KindFiring, OfferAlert
	noIncident := suspended
	noIncident.Opened = time.Time{}

	tests := []struct {
		name  string
		ev    Event
		ia    Interactivity
		texts []string // button labels
		note  string
		dry   bool
	}{
		{"suspended", suspended, on, []string{"Reinstate…", "Keep suspended…"}, "", false},
		{"would suspend", would, on, []string{"Reinstate… (dry-run)", "Keep suspended… (dry-run)"}, ":test_tube: Dry-run", true},
		{"daemon in dry-run", suspended, Interactivity{Enabled: true, DryRun: true}, []string{"Reinstate… (dry-run)", "Keep suspended… (dry-run)"}, ":test_tube: Dry-run", true},
		{"alert", alert, on, []string{"Acknowledge"}, "", false},
		{"no deciders", suspended, Interactivity{Enabled: true, NoDeciders: true}, []string{"Reinstate…", "Keep suspended…"}, ":no_entry: Buttons disabled", false},
		{"interactions off", suspended, Interactivity{}, nil, "", false},
		{"no incident", noIncident, on, nil, "", false},
		{"no offer", suspendedEvent(), on, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := RenderInteractive(tt.ev, tt.ia)
			js := mustJSON(t, m.Blocks)
			if err := slackfake.ValidateBlocks(json.RawMessage(js)); err != nil {
				t.Fatalf("invalid Block Kit: %v\n%s", err, js)
			}
			var labels []string
			for _, b := range Buttons(tt.ev, tt.ia) {
				labels = append(labels, b.Text)
				v, err := parseButtonValue(b.Value)
				want := ButtonValue{V: 1, Subaccount: tt.ev.Subaccount, Rule: tt.ev.Rule, Opened: tt.ev.Opened.UnixNano(), DryRun: tt.dry}
				if err != nil || v != want || !v.opened().Equal(tt.ev.Opened) {
					t.Errorf("button %s carries %+v, %v; want %+v", b.Text, v, err, want)
				}
			}
			if diff := cmp.Diff(tt.texts, labels); diff != "" {
				t.Errorf("buttons (-want +got):\n%s", diff)
			}
			if got := strings.Contains(js, `"block_id":"sentinel.decide"`); got != (len(tt.texts) > 0) {
				t.Errorf("actions block present = %v:\n%s", got, js)
			}
			if tt.note != "" && !strings.Contains(js, tt.note) {
				t.Errorf("no note %q:\n%s", tt.note, js)
			}
			if !strings.HasSuffix(strings.TrimSpace(blockTexts(t, js)[len(blockTexts(t, js))-1]), "2026-11-26 22:45 UTC") {
				t.Errorf("the incident's context line is not last:\n%s", js)
			}
		})
	}
	// Every kind renders to valid Block Kit, with and without buttons.
	for kind := range kinds {
		ev := suspendedEvent()
		ev.Kind, ev.Offer = kind, OfferSuspended
		for _, ia := range []Interactivity{{}, on} {
			js := mustJSON(t, RenderInteractive(ev, ia).Blocks)
			if err := slackfake.ValidateBlocks(json.RawMessage(js)); err != nil {
				t.Errorf("%s: invalid Block Kit: %v", kind, err)
			}
		}
	}
}

// TestValidatorRefuses: the fake's Block Kit validator is not a rubber
// stamp: it refuses what Slack refuses.
func TestValidatorRefuses(t *testing.T) {
	for name, js := range map[string]string{
		"long header":        `[{"type":"header","text":{"type":"plain_text","text":"` + strings.Repeat("x", 151) + `"}}]`,
		"mrkdwn header":      `[{"type":"header","text":{"type":"mrkdwn","text":"x"}}]`,
		"empty section":      `[{"type":"section"}]`,
		"eleven fields":      `[{"type":"section","fields":[` + strings.TrimSuffix(strings.Repeat(`{"type":"mrkdwn","text":"x"},`, 11), ",") + `]}]`,
		"long button":        `[{"type":"actions","elements":[{"type":"button","action_id":"a","text":{"type":"plain_text","text":"` + strings.Repeat("x", 76) + `"}}]}]`,
		"duplicate action":   `[{"type":"actions","elements":[{"type":"button","action_id":"a","text":{"type":"plain_text","text":"x"}},{"type":"button","action_id":"a","text":{"type":"plain_text","text":"y"}}]}]`,
		"bad style":          `[{"type":"actions","elements":[{"type":"button","action_id":"a","style":"green","text":{"type":"plain_text","text":"x"}}]}]`,
		"long value":         `[{"type":"actions","elements":[{"type":"button","action_id":"a","value":"` + strings.Repeat("x", 2001) + `","text":{"type":"plain_text","text":"x"}}]}]`,
		"duplicate block_id": `[{"type":"divider","block_id":"b"},{"type":"divider","block_id":"b"}]`,
		"input in a message": `[{"type":"input","label":{"type":"plain_text","text":"x"},"element":{"type":"plain_text_input","action_id":"a"}}]`,
		"emoji on mrkdwn":    `[{"type":"section","text":{"type":"mrkdwn","text":"x","emoji":true}}]`,
	} {
		if err := slackfake.ValidateBlocks(json.RawMessage(js)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := slackfake.ValidateView(json.RawMessage(`{"type":"modal","title":{"type":"plain_text","text":"` + strings.Repeat("x", 25) + `"},"blocks":[]}`)); err == nil {
		t.Error("a modal title over 24 characters accepted")
	}
}

// readmeEvent is the incident message README shows.
func readmeEvent() Event {
	ev := suspendedEvent()
	ev.Measure = "30007 filtering: 12.5% of 200 finished messages in the last hour (suspends at 5%)"
	ev.Offer = OfferSuspended
	return ev
}

// TestREADMERendering: README shows an incident message with its buttons
// as sentinel renders it today, and that rendering is valid Block Kit.
func TestREADMERendering(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- incident-message -->\n```json\n(.*?)```").FindSubmatch(readme)
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(RenderInteractive(readmeEvent(), Interactivity{Enabled: true}).Blocks); err != nil {
		t.Fatal(err)
	}
	if err := slackfake.ValidateBlocks(want.Bytes()); err != nil {
		t.Fatalf("README's message is not valid Block Kit: %v", err)
	}
	if m == nil || string(m[1]) != want.String() {
		t.Errorf("README's incident message (after <!-- incident-message -->) is not the current rendering; it should be:\n%s", want.String())
	}
}

func TestLogNotifierPrintsButtons(t *testing.T) {
	var out bytes.Buffer
	n := NewLogNotifier(slog.New(slog.DiscardHandler), &out).WithButtons(Interactivity{Enabled: true, NoDeciders: true})
	ev := suspendedEvent()
	ev.Offer = OfferSuspended
	if err := n.Notify(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		`  button [Reinstate…] action_id=sentinel.reinstate value={"v":1,"s":"AC0123456789abcdef0123456789abcdef","r":"carrier-filtering","o":` + "1795732800000000000}",
		`  button [Keep suspended…] action_id=sentinel.keep value=`,
		"  :no_entry: Buttons disabled",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("printed alert lacks %q:\n%s", want, text)
		}
	}
}
