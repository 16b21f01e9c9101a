package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

// ReloaderConfig configures a Reloader.
type ReloaderConfig struct {
	// Dir is the policy directory, as for Load.
	Dir string
	// Interval is how often the directory's files are compared with what was
	// last loaded (by content hash, so editors that keep mtimes and atomic
	// renames are both seen), besides the file notifications that make a
	// change take effect within Settle. The poll only catches what
	// notifications miss (some network file systems send none). 0 means
	// 30s; negative disables polling.
	Interval time.Duration
	// Settle is how long the directory must be quiet after a notification
	// before it is loaded: an editor's save is several events, and a
	// half-written file would be rejected for nothing. 0 means 500ms.
	Settle time.Duration
	// NoWatch disables file notifications (tests of the poll alone).
	NoWatch bool
	// Trigger forces a reload, changed or not (main turns SIGHUP into a
	// send). May be nil.
	Trigger <-chan struct{}
	// Registerer receives the reload metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger reports reloads and rejected policies; nil discards.
	Logger *slog.Logger
	// OnReload, when set, is called after every reload attempt from Run's
	// goroutine: with the new Set, or with the error while the old Set stays
	// current.
	OnReload func(*Set, error)
	// Now is the clock for the last-success metric; nil means time.Now.
	Now func() time.Time
	// Validate, when set, checks a loaded Set against what the daemon can
	// do (Set.FitsRetention): a Set it rejects is rejected like an invalid
	// one, at start-up and on reload.
	Validate func(*Set) error
}

// Reloader keeps the current policy Set, replacing it atomically when the
// directory changes and the new policies are valid. Invalid policies are
// rejected and the old Set keeps running.
type Reloader struct {
	cfg      ReloaderConfig
	current  atomic.Pointer[Set]
	mu       sync.Mutex // serialises reloads and guards lastHash
	lastHash [sha256.Size]byte

	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// NewReloader loads the policies in cfg.Dir and returns a Reloader holding
// them. It fails, with the *LoadError, when they are invalid: a daemon
// should not start without valid policies.
func NewReloader(cfg ReloaderConfig) (*Reloader, error) {
	if cfg.Dir == "" {
		return nil, errors.New("new policy reloader: no directory")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Settle == 0 {
		cfg.Settle = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reloader{
		cfg: cfg,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sentinel_policy_reload_total",
			Help: "Policy loads by result (ok: the new policies are in force; error: rejected, the old ones stay).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sentinel_policy_last_reload_success_timestamp_seconds",
			Help: "When policies were last loaded successfully, in Unix seconds.",
		}),
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.reloads, r.lastSuccess} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("new policy reloader: register metrics: %w", err)
			}
		}
	}
	hash, _ := dirHash(cfg.Dir)
	set, err := r.load()
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	r.lastHash = hash
	r.store(set)
	return r, nil
}

// Current returns the policies in force. It is safe for concurrent use.
func (r *Reloader) Current() *Set { return r.current.Load() }

// Run watches the directory (file notifications, and a poll as a
// fallback) and serves triggers until ctx is done, then returns nil. A
// directory that cannot be watched is polled only, and says so in the log.
func (r *Reloader) Run(ctx context.Context) error {
	var tick <-chan time.Time
	if r.cfg.Interval > 0 {
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if !r.cfg.NoWatch {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(r.cfg.Dir)
		}
		if err != nil {
			r.cfg.Logger.Warn("policy directory not watched; changes are seen by polling only",
				"dir", r.cfg.Dir, "interval", r.cfg.Interval, "err", err)
		} else {
			defer w.Close()
			events, watchErrs = w.Events, w.Errors
		}
	}
	settle := time.NewTimer(0)
	if !settle.Stop() {
		<-settle.C
	}
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.cfg.Trigger:
			r.reload(true)
		case <-tick:
			r.reload(false)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if policyFile(filepath.Base(ev.Name)) {
				settle.Reset(r.cfg.Settle)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			r.cfg.Logger.Warn("watching the policy directory", "dir", r.cfg.Dir, "err", err)
		case <-settle.C:
			r.reload(false)
		}
	}
}

// policyFile reports whether name is a file Load reads.
func policyFile(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// reload loads the directory when forced or when its files changed since the
// last attempt, and reports whether it tried.
func (r *Reloader) reload(force bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Hash before loading: a change made while loading is seen next time.
	hash, err := dirHash(r.cfg.Dir)
	if !force && err == nil && hash == r.lastHash {
		return false
	}
	r.lastHash = hash
	set, err := r.load()
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.cfg.Logger.Error("policy reload rejected; the previous policies stay in force", "dir", r.cfg.Dir, "err", err)
	} else {
		r.store(set)
		r.cfg.Logger.Info("policies reloaded", "dir", r.cfg.Dir, "rules", len(set.rules))
	}
	if r.cfg.OnReload != nil {
		r.cfg.OnReload(set, err)
	}
	return true
}

// load loads and validates the directory.
func (r *Reloader) load() (*Set, error) {
	set, err := Load(r.cfg.Dir)
	if err == nil && r.cfg.Validate != nil {
		err = r.cfg.Validate(set)
	}
	if err != nil {
		return nil, err
	}
	return set, nil
}

func (r *Reloader) store(set *Set) {
	r.current.Store(set)
	r.reloads.WithLabelValues("ok").Inc()
	r.lastSuccess.Set(float64(r.cfg.Now().UnixNano()) / 1e9)
}

// dirHash hashes the names and contents of the policy files in dir, the
// files Load reads.
func dirHash(dir string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	entries, err := os.ReadDir(dir)
	if err != nil {
		return sum, err
	}
	var names []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return sum, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(data))
		h.Write(data)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
