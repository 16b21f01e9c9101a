package traffic

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"strings"
	"sync"
)

// PeerKeySize is the length of the key that Peers hash numbers with.
const PeerKeySize = 32

// Peers turns phone numbers into keyed hashes, so that sentinel can tell
// whether an opt-out comes from a number the subaccount messaged, and count
// one number's opt-outs once, without keeping any number. The key is
// per installation (the store creates it with the database and keeps it
// there): a hash cannot be reversed by trying every number without it.
//
// A Peers is safe for concurrent use.
type Peers struct {
	pool sync.Pool // of hash.Hash, HMAC-SHA-256 with the key
}

// NewPeers returns a Peers for key, which must be PeerKeySize bytes.
func NewPeers(key []byte) (*Peers, error) {
	if len(key) != PeerKeySize {
		return nil, errors.New("peer key: want 32 bytes")
	}
	k := append([]byte(nil), key...)
	return &Peers{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}, nil
}

// Hash returns the hash of number, or 0 for an empty number (none given, or
// masked by Twilio's message redaction, which writes it as asterisks or
// empties it). Spaces around the number are ignored; numbers are otherwise
// hashed as Twilio writes them (E.164, or "whatsapp:+1...").
func (p *Peers) Hash(number string) uint64 {
	number = strings.TrimSpace(number)
	if number == "" || strings.Contains(number, "*") {
		return 0
	}
	h := p.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(number))
	var sum [sha256.Size]byte
	v := binary.BigEndian.Uint64(h.Sum(sum[:0]))
	p.pool.Put(h)
	if v == 0 {
		v = 1 // 0 means "no number"
	}
	return v
}
