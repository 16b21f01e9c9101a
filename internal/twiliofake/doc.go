// Package twiliofake is an in-process HTTP fake of the parts of Twilio's
// 2010-04-01 REST API and Event Streams API that sentinel uses, faithful enough that
// github.com/twilio/twilio-go v1.31.0 cannot tell it from api.twilio.com.
// Tests, benchmarks and the demo point twilio-go at it over loopback through a
// transport that rewrites the scheme and host (see Server.Transport).
//
// # Endpoints
//
//	GET    /2010-04-01/Accounts.json                               Status, FriendlyName
//	GET    /2010-04-01/Accounts/{Sid}.json
//	POST   /2010-04-01/Accounts/{Sid}.json                         Status, FriendlyName
//	GET    /2010-04-01/Accounts/{Sid}/Messages.json                To, From, DateSent, DateSent<, DateSent>
//	GET    /2010-04-01/Accounts/{Sid}/Messages/{MessageSid}.json
//	POST   /2010-04-01/Accounts/{Sid}/Messages/{MessageSid}.json   Body (empty only), Status (canceled only)
//	DELETE /2010-04-01/Accounts/{Sid}/Messages/{MessageSid}.json
//	GET    /2010-04-01/Accounts/{Sid}/Usage/Records/Today.json     Category, IncludeSubaccounts
//	GET    /2010-04-01/Accounts/{Sid}/Usage/Records/Daily.json     Category, StartDate, EndDate, IncludeSubaccounts
//
// and, on the same listener, the Event Streams API that twilio-go addresses
// to https://events.twilio.com:
//
//	GET    /v1/Sinks                                            InUse, Status
//	POST   /v1/Sinks                                            Description, SinkType, SinkConfiguration
//	GET    /v1/Sinks/{Sid}
//	POST   /v1/Sinks/{Sid}                                      Description
//	DELETE /v1/Sinks/{Sid}
//	POST   /v1/Sinks/{Sid}/Test
//	POST   /v1/Sinks/{Sid}/Validate                             TestId
//	GET    /v1/Subscriptions                                    SinkSid
//	POST   /v1/Subscriptions                                    Description, SinkSid, Types, ReceiveEventsFromSubaccounts
//	GET    /v1/Subscriptions/{Sid}
//	POST   /v1/Subscriptions/{Sid}                              Description, ReceiveEventsFromSubaccounts
//	DELETE /v1/Subscriptions/{Sid}
//	GET    /v1/Subscriptions/{Sid}/SubscribedEvents
//	POST   /v1/Subscriptions/{Sid}/SubscribedEvents             Type, SchemaVersion
//	GET    /v1/Subscriptions/{Sid}/SubscribedEvents/{Type}
//	POST   /v1/Subscriptions/{Sid}/SubscribedEvents/{Type}      SchemaVersion
//	DELETE /v1/Subscriptions/{Sid}/SubscribedEvents/{Type}
//
// Lists also take PageSize, Page and PageToken. The parent's usage includes
// its subaccounts' unless IncludeSubaccounts=false, as the spec documents.
// The message endpoints are what a subaccount's owner, who holds its
// credentials, can do to its log behind sentinel's back: redact a body
// (POST with an empty Body) and delete a message.
//
// # Model
//
// A Server holds one parent account and its subaccounts. Each account keeps
// its messages in one slice sorted oldest first by (sort key, SID), where the
// sort key is date_sent, or date_created when date_sent is null. Listing walks
// that slice backwards, so the log reads newest first as Twilio's does, and a
// page token names the last item served (its sort key and SID): the next page
// starts by binary search after that item. A page costs O(log n + page)
// rather than O(n), and messages appended while a client pages, newer by
// construction, never cause duplicates or skips. Messages are stored compactly
// (interned strings, SIDs as 16 bytes): a million messages over 200
// accounts take about 165 MB (BenchmarkPageMessages reports it).
//
// Usage records are derived from the messages (count, segments and price per
// UTC day and category) unless a test sets a record explicitly (SetUsage).
//
// Test knobs are exported methods, safe for concurrent use while the server
// is serving: AddSubaccount, SetStatus, SuspendByTwilio, AppendMessages,
// Generate, UpdateMessage (late delivery receipts), SetUsage, Inject (429,
// 5xx, HTML pages, truncated JSON, dropped connections, latency), LoopPages,
// the clock (Options.Now), and the request record (Requests, Stats, Reset);
// for Event Streams AddSink, AddSubscription, EditSink (what only the
// console could change), Sinks, Subscriptions, SetDelivery,
// WaitDeliveries, DeliveryStats and Deliveries.
//
// # Event Streams
//
// Sinks and subscriptions belong to the account whose credentials created
// them: the parent's credentials list the parent's only, a subaccount's its
// own. A webhook sink (sink_configuration destination, method, and
// batch_events, true when left out (?)) is active at once: Twilio no longer
// validates sinks. A sink's configuration cannot change through the API,
// only its description. A subscription selects event types, each at a
// schema version (the latest when none is given); a parent's subscription
// with ReceiveEventsFromSubaccounts also selects its subaccounts' events
// (Options.SubaccountEvents says whether the fake honours that beta
// parameter).
//
// Delivery: while a webhook sink subscribes to message events, messages
// appended (AppendMessages, Generate) raise the events of every status they
// have passed through (queued, sent, then delivered, undelivered, read, or
// failed), inbound ones com.twilio.messaging.inbound-message.received with
// the body, and UpdateMessage the statuses newly reached. Each event is a
// CloudEvents 1.0 object (id EZ and 32 hex digits, source, type, time,
// dataschema on events-schemas.twilio.com, data with messageSid,
// accountSid, messageStatus in capitals, errorCode (a number on failed and
// undelivered events, else null), timestamp, from, to, messagingServiceSid
// and, inbound, body). A sink gets the events of one change as one JSON
// array per BatchSize events when batch_events is true, else one object per
// request, by HTTP POST (the sink's method) to its destination, with the
// destination's user info as Basic credentials and an X-Twilio-Signature
// (DeliveryOptions.Signing). Deliveries run on one goroutine, started by the
// first and stopped by Close, and are retried with doubling backoff on a
// non-2xx answer or no answer, up to MaxAttempts, with the same event ids.
// DuplicateEvery and Reorder make the at-least-once, unordered delivery
// Twilio promises visible.
//
// # What is faithful
//
// Sources: twilio-go v1.31.0's source, Twilio's OpenAPI spec of the
// 2010-04-01 API (twilio-oai 2.6.7), Twilio's docs, and the spec's own
// examples.
//
//   - Basic auth with the parent's SID and token, or a subaccount's own SID
//     and token for its own resources; anything else is 401/20003.
//   - JSON shapes, field names and nulls as in the spec: RFC 2822 dates,
//     negative decimal prices as strings ("-0.00790"), counts as strings,
//     uri and subresource_uris, and the list envelope (first_page_uri,
//     next_page_uri null on the last page, previous_page_uri, page,
//     page_size, start, end, uri). Tokens look like Twilio's ("PA"/"PB" and
//     the last SID) with the sort key appended.
//   - Errors are Twilio's JSON body {code, message, more_info, status}.
//     20003 (401), 20404 (404), 20429 (429 with Retry-After), 21476, 21478,
//     21479 on account updates, 21100 for an invalid Status (Twilio's error
//     page for the Accounts resource names invalid Status values and closing
//     the main account), 70002 for malformed parameters (Twilio's "Bad
//     request" code, and the code Twilio answered to "Paged requests must
//     include a PageToken" in twilio-ruby issue #494).
//   - DateSent, DateSent> and DateSent< (what twilio-go sends as
//     DateSent%3E and DateSent%3C; in a hand-written URL they are
//     DateSent>=day and DateSent<=day) filter whole UTC days: DateSent> keeps
//     messages on or after 00:00 UTC of that day, DateSent< those before the
//     end of that day. Values may be YYYY-MM-DD, RFC 3339 (what twilio-go
//     sends), RFC 2822 or "YYYY-MM-DD hh:mm:ss"; only the date as written
//     counts, time of day and offset are ignored (?), so a client must
//     convert to UTC before sending.
//   - PageSize is 1..1000 (default 50); anything else is 400.
//   - A message is reached under its own account's path only; under another
//     account's, or once deleted, it is 404/20404.
//   - Redacting (POST Body=, the spec's redactBody example) empties the body
//     and moves date_updated; everything else stays, status and price
//     included. Status=canceled cancels a scheduled message and is
//     400/30409 (?) for any other. Neither parameter, both, a Body that is
//     not empty or another Status is 400/30400, the causes Twilio's error
//     page lists.
//   - Deleting answers 204 with no body; the message leaves listings and
//     fetches. A message not yet complete cannot be deleted: 20009.
//
// # What is not, or not known (?)
//
//   - Only the endpoints above exist; everything else is 404/20404.
//   - Messages whose date_sent is null sort by date_created (?) and match the
//     DateSent filters by date_created unless Options.StrictDateSent, which
//     drops them from any DateSent-filtered listing, as a SQL comparison with
//     NULL would (?). Sentinel must cope with either.
//   - Accounts are listed by SID (?); the parent is included unless
//     Options.HideParent (?). Daily usage is listed oldest day first (?) and
//     defaults to the 30 days ending today (?); only the categories
//     totalprice, sms, sms-outbound, sms-inbound and mms exist, any other
//     category lists nothing.
//   - Usage record prices are strings ("0.75"), as in the spec's examples and
//     what twilio-go's UnmarshalFloat32 copes with, although the spec's schema
//     says number.
//   - A subaccount's own credentials for another account's resources get
//     401/20003 (?); its own credentials while it is suspended or closed get
//     401/10001 "Account is not active" (?).
//   - Page alone is client state, as the spec says; Page > 0 without a
//     PageToken is refused with 400/70002 as Twilio has done.
//   - Times are kept to the second, as Twilio reports them.
//   - Which statuses are "not yet complete" (?): the fake refuses to redact
//     a queued, sending, accepted, scheduled or receiving message, with
//     409/20409 (Twilio redacts "post-flight" messages and documents no code
//     for the others (?); its spec's example redacts a sent one), and to
//     delete those and sent ones (awaiting a delivery receipt; Twilio has
//     answered "Cannot delete message in state SENT"), with 400/20009 (the
//     HTTP status is not documented (?)). Twilio asks to wait minutes, at
//     times days, before deleting; the fake has no such delay.
//   - A deleted message's usage stays in the usage records (?): deleting a
//     record does not refund what was sent. Twilio says a deleted message
//     may still show in logs for up to 14 days (?); the fake drops it at
//     once.
//   - No rate limiting of its own: 429s come only from Inject.
//   - Event Streams (?): sinks and subscriptions are listed by SID; deleting
//     a sink that a subscription uses is refused with 400; the errors of the
//     Events API are 400/70002 like the rest of the fake's malformed
//     requests; an event reaches a sink once even if several of its
//     subscriptions select it; events carry only the data fields above, at
//     the schema versions of Twilio's published examples; events are raised
//     when a message changes in the fake, however old its dates; signing
//     with the sink's account's token over the URL with bodySHA256 is how
//     Twilio signs JSON webhooks, not confirmed for Event Streams.
package twiliofake
