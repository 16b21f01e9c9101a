package control

import (
	"context"
	"net"
	"net/http"
)

// SetPeerCred replaces how s reads a caller's credentials, so that a test
// can pretend to be another user.
func SetPeerCred(s *Server, f func(net.Conn) (Cred, error)) { s.peerCred = f }

// SetPeerGroups replaces how s reads a caller's supplementary groups.
func SetPeerGroups(s *Server, f func(net.Conn) ([]uint32, error)) { s.peerGroups = f }

// DialWith is Dial with another way to read the daemon's credentials.
func DialWith(path string, f func(net.Conn) (Cred, error)) (*Client, error) { return dial(path, f) }

// WithCaller returns r as if it had arrived on the socket from a process
// with credentials c.
func WithCaller(r *http.Request, c Cred) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), peerKey{}, peer{cred: c}))
}

// CheckDir is checkDir: may a daemon running as uid put its socket in dir?
func CheckDir(dir string, uid uint32) error {
	_, err := checkDir(dir, uid)
	return err
}
