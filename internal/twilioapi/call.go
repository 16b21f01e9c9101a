package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// attempt is the RoundTripper of one attempt of one call: every HTTP request
// twilio-go makes for it goes through RoundTrip. twilio-go calls it on the
// caller's goroutine, so its fields need no lock.
type attempt struct {
	c        *Client
	ctx      context.Context // the caller's
	endpoint string

	// The request's own context: ctx plus Config.Timeout, started after the
	// rate limiter let the request go, so that queueing for the limiter is
	// not mistaken for a slow Twilio. It must outlive RoundTrip, as the body
	// is read after it returns: done cancels it.
	reqCtx context.Context
	cancel context.CancelFunc

	// What twilio-go does not tell: the last response's status, Retry-After
	// and body (closed by done, as twilio-go leaves error bodies open), and
	// whether the rate limiter refused to wait.
	status     int
	retryAfter string
	body       io.Closer
	limitErr   error
	// held: the attempt holds a place in the budget until done.
	held bool
}

func (a *attempt) RoundTrip(req *http.Request) (*http.Response, error) {
	a.done() // twilio-go sends one request per attempt; be safe if not
	if err := a.c.budget.acquire(a.ctx); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("concurrency budget: %w", err)
	}
	a.held = true
	if err := a.c.wait(a.ctx); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		a.limitErr = err
		a.done()
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	a.reqCtx, a.cancel = context.WithTimeout(a.ctx, a.c.cfg.Timeout)
	r := req.Clone(a.reqCtx)
	base := a.c.baseFor(req.URL.Host)
	r.URL.Scheme, r.URL.Host = base.Scheme, base.Host
	r.URL.User = nil
	r.Host = ""
	start := time.Now()
	resp, err := a.c.transport.RoundTrip(r)
	a.c.metrics.duration.WithLabelValues(a.endpoint).Observe(time.Since(start).Seconds())
	if err != nil {
		a.c.metrics.requests.WithLabelValues(a.endpoint, "error").Inc()
		return nil, err
	}
	a.c.metrics.requests.WithLabelValues(a.endpoint, strconv.Itoa(resp.StatusCode)).Inc()
	a.status, a.retryAfter, a.body = resp.StatusCode, resp.Header.Get("Retry-After"), resp.Body
	concurrent := -1
	if v, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Twilio-Concurrent-Requests"))); err == nil && v >= 0 {
		concurrent = v
	}
	a.c.budget.answered(resp.StatusCode, concurrent)
	return resp, nil
}

// done releases the last request's body and context and reports whether
// that request ran out of time.
func (a *attempt) done() (timedOut bool) {
	if a.body != nil {
		a.body.Close()
		a.body = nil
	}
	if a.held {
		a.c.budget.release()
		a.held = false
	}
	if a.cancel != nil {
		timedOut = errors.Is(a.reqCtx.Err(), context.DeadlineExceeded)
		a.cancel()
		a.cancel = nil
	}
	return timedOut
}

// do runs op, which makes one request through twilio-go's api with the
// parent's credentials, until it succeeds, fails for good, or runs out of
// retries.
func (c *Client) do(ctx context.Context, endpoint string, op func(api *openapi.ApiService) error) error {
	return c.call(ctx, endpoint, c.parent(), true, func(h *client.RequestHandler) error {
		return op(openapi.NewApiService(h))
	})
}

// call runs op, which makes one request through h as the account cred,
// like do. A request that is not idempotent (one that creates something) is
// retried only after a 429, which Twilio answers to requests it did not
// process: after a 5xx or no answer it may have been carried out, and a
// second one would make a second copy.
func (c *Client) call(ctx context.Context, endpoint string, cred credentials, idempotent bool, op func(h *client.RequestHandler) error) error {
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		a := &attempt{c: c, ctx: ctx, endpoint: endpoint}
		err := c.calledURL(op(c.handler(a, cred)))
		timedOut := a.done()
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			// The caller gave up: report that, not how twilio-go saw it.
			return ctxErr
		}
		retry, err := classify(err, a, timedOut)
		if !retry || (!idempotent && a.status != http.StatusTooManyRequests) {
			return err
		}
		if n >= c.cfg.MaxRetries {
			return fmt.Errorf("%w after %d attempts: %w", ErrExhausted, n+1, err)
		}
		delay := c.backoff(n, a.retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			// Waiting would only hold the caller (and whatever it holds,
			// such as a poller's concurrency slot) until its deadline.
			return fmt.Errorf("%w: retry %d due in %v: %w", ErrDeadline, n+1, delay.Round(time.Millisecond), err)
		}
		c.metrics.retries.WithLabelValues(endpoint).Inc()
		if err := c.cfg.Sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// calledURL makes err name the URL that was actually called: twilio-go
// builds every URL on https://api.twilio.com (or events.twilio.com), which
// the attempt's RoundTripper rewrites to Config.BaseURL (or EventsURL), and
// an error from the HTTP client would name the former.
func (c *Client) calledURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			base := c.baseFor(u.Host)
			u.Scheme, u.Host, u.User = base.Scheme, base.Host, nil
			ue.URL = u.String()
		}
	}
	return err
}

// classify says whether err, the outcome of attempt a, is worth retrying, and
// returns it made clearer where twilio-go's own error is not.
func classify(err error, a *attempt, timedOut bool) (bool, error) {
	if a.limitErr != nil {
		// The limiter cannot grant a request before the deadline (do has
		// seen that the context is not done); waiting more will not help.
		return false, fmt.Errorf("%w: %w", ErrDeadline, err)
	}
	var rest *client.TwilioRestError
	if errors.As(err, &rest) {
		// The status on the wire decides, not the one the body claims: a
		// 404 whose body says 500 is not worth retrying, a 503 whose body
		// says 400 is. Only an error twilio-go made up without sending
		// anything (bad credentials) has no response status.
		status := a.status
		if status == 0 {
			status = rest.Status
		}
		return status == http.StatusTooManyRequests || status >= 500, err
	}
	if timedOut {
		return true, fmt.Errorf("request timed out: %w", err)
	}
	switch s := a.status; {
	case s == 0:
		// No response at all: a transport error.
		return true, err
	case s == http.StatusTooManyRequests || s >= 500:
		// twilio-go could not decode the error body (an HTML 502 from a
		// load balancer, say) and reports only a JSON error.
		return true, fmt.Errorf("HTTP %d with an undecodable body: %w", s, err)
	case s >= 300:
		return false, fmt.Errorf("HTTP %d with an undecodable body: %w", s, err)
	default:
		// A success whose body does not decode: Twilio will most likely
		// send the same again.
		return false, fmt.Errorf("%w: HTTP %d: %w", ErrMalformed, s, err)
	}
}

// backoff returns the delay before retry n+1 (n from 0): a uniform draw below
// MinBackoff*2^n capped at MaxBackoff, raised to Retry-After if the server
// asked for longer, capped at 4*MaxBackoff.
func (c *Client) backoff(n int, retryAfter string) time.Duration {
	ceiling := c.cfg.MaxBackoff
	if n < 62 {
		if d := c.cfg.MinBackoff << n; d > 0 && d < ceiling && d>>n == c.cfg.MinBackoff {
			ceiling = d
		}
	}
	d := time.Duration(rand.Int64N(int64(ceiling) + 1))
	if ra, ok := parseRetryAfter(retryAfter, c.now()); ok && ra > d {
		d = min(ra, 4*c.cfg.MaxBackoff)
	}
	return d
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
