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
}

// NewLogNotifier returns a LogNotifier. w may be nil: alerts are then only
// logged.
func NewLogNotifier(logger *slog.Logger, w io.Writer) *LogNotifier {
	return &LogNotifier{log: logger, w: w}
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
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, err := io.WriteString(n.w, text+"\n\n"); err != nil {
			return fmt.Errorf("notify %s: write: %w", ev.Kind, err)
		}
	}
	return nil
}
