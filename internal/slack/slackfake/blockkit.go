package slackfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Block Kit limits, from Slack's reference (characters, not bytes).
const (
	maxMessageBlocks = 50
	maxViewBlocks    = 100
	maxBlockID       = 255
	maxHeaderText    = 150
	maxSectionText   = 3000
	maxFields        = 10
	maxFieldText     = 2000
	maxContextItems  = 10
	maxActions       = 25
	maxButtonText    = 75
	maxActionID      = 255
	maxButtonValue   = 2000
	maxViewTitle     = 24
	maxMetadata      = 3000
	maxCallbackID    = 255
	maxInputLabel    = 2000
	maxInputLength   = 3000
)

// ValidateBlocks checks a message's blocks (JSON) as Slack does before it
// accepts chat.postMessage, chat.update or chat.postEphemeral: the block
// types a message may hold, their required fields, text objects and
// lengths, unique block and action IDs.
func ValidateBlocks(blocks json.RawMessage) error {
	return validate(blocks, maxMessageBlocks, false)
}

// ValidateView checks a modal (JSON) as Slack does before views.open.
func ValidateView(view json.RawMessage) error {
	var v struct {
		Type            string          `json:"type"`
		Title           *textObject     `json:"title"`
		Submit          *textObject     `json:"submit"`
		Close           *textObject     `json:"close"`
		Blocks          json.RawMessage `json:"blocks"`
		PrivateMetadata string          `json:"private_metadata"`
		CallbackID      string          `json:"callback_id"`
	}
	if err := json.Unmarshal(view, &v); err != nil {
		return fmt.Errorf("view: %w", err)
	}
	if v.Type != "modal" {
		return fmt.Errorf("view type %q, want modal", v.Type)
	}
	if err := v.Title.check("title", true, maxViewTitle); err != nil {
		return err
	}
	for name, t := range map[string]*textObject{"submit": v.Submit, "close": v.Close} {
		if t != nil {
			if err := t.check(name, true, maxViewTitle); err != nil {
				return err
			}
		}
	}
	if utf8.RuneCountInString(v.PrivateMetadata) > maxMetadata {
		return fmt.Errorf("private_metadata over %d characters", maxMetadata)
	}
	if utf8.RuneCountInString(v.CallbackID) > maxCallbackID {
		return fmt.Errorf("callback_id over %d characters", maxCallbackID)
	}
	if err := validate(v.Blocks, maxViewBlocks, true); err != nil {
		return err
	}
	var blocks []struct {
		Type string `json:"type"`
	}
	json.Unmarshal(v.Blocks, &blocks) //nolint:errcheck // validated above
	for _, b := range blocks {
		if b.Type == "input" && v.Submit == nil {
			return errors.New("a modal with input blocks needs a submit button")
		}
	}
	return nil
}

// validateMessageBlocks validates the form value "blocks" of a chat call,
// which may be absent.
func validateMessageBlocks(form string) error {
	if form == "" {
		return nil
	}
	return ValidateBlocks(json.RawMessage(form))
}

type textObject struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Emoji    *bool  `json:"emoji"`
	Verbatim *bool  `json:"verbatim"`
}

func (t *textObject) check(where string, plainOnly bool, max int) error {
	switch {
	case t == nil:
		return fmt.Errorf("%s: missing text object", where)
	case t.Type != "plain_text" && t.Type != "mrkdwn":
		return fmt.Errorf("%s: text object type %q", where, t.Type)
	case plainOnly && t.Type != "plain_text":
		return fmt.Errorf("%s: must be plain_text", where)
	case t.Text == "":
		return fmt.Errorf("%s: empty text", where)
	case utf8.RuneCountInString(t.Text) > max:
		return fmt.Errorf("%s: %d characters, more than %d", where, utf8.RuneCountInString(t.Text), max)
	case t.Emoji != nil && t.Type != "plain_text":
		return fmt.Errorf("%s: emoji is only for plain_text", where)
	case t.Verbatim != nil && t.Type != "mrkdwn":
		return fmt.Errorf("%s: verbatim is only for mrkdwn", where)
	}
	return nil
}

type block struct {
	Type     string            `json:"type"`
	BlockID  string            `json:"block_id"`
	Text     *textObject       `json:"text"`
	Fields   []*textObject     `json:"fields"`
	Elements []json.RawMessage `json:"elements"`
	Label    *textObject       `json:"label"`
	Element  json.RawMessage   `json:"element"`
	Optional *bool             `json:"optional"`
}

