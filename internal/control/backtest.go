package control

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"sentinel/internal/actions"
	"sentinel/internal/backtest"
	"sentinel/internal/policy"
)

// A backtest and an explanation read the store, which the daemon holds:
//
//	GET /backtest/history?since=T&to=T&codes=30007,21610&usage_from=DAY[&sid=AC...]
//	                                -> 200 backtest.History
//	GET /explain?sid=AC...          -> 200 backtest.Explanation
//
// The history is only read, in the daemon; the replay runs in the process
// that asked, with the policies it was given, so that a week of a large
// fleet costs the daemon a read of its aggregates and no minute of
// evaluation. An explanation is the daemon's own judgement, with the
// policies it runs.

// policySource is what GET /explain asks of the daemon's Actions
// (*actions.Actor): the policy set it judges with.
type policySource interface {
	Policies() *policy.Set
	MaxStaleness() time.Duration
}

var _ policySource = (*actions.Actor)(nil)

// times in queries.
const queryTime = time.RFC3339Nano

func (s *Server) backtestHistory(w http.ResponseWriter, r *http.Request) {
	req, err := historyRequest(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, reply{Error: err.Error()})
		return
	}
	h, err := backtest.Load(r.Context(), s.st, req)
	if err != nil {
		writeJSON(w, statusOf(err), reply{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// historyRequest reads a backtest.Request from a query.
func historyRequest(q url.Values) (backtest.Request, error) {
	var req backtest.Request
	var err error
	if req.Since, err = time.Parse(queryTime, q.Get("since")); err != nil {
		return req, fmt.Errorf("since: %w", err)
	}
	if req.To, err = time.Parse(queryTime, q.Get("to")); err != nil {
		return req, fmt.Errorf("to: %w", err)
	}
	if !req.Since.Before(req.To) {
		return req, errors.New("since must be before to")
	}
	for _, c := range strings.Split(q.Get("codes"), ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		code, err := strconv.Atoi(c)
		if err != nil {
			return req, fmt.Errorf("codes: %q is not an error code", c)
		}
		req.Codes = append(req.Codes, code)
	}
	if req.UsageFrom = q.Get("usage_from"); req.UsageFrom != "" {
		if _, err := time.Parse(time.DateOnly, req.UsageFrom); err != nil {
			return req, fmt.Errorf("usage_from: %w", err)
		}
	}
	req.SID = strings.TrimSpace(q.Get("sid"))
	return req, nil
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	sid := strings.TrimSpace(r.URL.Query().Get("sid"))
	if sid == "" {
		writeJSON(w, http.StatusBadRequest, reply{Error: "missing sid"})
		return
	}
	ps, ok := s.act.(policySource)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, reply{Error: "this daemon cannot explain"})
		return
	}
	set := ps.Policies()
	if set == nil {
		writeJSON(w, http.StatusServiceUnavailable, reply{Error: "no valid policy set is loaded"})
		return
	}
	e, err := backtest.Explain(r.Context(), s.st, set, sid, s.now(), ps.MaxStaleness())
	if err != nil {
		writeJSON(w, statusOf(err), reply{Error: err.Error()})
		return
	}
	e.Daemon = true
	writeJSON(w, http.StatusOK, e)
}
