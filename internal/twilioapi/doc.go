// Package twilioapi is sentinel's Twilio client. It wraps twilio-go for the
// few calls sentinel makes (list and update accounts, read a subaccount's
// message log and usage, and, for -events-setup, Event Streams' sinks and
// subscriptions) and adds what a daemon needs and twilio-go lacks.
//
// # Model
//
// Every call runs as one or more attempts. An attempt builds a throwaway
// twilio-go client whose http.Client carries a per-attempt RoundTripper; the
// expensive part, the connection pool, is shared by the whole Client. The
// RoundTripper
//
//   - waits on the Client's rate limiter, so every HTTP request counts:
//     retries and page follow-ups included;
//   - then gives the request the caller's context plus Config.Timeout
//     (twilio-go has no context), so cancelling aborts a request in flight
//     and time spent queueing for the limiter is not counted as a timeout;
//   - rewrites the scheme and host to Config.BaseURL, which is the only way
//     to point twilio-go at anything but api.twilio.com, or, for what
//     twilio-go addresses to events.twilio.com, to Config.EventsURL (by
//     default Twilio's own when BaseURL is, else BaseURL: a fake serves
//     both). Because it works on the final request it also covers
//     next_page_uri follow-ups, and it is immune to TWILIO_EDGE and
//     TWILIO_REGION, which twilio-go reads from the environment (the
//     request handler is built without them anyway);
//   - records the status and Retry-After header of the response, which
//     twilio-go does not expose, and closes the body twilio-go leaves open on
//     error responses.
//
// Failed attempts are retried with capped exponential backoff and full
// jitter when retrying can help: HTTP 429 (Twilio code 20429), any 5xx
// (including an HTML 502 from a proxy, which twilio-go reports as a bare
// JSON decode error and is recognised here by the recorded status),
// per-request timeouts and transport errors. A Retry-After header, in
// seconds or as an HTTP date, raises the delay to at least what it asks for,
// capped at four times MaxBackoff. Other 4xx responses are final. The
// status on the wire decides, not the "status" of Twilio's error body. When the
// retries run out the error wraps ErrExhausted and the last cause, so
// errors.As still finds a *client.TwilioRestError and Code still works.
//
// The caller's context bounds the whole call, retries and backoff included.
// When it carries a deadline, a call gives up as soon as it cannot finish
// by then (the rate limiter cannot let the next request go in time, or the
// next retry is due after it) with an error wrapping ErrDeadline and the
// last failure, rather than waiting for the deadline to pass.
//
// Updating an account's status is retried like a read: setting a status is
// idempotent, so repeating a POST whose response was lost is harmless.
// Creating a sink or a subscription is not: it is retried only after a 429,
// which Twilio answers to requests it did not process.
//
// Event Streams resources belong to the account whose credentials call:
// Events acts as the parent, EventsAs as a subaccount with its own token,
// which SubaccountCredentials reads from the parent's account list (and
// which never appears in a String, an error or a log).
//
// # Paging
//
// Lists are read one page at a time with twilio-go's Page* calls; the next
// page is fetched by requesting next_page_uri as it is (it carries Twilio's
// PageToken), with the same retries. twilio-go's List* and Stream* helpers
// are never used: the *WithMetadata variants panic when the first page
// fails, Stream* leaks its goroutine when the reader stops early, and
// without a Limit List* follows a looping next_page_uri forever. Here paging
// stops with ErrPageLoop when a next_page_uri repeats, with
// ErrTooManyPages past Config.MaxPages, and with ErrMalformed at a
// next_page_uri that is not a plain path and query (a host, a fragment, a
// space), which is never requested.
//
// # Pitfalls handled
//
//   - Twilio's DateSent filters work on whole UTC days. Messages asks for
//     DateSent> (on or after) the UTC day of since, which twilio-go sends as
//     the query key "DateSent>" with an RFC 3339 value at midnight UTC, e.g.
//     "DateSent>=2024-05-01T00:00:00Z" before escaping. The day is computed
//     in UTC first because twilio-go formats a time in its own offset.
//     Callers get whole days and must filter by time themselves.
//   - twilio-go deletes every `\.\d+` from GET query strings, so no GET
//     parameter here carries a decimal.
//   - Message prices are negative decimal strings ("-0.00750"); they are
//     parsed exactly, without floats, into positive micro-units. Usage record
//     prices reach us only as twilio-go's float32 and are widened by their
//     shortest decimal form, which is exact to about seven significant digits.
//   - A message or page that cannot be understood (no SID, unparseable date,
//     truncated or mistyped JSON) fails the listing with an error that wraps
//     ErrMalformed and names the message and field. A partial page must not
//     look complete to the poller, which would then advance its coverage over
//     messages it never stored. Malformed 2xx responses are not retried: the
//     next poll retries them anyway.
//   - Account responses include the account's auth_token; it is dropped at
//     once. The Client's own auth token is sent only as basic auth and never
//     appears in errors, labels or URLs.
package twilioapi
