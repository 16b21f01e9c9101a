package twiliofake

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

// fleet builds accounts with perAccount messages each over one week and
// reports the heap it takes.
func fleet(b *testing.B, accounts, perAccount int) (*Server, []string, float64) {
	b.Helper()
	end := time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)
	s := New(Options{ParentSID: testSID, ParentToken: testToken, Now: func() time.Time { return end }})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sids := make([]string, 0, accounts)
	for i := range accounts {
		a, err := s.AddSubaccount(Account{})
		if err != nil {
			b.Fatal(err)
		}
		sids = append(sids, a.SID)
		if perAccount == 0 {
			continue
		}
		if _, err := s.Generate(Traffic{AccountSID: a.SID, N: perAccount, From: end.Add(-7 * 24 * time.Hour), To: end,
			Seed: uint64(i), Inbound: 0.1, OptOut: 0.1, Failed: 0.05, Recipients: 5000}); err != nil {
			b.Fatal(err)
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	return s, sids, float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
}

func get(b *testing.B, s *Server, target string) {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.SetBasicAuth(testSID, testToken)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != 200 {
		b.Fatalf("%s: %d %s", target, w.Code, w.Body)
	}
	_, _ = io.Copy(io.Discard, w.Body)
}

// BenchmarkPageMessages pages deep into one of 200 accounts holding a
// million messages: a page costs the same wherever the token points.
func BenchmarkPageMessages(b *testing.B) {
	s, sids, heap := fleet(b, 200, 5000)
	acct := sids[len(sids)/2]
	// A token from the middle of the log.
	s.mu.RLock()
	a := s.accounts[acct]
	m := a.msgs[len(a.msgs)/2]
	s.mu.RUnlock()
	tok := pageToken{key: msgKey{key: m.key, sid: m.sid, mms: m.mms}.String()}.String()
	target := fmt.Sprintf("/2010-04-01/Accounts/%s/Messages.json?PageSize=1000&Page=3&PageToken=%s", acct, tok)
	b.ResetTimer()
	for b.Loop() {
		get(b, s, target)
	}
	b.ReportMetric(heap, "MB-fleet")
}

// BenchmarkListAccounts lists 2,000 subaccounts, 1,000 a page.
func BenchmarkListAccounts(b *testing.B) {
	s, _, heap := fleet(b, 2000, 0)
	b.ResetTimer()
	for b.Loop() {
		get(b, s, "/2010-04-01/Accounts.json?PageSize=1000")
	}
	b.ReportMetric(heap, "MB-fleet")
}
