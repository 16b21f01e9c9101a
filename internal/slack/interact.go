package slack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	goslack "github.com/slack-go/slack"
)

// InteractionsConfig configures Interactions. Zero values take the
// defaults.
type InteractionsConfig struct {
	// BotToken answers clicks (views.open, chat.update, chat.postEphemeral,
	// chat.postMessage) and reads user groups (usergroups.users.list).
	// A secret.
	BotToken string
	// APIURL overrides Slack's Web API base URL; "" means Slack's.
	APIURL string
	// HTTPClient makes the Web API calls; nil means one with a 15s timeout.
	HTTPClient *http.Client
	// Deciders are who may decide: Slack user IDs (U…, W…) and user-group
	// IDs (S…), whose members may. Empty: nobody, and every click is
	// refused saying so.
	Deciders []string
	// DryRun: every decision is recorded and nothing is sent to Twilio.
	DryRun bool
	// GroupTTL is how long a user group's members are trusted before they
	// are read again; default 1m. A person not among them causes a read
	// at most every GroupTTL/6.
	GroupTTL time.Duration
	// Workers carry out accepted interactions, Queue of them may wait;
	// defaults 2 and 64.
	Workers, Queue int
	// ActionTimeout bounds one decision, a Twilio call included; default
	// 5m.
	ActionTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Interactions turns clicks on incident messages into decisions, whichever
// way they reach sentinel (Socket Mode or the HTTP endpoint): it accepts an
// interaction at once, so that Slack has its acknowledgement within its 3
// seconds, and carries it out afterwards on its own workers (Run): checks
// who clicked against the deciders, opens the modal that asks for a reason
// and shows what follows, passes the decision to the Decider (sentinel's
// actions, the command line's path), updates the message in place to say
// who did what and when, and tells the person why when it refuses. A
// failure is reported in the incident's thread.
type Interactions struct {
	api      *goslack.Client
	decider  Decider
	deciders *deciders
	cfg      InteractionsConfig
	log      *slog.Logger
	m        *interactionMetrics
	red      redactor
	jobs     chan job
	// overflow bounds the refusals of clicks that found the queue full,
	// each told and audited on a goroutine of its own.
	overflow chan struct{}
}

// NewInteractions validates cfg and returns Interactions that carry
// decisions out through decider.
func NewInteractions(cfg InteractionsConfig, decider Decider, logger *slog.Logger) (*Interactions, error) {
	switch {
	case cfg.BotToken == "":
		return nil, errors.New("new slack interactions: a bot token (" + EnvBotToken + ") is required")
	case decider == nil || logger == nil:
		return nil, errors.New("new slack interactions: decider and logger are required")
	}
	cfg.GroupTTL = cmp.Or(cfg.GroupTTL, time.Minute)
	cfg.Workers = cmp.Or(cfg.Workers, 2)
	cfg.Queue = cmp.Or(cfg.Queue, 64)
	cfg.ActionTimeout = cmp.Or(cfg.ActionTimeout, 5*time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.GroupTTL < 0 || cfg.Workers < 0 || cfg.Queue < 0 || cfg.ActionTimeout < 0 {
		return nil, errors.New("new slack interactions: negative option")
	}
	if err := CheckDeciders(cfg.Deciders); err != nil {
		return nil, fmt.Errorf("new slack interactions: %w", err)
	}
	api, err := apiURL(cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("new slack interactions: %w", err)
	}
	m, err := newInteractionMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new slack interactions: %w", err)
	}
	client := goslack.New(cfg.BotToken, goslack.OptionAPIURL(api), goslack.OptionHTTPClient(cfg.HTTPClient))
	in := &Interactions{
		api: client, decider: decider, cfg: cfg, log: logger, m: m,
		red:  redactor{cfg.BotToken},
		jobs: make(chan job, cfg.Queue), overflow: make(chan struct{}, 8),
	}
	in.deciders = newDeciders(cfg.Deciders, client, cfg.GroupTTL, cfg.Now, in.red)
	return in, nil
}

// apiURL checks a Web API base URL ("" for Slack's) and ends it with a
// slash, as slack-go wants it.
func apiURL(api string) (string, error) {
	if api == "" {
		api = goslack.APIURL
	}
	if u, err := url.Parse(api); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("api url %q is not an http(s) URL", api)
	}
	if !strings.HasSuffix(api, "/") {
		api += "/"
	}
	return api, nil
}

