// Package slack tells a compliance team in Slack what sentinel saw and did.
//
// The model: the actions package describes what happened as an Event (plain
// data: which subaccount, which rule, the measured value against its
// threshold, the window, example message SIDs, what was done and the exact
// command that undoes it). Dispatcher.Notify encodes the Event and puts it in
// the store's persistent outbox; nothing is sent from the caller's goroutine.
// Dispatcher.Run drains the outbox, renders each Event to Block Kit (Render)
// with a plain-text fallback (Text) and posts it through a Client, either an
// incoming webhook or a bot token with a channel. Without either, a
// LogNotifier writes alerts to the log instead, and Config.Mode lets main say
// so at start.
//
// Incidents. Events of one (subaccount, rule, opened) belong to one incident:
// it opens (firing or suspended), is reminded of while it lasts (the caller
// decides when), and ends (reinstated or resolved). With a bot token the
// first delivered message of an incident is the root of its thread: the
// Dispatcher records that message's ts through Threads and posts later
// follow-ups as replies, broadcasting the ones nobody may miss. Rendering
// happens at delivery, so a follow-up queued before the thread existed still
// finds it. A webhook cannot thread: every message names its incident
// ("incident AC…/carrier-filtering opened 2026-11-26 22:40 UTC").
//
// Delivery guarantees. An alert is never lost silently. Delivery is at least
// once (a crash between Slack's answer and the outbox update re-sends) and in
// order: while Slack is down, rate limiting (Retry-After is honoured) or
// refusing sentinel, only the oldest item is retried, with capped exponential
// backoff and jitter, and nothing overtakes it. A message that Slack rejects
// on its own is sent again as plain text; if that fails too, it is retried
// rarely and after Options.MaxAttempts dead-lettered: logged at error level
// with its full text, counted in sentinel_slack_messages_total{result="dead"}
// and removed. Outbox items that cannot be decoded are dead-lettered at once.
// Outages and configuration errors never dead-letter: the outbox holds the
// alerts and sentinel_slack_outbox_depth shows them waiting.
//
// Secrets. The bot token and the webhook URL (whose path is the credential)
// never appear in errors, logs or metrics: errors from slack-go that quote the
// request URL are reduced to their cause and the secrets are redacted from
// the rest (see DeliveryError).
//
// Escaping. Friendly names and every other outside string are escaped for
// mrkdwn (&, <, >), so a subaccount named "<!channel>" pings nobody, and
// flattened to one line, so it cannot forge lines in log output.
package slack
