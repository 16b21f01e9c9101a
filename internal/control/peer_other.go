//go:build !linux

package control

import (
	"errors"
	"io/fs"
	"net"
)

// PeerCred needs Linux's SO_PEERCRED; elsewhere every peer is refused.
func PeerCred(net.Conn) (Cred, error) {
	return Cred{}, errors.ErrUnsupported
}

// PeerGroups needs Linux's SO_PEERGROUPS; elsewhere no caller is known to
// be in a group.
func PeerGroups(net.Conn) ([]uint32, error) {
	return nil, errors.ErrUnsupported
}

// ownerOf is only implemented on Linux; elsewhere no directory is safe.
func ownerOf(fs.FileInfo) (uint32, error) {
	return 0, errors.ErrUnsupported
}

// groupOf is only implemented on Linux.
func groupOf(fs.FileInfo) (uint32, bool) { return 0, false }
