// Package actions is sentinel's circuit breaker: it judges every account
// against the current policy set and, when a subaccount crosses the line,
// suspends that one subaccount so that every other client keeps sending.
//
// # Model
//
// Each subaccount has a breaker (store.Breaker) in one of these states:
//
//   - closed: sending normally; rules are evaluated.
//   - open: suspended by sentinel. Rules are not evaluated (a suspended
//     subaccount sends nothing) until a person reinstates it.
//   - probation: reactivated, by anyone (sentinel -reinstate, the console,
//     the API, Twilio support): every reactivation is a reinstatement.
//     Evaluated with the policy's stricter probation thresholds until
//     ProbationUntil, then closed again. Windows start exactly at
//     ReinstatedAt (Twilio's date_updated for a reactivation sentinel did
//     not make), so traffic a person already reviewed cannot trip it again
//     and traffic sent after it is judged; spend is judged from the day's
//     spend noted then (SpendBase).
//   - external_suspended: suspended by someone else (the console, another
//     tool); noticed through the account status the poller syncs.
//   - twilio_suspended: suspended by Twilio itself (error 21478); only Twilio
//     support can lift it, so sentinel never tries.
//   - account_closed: closed in Twilio; ignored from then on.
//   - protected: on the policy set's protected list: rules alert, never
//     suspend.
//
// Every transition is stored with store.Transition (breaker and audit record
// in one transaction), exported as the sentinel_breaker_state gauge and told
// to Slack.
//
// # One cycle
//
// Judge evaluates every account, keeps the policy `for` counters in the
// store, opens, reminds and resolves incidents, and collects suspension
// candidates from the whole fleet. Candidates are ordered (severity, then
// evidence strength, then SID) and pass a pipeline of small stages, in the
// manner of Alertmanager's notify pipeline:
//
//	parent -> dedup -> protected -> closed -> stale -> dry-run -> twilio status -> blast radius -> suspend
//
// The parent comes first so that nothing, not even a status read, is done
// for it. The blast-radius stage allows at most MaxPerHour suspensions by
// sentinel per rolling hour (counted from the audit log) and never more
// than MaxFraction of the active subaccounts suspended by sentinel itself
// at once (a person's suspensions are Manual and count toward neither, nor
// are they offences that lengthen probation); past either
// limit the remaining candidates are recorded as blocked and one critical
// "systemic" alert is raised for the cycle, because many subaccounts
// tripping together is usually a carrier or Twilio incident, not many
// customers misbehaving at once.
//
// # Reading and writing in bulk
//
// A cycle runs every minute over every account, so it does not read or
// write account by account. The breakers are read in one transaction
// before the statuses are synced; after the syncs (a reinstatement noticed
// there resets rule states and incidents) the coverage, usage, usage poll
// states and rule states of every account are read in one transaction
// each, and which accounts have an open blind incident; then every
// account's buckets in one scan of the
// aggregates at the coarsest resolution the policy set's cuts allow
// (store.ScanHourBuckets), evaluating inside the scan and keeping only the
// decisions that lead anywhere. Accounts the scan does not visit (no
// traffic in the longest window) are evaluated after it on no buckets:
// their coverage, spend and parent rules still apply. Incidents and
// notifications then follow account by account; an incident is read and
// written on its own, and only when a decision can change it, because the
// slack package records threads on incidents concurrently.
//
// Rule states are written for the whole cycle in one transaction, and only
// for the accounts where something a later evaluation reads has changed: a
// rule's `for` counter, firing flag or firing start, a rule gained or
// lost, or whether the state predates the account's reinstatement. The
// stored LastValue and LastEval are therefore those of the last such
// change, not of the last cycle; a quiet cycle writes nothing. If a bulk
// read fails, that kind of record is read one account at a time, so a
// corrupt record fails its own account and not the cycle.
//
// # Write-ahead
//
// A suspension or reinstatement writes an intent to the audit log before it
// calls Twilio and an outcome after. The outcome of a success is written by
// the same store.Transition that moves the breaker, so the two cannot
// disagree. When the outcome is unknown (the process died, the connection
// dropped after the request was sent) the intent stays open; Reconcile, run
// at start-up and at the start of every Judge, reads the account's actual
// status from Twilio and writes the missing outcome. No action is lost and
// none is done twice: setting a status is idempotent, and an abandoned
// suspension is simply decided again by the next Judge. An account with an
// open intent is never acted on over it: a manual action reconciles the
// account's intents first and refuses (ErrUnreconciled) while one stays
// open, and Judge leaves such an account alone, since its breaker and
// status are what they were before the action.
//
// # Decisions from Slack
//
// A person may act on an incident from its Slack message (Decide, through
// the slack package's buttons): reinstate, keep suspended, acknowledge.
// A reinstatement is Reinstate with the incident named: the same checks,
// write-ahead audit and probation, the person's Slack identity as the
// actor. Keeping it suspended and acknowledging an alert change no
// subaccount; they are recorded on the incident (store.Decision) with an
// audit record in one transaction, and reminders respect them: none after
// "keep", none after an acknowledgement while the rule's severity stays
// the same. Every decision is first checked, under the same lock as every
// action, against the incident its button names: one that resolved, was
// superseded by a newer incident, ended with a reinstatement or was
// already decided is refused as stale and the refusal audited, so a double
// click acts once.
//
// # Caveats
//
// All actions are serialised by one mutex: a manual reinstatement waits for
// a running Judge to finish. Notifications are written to the Slack outbox
// (the slack package delivers them); a failure to enqueue one is logged and
// does not undo the action. Manual actions are not subject to the dry-run
// switch or the blast-radius limits: a person decided.
package actions
