package slack

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	goslack "github.com/slack-go/slack"
)

// Interactivity says whether and how incident messages offer decisions as
// buttons. The zero Interactivity offers none: without Socket Mode or the
// HTTP interactions endpoint a click would reach nobody.
type Interactivity struct {
	// Enabled: sentinel takes Slack interactions (Socket Mode or POST
	// /slack/interactions).
	Enabled bool
	// NoDeciders: nobody may decide (-slack-deciders is empty). The
	// buttons are shown with a note saying they are disabled, and a
	// click is refused with that reason.
	NoDeciders bool
	// DryRun: sentinel runs with -dry-run: every button says so, and
	// nothing a click does reaches Twilio.
	DryRun bool
}

// Action IDs of the buttons, and block IDs of what Render adds.
const (
	actionReinstate = "sentinel.reinstate"
	actionKeep      = "sentinel.keep"
	actionAck       = "sentinel.ack"
	blockDecide     = "sentinel.decide"  // the actions block
	blockNote       = "sentinel.note"    // the note under it (disabled, dry-run)
	blockDecided    = "sentinel.decided" // what was decided, replacing both
)

// decisionOf maps an action ID to its decision.
var decisionOf = map[string]string{
	actionReinstate: DecideReinstate,
	actionKeep:      DecideKeep,
	actionAck:       DecideAck,
}

// Button is one decision a message offers: its label, its action ID and
// the value Slack sends back when it is clicked (ButtonValue, as JSON).
type Button struct {
	ActionID string
	Text     string
	Value    string
	Primary  bool
}

// ButtonValue is what a button carries: the incident it decides on, by
// its identity (subaccount, rule, opened), so that a click on the message
// of an incident that is over is refused rather than applied to another,
// and whether it is a dry-run button.
type ButtonValue struct {
	V          int    `json:"v"`
	Subaccount string `json:"s"`
	Rule       string `json:"r"`
	Opened     int64  `json:"o"` // UnixNano
	DryRun     bool   `json:"d,omitempty"`
}

const buttonValueVersion = 1

// maxValue is Slack's limit on a button's value.
const maxValue = 2000

func (v ButtonValue) encode() string {
	b, _ := json.Marshal(v) // strings and numbers only: cannot fail
	return string(b)
}

// parseButtonValue reads a button's value as Slack sends it back.
func parseButtonValue(s string) (ButtonValue, error) {
	var v ButtonValue
	if len(s) > maxValue {
		return v, errors.New("button value too long")
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return v, fmt.Errorf("button value: %w", err)
	}
	if v.V != buttonValueVersion || v.Subaccount == "" || v.Rule == "" || v.Opened == 0 {
		return v, errors.New("button value does not name an incident")
	}
	return v, nil
}

func (v ButtonValue) opened() time.Time { return time.Unix(0, v.Opened).UTC() }

// Buttons returns the buttons ev's message carries with ia: none unless
// interactions are enabled and ev is an incident's event that offers a
// decision.
func Buttons(ev Event, ia Interactivity) []Button {
	if !ia.Enabled || ev.Offer == "" || !ev.incident() {
		return nil
	}
	dry := ia.DryRun || ev.Offer == OfferWouldSuspend
	val := ButtonValue{V: buttonValueVersion, Subaccount: ev.Subaccount, Rule: ev.Rule, Opened: ev.Opened.UnixNano(), DryRun: dry}.encode()
	suffix := ""
	if dry {
		suffix = " (dry-run)"
	}
	var bs []Button
	switch ev.Offer {
	case OfferSuspended, OfferWouldSuspend:
		bs = []Button{
			{ActionID: actionReinstate, Text: "Reinstate…" + suffix, Value: val, Primary: !ia.NoDeciders},
			{ActionID: actionKeep, Text: "Keep suspended…" + suffix, Value: val},
		}
	case OfferAlert:
		bs = []Button{{ActionID: actionAck, Text: "Acknowledge", Value: val}}
	}
	return bs
}

// buttonNote is the note shown under the buttons, if any.
func buttonNote(ev Event, ia Interactivity) string {
	switch {
	case ia.NoDeciders:
		return ":no_entry: Buttons disabled: nobody may decide from Slack until -slack-deciders names people or user groups."
	case ia.DryRun || ev.Offer == OfferWouldSuspend:
		return ":test_tube: Dry-run: these buttons record a decision; nothing is sent to Twilio."
	}
	return ""
}

// decisionBlocks are the actions block with ev's buttons and the note under
// them; none when ev offers no decision.
func decisionBlocks(ev Event, ia Interactivity) []goslack.Block {
	bs := Buttons(ev, ia)
	if len(bs) == 0 {
		return nil
	}
	els := make([]goslack.BlockElement, len(bs))
	for i, b := range bs {
		be := goslack.NewButtonBlockElement(b.ActionID, b.Value, goslack.NewTextBlockObject(goslack.PlainTextType, b.Text, false, false))
		if b.Primary {
			be.Style = goslack.StylePrimary
		}
		els[i] = be
	}
	blocks := []goslack.Block{goslack.NewActionBlock(blockDecide, els...)}
	if note := buttonNote(ev, ia); note != "" {
		blocks = append(blocks, goslack.NewContextBlock(blockNote, goslack.NewTextBlockObject(goslack.MarkdownType, note, false, false)))
	}
	return blocks
}
