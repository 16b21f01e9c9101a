package control_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sentinel/internal/actions"
	"sentinel/internal/backtest"
	"sentinel/internal/control"
)

// TestBacktestEndpoints: through the socket, the history a backtest reads
// is what backtest.Load reads from the store, and an explanation is the
// daemon's own, with its policies.
func TestBacktestEndpoints(t *testing.T) {
	w := newWorld(t)
	path := socketPath(t)
	srv, err := control.New(control.Socket{Path: path}, w.act, w.st, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	c, err := control.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	req := backtest.RequestFor(w.act.Policies(), now.Add(-time.Hour), now)
	got, err := c.BacktestHistory(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := backtest.Load(ctx, w.st, req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(backtest.History{}), cmpopts.IgnoreFields(backtest.History{}, "Loaded")); diff != "" {
		t.Errorf("history through the socket (-Load +socket):\n%s", diff)
	}
	if len(got.Accounts) == 0 || len(got.Accounts[0].Counts) == 0 {
		t.Fatalf("history holds nothing: %+v", got)
	}

	e, err := c.Explain(ctx, w.subs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !e.Daemon || e.Status.SID != w.subs[0] || len(e.Rules) == 0 || e.Rules[0].Rule != "filtered" {
		t.Errorf("explanation %+v: want the daemon's, with its rule", e)
	}
	if _, err := c.Explain(ctx, "AC"+strings.Repeat("d", 32)); !errors.Is(err, actions.ErrUnknownAccount) {
		t.Errorf("explain an unknown SID: %v, want ErrUnknownAccount", err)
	}
	req.Since = req.To
	var de *control.Error
	if _, err := c.BacktestHistory(ctx, req); !errors.As(err, &de) || de.Status != http.StatusBadRequest {
		t.Errorf("an empty range: %v, want 400", err)
	}
}
