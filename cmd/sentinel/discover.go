package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sentinel/internal/control"
)

// unitSocket is the control socket of the daemon that
// deploy/sentinel.service runs (its -control-socket), where commands look
// first. It is a variable only so that tests can build a binary whose unit
// socket is a path of theirs, with -ldflags "-X main.unitSocket=...", as
// version is set.
var unitSocket = "/run/sentinel/control.sock"

// The sources of a socket path, for messages.
const (
	fromFlag = "-control-socket"
	fromEnv  = "SENTINEL_SOCKET"
)

// daemonSocket is where the daemon listens: the -control-socket flag, else
// SENTINEL_SOCKET, else the database's path plus ".sock". from names the
// flag or the variable that gave it ("" for the default). The daemon never
// takes unitSocket unless told: a second daemon, on a test database, must
// not take the service's place.
func daemonSocket(flagValue, env, db string) (path, from string) {
	switch {
	case flagValue != "":
		return flagValue, fromFlag
	case env != "":
		return env, fromEnv
	}
	return db + ".sock", ""
}

// candidates are the sockets a command looks for the daemon on, in the
// order the README documents: the socket -control-socket or else
// SENTINEL_SOCKET names, alone; otherwise the unit's socket, then the
// database's path plus ".sock".
func (c *config) candidates() []string {
	if c.socketFrom != "" {
		return []string{c.socket}
	}
	if filepath.Clean(c.socket) == filepath.Clean(unitSocket) {
		return []string{unitSocket}
	}
	return []string{unitSocket, c.socket}
}

// findDaemon returns a client of the running daemon, found on the first of
// the candidates that answers, or, when none does, a nil client and a nil
// error. A candidate that is absent, or a stale file nobody accepts on, is
// passed over. Any other failure ends the search with that error: a daemon
// is there (one this user may not use, or may not believe), and a command
// that went on to the database would report what that daemon does not
// hold, or act behind its back.
//
// A socket that the flag or SENTINEL_SOCKET names and that does not answer
// is an error unless -db was given too: the person meant that daemon, and
// the database in the working directory is most likely not its.
func findDaemon(cfg *config) (*control.Client, error) {
	for _, path := range cfg.candidates() {
		c, err := control.Dial(path)
		switch {
		case err == nil:
			return c, nil
		case !errors.Is(err, control.ErrNoDaemon):
			return nil, err
		}
	}
	if cfg.socketFrom != "" && !cfg.dbSet {
		return nil, fmt.Errorf("no daemon answers on %s, which %s names: is the daemon running, and is that its -control-socket? (to use a database without a daemon, give its -db)",
			cfg.socket, cfg.socketFrom)
	}
	return nil, nil
}

// noDaemon is where a command looked for a daemon and found none, for an
// error about what it found instead: "no daemon answers on
// /run/sentinel/control.sock or ./sentinel.db.sock".
func (c *config) noDaemon() string {
	var paths []string
	for _, p := range c.candidates() {
		paths = append(paths, shown(p))
	}
	return "no daemon answers on " + strings.Join(paths, " or ")
}

// errNoDatabase is a command's answer when no daemon answers and there is
// no database at -db either: nothing to read, and nothing to act on. The
// command creates none: one pasted in the wrong directory would leave a
// new, empty database there.
func (c *config) errNoDatabase() error {
	return fmt.Errorf("%s, and %s does not exist: pass -db or -control-socket", c.noDaemon(), shown(c.db))
}

// shown is path as a message shows it: a relative one starts with "./",
// so that it reads as relative to the working directory.
func shown(path string) string {
	if filepath.IsAbs(path) || strings.HasPrefix(path, ".") {
		return path
	}
	return "." + string(filepath.Separator) + path
}

// hostCommand is how a person on this host runs sentinel to reach what this
// process serves: the start of the reinstate command alerts and -status
// print (actions.Config.Command). It is self (selfCommand), followed by
// what a command would not find on its own.
//
// A daemon that serves its control socket (serving) adds the socket's
// absolute path, unless it is the unit's, which commands try first. A
// process that serves none (-once, a command acting without a daemon) adds
// the absolute paths of the database and the policies, and the Twilio URL
// and retention where they are not the defaults: -reinstate then acts on
// them itself, with the parent's credentials from the environment, or
// through a daemon that runs on that database by then.
func hostCommand(self string, cfg *config, serving bool) string {
	words := []string{self}
	if serving {
		if s := absPath(cfg.socket); s != unitSocket {
			words = append(words, "-control-socket", shellQuote(s))
		}
		return strings.Join(words, " ")
	}
	words = append(words, "-db", shellQuote(absPath(cfg.db)), "-policies", shellQuote(absPath(cfg.policies)))
	if cfg.twilioURL != defaultTwilioURL {
		words = append(words, "-twilio-api-url", shellQuote(cfg.twilioURL))
	}
	if cfg.retention != defaultRetention {
		words = append(words, "-retention", cfg.retention.String())
	}
	return strings.Join(words, " ")
}

// selfCommand is how a person runs this sentinel again, as pasted in
// another terminal: the binary's absolute path, quoted for a shell where it
// needs to be, or `go run ./cmd/sentinel` when it is go run's temporary
// build.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/sentinel"
	}
	return shellQuote(exe)
}

// absPath is path made absolute, or path itself if the working directory
// is gone.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// shellSafe matches words a POSIX shell takes as they are.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./@%+=:,-]+$`)

// shellQuote quotes s for a POSIX shell, if it needs quoting.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
