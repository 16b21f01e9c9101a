package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sentinel/internal/store"
	"sentinel/internal/traffic"
)

// BenchmarkSustained10k pushes Event Streams batches into the real
// endpoint over loopback, backed by a store on disk, at 10,000 events a
// second for 20 seconds, open loop: every request leaves at its scheduled
// time whether or not the earlier ones were answered, and its
// acknowledgement time is counted from then, so that a stall shows as
// latency and not as a slower sender. The traffic is 50 accounts' messages,
// each queued, then sent, then delivered or (5%) undelivered with 30007,
// in batches of 20 events with the order inside a batch shuffled and one
// event in 20 sent twice. Afterwards every account's aggregates must equal
// a recount of its stored messages. It reports the events a second
// achieved and the acknowledgement percentiles, and fails when 10,000 a
// second were not sustained or the 99th percentile is 100 ms or more.
func BenchmarkSustained10k(b *testing.B) {
	const (
		rate     = 10000 // events a second
		perBatch = 20
		accounts = 50
		seconds  = 20
	)
	for range b.N {
		st, err := store.Open(filepath.Join(b.TempDir(), "s.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		known := map[string]bool{}
		var accts []string
		for i := range accounts {
			sid := fmt.Sprintf("AC%032x", 0xb000+i)
			accts = append(accts, sid)
			known[sid] = true
		}
		srv, err := New(Config{
			Username: "twilio", Password: "bench-password-0123456789",
			URL: "https://sentinel.example.net", Parent: "AC" + strings.Repeat("f", 32), Token: "parent-token",
			Known:   func(sid string) (bool, error) { return known[sid], nil },
			Store:   st,
			Decoder: decoder(b),
			Log:     slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		bodies := sustainedBodies(accts, rate*seconds, perBatch)
		lat := make([]time.Duration, len(bodies))
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
		interval := time.Second * perBatch / rate
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		var failed sync.Map
		for i, body := range bodies {
			due := start.Add(time.Duration(i) * interval)
			time.Sleep(time.Until(due))
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, hs.URL+EventsPath, bytes.NewReader(body))
				req.SetBasicAuth("twilio", "bench-password-0123456789")
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Store(i, err.Error())
					return
				}
				resp.Body.Close()
				lat[i] = time.Since(due)
				if resp.StatusCode != http.StatusOK {
					failed.Store(i, resp.Status)
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		b.StopTimer()
		hs.Close()
		failed.Range(func(k, v any) bool {
			b.Fatalf("request %v: %v", k, v)
			return false
		})

		events := float64(len(bodies) * perBatch)
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
		b.ReportMetric(events/took.Seconds(), "events/s")
		b.ReportMetric(pct(0.50), "p50-ack-ms")
		b.ReportMetric(pct(0.99), "p99-ack-ms")
		b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ack-ms")
		b.Logf("%d events in %d requests over %v: %.0f events/s; acknowledged p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			len(bodies)*perBatch, len(bodies), took.Round(time.Millisecond), events/took.Seconds(), pct(0.5), pct(0.99),
			float64(lat[len(lat)-1])/1e6)
		if events/took.Seconds() < 0.97*rate {
			b.Errorf("%.0f events/s sustained, want %d", events/took.Seconds(), rate)
		}
		if pct(0.99) >= 100 {
			b.Errorf("p99 acknowledgement %.1f ms, want under 100", pct(0.99))
		}
		for _, sid := range accts {
			from, to := sustainedStart.Add(-time.Hour), sustainedStart.Add(2*time.Hour)
			got, err := st.Buckets(sid, from, to)
			if err != nil {
				b.Fatal(err)
			}
			want, err := st.Recount(sid, from, to)
			if err != nil {
				b.Fatal(err)
			}
			g, w := traffic.Sum(got, from, to), traffic.Sum(want, from, to)
			if diff := cmp.Diff(w, g, cmpopts.EquateEmpty()); diff != "" {
				b.Errorf("%s: aggregates differ from a recount (-recount +aggregates):\n%s", sid, diff)
			}
			if w.Outbound == 0 {
				b.Errorf("%s: nothing stored", sid)
			}
		}
		st.Close()
	}
}

var sustainedStart = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// sustainedBodies returns the request bodies of n events (see
// BenchmarkSustained10k).
func sustainedBodies(accts []string, n, perBatch int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var evs []string
	for m := 0; len(evs) < n; m++ {
		acct := accts[m%len(accts)]
		msg := fmt.Sprintf("SM%032x", m)
		at := sustainedStart.Add(time.Duration(m) * time.Millisecond)
		final, code := "delivered", "null"
		if rng.IntN(20) == 0 {
			final, code = "undelivered", "30007"
		}
		for i, status := range []string{"queued", "sent", final} {
			c := "null"
			if status == final {
				c = code
			}
			data := fmt.Sprintf(`{"messageSid":%q,"accountSid":%q,"messageStatus":%q,"errorCode":%s,"timestamp":%q,"from":"+15550001000","to":"+1202555%04d","messagingServiceSid":"MG0123456789abcdef0123456789abcdef"}`,
				msg, acct, strings.ToUpper(status), c, at.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), m%10000)
			ev := fmt.Sprintf(`{"specversion":"1.0","id":"EZ%030x%02d","type":"com.twilio.messaging.message.%s","source":"/2010-04-01/Accounts/%s/Messages/%s.json","time":%q,"datacontenttype":"application/json","data":%s}`,
				m, i, status, acct, msg, at.Format(time.RFC3339Nano), data)
			evs = append(evs, ev)
			if rng.IntN(20) == 0 {
				evs = append(evs, ev) // delivered twice
			}
		}
	}
	evs = evs[:n]
	var bodies [][]byte
	for i := 0; i < len(evs); i += perBatch {
		batch := slices.Clone(evs[i:min(i+perBatch, len(evs))])
		rng.Shuffle(len(batch), func(a, b int) { batch[a], batch[b] = batch[b], batch[a] })
		bodies = append(bodies, []byte("["+strings.Join(batch, ",")+"]"))
	}
	return bodies
}
