package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
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

	// Commands find the unit's daemon by themselves (unitSocket), and the
	// members of its group may use it: the socket's directory is theirs
	// to look into, the socket theirs (-control-group), and the README
	// says how to join.
	for _, setting := range []string{"User=sentinel", "Group=sentinel", "RuntimeDirectory=sentinel", "RuntimeDirectoryMode=0750",
		"StateDirectory=sentinel", "StateDirectoryMode=0750", "WorkingDirectory=/var/lib/sentinel"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(setting) + `$`).Match(unit) {
			t.Errorf("sentinel.service lacks %s", setting)
		}
	}
	flags := map[string]string{}
	for i := 1; i+1 < len(args); i++ {
		if strings.HasPrefix(args[i], "-") && !strings.HasPrefix(args[i+1], "-") {
			flags[args[i]] = args[i+1]
		}
	}
	for flag, want := range map[string]string{
		"-control-socket": unitSocket, "-control-group": "sentinel", "-db": "/var/lib/sentinel/sentinel.db",
	} {
		if flags[flag] != want {
			t.Errorf("ExecStart has %s %q, want %q", flag, flags[flag], want)
		}
	}
	for _, step := range []string{"useradd --system --user-group ", "usermod -aG sentinel "} {
		if !strings.Contains(string(readme), step) {
			t.Errorf("the README does not say %q", step)
		}
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

// TestSlackAppManifest: deploy/slack-app.yml creates, in one step, an app
// that sentinel's buttons work with: the scopes every Web API method it
// calls needs, interactivity and Socket Mode on. The README points to it.
func TestSlackAppManifest(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../deploy/slack-app.yml")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		DisplayInformation struct {
			Name string `yaml:"name"`
		} `yaml:"display_information"`
		Features struct {
			BotUser struct {
				DisplayName string `yaml:"display_name"`
			} `yaml:"bot_user"`
		} `yaml:"features"`
		OAuthConfig struct {
			Scopes struct {
				Bot []string `yaml:"bot"`
			} `yaml:"scopes"`
		} `yaml:"oauth_config"`
		Settings struct {
			Interactivity struct {
				IsEnabled bool `yaml:"is_enabled"`
			} `yaml:"interactivity"`
			SocketModeEnabled bool `yaml:"socket_mode_enabled"`
		} `yaml:"settings"`
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("slack-app.yml: %v", err)
	}
	if m.DisplayInformation.Name == "" || m.Features.BotUser.DisplayName == "" {
		t.Error("the app has no name or no bot user")
	}
	// chat.postMessage, chat.update, chat.postEphemeral: chat:write;
	// usergroups.users.list: usergroups:read. views.open needs none.
	if diff := cmp.Diff([]string{"chat:write", "usergroups:read"}, m.OAuthConfig.Scopes.Bot); diff != "" {
		t.Errorf("bot scopes (-want +got):\n%s", diff)
	}
	if !m.Settings.Interactivity.IsEnabled || !m.Settings.SocketModeEnabled {
		t.Errorf("interactivity %v, Socket Mode %v: both must be on", m.Settings.Interactivity.IsEnabled, m.Settings.SocketModeEnabled)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "(deploy/slack-app.yml)") {
		t.Error("README does not point to deploy/slack-app.yml")
	}
}
