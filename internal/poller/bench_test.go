package poller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
	"golang.org/x/sync/errgroup"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
	"sentinel/internal/twilioapi"
	"sentinel/internal/twiliofake"
)

// heapMB returns the live heap after a GC, in MiB.
func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}

// writtenMB returns the bytes this process has caused to be written to
// storage (Linux /proc/self/io write_bytes) in MiB, or -1 where unknown.
func writtenMB() float64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return float64(n) / (1 << 20)
		}
	}
	return -1
}

// liveMB returns the heap marked live by the last GC, in MiB.
func liveMB() float64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	return float64(s[0].Value.Uint64()) / (1 << 20)
}

// peakHeap samples the heap every 10ms until stop is called, and returns
// the highest heap in use (MemStats.HeapInuse: live objects, garbage not yet
// swept and fragmentation) and the highest live heap (as marked by the last
// GC, which is what the cycle retains) in MiB.
func peakHeap() (stop func() (inuse, live float64)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var peak, peakLive uint64
	sample := []rtmetrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	read := func() {
		rtmetrics.Read(sample)
		peak = max(peak, sample[0].Value.Uint64()+sample[1].Value.Uint64())
		peakLive = max(peakLive, sample[2].Value.Uint64())
	}
	read()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() (float64, float64) {
		close(done)
		wg.Wait()
		read()
		return float64(peak) / (1 << 20), float64(peakLive) / (1 << 20)
	}
}

// benchFleet starts a fake with n subaccounts of perAccount messages each,
// generated inside the default backfill window before t0, and returns it
// with the subaccount SIDs and the heap it takes in MiB.
func benchFleet(b *testing.B, clk *clock, n, perAccount int, latency time.Duration) (*twiliofake.Server, []string, float64) {
	b.Helper()
	before := heapMB()
	fake := twiliofake.New(twiliofake.Options{Now: clk.Now, Seed: 7, Latency: latency})
	sids := make([]string, 0, n)
	for i := range n {
		a, err := fake.AddSubaccount(twiliofake.Account{})
		if err != nil {
			b.Fatal(err)
		}
		sids = append(sids, a.SID)
		if perAccount == 0 {
			continue
		}
		_, err = fake.Generate(twiliofake.Traffic{AccountSID: a.SID, N: perAccount, From: t0.Add(-20 * time.Hour), To: t0,
			Seed: uint64(i), Inbound: 0.1, OptOut: 0.1, Failed: 0.05, Unbilled: 0.02, Recipients: 5000})
		if err != nil {
			b.Fatal(err)
		}
	}
	fake.Start()
	b.Cleanup(fake.Close)
	return fake, sids, heapMB() - before
}

// benchPoller returns a Poller on the fake with a fresh store, wired as
// the daemon wires it: numbers hashed for the consent records.
func benchPoller(b *testing.B, fake *twiliofake.Server, clk *clock, concurrency int) (*Poller, *store.Store) {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	key, err := st.PeerKey()
	if err != nil {
		b.Fatal(err)
	}
	peers, err := traffic.NewPeers(key)
	if err != nil {
		b.Fatal(err)
	}
	tw, err := twilioapi.New(twilioapi.Config{BaseURL: fake.URL(), AccountSID: fake.ParentSID(), AuthToken: fake.ParentToken(), Peers: peers})
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{Parent: fake.ParentSID(), Concurrency: concurrency}, tw, st, nil,
		slog.New(slog.NewTextHandler(io.Discard, nil)), clk.Now)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Accounts(context.Background()); err != nil {
		b.Fatal(err)
	}
	return p, st
}

