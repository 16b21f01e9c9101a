package twiliofake

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FaultKind is what an injected fault does to a request.
type FaultKind int

// Fault kinds.
const (
	FaultNone FaultKind = iota
	// FaultDelay waits Delay (honouring the request's context), then
	// serves the request normally.
	FaultDelay
	// FaultTooManyRequests answers 429 with Twilio's 20429 body and a
	// Retry-After header.
	FaultTooManyRequests
	// FaultServerError answers Status (default 503) with Twilio's JSON
	// error body (20500 or 20503).
	FaultServerError
	// FaultHTML answers Status (default 502) with an HTML page, as a load
	// balancer in front of Twilio does: twilio-go fails to decode it.
	FaultHTML
	// FaultTruncated serves the real response cut off halfway, with the
	// real status.
	FaultTruncated
	// FaultDrop closes the connection without answering.
	FaultDrop
)

func (k FaultKind) String() string {
	switch k {
	case FaultNone:
		return "none"
	case FaultDelay:
		return "delay"
	case FaultTooManyRequests:
		return "429"
	case FaultServerError:
		return "5xx"
	case FaultHTML:
		return "html"
	case FaultTruncated:
		return "truncated"
	case FaultDrop:
		return "drop"
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// Fault describes requests to disturb and how. A request matches when its
// method, path prefix and path pattern all match (empty ones match all).
// Of the matching requests, the fault fires on every Every-th (0 or 1: all),
// or, when Rate is set, with probability Rate from a PRNG seeded with Seed,
// so a given request order always gives the same faults; at most Times times
// (0: no limit). When several faults fire, delays add up and the first other
// fault in order of injection answers.
type Fault struct {
	Kind   FaultKind
	Method string
	// Path is a path prefix, e.g. "/2010-04-01/Accounts/AC.../Messages.json".
	Path    string
	Pattern *regexp.Regexp
	Every   int
	Rate    float64
	Seed    uint64
	Times   int
	// Status overrides the HTTP status of FaultServerError and FaultHTML.
	Status int
	// RetryAfter is the Retry-After of FaultTooManyRequests in whole
	// seconds, rounded up; 0 sends "1", negative sends none.
	RetryAfter time.Duration
	// Delay is the wait of FaultDelay.
	Delay time.Duration
}

type faultState struct {
	Fault
	id          int
	seen, fired int
	rng         *rand.Rand
}

// Inject adds a fault and returns its id for RemoveFault.
func (s *Server) Inject(f Fault) int {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.faultSeq++
	st := &faultState{Fault: f, id: s.faultSeq}
	if f.Rate > 0 {
		st.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x5eed))
	}
	s.faults = append(s.faults, st)
	return st.id
}

// FailNext makes the next n requests (to path prefix, "" for any) fail with
// kind. It is Inject with Times n.
func (s *Server) FailNext(n int, path string, kind FaultKind) int {
	return s.Inject(Fault{Kind: kind, Path: path, Times: n})
}

// RemoveFault removes one fault.
func (s *Server) RemoveFault(id int) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for i, f := range s.faults {
		if f.id == id {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
			return
		}
	}
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.faults = nil
}

// pickFault returns the fault that answers r, if any, and the total delay.
func (s *Server) pickFault(r *http.Request) (*Fault, time.Duration) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	var answer *Fault
	var delay time.Duration
	for _, f := range s.faults {
		if (f.Method != "" && f.Method != r.Method) || !strings.HasPrefix(r.URL.Path, f.Path) ||
			(f.Pattern != nil && !f.Pattern.MatchString(r.URL.Path)) {
			continue
		}
		if f.Times > 0 && f.fired >= f.Times {
			continue
		}
		f.seen++
		fire := true
		switch {
		case f.rng != nil:
			fire = f.rng.Float64() < f.Rate
		case f.Every > 1:
			fire = f.seen%f.Every == 0
		}
		if !fire {
			continue
		}
		if f.Kind == FaultDelay {
			f.fired++
			delay += f.Delay
			continue
		}
		if answer == nil {
			f.fired++
			c := f.Fault
			answer = &c
		}
	}
	return answer, delay
}

// serveFault answers r with f and reports whether it did; FaultDelay has
// already been served by waiting.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	switch f.Kind {
	case FaultTooManyRequests:
		if f.RetryAfter >= 0 {
			secs := max(1, int(math.Ceil(f.RetryAfter.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
		}
		writeError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
	case FaultServerError:
		status := f.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		code, msg := 20500, "Internal Server Error"
		if status == http.StatusServiceUnavailable {
			code, msg = 20503, "Service Unavailable"
		}
		writeError(w, status, code, msg)
	case FaultHTML:
		status := f.Status
		if status == 0 {
			status = http.StatusBadGateway
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n</body>\r\n</html>\r\n",
			status, http.StatusText(status), status, http.StatusText(status))
	case FaultTruncated:
		rec := httptest.NewRecorder()
		s.route(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(bytes.Clone(body[:len(body)/2]))
	case FaultDrop:
		hj, ok := w.(*statusWriter).ResponseWriter.(http.Hijacker)
		if !ok {
			return false
		}
		conn, _, err := hj.Hijack()
		w.(*statusWriter).setStatus(-1)
		if err == nil {
			conn.Close()
		}
	default:
		return false
	}
	return true
}
