package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckShippedPolicies(t *testing.T) {
	if err := Check("../../policies"); err != nil {
		t.Fatalf("Check(policies):\n%v", err)
	}
}

func TestShippedPolicyTests(t *testing.T) {
	files, err := filepath.Glob("../../policies/tests/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no policy tests found: %v", err)
	}
	var out strings.Builder
	failed, err := RunTests(&out, "", files...)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if failed > 0 {
		t.Fatalf("%d policy test cases failed:\n%s", failed, out.String())
	}
}
