package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Cred is the identity of the process at the other end of a unix socket
// connection, as the kernel recorded it when that process connected (or, for
// the daemon, listened): SO_PEERCRED. Nothing the process sends can change
// it.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// ErrUntrusted means the process answering on the control socket runs as a
// user the CLI does not believe (see Dial).
var ErrUntrusted = errors.New("untrusted process on the control socket")

// ErrUnsafeDir means users other than the daemon's (and root) can write to
// the control socket's directory, so any of them could put a socket of their
// own at its path.
var ErrUnsafeDir = errors.New("directory writable by other users")

// safePlace says where a refused socket should go.
const safePlace = "put the socket in a directory only sentinel's user can write, " +
	"such as /run/sentinel (systemd's RuntimeDirectory=sentinel), with -control-socket /run/sentinel/control.sock"

// Socket is where the daemon's control endpoint listens, and who besides
// the daemon's user and root may use it.
type Socket struct {
	// Path is the socket file's path.
	Path string
	// Group, if not empty, names a group (by name, or by numeric gid) whose
	// members may use the socket too: the socket is given to that group
	// with mode 0660, and the daemon answers a caller whose groups, as the
	// kernel reports them (SO_PEERCRED's gid and SO_PEERGROUPS), include
	// it. The daemon must be a member itself. Empty: mode 0600.
	Group string
}

// Check returns an error when this process, as the daemon, may not serve
// s: one wrapping ErrUnsafeDir for its directory (see checkDir), one
// saying that its Group does not exist or does not include this process,
// one wrapping ErrRunning when another daemon answers on it, one saying
// that something else than a socket is at its path, or one saying that
// the path is too long for a unix socket (see fits). New and Run check the
// same; the daemon calls Check before it opens its database, so that a
// mistake fails start-up before anything is created or polled.
func (s Socket) Check() error {
	if err := fits(s.Path); err != nil {
		return err
	}
	if _, err := checkDir(filepath.Dir(s.Path), uint32(os.Getuid())); err != nil {
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	if _, _, err := s.group(); err != nil {
		return err
	}
	_, err := vacant(s.Path)
	return err
}

// group resolves s.Group to a gid that this process may give its socket
// to; shared is false when s.Group is empty.
func (s Socket) group() (gid uint32, shared bool, err error) {
	if s.Group == "" {
		return 0, false, nil
	}
	if g, err := user.LookupGroup(s.Group); err == nil {
		n, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return 0, false, fmt.Errorf("control socket group %q: gid %q: %w", s.Group, g.Gid, err)
		}
		gid = uint32(n)
	} else if n, nerr := strconv.ParseUint(s.Group, 10, 32); nerr == nil {
		gid = uint32(n)
	} else {
		return 0, false, fmt.Errorf("control socket group %q: no such group (want a group name or a numeric gid)", s.Group)
	}
	// Only a member (or root) may give a file to a group: say so now
	// rather than fail at the chown.
	if os.Geteuid() != 0 && uint32(os.Getegid()) != gid {
		groups, err := os.Getgroups()
		if err != nil {
			return 0, false, fmt.Errorf("control socket group %q: %w", s.Group, err)
		}
		if !slices.Contains(groups, int(gid)) {
			return 0, false, fmt.Errorf("control socket group %q (gid %d): this process (uid %d) is not a member, so it cannot give the socket to it",
				s.Group, gid, os.Geteuid())
		}
	}
	return gid, true, nil
}

// checkDir returns dir's owner, and an error wrapping ErrUnsafeDir unless
// only daemon (the uid the daemon runs as) and root can add or replace
// entries in dir: dir belongs to one of them and nobody else may write to
// it, or dir is sticky (others may add entries but never remove or rename
// the daemon's) and belongs to daemon itself. Only dir itself is checked,
// not its parents. The client applies the same rule to the peer's uid, so
// both ends agree on which directories are safe.
func checkDir(dir string, daemon uint32) (owner uint32, err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("socket directory %s: not a directory", dir)
	}
	owner, err = ownerOf(fi)
	if err != nil {
		return 0, fmt.Errorf("socket directory %s: %w", dir, err)
	}
	mode := fi.Mode()
	othersWrite := mode&0o022 != 0
	sticky := mode&fs.ModeSticky != 0
	switch {
	case owner != daemon && owner != 0:
		return owner, fmt.Errorf("%w: %s belongs to uid %d, not to uid %d or root; %s", ErrUnsafeDir, dir, owner, daemon, safePlace)
	case othersWrite && !(sticky && owner == daemon):
		return owner, fmt.Errorf("%w: %s has mode %v (owner uid %d); %s", ErrUnsafeDir, dir, mode, owner, safePlace)
	}
	return owner, nil
}

// trust returns an error unless the CLI, running as self, may believe the
// process behind c, connected to the socket at path.
//
// It believes root, its own user, and the owner of the socket's directory,
// and only in a directory that checkDir accepts for the peer's uid. The owner
// of a directory nobody else can write to decides what answers at a path in
// it, just as the owner of the database decides what -status prints when no
// daemon runs: this is what lets root or an operator trust a daemon that
// runs as a dedicated user in its own /run/sentinel. The socket file's own
// owner proves nothing (an impostor owns the socket it made), and neither
// does a directory others can write to, such as /tmp.
func trust(path string, c net.Conn, peerCred func(net.Conn) (Cred, error), self uint32) error {
	cred, err := peerCred(c)
	if err != nil {
		return fmt.Errorf("read the daemon's credentials: %w", err)
	}
	dir := filepath.Dir(path)
	owner, dirErr := checkDir(dir, cred.UID)
	if dirErr != nil && !errors.Is(dirErr, ErrUnsafeDir) {
		return dirErr
	}
	if cred.UID != 0 && cred.UID != self && cred.UID != owner {
		return fmt.Errorf("%w: it runs as uid %d (pid %d), which is not root, you (uid %d) or the owner of %s (uid %d); not trusting its replies",
			ErrUntrusted, cred.UID, cred.PID, self, dir, owner)
	}
	return dirErr
}

// Attribute is how the audit log names a person who acts: the name they
// gave (-by) followed by the OS user who ran the command, "alice (uid 1000
// alice)", or "alice (uid 1000)" when the uid has no name here. The daemon
// takes the uid from the kernel, so the parenthesis cannot be forged; it is
// always last, so a -by that imitates one cannot hide it.
func Attribute(by string, uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	by = strings.TrimSpace(by)
	if u, err := user.LookupId(id); err == nil && u.Username != "" {
		return fmt.Sprintf("%s (uid %s %s)", by, id, u.Username)
	}
	return fmt.Sprintf("%s (uid %s)", by, id)
}
