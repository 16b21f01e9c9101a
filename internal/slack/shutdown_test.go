package slack

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	goslack "github.com/slack-go/slack"

	"sentinel/internal/slack/slackfake"
)

// TestShutdownCarriesOutAccepted: clicks acknowledged just before sentinel
// stops are carried out within the shutdown's grace, not dropped unseen: a
// person whose click Slack showed as taken is never left without the
// decision or a word.
func TestShutdownCarriesOutAccepted(t *testing.T) {
	fake := slackfake.New(slackfake.Options{BotToken: testToken})
	defer fake.Close()
	dec := newScriptDecider()
	dec.gate = make(chan struct{})
	in, err := NewInteractions(InteractionsConfig{BotToken: testToken, APIURL: fake.URL(), Deciders: []string{ana.ID}, Workers: 1},
		dec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	bot, err := NewClient(Config{BotToken: testToken, Channel: "#compliance", APIURL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { in.Run(ctx) })

	for i := range 3 {
		ev := suspendedEvent()
		ev.Kind, ev.Offer = KindFiring, OfferAlert
		ev.Opened = ev.Opened.Add(time.Duration(i) * time.Hour)
		ts, err := bot.Post(context.Background(), RenderInteractive(ev, in.Interactivity()), "")
		if err != nil {
			t.Fatal(err)
		}
		payload, err := fake.ClickPayload(ana, ts, actionAck)
		if err != nil {
			t.Fatal(err)
		}
		var cb goslack.InteractionCallback
		if err := json.Unmarshal(payload, &cb); err != nil {
			t.Fatal(err)
		}
		in.accept(cb)
	}
	// The first is under way (held in Decide), two wait; sentinel stops.
	waitFor(t, "the first decision under way", func() bool { return len(in.jobs) == 2 })
	cancel()
	close(dec.gate)
	wg.Wait()
	if decides, _ := dec.snapshot(); len(decides) != 3 || len(fake.Ephemerals()) != 0 {
		t.Errorf("%d of 3 accepted clicks carried out at shutdown, %d told; the rest were dropped unseen", len(decides), len(fake.Ephemerals()))
	}
}

// TestDroppedClickAudited: a click dropped because the queue is full is
// refused like any other: audited, and the person told.
func TestDroppedClickAudited(t *testing.T) {
	dec := newScriptDecider()
	in, err := NewInteractions(InteractionsConfig{BotToken: testToken, APIURL: "http://127.0.0.1:1/", Deciders: []string{ana.ID}, Queue: 1},
		dec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j := job{d: Decision{Action: DecideAck, Subaccount: "AC1", Rule: "r", Opened: t0}, user: goslack.User{ID: ana.ID}}
	in.enqueue(j)
	in.enqueue(j)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, refused := dec.snapshot()
		if len(refused) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusals audited %q, want the click that found the queue full", refused)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