// deciderRE is a Slack user (U…, W…) or user-group (S…) ID.
var deciderRE = regexp.MustCompile(`^[UWS][A-Z0-9]{2,}$`)

// CheckDeciders checks -slack-deciders: Slack user IDs (U…, W…) and
// user-group IDs (S…), as Slack writes them.
func CheckDeciders(ids []string) error {
	for _, id := range ids {
		if !deciderRE.MatchString(id) {
			return fmt.Errorf("decider %q is not a Slack user ID (U…, W…) or user-group ID (S…)", truncate(line(id), 40))
		}
	}
	return nil
}

// Run carries out accepted interactions until ctx ends. Then it gives
// those under way or already accepted up to 10 seconds, and returns nil. A
// decision under way is not cut short by ctx: it has ActionTimeout, as a
// command-line one through the control socket has.
func (in *Interactions) Run(ctx context.Context) error {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	for range in.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					// Acknowledged to Slack already: carried out within
					// the grace, not dropped unseen.
					for {
						select {
						case j := <-in.jobs:
							in.do(work, j)
						default:
							return
						}
					}
				case j := <-in.jobs:
					in.do(work, j)
				}
			}
		})
	}
	<-ctx.Done()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cancel()
		<-done
	}
	return nil
}

// Interactivity is how messages show this configuration's buttons.
func (in *Interactions) Interactivity() Interactivity {
	return Interactivity{Enabled: true, NoDeciders: len(in.cfg.Deciders) == 0, DryRun: in.cfg.DryRun}
}

// job is one accepted interaction.
type job struct {
	submit  bool // a modal's submission; else a button's click
	d       Decision
	user    goslack.User
	trigger string
	channel string
	ts      string // the message with the buttons
	thread  string // its thread's ts ("" when it is a thread's root)
	blocks  []json.RawMessage
	at      time.Time
}

// Block and action IDs of the modal.
const (
	callbackReinstate = "sentinel.reinstate"
	callbackKeep      = "sentinel.keep"
	blockReason       = "reason"
	actionReason      = "reason"
	blockMsg          = "sentinel.msg." // prefix of the message's blocks copied into the modal
	maxReason         = maxWhole
)

var callbackOf = map[string]string{callbackReinstate: DecideReinstate, callbackKeep: DecideKeep}

// modalMeta is the modal's private_metadata: what its submission decides,
// and where the message is.
type modalMeta struct {
	V       int         `json:"v"`
	Button  ButtonValue `json:"b"`
	Channel string      `json:"c"`
	TS      string      `json:"m"`
	Thread  string      `json:"t,omitempty"`
}

// accept takes one interaction from Slack and returns what to acknowledge
// it with at once: nil for an empty acknowledgement (which also closes a
// submitted modal), or a view_submission response with the errors to show
// in the modal. It does no I/O: the work is queued for Run.
func (in *Interactions) accept(cb goslack.InteractionCallback) any {
	now := in.cfg.Now()
	switch cb.Type {
	case goslack.InteractionTypeBlockActions:
		for _, a := range cb.ActionCallback.BlockActions {
			action, ok := decisionOf[a.ActionID]
			if !ok {
				continue
			}
			v, err := parseButtonValue(a.Value)
			if err != nil {
				in.log.Warn("slack click ignored: not a button of sentinel's", "action", a.ActionID, "err", err)
				continue
			}
			j := job{
				d:       Decision{Action: action, Subaccount: v.Subaccount, Rule: v.Rule, Opened: v.opened(), DryRun: v.DryRun || in.cfg.DryRun},
				user:    cb.User,
				trigger: cb.TriggerID,
				channel: cmp.Or(cb.Container.ChannelID, cb.Channel.ID),
				ts:      cmp.Or(cb.Container.MessageTs, cb.Message.Timestamp),
				thread:  cmp.Or(cb.Message.ThreadTimestamp, cb.Container.ThreadTs),
				blocks:  rawBlocks(cb.Message.Blocks),
				at:      now,
			}
			in.enqueue(j)
		}
	case goslack.InteractionTypeViewSubmission:
		action, ok := callbackOf[cb.View.CallbackID]
		if !ok {
			return nil
		}
		var meta modalMeta
		if err := json.Unmarshal([]byte(cb.View.PrivateMetadata), &meta); err != nil || meta.V != buttonValueVersion {
			in.log.Warn("slack modal submission ignored: unreadable metadata", "err", err)
			return nil
		}
		reason := ""
		if cb.View.State != nil {
			reason = cb.View.State.Values[blockReason][actionReason].Value
		}
		switch {
		case strings.TrimSpace(reason) == "":
			return goslack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: "Say why: the reason goes to the audit log."})
		case utf8.RuneCountInString(reason) > maxReason:
			return goslack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: fmt.Sprintf("At most %d characters, please.", maxReason)})
		}
		var blocks []json.RawMessage
		for _, b := range rawBlocks(cb.View.Blocks) {
			if strings.HasPrefix(blockID(b), blockMsg) {
				blocks = append(blocks, b)
			}
		}
		b := meta.Button
		in.enqueue(job{
			submit: true,
			d: Decision{Action: action, Subaccount: b.Subaccount, Rule: b.Rule, Opened: b.opened(),
				DryRun: b.DryRun || in.cfg.DryRun, Reason: strings.TrimSpace(reason)},
			user: cb.User, channel: meta.Channel, ts: meta.TS, thread: meta.Thread, blocks: blocks, at: now,
		})
	}
	return nil
}

