package main

import (
	"strings"
	"testing"
	"time"

	"sentinel/internal/twiliofake"
)

// An operator runs -events-setup to point Twilio at sentinel, a command
// that prints what changed and exits. It must not become the daemon: that
// one would poll, judge and suspend, here the fleet's offender.
func TestEventsSetupIsNotTheDaemon(t *testing.T) {
	t.Parallel()
	w := newWorld(t, twiliofake.Options{})
	offender, _ := w.fleet(t, 2, true)
	d := startEnv(t, w.pushEnv(), append(w.secrets(), eventsPassword),
		w.args("-events-setup", "-events-url", eventsURL)...)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
	}
	if strings.Contains(d.stderr.String(), "sentinel started") {
		t.Errorf("-events-setup started the daemon:\n%s", d.stderr)
	}
	for _, sid := range statusPosts(w.fake, "suspended") {
		t.Errorf("-events-setup suspended %s (the offender is %s)", sid, offender)
	}
	select {
	case <-d.done:
	default:
		t.Errorf("-events-setup still running after 15 s")
	}
}
