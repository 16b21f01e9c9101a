package traffic

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestClassify(t *testing.T) {
	c := NewClassifier("baja", " ")
	tests := []struct {
		body string
		want Keyword
	}{
		{"STOP", OptOut},
		{"stop", OptOut},
		{"  Stop \n", OptOut},
		{"StopAll", OptOut},
		{"optout", OptOut},
		{"revoke", OptOut},
		{"Stop please", NoKeyword},
		{"STOP!", NoKeyword},
		{"", NoKeyword},
		{"Baja", OptOut},
		{"start", OptIn},
		{"UNSTOP", OptIn},
		{"yes", OptIn},
		{"HELP", NoKeyword},
	}
	for _, tt := range tests {
		if got := c.Classify(tt.body); got != tt.want {
			t.Errorf("Classify(%q) = %v, want %v", tt.body, got, tt.want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"STOP", " stop ", "Stop please", "ＳＴＯＰ", "\x00"} {
		f.Add(s)
	}
	c := NewClassifier()
	f.Fuzz(func(t *testing.T, body string) {
		k := c.Classify(body)
		// Classification depends only on the trimmed, upper-cased body.
		if k2 := c.Classify(" " + strings.ToLower(body) + "\t"); k2 != k {
			t.Fatalf("Classify(%q) = %v but padded lower-case form gives %v", body, k, k2)
		}
		if k != NoKeyword && strings.Contains(strings.TrimSpace(body), " ") {
			t.Fatalf("Classify(%q) = %v: a keyword never contains a space", body, k)
		}
	})
}

func TestContribution(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		m    Message
		want Counts
	}{
		{"delivered with service", Message{Direction: OutboundAPI, Status: "delivered", MessagingService: true, Time: at},
			Counts{Outbound: 1, Finished: 1}},
		{"filtered", Message{Direction: OutboundAPI, Status: "undelivered", ErrorCode: 30007},
			Counts{Outbound: 1, Finished: 1, Failed: 1, NoService: 1, Errors: map[int]int64{30007: 1}}},
		{"sent counts as finished", Message{Direction: OutboundReply, Status: "sent", MessagingService: true},
			Counts{Outbound: 1, Finished: 1, Pending: 1}},
		{"queued is in flight", Message{Direction: OutboundAPI, Status: "queued", MessagingService: true},
			Counts{Outbound: 1, Pending: 1}},
		{"accepted is in flight", Message{Direction: OutboundAPI, Status: "accepted", MessagingService: true},
			Counts{Outbound: 1, Pending: 1}},
		{"scheduled is in flight", Message{Direction: OutboundAPI, Status: "scheduled", MessagingService: true},
			Counts{Outbound: 1, Pending: 1}},
		{"canceled never left", Message{Direction: OutboundAPI, Status: "canceled"}, Counts{}},
		{"opt-out", Message{Direction: Inbound, Status: "received", Keyword: OptOut}, Counts{Inbound: 1, OptOuts: 1}},
		{"opt-in", Message{Direction: Inbound, Status: "received", Keyword: OptIn}, Counts{Inbound: 1, OptIns: 1}},
		{"plain inbound", Message{Direction: Inbound, Status: "received"}, Counts{Inbound: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Contribution(tt.m)); diff != "" {
				t.Errorf("Contribution (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddSubRoundTrip(t *testing.T) {
	msgs := []Message{
		{Direction: OutboundAPI, Status: "undelivered", ErrorCode: 30007},
		{Direction: OutboundAPI, Status: "failed", ErrorCode: 30034, MessagingService: true},
		{Direction: Inbound, Keyword: OptOut},
	}
	var c Counts
	for _, m := range msgs {
		c.Add(Contribution(m))
	}
	if got := c.ErrorCount(30007, 30034, 21610); got != 2 {
		t.Errorf("ErrorCount = %d, want 2", got)
	}
	for _, m := range msgs {
		c.Sub(Contribution(m))
	}
	if diff := cmp.Diff(Counts{Errors: map[int]int64{}}, c); diff != "" || !c.Zero() {
		t.Errorf("after subtracting everything (-want +got):\n%s", diff)
	}
}

func TestWindowStart(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 32, 10, 0, time.UTC)
	if got, want := WindowStart(now, time.Hour), time.Date(2026, 11, 26, 9, 35, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("WindowStart(10:32:10, 1h) = %v, want %v", got, want)
	}
	aligned := time.Date(2026, 11, 26, 10, 30, 0, 0, time.UTC)
	if got, want := WindowStart(aligned, time.Hour), time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("WindowStart(10:30, 1h) = %v, want %v", got, want)
	}
	if got := BucketStart(now.In(time.FixedZone("X", 3600))); got.Location() != time.UTC {
		t.Errorf("BucketStart location = %v, want UTC", got.Location())
	}
}

func TestSumAndExamples(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	buckets := []Bucket{
		{Start: t0, Counts: Counts{Outbound: 10, Finished: 10, Errors: map[int]int64{30007: 2}}, Samples: map[int][]string{30007: {"SM2", "SM1"}}},
		{Start: t0.Add(BucketWidth), Counts: Counts{Outbound: 5, Finished: 4, Errors: map[int]int64{30007: 1}}, Samples: map[int][]string{30007: {"SM3"}}},
		{Start: t0.Add(2 * BucketWidth), Counts: Counts{Outbound: 7}},
	}
	got := Sum(buckets, t0.Add(BucketWidth), t0.Add(3*BucketWidth))
	if want := (Counts{Outbound: 12, Finished: 4, Errors: map[int]int64{30007: 1}}); !cmp.Equal(got, want) {
		t.Errorf("Sum = %+v, want %+v", got, want)
	}
	if got, want := Examples(buckets, t0, t0.Add(time.Hour), 2, 30007), []string{"SM3", "SM1"}; !cmp.Equal(got, want) {
		t.Errorf("Examples = %v, want %v", got, want)
	}
}

func TestCoverage(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	c := Coverage{From: t0, Until: t0.Add(time.Hour)}
	tests := []struct {
		from, to time.Time
		want     bool
	}{
		{t0, t0.Add(time.Hour), true},
		{t0.Add(-time.Minute), t0.Add(time.Hour), false},
		{t0, t0.Add(time.Hour + time.Second), false},
	}
	for _, tt := range tests {
		if got := c.Covers(tt.from, tt.to); got != tt.want {
			t.Errorf("Covers(%v, %v) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
	if (Coverage{}).Covers(time.Time{}, time.Time{}) {
		t.Error("zero Coverage covers something")
	}
}

func TestSpan(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	slot := Bucket{Start: at(5)}
	hour := Bucket{Start: t0, Width: time.Hour}
	tests := []struct {
		name             string
		b                Bucket
		from, to         time.Time
		within, straddle bool
	}{
		{"slot in", slot, at(5), at(10), true, false},
		{"slot starts before to", slot, at(0), at(6), true, false},
		{"slot before", slot, at(10), at(60), false, false},
		{"slot at to", slot, at(0), at(5), false, false},
		{"hour whole", hour, t0, at(60), true, false},
		{"hour, to inside the last slot", hour, t0, at(56), true, false},
		{"hour, to at the last slot", hour, t0, at(55), false, true},
		{"hour, from inside", hour, at(35), at(120), false, true},
		{"hour, window inside", hour, at(20), at(30), false, true},
		{"hour, unaligned window between slots", hour, at(21), at(24), false, false},
		{"hour after", hour, at(60), at(120), false, false},
		{"hour before", hour, at(-60), t0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.Within(tc.from, tc.to); got != tc.within {
				t.Errorf("Within = %v, want %v", got, tc.within)
			}
			if got := tc.b.Straddles(tc.from, tc.to); got != tc.straddle {
				t.Errorf("Straddles = %v, want %v", got, tc.straddle)
			}
		})
	}
	if got, want := hour.End(), at(60); !got.Equal(want) {
		t.Errorf("End = %v, want %v", got, want)
	}
	if got, want := slot.Span(), BucketWidth; got != want {
		t.Errorf("Span of a zero-width bucket = %v, want %v", got, want)
	}
}

// TestSumMixedWidths checks that an hour bucket counts in a window only
// whole, and gives the same sums and samples as its five-minute buckets.
func TestSumMixedWidths(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	buckets := []Bucket{
		{Start: t0.Add(-time.Hour), Width: time.Hour, Counts: Counts{Outbound: 100, Errors: map[int]int64{30007: 4}}, Samples: map[int][]string{30007: {"SM1", "SM2", "SM3"}}},
		{Start: t0, Counts: Counts{Outbound: 5, Errors: map[int]int64{30007: 1}}, Samples: map[int][]string{30007: {"SM9"}}},
	}
	if got, want := Sum(buckets, t0.Add(-time.Hour), t0.Add(time.Minute)).Outbound, int64(105); got != want {
		t.Errorf("Sum over both = %d, want %d", got, want)
	}
	if got, want := Sum(buckets, t0.Add(-55*time.Minute), t0.Add(time.Minute)).Outbound, int64(5); got != want {
		t.Errorf("Sum over a window that cuts the hour = %d, want %d (the hour is not within)", got, want)
	}
	if got, want := Examples(buckets, t0.Add(-time.Hour), t0.Add(time.Minute), 3, 30007), []string{"SM9", "SM1", "SM2"}; !cmp.Equal(got, want) {
		t.Errorf("Examples = %v, want %v", got, want)
	}
}

func TestStatusClasses(t *testing.T) {
	// Every status Twilio documents for a message, and its class.
	want := map[string]StatusClass{
		"queued": StatusInFlight, "sending": StatusInFlight, "accepted": StatusInFlight, "scheduled": StatusInFlight,
		"receiving": StatusInFlight, "sent": StatusFinished, "delivered": StatusFinished, "undelivered": StatusFinished,
		"failed": StatusFinished, "read": StatusFinished, "partially_delivered": StatusFinished, "received": StatusFinished,
		"canceled": StatusCanceled,
	}
	for status, class := range want {
		if got := ClassOf(status); got != class {
			t.Errorf("ClassOf(%q) = %d, want %d", status, got, class)
		}
	}
	for _, status := range []string{"", "pending_review", "DELIVERED", "blocked"} {
		if KnownStatus(status) {
			t.Errorf("KnownStatus(%q) = true", status)
		}
	}
	// An unknown status is counted apart and dilutes no rate.
	got := Contribution(Message{Direction: OutboundAPI, Status: "pending_review", ErrorCode: 30007})
	if diff := cmp.Diff(Counts{UnknownStatus: 1}, got); diff != "" {
		t.Errorf("Contribution of an unknown status (-want +got):\n%s", diff)
	}
	partial := Contribution(Message{Direction: OutboundAPI, Status: "partially_delivered", MessagingService: true})
	if diff := cmp.Diff(Counts{Outbound: 1, Finished: 1}, partial); diff != "" {
		t.Errorf("Contribution of partially_delivered (-want +got):\n%s", diff)
	}
}

func TestMerge(t *testing.T) {
	stop := Message{SID: "SM1", Direction: Inbound, Status: "received", Keyword: OptOut, Ignored: Repeated, Peer: 7}
	filtered := Message{SID: "SM2", Direction: OutboundAPI, Status: "undelivered", ErrorCode: 30007, Peer: 9}
	tests := []struct {
		name       string
		prev, next Message
		want       Message
	}{
		{"a redacted STOP stays an opt-out, as it was judged",
			stop, Message{SID: "SM1", Direction: Inbound, Status: "received"},
			Message{SID: "SM1", Direction: Inbound, Status: "received", Keyword: OptOut, Ignored: Repeated, Peer: 7}},
		{"a failure stays with its code",
			filtered, Message{SID: "SM2", Direction: OutboundAPI, Status: "delivered"},
			filtered},
		{"a code once seen stays",
			Message{SID: "SM3", Direction: OutboundAPI, Status: "sent", ErrorCode: 30003},
			Message{SID: "SM3", Direction: OutboundAPI, Status: "delivered"},
			Message{SID: "SM3", Direction: OutboundAPI, Status: "delivered", ErrorCode: 30003}},
		{"a normal receipt moves on",
			Message{SID: "SM4", Direction: OutboundAPI, Status: "sent", Peer: 3},
			Message{SID: "SM4", Direction: OutboundAPI, Status: "undelivered", ErrorCode: 30007, Peer: 3},
			Message{SID: "SM4", Direction: OutboundAPI, Status: "undelivered", ErrorCode: 30007, Peer: 3}},
		{"an older report does not move a message back, but what only it says is kept",
			Message{SID: "SM6", Direction: OutboundAPI, Status: "delivered", Updated: at(12, 0, 30)},
			Message{SID: "SM6", Direction: OutboundAPI, Status: "sent", PriceMicros: 7900, Updated: at(12, 0, 10)},
			Message{SID: "SM6", Direction: OutboundAPI, Status: "delivered", PriceMicros: 7900, Updated: at(12, 0, 30)}},
		{"in the same second, the later status wins whatever the order",
			Message{SID: "SM7", Direction: OutboundAPI, Status: "delivered", Updated: at(12, 0, 30).Add(400 * time.Millisecond)},
			Message{SID: "SM7", Direction: OutboundAPI, Status: "sent", Updated: at(12, 0, 30)},
			Message{SID: "SM7", Direction: OutboundAPI, Status: "delivered", Updated: at(12, 0, 30).Add(400 * time.Millisecond)}},
		{"a newer report moves on, to a status of the same rank",
			Message{SID: "SM8", Direction: OutboundAPI, Status: "delivered", Updated: at(12, 0, 30)},
			Message{SID: "SM8", Direction: OutboundAPI, Status: "undelivered", ErrorCode: 30005, Updated: at(12, 5, 0)},
			Message{SID: "SM8", Direction: OutboundAPI, Status: "undelivered", ErrorCode: 30005, Updated: at(12, 5, 0)}},
		{"without times, never back along a message's life",
			Message{SID: "SM9", Direction: OutboundAPI, Status: "read"},
			Message{SID: "SM9", Direction: OutboundAPI, Status: "queued"},
			Message{SID: "SM9", Direction: OutboundAPI, Status: "read"}},
		{"an opt-in stays an opt-in only while the body says so",
			Message{SID: "SM5", Direction: Inbound, Status: "received", Keyword: OptIn},
			Message{SID: "SM5", Direction: Inbound, Status: "received"},
			Message{SID: "SM5", Direction: Inbound, Status: "received"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Merge(tt.prev, tt.next)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestPeers(t *testing.T) {
	key := make([]byte, PeerKeySize)
	p, err := NewPeers(key)
	if err != nil {
		t.Fatal(err)
	}
	other := append([]byte(nil), key...)
	other[0] = 1
	q, _ := NewPeers(other)
	a := p.Hash("+15550001111")
	switch {
	case a == 0:
		t.Error("Hash of a number is 0")
	case p.Hash(" +15550001111 ") != a:
		t.Error("spaces change the hash")
	case p.Hash("+15550001112") == a:
		t.Error("two numbers share a hash")
	case q.Hash("+15550001111") == a:
		t.Error("the hash does not depend on the key")
	case p.Hash("") != 0 || p.Hash("+1555***1111") != 0:
		t.Error("a missing or masked number hashes to non-zero")
	}
	if _, err := NewPeers(key[:16]); err == nil {
		t.Error("NewPeers accepted a short key")
	}
}

// at is 2026-03-01 at h:m:s UTC.
func at(h, m, s int) time.Time { return time.Date(2026, 3, 1, h, m, s, 0, time.UTC) }
