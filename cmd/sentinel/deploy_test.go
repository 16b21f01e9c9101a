package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnit checks deploy/sentinel.service as the README installs it:
// systemd-analyze verify finds nothing to say about it, with the binary in
// place, and sentinel accepts the flags its ExecStart passes.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	const installed = "/usr/local/bin/sentinel"
	unit, err := os.ReadFile("../../deploy/sentinel.service")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}

	// ExecStart runs the binary where the README installs it, and the
	// README installs itself where Documentation= points.
	execStart := regexp.MustCompile(`(?m)^ExecStart=((?:.*\\\n)*.*)$`).FindSubmatch(unit)
	if execStart == nil {
		t.Fatal("sentinel.service has no ExecStart=")
	}
	args := strings.Fields(strings.ReplaceAll(string(execStart[1]), "\\\n", " "))
	if args[0] != installed {
		t.Errorf("ExecStart runs %s, want %s", args[0], installed)
	}
	for _, step := range []string{
		"install -m 0755 bin/sentinel " + installed,
		"install -D -m 0644 README.md /usr/share/doc/sentinel/README.md",
	} {
		if !strings.Contains(string(readme), step) {
			t.Errorf("the README's install steps lack %q", step)
		}
	}
	if !regexp.MustCompile(`(?m)^Documentation=file:///usr/share/doc/sentinel/README\.md$`).Match(unit) {
		t.Errorf("sentinel.service lacks Documentation=file:///usr/share/doc/sentinel/README.md")
	}

	// The flags parse: -check-policies, given last, makes sentinel check
	// the shipped policies instead of starting the daemon.
	r := runEnv(t, []string{"PATH=" + os.Getenv("PATH")}, nil,
		append(args[1:], "-check-policies", "-policies", "../../policies")...)
	if r.code != 0 {
		t.Errorf("sentinel with ExecStart's flags: %s", r)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze is not installed (Debian: systemd); not verifying the unit: %v", err)
	}
	// The unit as installed, but for the binary's path: verify checks that
	// ExecStart's program exists and is executable.
	path := filepath.Join(t.TempDir(), "sentinel.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), installed, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 after warnings such as an unknown setting, so any
	// output is a failure.
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