func (in *Interactions) enqueue(j job) {
	select {
	case in.jobs <- j:
		return
	default:
	}
	// The queue is full. The click is refused like any other, audited and
	// told, off the acknowledgement's path; past a bound of such refusals
	// under way, only counted and logged.
	select {
	case in.overflow <- struct{}{}:
		go func() {
			defer func() { <-in.overflow }()
			ctx, cancel := context.WithTimeout(context.Background(), in.cfg.ActionTimeout)
			defer cancel()
			j.d.By = by(j.user)
			in.refuse(ctx, j, "sentinel has too many decisions waiting; nothing was done: click again in a minute")
		}()
	default:
		in.m.result(j.d.Action, "dropped")
		in.log.Error("slack interaction dropped: too many waiting", "subaccount", j.d.Subaccount, "rule", j.d.Rule,
			"action", j.d.Action, "user", j.user.ID)
	}
}

// userRE is a Slack user ID.
var userRE = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)

// by names a Slack user for the audit log: "U123ABC (ana) via Slack".
func by(u goslack.User) string {
	name := truncate(line(cmp.Or(u.Name, u.Username)), 80)
	if name == "" {
		return line(u.ID) + " via Slack"
	}
	return fmt.Sprintf("%s (%s) via Slack", line(u.ID), name)
}

// do carries out one accepted interaction.
func (in *Interactions) do(ctx context.Context, j job) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.ActionTimeout)
	defer cancel()
	j.d.By = by(j.user)
	if !userRE.MatchString(j.user.ID) {
		in.refuse(ctx, j, "the click carries no Slack user")
		return
	}
	if ok, why := in.deciders.allow(ctx, j.user.ID); !ok {
		in.refuse(ctx, j, why)
		return
	}
	if !j.submit && j.d.Action != DecideAck {
		in.openModal(ctx, j)
		return
	}
	out, err := in.decider.Decide(ctx, j.d)
	switch {
	case err != nil:
		in.failed(ctx, j, err)
	case out.Refused != "":
		in.m.result(j.d.Action, "refused")
		in.ephemeral(ctx, j, ":no_entry: Not done: "+esc(out.Refused))
	default:
		in.m.result(j.d.Action, "done")
		in.decided(ctx, j, out)
	}
}

// refuse audits a refusal made here and tells the person why.
func (in *Interactions) refuse(ctx context.Context, j job, why string) {
	in.m.result(j.d.Action, "refused")
	in.log.Info("slack decision refused", "subaccount", j.d.Subaccount, "rule", j.d.Rule, "action", j.d.Action,
		"actor", j.d.By, "why", why)
	if err := in.decider.Refused(ctx, j.d, why); err != nil {
		in.log.Error("slack refusal not audited", "subaccount", j.d.Subaccount, "action", j.d.Action, "err", err)
	}
	in.ephemeral(ctx, j, ":no_entry: Not done: "+esc(why))
}

