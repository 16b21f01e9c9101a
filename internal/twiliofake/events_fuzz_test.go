package twiliofake

import (
	"encoding/json"
	"net/url"
	"testing"
)

// FuzzSinkConfiguration checks that no SinkConfiguration makes the parser
// panic, that what it refuses is Twilio's 400, and that an accepted one
// reads back the same from the sink_configuration the API shows.
func FuzzSinkConfiguration(f *testing.F) {
	for _, seed := range []struct{ typ, raw string }{
		{"webhook", `{"destination":"https://u:p@h.example/twilio/events","method":"POST","batch_events":true}`},
		{"webhook", `{"destination":"http://h.example","method":"get"}`},
		{"webhook", `{"destination":"https://h.example/e","method":"POST","batch_events":"true"}`},
		{"webhook", `{"destination":"/relative","method":"POST"}`},
		{"webhook", `{"destination":"https://h.example/e","method":"POST","extra":{"a":[1]}}`},
		{"webhook", `null`},
		{"webhook", `[]`},
		{"kinesis", `{"arn":"a","role_arn":"r","external_id":"x"}`},
		{"segment", `{"write_key":1}`},
		{"email", `{}`},
	} {
		f.Add(seed.typ, seed.raw)
	}
	f.Fuzz(func(t *testing.T, typ, raw string) {
		sk := Sink{Type: typ}
		if e := parseSinkConfig(typ, raw, &sk); e != nil {
			if e.Status != 400 || e.Code != 70002 {
				t.Fatalf("error %+v, want 400/70002", e)
			}
			return
		}
		if typ == "webhook" {
			u, err := url.Parse(sk.Destination)
			if err != nil || u.Host == "" || (sk.Method != "POST" && sk.Method != "GET") {
				t.Fatalf("accepted destination %q method %q", sk.Destination, sk.Method)
			}
		}
		shown, err := json.Marshal(sk.configJSON(false))
		if err != nil {
			t.Fatalf("sink_configuration does not marshal: %v", err)
		}
		again := Sink{Type: typ}
		if e := parseSinkConfig(typ, string(shown), &again); e != nil {
			t.Fatalf("the shown configuration %s is refused: %v", shown, e)
		}
		if again.Destination != sk.Destination || again.Method != sk.Method || again.BatchEvents != sk.BatchEvents {
			t.Fatalf("%s reads back as %+v, want %+v", shown, again, sk)
		}
	})
}

// FuzzTypes checks a subscription's Types parser: what it accepts is a
// known type with a schema version in range, refused ones are 400s.
func FuzzTypes(f *testing.F) {
	for _, seed := range []string{
		`{"type":"com.twilio.messaging.message.sent"}`,
		`{"type":"com.twilio.messaging.message.sent","schema_version":3}`,
		`{"type":"com.twilio.messaging.inbound-message.received","schema_version":0}`,
		`{"type":"com.twilio.messaging.message.sent","schema_version":1e3}`,
		`{"type":"x"}`, `"com.twilio.messaging.message.sent"`, `{}`, `{"type":null}`, `[`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		types, e := parseTypes([]string{v})
		if e != nil {
			if e.Status != 400 || e.Code != 70002 {
				t.Fatalf("error %+v, want 400/70002", e)
			}
			return
		}
		for typ, version := range types {
			et, ok := eventTypes[typ]
			if !ok || version < 0 || version > et.latest {
				t.Fatalf("accepted %q version %d", typ, version)
			}
		}
	})
}
