package twiliofake

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Traffic describes messages to generate for one account. Shares are
// fractions from 0 to 1; the same Traffic and Seed give the same messages
// (SIDs aside, which follow the server's Seed and call order).
type Traffic struct {
	AccountSID string
	// N messages with date_sent spread evenly, with jitter, over [From, To).
	N        int
	From, To time.Time
	Seed     uint64
	// Inbound is the share of inbound (received) messages; OptOut the
	// share of those whose body is an opt-out keyword.
	Inbound, OptOut float64
	// Failed is the share of outbound messages that end failed or
	// undelivered with one of ErrorCodes (default 30007), chosen uniformly.
	Failed     float64
	ErrorCodes []int
	// Unsent is the share of outbound messages never handed to a carrier
	// (date_sent null): queued, or failed with UnsentErrorCode if set.
	Unsent          float64
	UnsentErrorCode int
	// NoService is the share of outbound messages sent without a
	// Messaging Service.
	NoService float64
	// Unbilled is the share of messages whose price is still null.
	Unbilled float64
	// Price per segment; default "-0.00790".
	Price string
	// Recipients is the size of the pool of numbers the account talks to;
	// default 1000.
	Recipients int
	// Bodies for outbound and non-keyword inbound messages; default a few.
	Bodies []string
}

var (
	defaultBodies = []string{"Your code is 123456", "Your order has shipped", "Reminder: appointment tomorrow at 10", "Thanks!"}
	optOutBodies  = []string{"STOP", "stop", "Stop ", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPALL"}
)

// Generate appends t's messages and returns their SIDs, oldest first.
func (s *Server) Generate(t Traffic) ([]string, error) {
	if t.N < 0 || !t.To.After(t.From) && t.N > 0 {
		return nil, fmt.Errorf("generate %s: need N >= 0 and From before To: %w", t.AccountSID, ErrInvalid)
	}
	if t.Price == "" {
		t.Price = "-0.00790"
	}
	if len(t.ErrorCodes) == 0 {
		t.ErrorCodes = []int{30007}
	}
	if t.Recipients <= 0 {
		t.Recipients = 1000
	}
	if len(t.Bodies) == 0 {
		t.Bodies = defaultBodies
	}
	phone, svc, err := s.accountIdentity(t.AccountSID)
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	rng := rand.New(rand.NewPCG(t.Seed, t.Seed^0x7a11c))
	span := t.To.Sub(t.From)
	msgs := make([]Message, 0, t.N)
	for i := range t.N {
		slot := span / time.Duration(max(t.N, 1))
		at := t.From.Add(span * time.Duration(i) / time.Duration(t.N))
		if slot > time.Second {
			at = at.Add(time.Duration(rng.Int64N(int64(slot))))
		}
		at = at.UTC().Truncate(time.Second)
		peer := fmt.Sprintf("+1%010d", 2000000000+splitmix64(t.Seed^uint64(rng.IntN(t.Recipients)))%7000000000)
		m := Message{
			AccountSID:  t.AccountSID,
			DateCreated: at.Add(-time.Second),
			DateSent:    at,
			DateUpdated: at.Add(3 * time.Second),
			Price:       t.Price,
			Body:        t.Bodies[rng.IntN(len(t.Bodies))],
		}
		if rng.Float64() < t.Inbound {
			m.Direction, m.Status, m.From, m.To = "inbound", "received", peer, phone
			m.DateCreated, m.DateUpdated = at, at
			if rng.Float64() < t.OptOut {
				m.Body = optOutBodies[rng.IntN(len(optOutBodies))]
			}
			m.MessagingServiceSID = svc
		} else {
			m.Direction, m.Status, m.From, m.To = "outbound-api", "delivered", phone, peer
			if rng.Float64() < 0.1 {
				m.Status = "sent" // no delivery receipt from the carrier
			}
			if rng.Float64() >= t.NoService {
				m.MessagingServiceSID = svc
			}
			switch r := rng.Float64(); {
			case r < t.Unsent:
				m.DateSent, m.Price, m.DateUpdated = time.Time{}, "", m.DateCreated
				m.Status = "queued"
				if t.UnsentErrorCode != 0 {
					m.Status, m.ErrorCode = "failed", t.UnsentErrorCode
				}
			case r < t.Unsent+t.Failed:
				m.ErrorCode = t.ErrorCodes[rng.IntN(len(t.ErrorCodes))]
				m.Status = "undelivered"
				if m.ErrorCode < 30003 || m.ErrorCode > 30008 {
					m.Status = "failed"
				}
			}
		}
		if rng.Float64() < t.Unbilled {
			m.Price = ""
		}
		msgs = append(msgs, m)
	}
	return s.AppendMessages(msgs...)
}

// accountIdentity returns the sending number and Messaging Service that
// generated traffic of an account uses, deterministic per account.
func (s *Server) accountIdentity(sid string) (phone, svc string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[sid]
	if a == nil {
		return "", "", fmt.Errorf("account %s: %w", sid, ErrNoAccount)
	}
	if a.phone == "" {
		h := splitmix64(s.opts.Seed ^ uint64(len(sid)) ^ hashString(sid))
		a.phone = fmt.Sprintf("+1555%07d", h%10000000)
		a.svc = "MG" + fmt.Sprintf("%016x%016x", h, splitmix64(h))
	}
	return a.phone, a.svc, nil
}

func hashString(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}
