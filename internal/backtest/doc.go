// Package backtest replays sentinel's stored history through a policy set
// and reports what its rules would have done: whom they would have
// suspended and when, which alerts they would have raised, how close the
// fleet came to each threshold, and how that differs from what sentinel
// actually did, from its audit log. Explain uses the same replay to show
// why one subaccount is judged as it is now.
//
// # Model
//
// Load reads, once and only reading, what a replay needs: every account's
// five-minute counts over the period and its longest window before it
// (store.ScanCounts), its coverage, usage, spend days and breaker, its
// breaker changes from the audit log (actions.Changes), and for each
// reinstatement inside a bucket the counts from it to the next bucket
// boundary (store.CountRange). A running daemon serves a History over its
// control socket; the replay itself runs in the process that asked.
//
// Run evaluates every account at every step with policy.Set.Evaluate, the
// daemon's own engine, unchanged, carrying each rule's state from step to
// step, so that `for`, hysteresis, probation and reinstatements work as in
// the daemon. Each step's firing suspension rules then pass the daemon's
// safety pipeline (actions.Rails, actions.CompareCandidates, actions.InFleet):
// worst offender first; never the parent; protected subaccounts alert
// only; nothing on stale data; rules in dry_run mode decide without
// acting; at most MaxPerHour suspensions per rolling hour and MaxFraction
// of the active subaccounts suspended at once. Blocks and dry-run
// decisions are reported once per firing, as the daemon records them once
// per incident.
//
// A step costs little. Evaluate is handed one synthetic bucket per stretch
// between the set's cuts (policy.Set.Cuts), summed from running sums of
// the five-minute counts: exact, since no window starts inside a stretch.
// And an account whose inputs (everything Evaluate reads, reduced to what
// can change a decision) are those of its last evaluation, which left its
// rule states as it found them, is not evaluated again: between bucket
// boundaries that is most accounts at most steps. Accounts are evaluated
// in parallel within a step; the rails then decide in order.
//
// # What a replay assumes
//
//   - History is judged as it is known now. The store keeps each message
//     in its latest state, so a message carriers filtered an hour after it
//     was sent counts as filtered from its own time, and so does one read
//     late. A step inside a five-minute bucket counts that bucket whole,
//     messages sent up to five minutes after the step included. The daemon
//     judged what it had read by then.
//   - Coverage is the stretch known complete now: an outage that later
//     polls filled in is no gap. A window that reaches before the coverage
//     starts, or a step later than where it ends by more than the
//     policies' staleness, is unknown, as for the daemon; the stale-data
//     rail applies past where it ends.
//   - Usage is kept as last read: a day's spend and when it was read. At a
//     step before that read, the day's spend is spread over the day's
//     outbound messages up to the read (evenly over the time, without any).
//     Usage counts as read at each step until its last read, and goes
//     stale after it.
//   - Suspensions. Before the period, everything is what happened. In it,
//     the replay makes its own suspensions and ignores those sentinel
//     actually made; suspensions by a person, outside sentinel or by
//     Twilio, and closures, are copied. A suspended account is not judged.
//     A reinstatement in the audit log ends a suspension of the replay
//     that began before it: the account is judged again on probation, its
//     windows starting at the reinstatement. A reinstatement that ended a
//     suspension the replay never made is ignored, and a suspension of the
//     replay that no reinstatement ends lasts to the end of the period.
//     Offences count sentinel's suspensions before the period and the
//     replay's in it. A subaccount that sentinel actually suspended sent
//     nothing while suspended: the replay judges the traffic there is.
//   - Rule states start empty at the first step, as for a daemon started
//     then with these policies. An account is judged wherever its message
//     log is covered, also before sentinel first listed it (its first
//     read backfills the longest window).
//   - The spend noted at a reinstatement is the audit log's; for one
//     recorded before the audit log noted it, the breaker's for its last
//     reinstatement, else estimated as the day's spend is. A window that
//     starts at a reinstatement older than the raw messages kept is
//     unknown: its first bucket cannot be recounted.
//
// TestReplayEqualsDaemon drives actions.Actor, the daemon's judge, minute
// by minute through three hours of suspensions, blocks, reinstatements,
// probation and stale data, then replays the store at the daemon's cycle
// times: every decision of every rule for every account is the daemon's.
package backtest
