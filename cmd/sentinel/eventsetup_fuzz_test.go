package main

import (
	"io"
	"net/url"
	"strings"
	"testing"

	"sentinel/internal/twilioapi"
)

// FuzzSinkJudgement feeds -events-setup's judgement of a sink what Twilio
// might answer: it must not panic, must call a sink right only when it is a
// POST, batched webhook to -events-url with sentinel's credentials (shown,
// or fingerprinted where hidden), and must never print a password it was
// shown.
func FuzzSinkJudgement(f *testing.F) {
	cfg := &config{eventsURL: "https://sentinel.example.com", eventsUsername: "twilio", eventsPassword: "s3cret/push+pass:word!", authToken: strings.Repeat("t", 32)}
	want, err := wantedSink(cfg)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct{ typ, dest, method, desc string }{
		{"webhook", want.destination(), "POST", ""},
		{"webhook", "https://sentinel.example.com/twilio/events", "post", want.description()},
		{"webhook", "https://twilio:****@SENTINEL.example.com:443/twilio/events/", "POST", want.description()},
		{"webhook", "https://twilio:other@sentinel.example.com/twilio/events", "POST", want.description()},
		{"webhook", "https://sentinel.example.com/elsewhere", "GET", pushDescription},
		{"webhook", "http://[::1", "POST", ""},
		{"kinesis", "", "", ""},
	} {
		f.Add(seed.typ, seed.dest, seed.method, seed.desc, true)
	}
	s := &setup{want: want, stdout: io.Discard, stderr: io.Discard}
	f.Fuzz(func(t *testing.T, typ, dest, method, desc string, batch bool) {
		sk := twilioapi.Sink{SID: "DG" + strings.Repeat("0", 32), Type: typ, Destination: dest, Method: method, Description: desc, Batch: batch}
		ours, problems := s.problems(sk, want)
		if ours && len(problems) == 0 {
			u, err := url.Parse(dest)
			if err != nil || typ != "webhook" || !strings.EqualFold(method, "POST") || !batch || !sameEndpoint(u, want.endpoint) {
				t.Fatalf("%+v judged right", sk)
			}
			pass, shown := u.User.Password()
			if shown && strings.Trim(pass, "*") != "" && pass != want.pass {
				t.Fatalf("%+v judged right with another password", sk)
			}
		}
		out := redacted(dest)
		if u, err := url.Parse(dest); err == nil && u.User != nil {
			if pass, ok := u.User.Password(); ok && len(pass) > 3 && strings.Contains(out, pass) && !strings.Contains(u.Host+u.Path, pass) {
				t.Fatalf("redacted(%q) = %q shows the password", dest, out)
			}
		}
	})
}
