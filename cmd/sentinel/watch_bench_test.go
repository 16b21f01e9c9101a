package main

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sentinel/internal/twiliofake"
)

// The watch benchmarks run the built binary with its default flags (only
// where to find Twilio, the database, the socket and the shipped policies
// are given) over a fleet of quiet subaccounts behind a fake that adds
// latency to every request, in real time, and measure from the fake's
// record of requests what Twilio would see. A run takes minutes.

// watchEvery is the watch the defaults promise: the longest any message
// log may go unread once the watch holds (-messages-schedule runs every
// 55s to keep it).
const watchEvery = time.Minute

// watchWorld is a fake of n quiet subaccounts: accounts with no traffic.
func watchWorld(b *testing.B, n int, opts twiliofake.Options) *world {
	b.Helper()
	opts.MaxRecorded = 1 << 20
	w := newWorld(b, opts)
	for i := range n {
		if _, err := w.fake.AddSubaccount(twiliofake.Account{FriendlyName: fmt.Sprintf("client-%04d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	return w
}

// startWatch starts the daemon on w with the default flags.
func startWatch(b *testing.B, w *world) (*proc, string) {
	b.Helper()
	p := w.start(b, w.args()...)
	return p, p.addr(b)
}

var (
	messagesPathRe = regexp.MustCompile(`^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$`)
	dailyPathRe    = regexp.MustCompile(`^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Usage/Records/Daily\.json$`)
	cyclesRe       = regexp.MustCompile(`(?m)^sentinel_poll_cycle_duration_seconds_count\{stream="messages"\} (\d+)$`)
)

// reads returns, by subaccount, the times its message log was read (a
// request answered 200), in the record's order, which is time order.
func reads(recs []twiliofake.Request, parent string) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, r := range recs {
		if m := messagesPathRe.FindStringSubmatch(r.Path); m != nil && m[1] != parent && r.Status == 200 {
			out[m[1]] = append(out[m[1]], r.At)
		}
	}
	return out
}

// covered reports whether every one of n subaccounts has a request
// matching re answered 200 in recs.
func covered(recs []twiliofake.Request, re *regexp.Regexp, parent string, n int) bool {
	seen := map[string]bool{}
	for _, r := range recs {
		if m := re.FindStringSubmatch(r.Path); m != nil && m[1] != parent && r.Status == 200 {
			seen[m[1]] = true
		}
	}
	return len(seen) >= n
}

// waitUntil polls cond every second for at most d.
func waitUntil(b *testing.B, p *proc, d time.Duration, what string, cond func() bool) time.Time {
	b.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case <-p.done:
			b.Fatalf("sentinel exited (%d) before %s:\n%s", p.code, what, p.stderr)
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not happen within %v", what, d)
		}
	}
	return time.Now()
}

// cycles returns how many messages cycles the daemon has completed.
func cycles(b *testing.B, addr string) int {
	b.Helper()
	_, body := get(b, "http://"+addr+"/metrics")
	m := cyclesRe.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// quietCycles waits for the end of the running messages cycle, then for k
// more, and returns the part of the fake's record they made.
func quietCycles(b *testing.B, w *world, p *proc, addr string, k int) []twiliofake.Request {
	b.Helper()
	c := cycles(b, addr)
	waitUntil(b, p, 3*watchEvery, "the end of a messages cycle", func() bool { return cycles(b, addr) > c })
	from := len(w.fake.Requests())
	c = cycles(b, addr)
	waitUntil(b, p, time.Duration(k+2)*watchEvery, fmt.Sprintf("%d more messages cycles", k), func() bool { return cycles(b, addr) >= c+k })
	return w.fake.Requests()[from:]
}

// gaps returns, over every subaccount, the longest time between two reads
// of its log at or after since, the reads after since more than watchEvery
// after the previous one, and whether every subaccount was read in
// [since, since+watchEvery].
func gaps(byAcct map[string][]time.Time, since time.Time, n int) (longest time.Duration, late int, onTime bool) {
	onTime = len(byAcct) >= n
	for _, ts := range byAcct {
		i, _ := slices.BinarySearchFunc(ts, since, func(t, s time.Time) int { return t.Compare(s) })
		if i == len(ts) || ts[i].Sub(since) > watchEvery {
			onTime = false
		}
		for j := i + 1; j < len(ts); j++ {
			d := ts[j].Sub(ts[j-1])
			longest = max(longest, d)
			if d > watchEvery {
				late++
			}
		}
	}
	return longest, late, onTime
}

// messageRequests counts recs' requests for subaccounts' message logs.
func messageRequests(recs []twiliofake.Request, parent string) int {
	n := 0
	for _, r := range recs {
		if m := messagesPathRe.FindStringSubmatch(r.Path); m != nil && m[1] != parent {
			n++
		}
	}
	return n
}

// BenchmarkQuietWatch2000 runs the daemon over 2,000 quiet subaccounts with
// 150ms added to every request. Once every message log has been read for
// the first time, each must be read again at least once per minute, also
// while the first usage backfill (7 days of each subaccount) is running,
// and a quiet cycle must cost at most 1.05 message requests per
// subaccount, from the fake's record.
//
// Metrics: first-pass-s (start to every log read once), usage-backfill-s
// (start to every subaccount's daily usage read), max-gap-s (the longest
// time between two reads of one log after its first, over the whole run,
// the usage backfill included), late-reads (reads more than a minute after
// the previous one), msg-req/sub/cycle (over two quiet cycles after the
// usage backfill).
func BenchmarkQuietWatch2000(b *testing.B) {
	const subs = 2000
	for b.Loop() {
		w := watchWorld(b, subs, twiliofake.Options{Latency: 150 * time.Millisecond})
		parent := w.fake.ParentSID()
		start := time.Now()
		p, addr := startWatch(b, w)
		firstPass := waitUntil(b, p, 5*time.Minute, "the first read of every log", func() bool {
			return covered(w.fake.Requests(), messagesPathRe, parent, subs)
		})
		usageDone := waitUntil(b, p, 15*time.Minute, "the usage backfill", func() bool {
			return covered(w.fake.Requests(), dailyPathRe, parent, subs)
		})
		quiet := quietCycles(b, w, p, addr, 2)
		if code := p.signal(b, syscall.SIGTERM, time.Minute); code != 0 {
			b.Fatalf("sentinel exited %d:\n%s", code, p.stderr)
		}

		byAcct := reads(w.fake.Requests(), parent)
		// Every log's gaps from its first read on.
		longest, late, _ := gaps(byAcct, time.Time{}, subs)
		perSub := float64(messageRequests(quiet, parent)) / (2 * subs)
		b.ReportMetric(firstPass.Sub(start).Seconds(), "first-pass-s")
		b.ReportMetric(usageDone.Sub(start).Seconds(), "usage-backfill-s")
		b.ReportMetric(longest.Seconds(), "max-gap-s")
		b.ReportMetric(float64(late), "late-reads")
		b.ReportMetric(perSub, "msg-req/sub/cycle")
		if late > 0 || testing.Verbose() {
			b.Log(timeline(w.fake.Requests(), start, 10*time.Second))
		}
		if late > 0 {
			b.Errorf("%d reads came more than %v after the previous read of the same log (longest gap %v)", late, watchEvery, longest)
		}
		if perSub > 1.05 {
			b.Errorf("a quiet cycle cost %.3f message requests per subaccount, want at most 1.05", perSub)
		}
		if usageDone.Before(firstPass.Add(watchEvery)) {
			b.Logf("the usage backfill ended %v after the first pass: too soon to show the watch holding during it", usageDone.Sub(firstPass))
		}
		if strings.Contains(p.stderr.String(), "level=ERROR") {
			b.Errorf("sentinel logged errors:\n%s", grepLines(p.stderr.String(), "level=ERROR"))
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// timeline tabulates recs in bins of width from start: requests for message
// logs, for usage, and 429s, to see where a watch that did not hold lost
// its time.
func timeline(recs []twiliofake.Request, start time.Time, width time.Duration) string {
	type bin struct{ msgs, usage, throttled, other, inFlight int }
	var bins []bin
	for _, r := range recs {
		i := int(r.At.Sub(start) / width)
		if i < 0 {
			continue
		}
		for len(bins) <= i {
			bins = append(bins, bin{})
		}
		bins[i].inFlight += r.InFlight
		switch {
		case r.Status == 429:
			bins[i].throttled++
		case messagesPathRe.MatchString(r.Path):
			bins[i].msgs++
		case strings.Contains(r.Path, "/Usage/"):
			bins[i].usage++
		default:
			bins[i].other++
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%8s %8s %8s %8s %8s %9s\n", "from", "messages", "usage", "429", "other", "in-flight")
	for i, b := range bins {
		n := max(1, b.msgs+b.usage+b.throttled+b.other)
		fmt.Fprintf(&sb, "%8v %8d %8d %8d %8d %9.1f\n", time.Duration(i)*width, b.msgs, b.usage, b.throttled, b.other, float64(b.inFlight)/float64(n))
	}
	return sb.String()
}

// BenchmarkThrottledWatch2000 runs the daemon over the same 2,000 quiet
// subaccounts while the account's other traffic holds 21 requests in
// flight (Twilio-Concurrent-Requests says so) and, for the first two
// minutes, the fake answers 429 to a fifth of all requests. With the
// default -concurrency-share of 0.25, sentinel may hold at most 7 requests
// beside those 21 (a quarter of the 28), fewer than -concurrency's 8: the
// fake's count of requests in flight must never exceed that. Two cycles
// after the 429s stop, the watch must hold again: every log read within a
// minute, and every minute after.
//
// Metrics: max-in-flight (the most of sentinel's requests the fake served
// at once), share-cap (7), throttled (429s answered), max-gap-s (the
// longest gap between two reads of a log from two cycles after the 429s
// stopped), late-reads (of those, more than a minute apart).
func BenchmarkThrottledWatch2000(b *testing.B) {
	const subs, background = 2000, 21
	const throttled = 2 * time.Minute
	shareCap := int(0.25 / 0.75 * background)
	for b.Loop() {
		w := watchWorld(b, subs, twiliofake.Options{Latency: 150 * time.Millisecond, ReportConcurrency: true})
		w.fake.SetBackground(background)
		parent := w.fake.ParentSID()
		fault := w.fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultTooManyRequests, Rate: 0.2, Seed: 1})
		start := time.Now()
		p, addr := startWatch(b, w)
		time.Sleep(throttled - time.Since(start))
		w.fake.RemoveFault(fault)
		stopped := time.Now()
		waitUntil(b, p, 10*time.Minute, "the first read of every log", func() bool {
			return covered(w.fake.Requests(), messagesPathRe, parent, subs)
		})
		// Two cycles after the 429s stopped, and two more to watch.
		holds := stopped.Add(2 * watchEvery)
		time.Sleep(time.Until(holds))
		quietCycles(b, w, p, addr, 2)
		if code := p.signal(b, syscall.SIGTERM, time.Minute); code != 0 {
			b.Fatalf("sentinel exited %d:\n%s", code, p.stderr)
		}

		recs := w.fake.Requests()
		longest, late, onTime := gaps(reads(recs, parent), holds, subs)
		st := w.fake.Stats()
		b.ReportMetric(float64(st.MaxInFlight), "max-in-flight")
		b.ReportMetric(float64(shareCap), "share-cap")
		b.ReportMetric(float64(st.ByStatus[429]), "throttled")
		b.ReportMetric(longest.Seconds(), "max-gap-s")
		b.ReportMetric(float64(late), "late-reads")
		if st.MaxInFlight > shareCap {
			b.Errorf("sentinel had %d requests in flight beside %d of the account's own; its share allows %d", st.MaxInFlight, background, shareCap)
		}
		if late > 0 || !onTime {
			b.Log(timeline(recs, start, 10*time.Second))
			b.Errorf("two cycles after the 429s stopped, the watch did not hold: every log read in the minute after: %v; %d reads more than %v apart (longest %v)",
				onTime, late, watchEvery, longest)
		}
	}
}