// failed reports a decision that failed in the incident's thread, where
// everyone watching it sees that it did not happen, and to the person.
func (in *Interactions) failed(ctx context.Context, j job, err error) {
	in.m.result(j.d.Action, "failed")
	msg := in.red.redact(err.Error())
	in.log.Error("slack decision failed", "subaccount", j.d.Subaccount, "rule", j.d.Rule, "action", j.d.Action,
		"actor", j.d.By, "err", msg)
	text := fmt.Sprintf(":x: %s of `%s` by %s failed: %s. `sentinel -status %s` shows where it stands.",
		verb(j.d.Action), esc(j.d.Subaccount), esc(j.d.By), esc(whole(msg)), esc(j.d.Subaccount))
	thread := cmp.Or(j.thread, j.ts)
	if j.channel == "" || thread == "" {
		return
	}
	if _, _, perr := in.api.PostMessageContext(ctx, j.channel, goslack.MsgOptionText(text, false), goslack.MsgOptionTS(thread)); perr != nil {
		in.log.Error("slack failure report not posted", "subaccount", j.d.Subaccount, "err", in.red.redact(perr.Error()))
		in.ephemeral(ctx, j, text)
	}
}

func (in *Interactions) ephemeral(ctx context.Context, j job, text string) {
	if j.channel == "" {
		return
	}
	if _, err := in.api.PostEphemeralContext(ctx, j.channel, j.user.ID, goslack.MsgOptionText(text, false)); err != nil {
		in.log.Warn("slack ephemeral answer not posted", "subaccount", j.d.Subaccount, "user", j.user.ID, "err", in.red.redact(err.Error()))
	}
}

// verb names a decision in a sentence.
func verb(action string) string {
	switch action {
	case DecideReinstate:
		return "Reinstatement"
	case DecideKeep:
		return "Keeping it suspended"
	}
	return "Acknowledgement"
}

// openModal asks for the reason of a reinstatement or of keeping it
// suspended, showing the message's evidence and what follows.
func (in *Interactions) openModal(ctx context.Context, j job) {
	p, err := in.decider.Preview(ctx, j.d)
	switch {
	case err != nil:
		in.failed(ctx, j, err)
		return
	case p.Refused != "":
		in.refuse(ctx, j, p.Refused)
		return
	}
	view, err := in.modal(j, p)
	if err == nil {
		_, err = in.api.OpenViewContext(ctx, j.trigger, view)
	}
	if err != nil {
		in.m.result(j.d.Action, "failed")
		var ser goslack.SlackErrorResponse
		if errors.As(err, &ser) && ser.Err == "expired_trigger_id" {
			in.log.Warn("slack modal not opened: the click's trigger expired", "subaccount", j.d.Subaccount, "after", in.cfg.Now().Sub(j.at))
			in.ephemeral(ctx, j, ":hourglass: Slack's few seconds to open the form passed while sentinel was busy: click again, please.")
			return
		}
		in.log.Error("slack modal not opened", "subaccount", j.d.Subaccount, "action", j.d.Action, "err", in.red.redact(err.Error()))
		in.ephemeral(ctx, j, ":x: The form could not be opened: "+esc(in.red.redact(err.Error())))
		return
	}
	in.m.result(j.d.Action, "opened")
}

// modal is the form of a reinstatement or of keeping it suspended: the
// message's evidence, what follows, who is recorded, and the reason.
func (in *Interactions) modal(j job, p Preview) (goslack.ModalViewRequest, error) {
	meta, err := json.Marshal(modalMeta{V: buttonValueVersion,
		Button:  ButtonValue{V: buttonValueVersion, Subaccount: j.d.Subaccount, Rule: j.d.Rule, Opened: j.d.Opened.UnixNano(), DryRun: j.d.DryRun},
		Channel: j.channel, TS: j.ts, Thread: j.thread})
	if err != nil {
		return goslack.ModalViewRequest{}, err
	}
	title, submit, callback := "Reinstate subaccount", "Reinstate", callbackReinstate
	if j.d.Action == DecideKeep {
		title, submit, callback = "Keep suspended", "Keep suspended", callbackKeep
	}
	if j.d.DryRun {
		title, submit = strings.TrimSuffix(title, " subaccount")+" (dry-run)", "Record (dry-run)"
	}
	var blocks goslack.Blocks
	var evidence []json.RawMessage
	for i, b := range messageBlocks(j.blocks) {
		evidence = append(evidence, withBlockID(b, fmt.Sprintf("%s%d", blockMsg, i)))
	}
	if err := blocks.UnmarshalJSON(rawArray(evidence)); err != nil {
		return goslack.ModalViewRequest{}, fmt.Errorf("copy the message's blocks: %w", err)
	}
	blocks.BlockSet = append(blocks.BlockSet,
		goslack.NewDividerBlock(),
		goslack.NewSectionBlock(goslack.NewTextBlockObject(goslack.MarkdownType, truncate("*What follows*\n"+esc(p.Follows), maxSection), false, false), nil, nil),
		goslack.NewContextBlock("", goslack.NewTextBlockObject(goslack.MarkdownType,
			"Recorded in sentinel's audit log as *"+esc(j.d.By)+"*.", false, false)),
	)
	input := goslack.NewPlainTextInputBlockElement(goslack.NewTextBlockObject(goslack.PlainTextType, "What was checked, and by whom", false, false), actionReason)
	input.Multiline, input.MinLength, input.MaxLength = true, 1, maxReason
	blocks.BlockSet = append(blocks.BlockSet, goslack.NewInputBlock(blockReason,
		goslack.NewTextBlockObject(goslack.PlainTextType, "Reason (required)", false, false), nil, input))
	return goslack.ModalViewRequest{
		Type:            goslack.VTModal,
		Title:           goslack.NewTextBlockObject(goslack.PlainTextType, title, false, false),
		Submit:          goslack.NewTextBlockObject(goslack.PlainTextType, submit, false, false),
		Close:           goslack.NewTextBlockObject(goslack.PlainTextType, "Cancel", false, false),
		Blocks:          blocks,
		PrivateMetadata: string(meta),
		CallbackID:      callback,
	}, nil
}