// floor pages every account's log from since with twilio-go alone, as
// sentinel's first cycle does (same page size, filter and concurrency), and
// decodes the pages without converting or storing anything. It returns the
// messages read.
func floor(b *testing.B, fake *twiliofake.Server, accts []string, since time.Time, concurrency int) int64 {
	b.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency
	defer tr.CloseIdleConnections()
	base, _ := url.Parse(fake.URL())
	c := &client.Client{
		Credentials: client.NewCredentials(fake.ParentSID(), fake.ParentToken()),
		HTTPClient:  &http.Client{Transport: rewrite{base: base, next: tr}},
	}
	c.SetAccountSid(fake.ParentSID())
	api := openapi.NewApiService(&client.RequestHandler{Client: c})
	day := since.UTC().Truncate(24 * time.Hour)

	var n atomic.Int64
	var g errgroup.Group
	g.SetLimit(concurrency)
	for _, sid := range accts {
		g.Go(func() error {
			params := (&openapi.ListMessageParams{}).SetPathAccountSid(sid).SetPageSize(1000).SetDateSentAfter(day)
			token, page := "", ""
			for {
				resp, err := api.PageMessage(params, token, page)
				if err != nil {
					return fmt.Errorf("%s: %w", sid, err)
				}
				n.Add(int64(len(resp.Messages)))
				if resp.NextPageUri == nil {
					return nil
				}
				u, err := url.Parse(*resp.NextPageUri)
				if err != nil {
					return err
				}
				token, page = u.Query().Get("PageToken"), u.Query().Get("Page")
			}
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return n.Load()
}

// timeFloor times one floor run and checks it read every message.
func timeFloor(b *testing.B, fake *twiliofake.Server, accts []string, since time.Time, concurrency int, total int64) time.Duration {
	b.Helper()
	start := time.Now()
	if got := floor(b, fake, accts, since, concurrency); got < total {
		b.Fatalf("floor read %d messages, want at least %d", got, total)
	}
	return time.Since(start)
}

// rewrite sends every request to base, as twilio-go has no base URL.
type rewrite struct {
	base *url.URL
	next http.RoundTripper
}

func (rt rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = rt.base.Scheme, rt.base.Host, ""
	return rt.next.RoundTrip(r)
}

// BenchmarkIngestFirstCycle measures sentinel's first Messages cycle over
// 200 subaccounts of 5,000 messages each (a million messages inside the
// backfill window) with the default settings (-concurrency 8) into a fresh
// store, against the floor: the same pages fetched and decoded by twilio-go
// alone, 8 at a time.
//
// Metrics: msgs/s (sentinel), floor-msgs/s, x-floor (sentinel time / floor
// time; target at most 1.3), peak-heap-MB (highest live heap during sentinel's
// cycle, fake included: the fake lives in this process), fake-heap-MB (the
// fake's own footprint, measured before the cycle), cycle-heap-MB (peak
// minus the heap before the cycle, GC headroom included), cycle-live-MB
// (the same for the heap marked live, which is what the cycle retains) and
// disk-write-MB (bytes the process wrote to storage during the cycle).
//
// POLLER_CPUPROFILE=file writes a CPU profile of sentinel's cycle alone.
func BenchmarkIngestFirstCycle(b *testing.B) {
	const subs, perSub, concurrency = 200, 5000, twilioapi.DefaultConcurrency
	clk := newClock(t0)
	fake, sids, fakeMB := benchFleet(b, clk, subs, perSub, 0)
	total := int64(subs * perSub)

	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		p, st := benchPoller(b, fake, clk, 0)

		// The floor, with the same lower bound the poller's first poll
		// uses, is read before and after sentinel's cycle and the faster
		// of the two counts: the machine is shared and noisy.
		since := clk.Now().Add(-p.cfg.Backfill)
		floorTime := timeFloor(b, fake, sids, since, concurrency, total)

		base, baseLive, written := heapMB(), liveMB(), writtenMB()
		stop := peakHeap()
		if f := os.Getenv("POLLER_CPUPROFILE"); f != "" {
			w, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(w); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		res, err := p.Messages(context.Background())
		p.Wait() // reads that outlived the cycle, if any
		elapsed := time.Since(start)
		b.StopTimer()
		pprof.StopCPUProfile()
		peak, peakLive := stop()
		written = writtenMB() - written
		if err != nil || len(res.Failed) > 0 {
			b.Fatalf("Messages: %v %v", err, res.Failed)
		}
		floorTime = min(floorTime, timeFloor(b, fake, sids, since, concurrency, total))
		var stored int64
		for _, sid := range sids {
			bs, err := st.Buckets(sid, t0.Add(-48*time.Hour), t0.Add(time.Hour))
			if err != nil {
				b.Fatal(err)
			}
			c := traffic.Sum(bs, t0.Add(-48*time.Hour), t0.Add(time.Hour))
			stored += c.Outbound + c.Inbound
		}
		if stored != total {
			b.Fatalf("stored %d messages, want %d", stored, total)
		}
		b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(float64(total)/floorTime.Seconds(), "floor-msgs/s")
		b.ReportMetric(elapsed.Seconds()/floorTime.Seconds(), "x-floor")
		b.ReportMetric(peak, "peak-heap-MB")
		b.ReportMetric(fakeMB, "fake-heap-MB")
		b.ReportMetric(peak-base, "cycle-heap-MB")
		b.ReportMetric(peakLive-baseLive, "cycle-live-MB")
		if written >= 0 {
			b.ReportMetric(written, "disk-write-MB")
		}
		b.StartTimer()
	}
}

// BenchmarkSteadyState2000 times one Messages cycle over 2,000 subaccounts
// whose coverage is complete and that have no new traffic, with 20ms of
// latency per request and concurrency 8. The ideal is one request per
// account: 2,000 × 20ms / 8 = 5s; x-ideal is the cycle's time over that
// (target < 1.3).
func BenchmarkSteadyState2000(b *testing.B) {
	const subs, concurrency = 2000, 8
	const latency = 20 * time.Millisecond
	clk := newClock(t0)
	fake, _, _ := benchFleet(b, clk, subs, 0, 0)
	p, _ := benchPoller(b, fake, clk, concurrency)
	if res, err := p.Messages(context.Background()); err != nil || len(res.Failed) > 0 {
		b.Fatalf("first cycle: %v %v", err, res.Failed)
	}
	id := fake.Inject(twiliofake.Fault{Kind: twiliofake.FaultDelay, Delay: latency})
	defer fake.RemoveFault(id)
	ideal := time.Duration(subs+1) * latency / concurrency // the parent is polled too

	b.ResetTimer()
	for b.Loop() {
		clk.Advance(time.Minute)
		fake.Reset()
		start := time.Now()
		res, err := p.Messages(context.Background())
		elapsed := time.Since(start)
		if err != nil || len(res.Failed) > 0 {
			b.Fatalf("Messages: %v %v", err, res.Failed)
		}
		b.StopTimer()
		if n := fake.Stats().Requests; n != subs+1 {
			b.Fatalf("%d requests, want %d (one per account)", n, subs+1)
		}
		b.ReportMetric(elapsed.Seconds()/ideal.Seconds(), "x-ideal")
		b.ReportMetric(float64(fake.Stats().Requests), "requests")
		b.StartTimer()
	}
}

// busySender sends rate messages an hour from one subaccount on the fake,
// each delivered within a minute of being sent: a message is listed as
// "sent" until its receipt, then as "delivered".
type busySender struct {
	fake    *twiliofake.Server
	sid     string
	rate    int // messages an hour
	next    time.Time
	seq     int
	pending []pendingMsg // sent, not yet delivered, oldest first
}

type pendingMsg struct {
	sid       string
	delivered time.Time
}

// receipt is the delay of the n-th message's delivery receipt, spread over
// (0, 60s].
func receipt(n int) time.Duration {
	return time.Duration(1+(n*7919)%60) * time.Second
}

// until appends the messages sent up to now and delivers those whose
// receipt is due by now.
func (s *busySender) until(b *testing.B, now time.Time) {
	b.Helper()
	every := time.Hour / time.Duration(s.rate)
	var msgs []twiliofake.Message
	var due []time.Time
	for ; !s.next.After(now); s.next = s.next.Add(every) {
		s.seq++
		at := s.next
		status := "sent"
		if !at.Add(receipt(s.seq)).After(now) {
			status = "delivered"
		}
		msgs = append(msgs, twiliofake.Message{AccountSID: s.sid, From: "+15550001000", To: fmt.Sprintf("+1202555%04d", s.seq%10000),
			Status: status, DateSent: at, MessagingServiceSID: "MG" + s.sid[2:], Body: "Your code is 1234", Price: "-0.0079"})
		due = append(due, at.Add(receipt(s.seq)))
	}
	sids, err := s.fake.AppendMessages(msgs...)
	if err != nil {
		b.Fatal(err)
	}
	for i, m := range msgs {
		if m.Status == "sent" {
			s.pending = append(s.pending, pendingMsg{sids[i], due[i]})
		}
	}
	keep := s.pending[:0]
	for _, m := range s.pending {
		if m.delivered.After(now) {
			keep = append(keep, m)
			continue
		}
		if err := s.fake.UpdateMessage(m.sid, func(msg *twiliofake.Message) { msg.Status = "delivered" }); err != nil {
			b.Fatal(err)
		}
	}
	s.pending = keep
}

// BenchmarkBusy50k polls, once a simulated minute, a subaccount sending
// 50,000 messages an hour whose every message is delivered within 60s of
// being sent, with the default settings: a poll re-reads only back to the
// oldest message that can still change, so a cycle costs a page or two,
// not the 100 pages of its 2-hour settle window.
//
// It starts with the settle window's worth of history, polls 15 minutes to
// reach a steady state, then measures 30 cycles. Metrics:
// max-pages/cycle (target at most 3), pages/cycle (the mean),
// msgs-read/cycle, and sweep-pages, what the hourly sweep of the whole
// settle window costs (see Poller.Sweep).
func BenchmarkBusy50k(b *testing.B) {
	const rate = 50000
	const warm, measured = 15, 30
	for b.Loop() {
		b.StopTimer()
		clk := newClock(t0)
		fake, _, _ := benchFleet(b, clk, 0, 0, 0)
		a, err := fake.AddSubaccount(twiliofake.Account{})
		if err != nil {
			b.Fatal(err)
		}
		s := &busySender{fake: fake, sid: a.SID, rate: rate, next: t0.Add(-2 * time.Hour)}
		s.until(b, t0)
		p, _ := benchPoller(b, fake, clk, 0)
		if res, err := p.Messages(context.Background()); err != nil || len(res.Failed) > 0 {
			b.Fatalf("first cycle: %v %v", err, res.Failed)
		}
		path := "/2010-04-01/Accounts/" + a.SID + "/Messages.json"
		var maxPages, pages, read int
		b.StartTimer()
		for i := range warm + measured {
			s.until(b, clk.Advance(time.Minute))
			fake.Reset()
			if res, err := p.Messages(context.Background()); err != nil || len(res.Failed) > 0 {
				b.Fatalf("cycle %d: %v %v", i, err, res.Failed)
			}
			if i < warm {
				continue
			}
			n := 0
			for _, r := range fake.Requests() {
				if r.Path == path {
					n++
				}
			}
			maxPages = max(maxPages, n)
			pages += n
			p.mu.Lock()
			read += p.lastRead[a.SID]
			p.mu.Unlock()
		}
		b.StopTimer()
		fake.Reset()
		if res, err := p.Sweep(context.Background()); err != nil || len(res.Failed) > 0 {
			b.Fatalf("sweep: %v %v", err, res.Failed)
		}
		sweep := 0
		for _, r := range fake.Requests() {
			if r.Path == path {
				sweep++
			}
		}
		b.ReportMetric(float64(maxPages), "max-pages/cycle")
		b.ReportMetric(float64(pages)/measured, "pages/cycle")
		b.ReportMetric(float64(read)/measured, "msgs-read/cycle")
		b.ReportMetric(float64(sweep), "sweep-pages")
		if maxPages > 3 {
			b.Errorf("a steady-state cycle cost %d message pages, want at most 3", maxPages)
		}
		b.StartTimer()
	}
}

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQuietCycle measures one quiet cycle (the message logs, then
// usage, as the daemon's schedules run them) over fleets of 1,000 to 10,000
// subaccounts that sent nothing since the last one, with the default
// settings, to show that its cost grows linearly with the fleet. Each
// subaccount has a day of history (20 messages).
//
// Metrics: requests (the fake's count: one per account for the message
// logs, none for usage that cannot have changed), requests/sub,
// cpu-ms (the process's CPU time over the cycle, the in-process fake's
// serving included), cpu-us/sub, alloc-MB (allocated during the cycle,
// the fake's included), heap-MB (the heap the poller and store retain
// after it: the live heap less the fake's).
func BenchmarkQuietCycle(b *testing.B) {
	for _, subs := range []int{1000, 2000, 5000, 10000} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			clk := newClock(t0)
			fake, _, _ := benchFleet(b, clk, subs, 20, 0)
			fakeHeap := heapMB()
			p, _ := benchPoller(b, fake, clk, 0)
			ctx := context.Background()
			cycle := func() {
				if res, err := p.Messages(ctx); err != nil || len(res.Failed) > 0 {
					b.Fatalf("messages: %v %v", err, res.Failed)
				}
				// The usage job runs after the message logs were read.
				clk.Advance(time.Second)
				if res, err := p.Usage(ctx); err != nil || len(res.Failed) > 0 {
					b.Fatalf("usage: %v %v", err, res.Failed)
				}
			}
			cycle() // the first, backfilling one
			var ms runtime.MemStats
			for b.Loop() {
				b.StopTimer()
				clk.Advance(time.Minute)
				fake.Reset()
				runtime.GC()
				runtime.ReadMemStats(&ms)
				alloc, cpu := ms.TotalAlloc, cpuTime(b)
				b.StartTimer()
				cycle()
				b.StopTimer()
				cpu = cpuTime(b) - cpu
				runtime.ReadMemStats(&ms)
				alloc = ms.TotalAlloc - alloc
				n := fake.Stats().Requests
				b.ReportMetric(float64(n), "requests")
				b.ReportMetric(float64(n)/float64(subs), "requests/sub")
				b.ReportMetric(float64(cpu.Milliseconds()), "cpu-ms")
				b.ReportMetric(float64(cpu.Microseconds())/float64(subs), "cpu-us/sub")
				b.ReportMetric(float64(alloc)/(1<<20), "alloc-MB")
				b.ReportMetric(heapMB()-fakeHeap, "heap-MB")
				b.StartTimer()
			}
		})
	}
}
