package control_test

import (
	"path/filepath"
	"strings"
	"testing"

	"sentinel/internal/control"
	"sentinel/internal/store"
)

// FuzzRequest feeds arbitrary bodies to the manual endpoints: they must
// answer 200 only for a complete request, 400 otherwise, and never panic.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		`{"sid":"AC1","by":"b","reason":"r"}`, `{"sid":""}`, `{}`, `[]`, `null`, `{"sid":1}`,
		`{"sid":"AC1","by":"b","reason":"r"}{"x":1}`, strings.Repeat("{", 1000), "\x00",
	} {
		f.Add(s)
	}
	st, err := store.Open(filepath.Join(f.TempDir(), "sentinel.db"), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	srv, err := control.New(control.Socket{Path: filepath.Join(f.TempDir(), "s.sock")}, &stub{}, st, nil, clock)
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/reinstate", "/suspend"} {
			rec := httptestRecorder(h, "POST", path, body)
			if rec.code != 200 && rec.code != 400 {
				t.Errorf("POST %s %q = %d %s", path, body, rec.code, rec.body)
			}
		}
	})
}
