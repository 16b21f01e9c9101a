package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// buildInfo says which build runs: what -version prints, the start-up log
// line and sentinel_build_info's labels.
type buildInfo struct {
	// version is the -ldflags override, else the module version Go
	// recorded (a tag, or a pseudo-version naming the commit, with
	// "+dirty" for uncommitted changes), else "dev".
	version string
	// revision is the commit the binary was built from; empty when it was
	// built outside a git clone (a tarball, a git worktree) or with
	// -buildvcs=false.
	revision  string
	time      string // the commit's time, RFC 3339; empty without a revision
	modified  bool   // built with uncommitted changes
	goVersion string
}

// readBuildInfo returns the running binary's build information.
func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return newBuildInfo(version, bi)
}

// newBuildInfo combines override, main.version as -ldflags set it, with
// what Go recorded in the binary; bi may be nil.
func newBuildInfo(override string, bi *debug.BuildInfo) buildInfo {
	b := buildInfo{version: "dev", goVersion: runtime.Version()}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.revision = s.Value
			case "vcs.time":
				b.time = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			b.goVersion = bi.GoVersion
		}
	}
	if override != "" && override != "dev" {
		b.version = override
	}
	return b
}

// String is -version's line, for example
// "sentinel v1.4.0 (revision 5d0c..., 2026-12-04T17:19:00Z; go1.26.8)".
func (b buildInfo) String() string {
	var vcs []string
	if b.revision == "" {
		vcs = append(vcs, "revision unknown")
	} else {
		vcs = append(vcs, "revision "+b.revision)
	}
	if b.time != "" {
		vcs = append(vcs, b.time)
	}
	if b.modified {
		vcs = append(vcs, "modified")
	}
	return fmt.Sprintf("sentinel %s (%s; %s)", b.version, strings.Join(vcs, ", "), b.goVersion)
}
