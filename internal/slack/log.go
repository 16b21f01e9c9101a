package slack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// LogNotifier is the notifier when no Slack is configured: it writes each
// alert's plain text to w (a terminal, for demos) and logs it, warning and
// critical alerts at warning level. Nothing is queued: the log cannot be down.
type LogNotifier struct {
	log *slog.Logger
	mu  sync.Mutex // serializes writes to w
	w   io.Writer
	ia  Interactivity
}

// NewLogNotifier returns a LogNotifier. w may be nil: alerts are then only
// logged.
func NewLogNotifier(logger *slog.Logger, w io.Writer) *LogNotifier {
	return &LogNotifier{log: logger, w: w}
}

// WithButtons makes n print, under each alert written to w, the buttons
// (and their payloads) its Slack message would carry with ia: the demo
// shows what a click would send. It returns n.
func (n *LogNotifier) WithButtons(ia Interactivity) *LogNotifier {
	n.ia = ia
	return n
}

// Notify prints and logs ev. It refuses an invalid event, as Dispatcher.Notify
// does, so that a mistake shows in log-only runs as well.
func (n *LogNotifier) Notify(ctx context.Context, ev Event) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("notify %s: %w", ev.Kind, err)
	}
	text := Text(ev)
	level := slog.LevelInfo
	if ev.Severity == SeverityWarning || ev.Severity == SeverityCritical {
		level = slog.LevelWarn
	}
	n.log.Log(ctx, level, "alert (slack not configured)",
		"kind", ev.Kind, "subaccount", ev.Subaccount, "rule", ev.Rule, "action", ev.Action, "text", text)
	if n.w != nil {
		for _, b := range Buttons(ev, n.ia) {
			text += fmt.Sprintf("\n  button [%s] action_id=%s value=%s", b.Text, b.ActionID, b.Value)
		}
		if note := buttonNote(ev, n.ia); note != "" && len(Buttons(ev, n.ia)) > 0 {
			text += "\n  " + note
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, err := io.WriteString(n.w, text+"\n\n"); err != nil {
			return fmt.Errorf("notify %s: write: %w", ev.Kind, err)
		}
	}
	return nil
}
