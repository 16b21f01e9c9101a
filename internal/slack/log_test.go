package slack

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestLogNotifier(t *testing.T) {
	logger, logs := newLogger()
	var out bytes.Buffer
	n := NewLogNotifier(logger, &out)
	ev := suspendedEvent()
	ev.Name = "Tom & Jerry <Ltd>"
	if err := n.Notify(context.Background(), ev); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	want := Text(ev) + "\n\n"
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	// Plain text for people at a terminal: no Slack escaping.
	if !strings.HasPrefix(out.String(), "[CRITICAL] Suspended: Tom & Jerry <Ltd> (AC0123456789abcdef0123456789abcdef)\n") {
		t.Errorf("printed %q", out.String())
	}
	log := logs.String()
	for _, want := range []string{
		`"level":"WARN","msg":"alert (slack not configured)","kind":"suspended","subaccount":"AC0123456789abcdef0123456789abcdef","rule":"carrier-filtering","action":"suspended"`,
		`sentinel -reinstate AC0123456789abcdef0123456789abcdef`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	if err := n.Notify(context.Background(), Event{Kind: "nope"}); err == nil {
		t.Error("an invalid event was accepted")
	}
}

func TestLogNotifierWithoutWriter(t *testing.T) {
	logger, logs := newLogger()
	if err := NewLogNotifier(logger, nil).Notify(context.Background(), Event{Kind: KindBlind, Detail: "polls failing"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"level":"INFO","msg":"alert (slack not configured)","kind":"blind"`) {
		t.Errorf("log: %s", logs.String())
	}
}
