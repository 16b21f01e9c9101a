package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PeerCred returns the credentials of the process at the other end of c, a
// unix socket connection.
func PeerCred(c net.Conn) (Cred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Cred{}, fmt.Errorf("peer credentials: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var uc *unix.Ucred
	var uerr error
	if err := raw.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if uerr != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", uerr)
	}
	return Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}

// PeerGroups returns the supplementary groups of the process at the other
// end of c, a unix socket connection, as the kernel recorded them when it
// connected (SO_PEERGROUPS, Linux 4.13). The primary group is PeerCred's
// GID.
func PeerGroups(c net.Conn) ([]uint32, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("peer groups: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer groups: %w", err)
	}
	var groups []uint32
	var gerr error
	if err := raw.Control(func(fd uintptr) { groups, gerr = peerGroups(fd) }); err != nil {
		return nil, fmt.Errorf("peer groups: %w", err)
	}
	if gerr != nil {
		return nil, fmt.Errorf("peer groups: %w", gerr)
	}
	return groups, nil
}

// peerGroups reads SO_PEERGROUPS. x/sys/unix has no reader for it, and its
// GetsockoptString stops at the first zero byte, which most gids hold. The
// kernel answers ERANGE with the size it needs when the buffer is short.
func peerGroups(fd uintptr) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == unix.ERANGE && int(size/4) > len(buf):
			buf = make([]uint32, size/4)
		case errno != 0:
			return nil, errno
		default:
			return buf[:size/4], nil
		}
	}
}

// ownerOf returns the uid that owns fi.
func ownerOf(fi fs.FileInfo) (uint32, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no owner information")
	}
	return st.Uid, nil
}

// groupOf returns the gid fi belongs to, if the platform says.
func groupOf(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Gid, true
}