type element struct {
	Type      string      `json:"type"`
	ActionID  string      `json:"action_id"`
	Text      *textObject `json:"text"`
	Value     *string     `json:"value"`
	Style     string      `json:"style"`
	URL       string      `json:"url"`
	Multiline bool        `json:"multiline"`
	MinLength *int        `json:"min_length"`
	MaxLength *int        `json:"max_length"`
}

func validate(raw json.RawMessage, maxBlocks int, view bool) error {
	var blocks []block
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return fmt.Errorf("blocks: %w", err)
	}
	if len(blocks) > maxBlocks {
		return fmt.Errorf("%d blocks, more than %d", len(blocks), maxBlocks)
	}
	blockIDs, actionIDs := map[string]bool{}, map[string]bool{}
	for i, b := range blocks {
		where := fmt.Sprintf("block %d (%s)", i, b.Type)
		if b.BlockID != "" {
			if blockIDs[b.BlockID] {
				return fmt.Errorf("%s: duplicate block_id %q", where, b.BlockID)
			}
			if utf8.RuneCountInString(b.BlockID) > maxBlockID {
				return fmt.Errorf("%s: block_id too long", where)
			}
			blockIDs[b.BlockID] = true
		}
		switch b.Type {
		case "header":
			if err := b.Text.check(where, true, maxHeaderText); err != nil {
				return err
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				return fmt.Errorf("%s: neither text nor fields", where)
			}
			if b.Text != nil {
				if err := b.Text.check(where, false, maxSectionText); err != nil {
					return err
				}
			}
			if len(b.Fields) > maxFields {
				return fmt.Errorf("%s: %d fields, more than %d", where, len(b.Fields), maxFields)
			}
			for _, f := range b.Fields {
				if err := f.check(where+" field", false, maxFieldText); err != nil {
					return err
				}
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > maxContextItems {
				return fmt.Errorf("%s: %d elements, want 1 to %d", where, len(b.Elements), maxContextItems)
			}
			for _, e := range b.Elements {
				var t textObject
				if err := json.Unmarshal(e, &t); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				if err := t.check(where, false, maxSectionText); err != nil {
					return err
				}
			}
		case "actions":
			if len(b.Elements) == 0 || len(b.Elements) > maxActions {
				return fmt.Errorf("%s: %d elements, want 1 to %d", where, len(b.Elements), maxActions)
			}
			for _, raw := range b.Elements {
				if err := checkButton(where, raw, actionIDs); err != nil {
					return err
				}
			}
		case "divider":
		case "input":
			if !view {
				return fmt.Errorf("%s: input blocks are for modals", where)
			}
			if err := b.Label.check(where+" label", true, maxInputLabel); err != nil {
				return err
			}
			var e element
			if err := json.Unmarshal(b.Element, &e); err != nil || e.Type != "plain_text_input" {
				return fmt.Errorf("%s: element must be a plain_text_input", where)
			}
			if e.ActionID == "" || actionIDs[e.ActionID] {
				return fmt.Errorf("%s: missing or duplicate action_id %q", where, e.ActionID)
			}
			actionIDs[e.ActionID] = true
			for _, n := range []*int{e.MinLength, e.MaxLength} {
				if n != nil && (*n < 0 || *n > maxInputLength) {
					return fmt.Errorf("%s: length bound %d outside 0..%d", where, *n, maxInputLength)
				}
			}
		default:
			return fmt.Errorf("%s: block type not used by sentinel or unknown", where)
		}
	}
	return nil
}

func checkButton(where string, raw json.RawMessage, actionIDs map[string]bool) error {
	var e element
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if e.Type != "button" {
		return fmt.Errorf("%s: element type %q, want button", where, e.Type)
	}
	if err := e.Text.check(where+" button", true, maxButtonText); err != nil {
		return err
	}
	switch {
	case e.ActionID == "" || utf8.RuneCountInString(e.ActionID) > maxActionID:
		return fmt.Errorf("%s: button action_id %q", where, e.ActionID)
	case actionIDs[e.ActionID]:
		return fmt.Errorf("%s: duplicate action_id %q", where, e.ActionID)
	case e.Value != nil && utf8.RuneCountInString(*e.Value) > maxButtonValue:
		return fmt.Errorf("%s: button value over %d characters", where, maxButtonValue)
	case e.Style != "" && e.Style != "primary" && e.Style != "danger":
		return fmt.Errorf("%s: button style %q", where, e.Style)
	}
	actionIDs[e.ActionID] = true
	return nil
}
