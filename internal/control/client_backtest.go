package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"sentinel/internal/backtest"
)

// maxHistory bounds a history reply: a week of ten thousand subaccounts'
// five-minute counts is well under it.
const maxHistory = 8 << 30

// BacktestHistory asks the daemon for the history req names (see
// backtest.Load). The reply is decoded as it arrives: it can be large.
func (c *Client) BacktestHistory(ctx context.Context, req backtest.Request) (*backtest.History, error) {
	q := url.Values{}
	q.Set("since", req.Since.UTC().Format(queryTime))
	q.Set("to", req.To.UTC().Format(queryTime))
	codes := make([]string, len(req.Codes))
	for i, code := range req.Codes {
		codes[i] = strconv.Itoa(code)
	}
	q.Set("codes", strings.Join(codes, ","))
	q.Set("usage_from", req.UsageFrom)
	if req.SID != "" {
		q.Set("sid", req.SID)
	}
	path := "/backtest/history?" + q.Encode()
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sentinel"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("GET /backtest/history via %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var r reply
		if json.Unmarshal(data, &r) != nil || r.Error == "" {
			r.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return nil, &Error{Status: resp.StatusCode, Message: r.Error}
	}
	var h backtest.History
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxHistory)).Decode(&h); err != nil {
		return nil, fmt.Errorf("GET /backtest/history via %s: decode reply: %w", c.path, err)
	}
	return &h, nil
}

// Explain asks the daemon to explain sid's judgement, with its policies.
func (c *Client) Explain(ctx context.Context, sid string) (*backtest.Explanation, error) {
	var e backtest.Explanation
	if err := c.do(ctx, http.MethodGet, "/explain?sid="+url.QueryEscape(sid), nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}
