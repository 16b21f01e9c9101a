package poller

import (
	"context"
	"sync"
	"time"
)

// watchdog cancels a read that goes idle, a whole timeout without progress
// (a page read: see touch), and says whether it did.
type watchdog struct {
	timeout time.Duration
	cancel  func()

	mu      sync.Mutex
	timer   *time.Timer
	fired   bool
	touched bool // progress since the start
}

func newWatchdog(timeout time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{timeout: timeout, cancel: cancel}
	w.timer = time.AfterFunc(timeout, w.fire)
	return w
}

func (w *watchdog) fire() {
	w.mu.Lock()
	w.fired = true
	w.mu.Unlock()
	w.cancel()
}

// touch records progress: the read has another timeout.
func (w *watchdog) touch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.fired {
		w.touched = true
		w.timer.Reset(w.timeout)
	}
}

// progressing reports whether the read has made progress and is not
// cancelled as idle.
func (w *watchdog) progressing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.touched && !w.fired
}

// stop ends the watch and reports whether the read was cancelled as idle.
func (w *watchdog) stop() (fired bool) {
	w.timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

type touchKey struct{}

// withTouch returns ctx carrying f, which a read calls on progress.
func withTouch(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, touchKey{}, f)
}

// touch tells ctx's watchdog, if any, that the read made progress.
func touch(ctx context.Context) {
	if f, ok := ctx.Value(touchKey{}).(func()); ok {
		f()
	}
}
