package policy

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden *.err files in testdata/invalid")

// TestInvalidPolicies loads each testdata/invalid case (a file, or a directory
// for cases that span files) and compares the error with its golden .err file.
func TestInvalidPolicies(t *testing.T) {
	entries, err := os.ReadDir("testdata/invalid")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() && filepath.Ext(name) != ".yaml" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			p := filepath.Join("testdata/invalid", name)
			var err error
			if e.IsDir() {
				_, err = Load(p)
			} else {
				_, err = LoadFiles(p)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("load %s: got error %v, want a *LoadError", p, err)
			}
			golden := strings.TrimSuffix(p, ".yaml") + ".err"
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("load %s: error mismatch (-want +got):\n%s", p, diff)
			}
		})
	}
}
