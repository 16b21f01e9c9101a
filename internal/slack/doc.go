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
// Delivery guarantees. An alert is never lost silently. Delivery is in
// order and at least once. While Slack is down, rate limiting or refusing
// sentinel (a revoked webhook, a bad token, an unknown channel), the
// Dispatcher holds the whole outbox: it probes with the oldest alert only,
// after a backoff that doubles from Options.MinBackoff to at most
// Options.MaxBackoff (5 minutes), or after Slack's Retry-After (at most
// Options.MaxRetryAfter), and nothing overtakes it. The first probe Slack
// accepts lifts the hold and the rest of the queue follows in the same pass.
// The hold is stored (Options.Holds) with a fingerprint of the Slack
// configuration (Config.Fingerprint, a hash, never the secret): a restart
// keeps it, a restart with another webhook, token or channel lifts it, and
// sentinel_slack_hold{cause} shows it. The outbox forgets an alert in the
// first write after Slack accepts it, so a crash can duplicate at most the
// one alert whose post was in flight: Slack had taken it and that bbolt
// commit had not completed. A post that times out or is cut short by
// shutdown after Slack took it is sent again too. A message that Slack
// rejects on its own is sent again as plain text; if that fails too, it is
// retried with the same capped backoff (later alerts wait behind it at most
// that long) and after Options.MaxAttempts dead-lettered: logged at error
// level with its full text, counted in
// sentinel_slack_messages_total{result="dead"} and removed. Outbox items
// that cannot be decoded are dead-lettered at once. Outages and refusals
// never dead-letter: the outbox holds the alerts and
// sentinel_slack_outbox_depth shows them waiting.
//
// Decisions from Slack. With Slack interactions on (Socket Mode, or the
// HTTP Endpoint for workspaces that forbid it), an incident's messages
// offer buttons (Event.Offer, RenderInteractive): Reinstate… and Keep
// suspended… on a suspension (dry-run ones on a would-suspend), and
// Acknowledge on an alert. A button's value names its incident by
// (subaccount, rule, opened). Interactions accepts each click or modal
// submission at once, so Slack has its acknowledgement within 3 seconds,
// and carries it out afterwards on its own workers: it checks the person
// against the deciders (users, and members of user groups read through
// the API and kept for a minute; a group that cannot be read lets nobody
// in), opens a modal that asks for the reason and shows the message's
// evidence and what follows, and hands the decision to a Decider
// (sentinel's actions: the command line's checks, audit and probation),
// which refuses a stale or repeated one. The message is then updated in
// place to say who decided what and when; a refusal is told to the
// person alone, a failure in the incident's thread. The modal carries
// the message's blocks, so the update after its submission needs nothing
// stored. slackfake is a fake Slack, driven by slack-go's real clients,
// that the tests use.
//
// Secrets. The bot token, the app-level token, the signing secret and the
// webhook URL (whose path is the credential) never appear in errors, logs
// or metrics: errors from slack-go that quote the
// request URL are reduced to their cause and the secrets are redacted from
// the rest (see DeliveryError).
//
// Escaping. Friendly names and every other outside string are escaped for
// mrkdwn (&, <, >), so a subaccount named "<!channel>" pings nobody, and
// flattened to one line, so it cannot forge lines in log output.
package slack
