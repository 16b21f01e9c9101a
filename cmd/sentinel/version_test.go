package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewBuildInfo(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "sentinel", Version: "v0.0.0-20261204171900-bcc30c6d95af+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "-buildmode", Value: "exe"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "bcc30c6d95af09190f9388312cc53388f87fdd01"},
			{Key: "vcs.time", Value: "2026-12-04T17:19:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	unstamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "sentinel", Version: "(devel)"}}
	for _, tc := range []struct {
		name     string
		override string
		bi       *debug.BuildInfo
		want     buildInfo
		line     string
	}{
		{
			name: "built in a git clone",
			bi:   stamped, override: "dev",
			want: buildInfo{
				version:  "v0.0.0-20261204171900-bcc30c6d95af+dirty",
				revision: "bcc30c6d95af09190f9388312cc53388f87fdd01", time: "2026-12-04T17:19:00Z", modified: true,
				goVersion: "go1.26.8",
			},
			line: "sentinel v0.0.0-20261204171900-bcc30c6d95af+dirty (revision bcc30c6d95af09190f9388312cc53388f87fdd01, 2026-12-04T17:19:00Z, modified; go1.26.8)",
		},
		{
			name: "-ldflags overrides the version, not the revision",
			bi:   stamped, override: "v1.4.0",
			want: buildInfo{
				version:  "v1.4.0",
				revision: "bcc30c6d95af09190f9388312cc53388f87fdd01", time: "2026-12-04T17:19:00Z", modified: true,
				goVersion: "go1.26.8",
			},
			line: "sentinel v1.4.0 (revision bcc30c6d95af09190f9388312cc53388f87fdd01, 2026-12-04T17:19:00Z, modified; go1.26.8)",
		},
		{
			name:     "go install sentinel@v1.4.0",
			bi:       &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "sentinel", Version: "v1.4.0"}},
			override: "dev",
			want:     buildInfo{version: "v1.4.0", goVersion: "go1.26.8"},
			line:     "sentinel v1.4.0 (revision unknown; go1.26.8)",
		},
		{
			name: "no VCS information",
			bi:   unstamped, override: "dev",
			want: buildInfo{version: "dev", goVersion: "go1.26.8"},
			line: "sentinel dev (revision unknown; go1.26.8)",
		},
		{
			name: "-ldflags without VCS information",
			bi:   unstamped, override: "2026.12.1",
			want: buildInfo{version: "2026.12.1", goVersion: "go1.26.8"},
			line: "sentinel 2026.12.1 (revision unknown; go1.26.8)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := newBuildInfo(tc.override, tc.bi)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(buildInfo{})); diff != "" {
				t.Errorf("newBuildInfo (-want +got):\n%s", diff)
			}
			if got.String() != tc.line {
				t.Errorf("String() = %q, want %q", got.String(), tc.line)
			}
		})
	}
	if got := newBuildInfo("dev", nil); got.version != "dev" || got.goVersion == "" {
		t.Errorf("without build information: %+v, want version dev and the running Go", got)
	}
}

// TestVersion checks that a binary built from a git clone, as make build
// and TestMain build it, names its commit in -version and carries a module
// version rather than "dev".
func TestVersion(t *testing.T) {
	t.Parallel()
	r := runEnv(t, []string{"PATH=" + os.Getenv("PATH")}, nil, "-version")
	if r.code != 0 || !regexp.MustCompile(`^sentinel \S+ \(revision .+; go\S+\)\n$`).MatchString(r.stdout) {
		t.Fatalf("-version: %s", r)
	}
	head := gitCheckout(t)
	if !binVCS {
		t.Skip("TestMain built sentinel with -buildvcs=false; its output says why")
	}
	if !strings.Contains(r.stdout, "revision "+head) {
		t.Errorf("-version = %q, want revision %s (HEAD)", r.stdout, head)
	}
	if want := "-" + head[:12]; !strings.Contains(r.stdout, want) || strings.HasPrefix(r.stdout, "sentinel dev ") {
		t.Errorf("-version = %q, want a module version naming %s", r.stdout, head[:12])
	}
}

// gitCheckout returns the HEAD of the git checkout the tests run in, or
// skips the test. Go stamps VCS information only where .git is a
// directory, so not in a worktree, whose .git is a file.
func gitCheckout(t *testing.T) (head string) {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("git rev-parse: %q", out)
	}
	if fi, err := os.Stat(filepath.Join(f[0], ".git")); err != nil || !fi.IsDir() {
		t.Skipf("%s is a git worktree: go build stamps no VCS information there", f[0])
	}
	return f[1]
}
