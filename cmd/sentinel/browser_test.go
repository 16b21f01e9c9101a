package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"sentinel/internal/backtest"
)

// chromium is Debian's Chromium, which make test installs (.ci/tools
// chromium) when it runs as root.
const chromium = "/usr/bin/chromium"

// rendered is what a browser made of a page.
type rendered struct {
	Title string
	// Charts counts the charts (svg.chart) by subaccount (data-sid).
	Charts map[string]int
	// Histograms counts the fleet histograms (svg.histogram).
	Histograms int
	// Errors are the console errors, uncaught exceptions and browser log
	// errors the page caused; Requests the URLs it asked for.
	Errors, Requests []string
}

// render opens the HTML file at path in a headless Chromium of its own,
// started with a fresh profile and without any of its background network
// traffic, and reports what it rendered, logged and fetched. The test
// skips when Chromium is not installed.
func render(t *testing.T, path string) rendered {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s (make test installs it as root through .ci/tools chromium): the browser check is skipped", chromium)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	url := "file://" + abs
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	defer cancelAlloc()
	var mu sync.Mutex
	var r rendered
	bctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			r.Requests = append(r.Requests, ev.Request.URL)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				r.Errors = append(r.Errors, fmt.Sprintf("console.%s", ev.Type))
			}
		case *runtime.EventExceptionThrown:
			r.Errors = append(r.Errors, "exception: "+ev.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError || ev.Entry.Level == cdplog.EntryLevelWarning {
				r.Errors = append(r.Errors, fmt.Sprintf("%s: %s", ev.Entry.Level, ev.Entry.Text))
			}
		}
	}))
	defer cancelTab()
	enable := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return err
	})
	if err := chromedp.Do(bctx, enable, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s in Chromium: %v", path, err)
	}
	if r.Title, err = chromedp.Run(bctx, chromedp.Title()); err != nil {
		t.Fatal(err)
	}
	sids, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg.chart')].map(s => s.dataset.sid)`))
	if err != nil {
		t.Fatal(err)
	}
	r.Charts = map[string]int{}
	for _, sid := range sids {
		r.Charts[sid]++
	}
	if r.Histograms, err = chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.histogram').length`)); err != nil {
		t.Fatal(err)
	}
	// Every chart is laid out: a page that failed to render has none.
	empty, err := chromedp.Run(bctx, chromedp.Evaluate[int](`[...document.querySelectorAll('svg.chart, svg.histogram')].filter(s => s.getBoundingClientRect().width < 100).length`))
	if err != nil {
		t.Fatal(err)
	}
	if empty > 0 {
		t.Errorf("%d charts are not laid out", empty)
	}
	mu.Lock()
	defer mu.Unlock()
	var others []string
	for _, u := range r.Requests {
		if u != url {
			others = append(others, u)
		}
	}
	r.Requests = others
	return r
}

// TestReportsInBrowser opens -backtest -html's and -explain -html's pages
// in Chromium: they render, with a chart for every subaccount for which a
// rule fired, without an error, without fetching anything, a hostile
// friendly name shown and not run.
func TestReportsInBrowser(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s (make test installs it as root through .ci/tools chromium): the browser check is skipped", chromium)
	}
	w, acme, bravo := backtestWorld(t)
	for range 2 {
		if r := w.run(t, w.args("-once")...); r.code != 0 {
			t.Fatalf("-once: %s", r)
		}
	}
	page := filepath.Join(w.dir, "backtest.html")
	r := w.run(t, w.args("-backtest", "-json", "-from", "-2h", "-html", page)...)
	if r.code != 0 {
		t.Fatalf("-backtest -html: %s", r)
	}
	var rep backtest.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(page); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the report file: %v, %v; want one only its owner reads", fi, err)
	}
	got := render(t, page)
	if !strings.HasPrefix(got.Title, "sentinel backtest") {
		t.Errorf("title %q", got.Title)
	}
	var firing []string
	for _, s := range rep.Subaccounts {
		firing = append(firing, s.SID)
		if got.Charts[s.SID] == 0 {
			t.Errorf("no chart for %s, for which %d rules fired", s.SID, len(s.Rules))
		}
	}
	sort.Strings(firing)
	if want := []string{min(acme, bravo), max(acme, bravo)}; !slices.Equal(firing, want) {
		t.Errorf("subaccounts that fired: %v, want %v", firing, want)
	}
	if len(got.Charts) != len(rep.Subaccounts) || got.Histograms != len(rep.Fleet) || got.Histograms == 0 {
		t.Errorf("charts of %d subaccounts, %d histograms; want %d and %d", len(got.Charts), got.Histograms, len(rep.Subaccounts), len(rep.Fleet))
	}
	if len(got.Errors) > 0 || len(got.Requests) > 0 {
		t.Errorf("the page logged %q and fetched %q", got.Errors, got.Requests)
	}
	html, _ := os.ReadFile(page)
	if !strings.Contains(string(html), "&lt;img src=x onerror=alert(1)&gt;bravo") {
		t.Error("the hostile friendly name is not shown, escaped")
	}

	explained := filepath.Join(w.dir, "explain.html")
	if r := w.run(t, w.args("-explain", acme, "-html", explained)...); r.code != 0 {
		t.Fatalf("-explain -html: %s", r)
	}
	got = render(t, explained)
	if got.Charts[acme] == 0 || len(got.Errors) > 0 || len(got.Requests) > 0 {
		t.Errorf("-explain's page: %d charts, logged %q, fetched %q", got.Charts[acme], got.Errors, got.Requests)
	}
}

// TestBrowserCheckSees: the browser check itself sees a request, a script
// error and a console error, so that its silence about the reports means
// something.
func TestBrowserCheckSees(t *testing.T) {
	t.Parallel()
	page := filepath.Join(t.TempDir(), "bad.html")
	bad := `<!doctype html><title>bad</title><img src="x.png"><script>console.error("boom"); undefinedFunction();</script>`
	if err := os.WriteFile(page, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	got := render(t, page)
	if len(got.Requests) == 0 || !strings.HasSuffix(got.Requests[0], "/x.png") {
		t.Errorf("requests %q, want the image", got.Requests)
	}
	if len(got.Errors) < 2 {
		t.Errorf("errors %q, want the console error and the exception", got.Errors)
	}
}
