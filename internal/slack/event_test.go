package slack

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, ev := range []Event{
		suspendedEvent(),
		{Kind: KindPolicyRejected, Severity: SeverityWarning, Detail: "policies/x.yaml: line 3: unknown field", At: t0},
		{Kind: KindBlind},
	} {
		b, err := Encode(ev)
		if err != nil {
			t.Fatalf("Encode(%s): %v", ev.Kind, err)
		}
		got, err := DecodeEvent(b)
		if err != nil {
			t.Fatalf("DecodeEvent(%s): %v", b, err)
		}
		if diff := cmp.Diff(ev, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	for name, ev := range map[string]Event{
		"no kind":       {},
		"unknown kind":  {Kind: "exploded"},
		"bad severity":  {Kind: KindFiring, Severity: "apocalyptic"},
		"bad unit":      {Kind: KindFiring, Unit: "furlongs"},
		"too big to go": {Kind: KindFiring, Detail: strings.Repeat("x", maxPayload)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Encode(ev); err == nil {
				t.Errorf("Encode accepted %s", name)
			}
		})
	}
}

func TestDecodeEventMalformed(t *testing.T) {
	tests := []struct {
		name, payload, want string
	}{
		{"empty", ``, "bad outbox payload: unexpected end of JSON input"},
		{"not json", `{not json`, "bad outbox payload: invalid character 'n' looking for beginning of object key string"},
		{"trailing garbage", `{"v":1,"event":{"kind":"firing"}} x`, "bad outbox payload: invalid character 'x' after top-level value"},
		{"array", `[1,2]`, "bad outbox payload: json: cannot unmarshal array into Go value of type slack.envelope"},
		{"no version", `{"event":{"kind":"firing"}}`, "bad outbox payload: version 0, want 1"},
		{"newer version", `{"v":2,"event":{"kind":"firing"}}`, "bad outbox payload: version 2, want 1"},
		{"unknown kind", `{"v":1,"event":{"kind":"exploded"}}`, `bad outbox payload: event kind "exploded" unknown`},
		{"bad severity", `{"v":1,"event":{"kind":"firing","severity":"x"}}`, `bad outbox payload: event severity "x" unknown`},
		{"wrong type", `{"v":1,"event":{"kind":"firing","value":"12%"}}`, "bad outbox payload: json: cannot unmarshal string into Go struct field Event.event.value of type float64"},
		{"bad time", `{"v":1,"event":{"kind":"firing","at":"yesterday"}}`, `bad outbox payload: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
		{"too big", `{"v":1,"event":{"kind":"firing","detail":"` + strings.Repeat("x", maxPayload) + `"}}`, "bad outbox payload: 65581 bytes, more than 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(tt.payload))
			if err == nil {
				t.Fatal("DecodeEvent accepted it")
			}
			if !errors.Is(err, ErrPayload) {
				t.Errorf("error %v does not wrap ErrPayload", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// FuzzDecodeEvent feeds the outbox decoder what a damaged disk might hold.
// It must not panic; what it accepts must survive a round trip, and its
// rendering must never carry a raw '<' or '>' (which would let an outside
// string mention @channel or forge a link).
func FuzzDecodeEvent(f *testing.F) {
	for _, ev := range []Event{suspendedEvent(), {Kind: KindBlind, Name: "<!channel> & co", Detail: "a\nb"}} {
		b, err := Encode(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"event":{"kind":"reminder","opened":"2026-01-01T00:00:00Z","at":"2026-01-01T04:00:00+02:00","subaccount":"AC1","rule":"r"}}`))
	f.Add([]byte(`{"v":1,"event":{"kind":"firing","unit":"ratio","value":1e308,"threshold":-0,"examples":["","\u2028","<x>"]}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEvent(b)
		if err != nil {
			if !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v does not wrap ErrPayload", err)
			}
			return
		}
		again, err := Encode(ev)
		if err != nil {
			if strings.Contains(err.Error(), "more than") {
				return // escaping can make a payload near the limit grow past it
			}
			t.Fatalf("Encode of a decoded event: %v", err)
		}
		ev2, err := DecodeEvent(again)
		if err != nil {
			t.Fatalf("DecodeEvent of a re-encoded event: %v\n%s", err, again)
		}
		if diff := cmp.Diff(ev, ev2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		m := Render(ev)
		for _, s := range append(blockTexts(t, mustJSON(t, m.Blocks)), m.Text) {
			if strings.ContainsAny(s, "<>") {
				t.Fatalf("rendered text holds raw < or >: %q", s)
			}
		}
		if lines := strings.Count(Text(ev), "\n"); lines > 12 {
			t.Fatalf("Text has %d lines: an outside string broke a line", lines)
		}
	})
}

func TestEventIncident(t *testing.T) {
	ev := suspendedEvent()
	if !ev.incident() {
		t.Error("a suspension with subaccount, rule and opened is not part of an incident")
	}
	ev.Opened = time.Time{}
	if ev.incident() {
		t.Error("an event without Opened is part of an incident")
	}
}