// decided updates the message in place: its evidence stays, the buttons
// give way to who decided what, when and why.
func (in *Interactions) decided(ctx context.Context, j job, out Outcome) {
	if j.channel == "" || j.ts == "" {
		return
	}
	who := esc(j.d.By)
	if userRE.MatchString(j.user.ID) {
		who = "<@" + j.user.ID + ">" // Slack shows the person's name
	}
	line := fmt.Sprintf(":white_check_mark: *%s* by %s at %s", esc(sentence(out.Done)), who, in.cfg.Now().UTC().Format(timeLayout))
	if j.d.Reason != "" {
		line += "\n*Why* " + esc(whole(j.d.Reason))
	}
	raw := append(messageBlocks(j.blocks), blockJSON(goslack.NewSectionBlock(
		goslack.NewTextBlockObject(goslack.MarkdownType, truncate(line, maxSection), false, false), nil, nil,
		goslack.SectionBlockOptionBlockID(blockDecided))))
	var blocks goslack.Blocks
	if err := blocks.UnmarshalJSON(rawArray(raw)); err != nil {
		in.log.Error("slack message not updated", "subaccount", j.d.Subaccount, "err", err)
		return
	}
	text := sentence(out.Done) + " by " + j.d.By
	if _, _, _, err := in.api.UpdateMessageContext(ctx, j.channel, j.ts,
		goslack.MsgOptionText(esc(text), false), goslack.MsgOptionBlocks(blocks.BlockSet...)); err != nil {
		// Done all the same; the thread hears it through the outbox.
		in.log.Warn("slack message not updated after a decision", "subaccount", j.d.Subaccount, "err", in.red.redact(err.Error()))
	}
}

// rawBlocks is blocks as JSON, one element per block.
func rawBlocks(b goslack.Blocks) []json.RawMessage {
	if len(b.BlockSet) == 0 {
		return nil
	}
	js, err := json.Marshal(b.BlockSet)
	if err != nil {
		return nil
	}
	var out []json.RawMessage
	if json.Unmarshal(js, &out) != nil {
		return nil
	}
	return out
}

// messageBlocks is a message's blocks without its buttons, their note or
// an earlier decision.
func messageBlocks(blocks []json.RawMessage) []json.RawMessage {
	var out []json.RawMessage
	for _, b := range blocks {
		switch blockID(b) {
		case blockDecide, blockNote, blockDecided:
			continue
		}
		out = append(out, b)
	}
	return out
}

func blockID(b json.RawMessage) string {
	var v struct {
		BlockID string `json:"block_id"`
	}
	json.Unmarshal(b, &v) //nolint:errcheck // "" for anything else
	return v.BlockID
}

// withBlockID returns block b with its block_id set to id.
func withBlockID(b json.RawMessage, id string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	m["block_id"], _ = json.Marshal(id)
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

func rawArray(bs []json.RawMessage) []byte {
	if bs == nil {
		bs = []json.RawMessage{}
	}
	b, _ := json.Marshal(bs) // raw messages that came from JSON
	return b
}

func blockJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v) // blocks built here: cannot fail
	return b
}

// redactor removes secrets from text that may quote them.
type redactor []string

func (r redactor) redact(s string) string {
	for _, secret := range r {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
