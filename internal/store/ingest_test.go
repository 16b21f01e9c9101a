package store

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/traffic"
)

// TestSIDOrder checks PutMessages' order against a stable sort by SID.
func TestSIDOrder(t *testing.T) {
	tests := []struct {
		name string
		sids []string
	}{
		{"empty", nil},
		{"sorted", []string{"SM1", "SM2", "SM3"}},
		{"reversed", []string{"SM3", "SM2", "SM1"}},
		{"duplicates keep their order", []string{"SM2", "SM1", "SM2", "SM0", "SM2", "SM1"}},
		{"same first eight bytes", []string{"SMabcdef9", "SMabcdef1", "SMabcdef", "SMabcdef10"}},
		{"zero bytes against shorter", []string{"SM\x00", "SM", "SM\x00\x00", "", "SM\x00\x01", "SM\x00"}},
		{"high bytes", []string{"SM\xff", "SM\x7f", "SMé", "SM\x80\x00\x00\x00\x00\x00\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkSIDOrder(t, tt.sids)
		})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		// Few distinct bytes and short SIDs: many ties and shared heads.
		sids := make([]string, rng.IntN(50))
		for i := range sids {
			b := make([]byte, rng.IntN(12))
			for j := range b {
				b[j] = "\x00ab\xff"[rng.IntN(4)]
			}
			sids[i] = string(b)
		}
		checkSIDOrder(t, sids)
	}
}

func checkSIDOrder(t *testing.T, sids []string) {
	t.Helper()
	msgs := make([]traffic.Message, len(sids))
	want := make([]int, len(sids))
	for i, sid := range sids {
		msgs[i].SID = sid
		want[i] = i
	}
	slices.SortStableFunc(want, func(a, b int) int { return strings.Compare(sids[a], sids[b]) })
	var got []int
	for _, k := range sidOrder(msgs) {
		got = append(got, k.pos)
	}
	if !slices.Equal(got, want) {
		t.Errorf("sidOrder(%q): got %v, want %v", sids, got, want)
	}
}

// TestSortByTime checks the radix sort of the time index's changes against
// a stable comparison sort, over times that share digits, tie, are negative
// or sit at the ends of the int64 range.
func TestSortByTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := testBase.UnixNano()
	gens := map[string]func() int64{
		"a day of nanoseconds": func() int64 { return base + rng.Int64N(int64(24*time.Hour)) },
		"few distinct":         func() int64 { return base + rng.Int64N(4)*int64(time.Second) },
		"around zero":          func() int64 { return rng.Int64N(2000) - 1000 },
		"any":                  func() int64 { return int64(rng.Uint64()) },
		"extremes": func() int64 {
			return []int64{math.MinInt64, math.MinInt64 + 1, -1, 0, 1, math.MaxInt64 - 1, math.MaxInt64}[rng.IntN(7)]
		},
	}
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{0, 1, 2, 3, 100, 5000} {
				ops := make([]timeOp, n)
				for i := range ops {
					ops[i] = timeOp{t: gen(), seq: i}
				}
				want := slices.Clone(ops)
				slices.SortStableFunc(want, func(a, b timeOp) int {
					switch {
					case a.t < b.t:
						return -1
					case a.t > b.t:
						return 1
					}
					return 0
				})
				if got := sortByTime(ops); !slices.Equal(got, want) {
					t.Fatalf("%d changes: sortByTime differs from a stable sort by t", n)
				}
			}
		})
	}
}

// TestContributionMatchesTraffic checks the store's allocation-free
// contribution, counts and sample keys against traffic.Contribution,
// Counts.Add and Counts.Sub and traffic.SampleKeys, for every combination of
// the fields they read.
func TestContributionMatchesTraffic(t *testing.T) {
	directions := []traffic.Direction{traffic.Inbound, traffic.OutboundAPI, traffic.OutboundCall, traffic.OutboundReply, "", "sideways"}
	statuses := []string{"queued", "sending", "sent", "failed", "delivered", "undelivered", "receiving", "received",
		"accepted", "scheduled", "read", "canceled", "partially_delivered", "", "invented"}
	for _, dir := range directions {
		for _, status := range statuses {
			for _, code := range []int{0, 30007} {
				for _, service := range []bool{false, true} {
					for _, kw := range []traffic.Keyword{traffic.NoKeyword, traffic.OptOut, traffic.OptIn} {
						m := traffic.Message{SID: "SM1", Direction: dir, Status: status, ErrorCode: code, MessagingService: service, Keyword: kw}
						checkContribution(t, m)
					}
				}
			}
		}
	}
}

func checkContribution(t *testing.T, m traffic.Message) {
	t.Helper()
	// Counts that already hold the code, so that Sub leaves it non-zero
	// once and removes it the second time.
	start := traffic.Counts{Outbound: 5, Finished: 5, Failed: 5, NoService: 5, Inbound: 5, OptOuts: 5, OptIns: 5,
		Errors: map[int]int64{m.ErrorCode + 1: 3}}
	want, got := cloneCounts(start), cloneCounts(start)
	c, code := contribution(&m)
	for _, sign := range []int64{1, 1, -1, -1, -1} {
		if sign > 0 {
			want.Add(traffic.Contribution(m))
		} else {
			want.Sub(traffic.Contribution(m))
		}
		addCounts(&got, &c, code, sign)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%+v: counts after adding %d (-traffic +store):\n%s", m, sign, diff)
		}
	}
	if got, want := appendSampleKeys(nil, &c, code), traffic.SampleKeys(m); !slices.Equal(got, want) {
		t.Fatalf("%+v: sample keys: got %v, want %v", m, got, want)
	}
}

func cloneCounts(c traffic.Counts) traffic.Counts {
	errs := make(map[int]int64, len(c.Errors))
	for k, v := range c.Errors {
		errs[k] = v
	}
	c.Errors = errs
	return c
}
