package slack

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// posterFunc is a Poster made of a function, for tests that need no HTTP.
type posterFunc func(ctx context.Context, m Message, thread string) (string, error)

func (f posterFunc) Post(ctx context.Context, m Message, thread string) (string, error) {
	return f(ctx, m, thread)
}

// A restarted dispatcher must try the oldest alert as soon as the previous
// process said it may, not at the next poll 30s later.
func TestRunRetriesWhenDueAfterRestart(t *testing.T) {
	for _, tt := range []struct {
		name  string
		leave func(ob *memOutbox, id uint64, at time.Time) error
	}{
		{"alert deferred", func(ob *memOutbox, id uint64, at time.Time) error {
			return ob.Retry(id, at, "post webhook: slack answered 503 Service Unavailable")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ob := newOutbox()
				b, err := Encode(suspendedEvent())
				if err != nil {
					t.Fatal(err)
				}
				// What the previous process left: an alert due again in 5s.
				now := time.Now()
				id, _ := ob.Enqueue(b, now.Add(-time.Minute))
				if err := tt.leave(ob, id, now.Add(5*time.Second)); err != nil {
					t.Fatal(err)
				}
				var posts atomic.Int32
				p := posterFunc(func(context.Context, Message, string) (string, error) {
					posts.Add(1)
					return "", nil
				})
				logger, _ := newLogger()
				d, err := NewDispatcher(ob, p, nil, logger, Options{}) // polls every 30s
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- d.Run(ctx) }()

				time.Sleep(4 * time.Second)
				synctest.Wait()
				if n := posts.Load(); n != 0 {
					t.Errorf("%d posts before the alert was due", n)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				if n := posts.Load(); n != 1 {
					t.Errorf("%d posts when the alert became due, want 1", n)
				}
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
			})
		})
	}
}
