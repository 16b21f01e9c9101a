// Package policy loads sentinel's compliance rules from YAML and judges an
// account's traffic against them.
//
// # Format
//
// Every *.yaml or *.yml file directly in the policy directory is loaded
// (subdirectories are not, so tests can live in policies/tests). A file has
// up to four sections; rule and list names are shared by all files:
//
//	settings:                     # at most one value per key across files
//	  staleness: 15m              # message log may lag this much before "unknown"
//	  usage_staleness: 1h         # usage may be this old before spend rules are "unknown"
//	  currency: USD               # budgets and min_spend are in this currency
//	  probation: {duration: 24h, factor: 0.5, cap: 7d}
//	lists:                        # named lists of error codes or account SIDs
//	  carrier_filtering: [30007]
//	  vip: [AC0123456789abcdef0123456789abcdef]
//	protected:                    # suspend rules only alert for these
//	  accounts: [$vip]
//	  names: ["house-*"]          # friendly-name globs, path.Match syntax
//	rules:
//	  - name: carrier-filtering
//	    description: Carriers filter 5% of this account's messages.
//	    signal: error_rate        # see below
//	    codes: $carrier_filtering # or [30007, $other_list]
//	    window: 1h                # Go duration, or days: 7d, 1d12h
//	    min_volume: 100           # finished outbound messages before a rate is judged
//	    trip: 5%                  # or 0.05
//	    resolve: 2.5%             # optional, below trip: hysteresis
//	    for: 2                    # consecutive evaluations over trip before firing
//	    severity: critical        # info | warning | critical
//	    action: suspend           # alert | suspend
//	    mode: enforce             # enforce | dry_run
//	    scope:                    # optional; default every subaccount
//	      names: ["acme-*"]
//	      accounts: [$vip]
//	      exclude_accounts: [AC...]
//	      exclude_names: ["*-test"]
//	    overrides:                # optional; the first match wins
//	      - accounts: [$vip]      # or names: [...]
//	        trip: 10%             # also resolve, min_volume, min_spend, budget, for
//
// Signals and their thresholds:
//
//	error_rate        codes / finished outbound          rate 0..1, min_volume
//	error_count       finished outbound with codes       count
//	failure_rate      failed+undelivered / finished      rate, min_volume
//	opt_out_rate      inbound opt-outs / outbound        rate, min_volume
//	no_service_rate   outbound without a Messaging Service / outbound   rate, min_volume
//	no_service_count  outbound without a Messaging Service              count
//	parent_outbound   outbound in the parent's own log   count (parent only)
//	spend_budget      today's spend / budget             ratio, window today, budget
//	spend_spike       today's spend / mean of the previous `days` (default 7)
//	                                                     ratio, window today, min_spend (USD)
//
// Loading is strict and reports every problem, across every file, with its
// file, line and field: unknown keys, wrong types, negative windows, rates
// outside 0..1, resolve not below trip, unknown enum values and list
// references, bad globs, duplicate rule or list names (naming both places),
// conflicting settings, YAML syntax errors. Check and Load return them as a
// *LoadError.
//
// # Semantics
//
// Evaluate is pure: the account's buckets, coverage, usage and the previous
// states in; a Decision per rule and the new states out. For each rule:
//
//   - Scope: the parent account is judged only on parent signals, and
//     subaccounts never on them. A rule applies to every subaccount unless
//     its scope names some; exclusions win. Out of scope is Skipped.
//   - Window: buckets that start in [max(WindowStart(now, window),
//     ReinstatedAt), now). A window never reaches back before the last
//     reinstatement (that traffic was reviewed by the person who
//     reinstated) and starts exactly at it: the caller supplies the head
//     bucket from the reinstatement to the next bucket boundary (see
//     Subject.Buckets).
//   - Gaps: when the message log's Coverage does not span [window start,
//     now - staleness] the result is Unknown; spend rules are Unknown when
//     usage was never read, is older than usage_staleness, or is billed in
//     a currency other than the set's. Unknown never trips and never
//     resolves, and it resets a pending streak (Consecutive = 0), as a
//     missing series resets a Prometheus alert's `for`.
//   - Volume: a rate whose denominator is below min_volume (or zero) is
//     Insufficient. That breaks a pending streak (Consecutive = 0) but does
//     not resolve a firing rule: too little traffic is not evidence of health.
//     Messages still in flight (queued, sending, accepted, scheduled) are not
//     finished and do not count in error and failure rates.
//   - Hysteresis: over means value >= trip. Consecutive counts evaluations
//     over trip; the rule fires (Fired) when it reaches `for`. A firing rule
//     resolves only when value < resolve; in between it stays Firing. Without
//     resolve, resolve equals trip.
//   - Reinstatement: a state last evaluated before ReinstatedAt is discarded,
//     so a rule that fired before can fire (and suspend) again.
//   - Probation: until ProbationUntil (duration, doubled per repeat offence,
//     capped), trip and resolve are multiplied by the probation factor and
//     `for` is 1. Minimum volumes are not scaled.
//   - Protection: a suspend rule for the parent or a protected account is
//     reported with Protected set; Action still says suspend, and
//     Decision.Suspend reports false. Rules in dry_run mode set DryRun.
//   - Evidence carries numerator, denominator, value, the effective
//     thresholds, the window and up to five example message SIDs
//     (traffic.Examples for the signal's sample keys).
//
// # Caveats
//
// Windows are aligned to traffic.BucketWidth (5 minutes): a 1h window
// evaluated at 10:32 covers the buckets that start at 09:35 through 10:30,
// about 57 minutes. Buckets may be wider (hour totals from
// store.ScanHourBuckets) where no window starts inside them: Set.Cuts names
// the times to split at, and a window with a bucket across its start is
// Unknown rather than summed inexactly. Examples from an hour bucket are its
// smallest sample SIDs; Subject.Examples, which ScanHourBuckets supplies,
// gives the five-minute buckets' examples instead. Spend rules read Twilio's
// daily usage (UTC days): on the day of a reinstatement they judge the day's
// spend less Subject.SpendBase, the spend noted at the reinstatement, and
// without that note they are skipped for the rest of the day. spend_spike
// counts days without a usage record as no spend, leaves out the days in
// Subject.OffenceDays, floors the trailing mean at $1 a day, and is
// Insufficient while usage history does not reach back `days` days. A new
// account is Unknown for a rule until its coverage spans that rule's window.
//
// # Tooling
//
// RunTests runs YAML policy tests (policies/tests) that describe synthetic
// traffic per 5-minute bucket and the decisions expected at given times,
// evaluated step by step. Reloader swaps in a new Set atomically when the
// directory changes or on a trigger, and keeps the old one when the new one
// is invalid.
package policy
