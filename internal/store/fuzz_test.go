package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sentinel/internal/traffic"
)

// FuzzDecodeMessage checks that decodeMessage never panics and that what it
// accepts survives a round trip.
func FuzzDecodeMessage(f *testing.F) {
	acct := testAccount(1)
	seeds := []traffic.Message{
		testMessage(acct, 1, testBase),
		{SID: "SM1", AccountSID: acct, Direction: "outbound-api", Status: "undelivered", ErrorCode: 30003,
			Time: testBase.Add(time.Nanosecond), PriceMicros: 7900, MessagingService: true},
		{SID: "SM2", AccountSID: acct, Direction: "inbound", Status: "received", Keyword: traffic.OptOut, Time: testBase},
		{SID: "SM3", Direction: "sideways", Status: "invented", Time: time.Unix(0, -1)},
	}
	for _, m := range seeds {
		f.Add(encodeMessage(m))
	}
	f.Add([]byte{})
	f.Add([]byte{messageV1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		m2, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", m, err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeHour checks that appendHour, appendTotal and appendExamples
// never panic, on whole and partial hours, that what decodeHour accepts
// survives a round trip, and that appendTotal and appendExamples read from
// it what summing its slots and traffic.Examples over them give.
func FuzzDecodeHour(f *testing.F) {
	start := testBase
	for a := range 3 {
		f.Add(encodeHour(benchHour(a, a, start)))
		f.Add(encodeHourV1(f, benchHour(a, a, start)))
	}
	var one [slotsPerHour]traffic.Bucket
	one[5].Inbound, one[5].OptOuts = 1, 1
	one[5].Samples = map[int][]string{traffic.SampleOptOut: {"SMx"}}
	f.Add(encodeHour(&one))
	f.Add([]byte{hourV1, 0x80, 0x40})
	f.Add([]byte{hourV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r hourReader
		total, totalErr := r.appendTotal(nil, start, b, true)
		r.appendTotal(nil, start, b, false)
		r.appendHour(nil, start, b, start.Add(17*time.Minute), start.Add(41*time.Minute), false)
		examples, _, exErr := appendExamples(nil, nil, start, b, start.Add(17*time.Minute), start.Add(41*time.Minute), 4, []int{30007, traffic.SampleFailed})
		if _, err := r.appendHour(nil, start, b, start.Add(17*time.Minute), start.Add(41*time.Minute), true); err != nil {
			return
		}
		slots, err := decodeHour(start, b)
		if err != nil {
			return
		}
		if want := hourTotal(&slots); totalErr != nil || len(total) != 1 || !cmp.Equal(want, total[0], cmpopts.EquateEmpty()) {
			t.Fatalf("appendTotal = %+v, %v, want %+v", total, totalErr, want)
		}
		want := traffic.Examples(slots[:], start.Add(17*time.Minute), start.Add(41*time.Minute), 4, 30007, traffic.SampleFailed)
		if exErr != nil || !cmp.Equal(want, examples, cmpopts.EquateEmpty()) {
			t.Fatalf("appendExamples = %v, %v, want %v", examples, exErr, want)
		}
		v := encodeHour(&slots)
		if v == nil {
			t.Fatal("a decoded hour encodes as empty")
		}
		slots2, err := decodeHour(start, v)
		if err != nil {
			t.Fatalf("re-encoded hour does not decode: %v", err)
		}
		if diff := cmp.Diff(slots, slots2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
