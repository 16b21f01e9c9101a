package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/twilio/twilio-go/client"

	"sentinel/internal/ingest"
	"sentinel/internal/twilioapi"
)

// pushTypes are the Event Streams types sentinel subscribes to: every
// status of an outbound message that its receiver stores, and an inbound
// message (an opt-out is one).
var pushTypes = []string{
	"com.twilio.messaging.message.queued",
	"com.twilio.messaging.message.sent",
	"com.twilio.messaging.message.delivered",
	"com.twilio.messaging.message.undelivered",
	"com.twilio.messaging.message.failed",
	"com.twilio.messaging.message.read",
	"com.twilio.messaging.inbound-message.received",
}

// pushDescription begins the description of the sinks and subscriptions
// -events-setup makes.
const pushDescription = "sentinel push ingest"

// eventsSetup runs -events-setup: it makes sure that Twilio's Event
// Streams push every subaccount's message events to -events-url, creating
// or repairing what is missing or wrong, and prints one line per change
// (with -dry-run, per change it would make), or "nothing to change".
//
// The parent's webhook sink and its subscription come first. When Twilio
// lets that subscription receive the subaccounts' events too (the beta
// receive_events_from_subaccounts, which Twilio may or may not still
// honour: its API description has carried it and dropped it again), that
// is all. When it does not (the field is not shown, or the parameter is
// refused), each active subaccount gets a sink and subscription of its
// own, made with its own credentials, read from the parent's account list
// and held in memory only.
//
// A sink is sentinel's when it is a webhook to -events-url's
// /twilio/events, whatever its credentials; one that is wrong (another
// method, other credentials, not batched) is replaced: a sink's
// configuration cannot be changed through the API. The new one is made
// first, so that events keep flowing.
func eventsSetup(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	if cfg.accountSID == "" || cfg.authToken == "" {
		return usageError(errNoTwilio)
	}
	tw, err := twilioapi.New(cfg.twilioConfig())
	if err != nil {
		return err
	}
	want, err := wantedSink(cfg)
	if err != nil {
		return err
	}
	s := &setup{
		want:        want,
		password:    cfg.eventsPassword,
		parentToken: cfg.authToken,
		dryRun:      cfg.dryRun,
		stdout:      stdout,
		stderr:      stderr,
		secrets:     []string{cfg.authToken, cfg.eventsPassword, url.QueryEscape(cfg.eventsPassword), url.PathEscape(cfg.eventsPassword)},
	}
	if err := s.run(ctx, tw); err != nil {
		return errors.New(oneLine(s.scrub(err.Error())))
	}
	if s.changes == 0 {
		fmt.Fprintln(stdout, "nothing to change")
	}
	return nil
}

// sinkSpec is the sink sentinel wants.
type sinkSpec struct {
	endpoint   *url.URL // -events-url + /twilio/events, without credentials
	user, pass string
	// fingerprint names the credentials in the sink's description, for
	// when Twilio does not show a sink's user info (?): an HMAC keyed with
	// the parent's auth token, so that it says nothing to whoever lacks
	// the token, who cannot read sinks anyway.
	fingerprint string
}

func wantedSink(cfg *config) (sinkSpec, error) {
	u, err := url.Parse(cfg.eventsURL)
	if err != nil {
		return sinkSpec{}, fmt.Errorf("-events-url: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + ingest.EventsPath
	u.RawPath = ""
	return newSinkSpec(u, cfg.eventsUsername, cfg.eventsPassword, cfg.authToken), nil
}

func newSinkSpec(endpoint *url.URL, user, pass, parentToken string) sinkSpec {
	mac := hmac.New(sha256.New, []byte(parentToken))
	fmt.Fprintf(mac, "sentinel events sink\n%s\n%s", user, pass)
	return sinkSpec{endpoint: endpoint, user: user, pass: pass, fingerprint: hex.EncodeToString(mac.Sum(nil))[:16]}
}

// forSubaccount is the sink a subaccount's own subscription sends to: the
// same endpoint, with credentials of that subaccount's own (see
// ingest.SubaccountPassword). Its owner can read its sinks, and with them
// these credentials, which let it push nothing but its own events.
func (w sinkSpec) forSubaccount(sid, password, parentToken string) sinkSpec {
	return newSinkSpec(w.endpoint, sid, ingest.SubaccountPassword(password, sid), parentToken)
}

// destination is the sink's URL with the credentials as user info.
func (w sinkSpec) destination() string {
	u := *w.endpoint
	u.User = url.UserPassword(w.user, w.pass)
	return u.String()
}

func (w sinkSpec) description() string {
	return pushDescription + " (credentials " + w.fingerprint + ")"
}

// redacted is a sink's destination fit to print: https://***@host/path.
func redacted(dest string) string {
	u, err := url.Parse(dest)
	if err != nil {
		return "(an unparseable URL)"
	}
	userinfo := ""
	if u.User != nil {
		userinfo = "***@"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return strings.Replace(u.String(), "://", "://"+userinfo, 1)
}

// setup is one run of -events-setup.
type setup struct {
	want sinkSpec
	// password and parentToken derive each subaccount's own sink
	// credentials (sinkSpec.forSubaccount).
	password, parentToken string
	dryRun                bool
	stdout                io.Writer
	stderr                io.Writer
	changes               int
	// secrets never reach the output: errors are scrubbed of them.
	secrets []string
}

// change prints a change made, or with -dry-run, after "would", one that
// would be: a line said in both cases takes its verb from verb.
func (s *setup) change(format string, args ...any) {
	s.changes++
	line := fmt.Sprintf(format, args...)
	if s.dryRun {
		line = "would " + line
	}
	fmt.Fprintln(s.stdout, s.scrub(line))
}

// verb is done, or would in a dry run.
func (s *setup) verb(done, would string) string {
	if s.dryRun {
		return would
	}
	return done
}

// note prints what a person should know that changes nothing.
func (s *setup) note(format string, args ...any) {
	fmt.Fprintln(s.stderr, "sentinel: "+s.scrub(fmt.Sprintf(format, args...)))
}

func (s *setup) scrub(text string) string {
	for _, secret := range s.secrets {
		if len(secret) >= 4 {
			text = strings.ReplaceAll(text, secret, "***")
		}
	}
	return text
}

func (s *setup) run(ctx context.Context, tw *twilioapi.Client) error {
	covers, known, err := s.account(ctx, tw.Events(), "the parent "+tw.ParentSID(), true, s.want)
	if err != nil {
		return err
	}
	switch {
	case covers:
		return nil
	case !known:
		// Only a dry run gets here, with no subscription yet: whether
		// Twilio would take receive_events_from_subaccounts is found out
		// by asking.
		s.change("set up a sink and subscription for each active subaccount, if Twilio does not let the parent's subscription receive their events")
		return nil
	}
	creds, err := tw.SubaccountCredentials(ctx)
	if err != nil {
		return err
	}
	var failed []string
	var first error
	for _, c := range creds {
		s.secrets = append(s.secrets, c.Token)
		switch c.Status {
		case twilioapi.StatusActive:
		case twilioapi.StatusSuspended:
			s.note("%s is suspended: its own credentials do not work, so its events are not set up; run -events-setup again once it is active", c.SID)
			continue
		default:
			continue // closed for good
		}
		ev, err := tw.EventsAs(c.SID, c.Token)
		if err == nil {
			want := s.want.forSubaccount(c.SID, s.password, s.parentToken)
			s.secrets = append(s.secrets, want.pass, url.QueryEscape(want.pass), url.PathEscape(want.pass))
			_, _, err = s.account(ctx, ev, "subaccount "+c.SID, false, want)
		}
		if err != nil {
			failed = append(failed, c.SID)
			if first == nil {
				first = err
			}
		}
	}
	if len(failed) > 0 {
		named := strings.Join(failed[:min(len(failed), 5)], ", ")
		if len(failed) > 5 {
			named += ", …"
		}
		return fmt.Errorf("events of %d of %d subaccounts are not set up (%s): %w", len(failed), len(creds), named, first)
	}
	return nil
}

// problems says what is wrong with a sink that is sentinel's (a webhook to
// its endpoint); ours is false for any other sink.
func (s *setup) problems(sk twilioapi.Sink, want sinkSpec) (ours bool, problems []string) {
	if sk.Type != "webhook" {
		return false, nil
	}
	u, err := url.Parse(sk.Destination)
	if err != nil || !sameEndpoint(u, want.endpoint) {
		return false, nil
	}
	if !strings.EqualFold(sk.Method, http.MethodPost) {
		problems = append(problems, fmt.Sprintf("method %s, want POST", truncate(oneLine(sk.Method), 20)))
	}
	if !credentialsMatch(u, sk.Description, want) {
		problems = append(problems, "other Basic credentials")
	}
	if !sk.Batch {
		problems = append(problems, "events not batched")
	}
	return true, problems
}

// credentialsMatch tells whether a sink's destination u carries sentinel's
// credentials. Where Twilio shows the password, it decides; where it does
// not (no user info, or a masked password (?)), the fingerprint in the
// description does.
func credentialsMatch(u *url.URL, description string, want sinkSpec) bool {
	if u.User != nil {
		if pass, ok := u.User.Password(); ok && strings.Trim(pass, "*") != "" {
			return u.User.Username() == want.user && pass == want.pass
		}
	}
	return strings.Contains(description, want.fingerprint)
}

// sameEndpoint compares scheme, host (ignoring case and a default port)
// and path, not credentials or query.
func sameEndpoint(u, want *url.URL) bool {
	host := func(u *url.URL) string {
		h, p := strings.ToLower(u.Hostname()), u.Port()
		if (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
			p = ""
		}
		if p == "" {
			return h
		}
		return net.JoinHostPort(h, p)
	}
	return strings.EqualFold(u.Scheme, want.Scheme) && host(u) == host(want) &&
		strings.TrimSuffix(u.Path, "/") == strings.TrimSuffix(want.Path, "/")
}

// account makes sure one account has sentinel's sink and a subscription of
// it to pushTypes; with subaccounts (the parent) it asks that the
// subscription receive the subaccounts' events. covers says it does;
// known is false in a dry run that would create the subscription, when
// that cannot be known.
func (s *setup) account(ctx context.Context, ev *twilioapi.Events, who string, subaccounts bool, want sinkSpec) (covers, known bool, err error) {
	sinks, err := ev.Sinks(ctx)
	if err != nil {
		return false, false, err
	}
	subs, err := ev.Subscriptions(ctx)
	if err != nil {
		return false, false, err
	}
	subsOf := map[string][]twilioapi.Subscription{}
	for _, sub := range subs {
		subsOf[sub.SinkSID] = append(subsOf[sub.SinkSID], sub)
	}

	var good []twilioapi.Sink
	bad := map[string][]string{}
	var badOrder []twilioapi.Sink
	for _, sk := range sinks {
		ours, problems := s.problems(sk, want)
		switch {
		case ours && len(problems) == 0:
			good = append(good, sk)
		case ours:
			bad[sk.SID] = problems
			badOrder = append(badOrder, sk)
		case strings.HasPrefix(sk.Description, pushDescription):
			s.note("sink %s of %s was made by sentinel but sends to %s, not -events-url: left alone; delete it if nothing uses it", sk.SID, who, redacted(sk.Destination))
		}
	}
	// Keep the sink that already has a subscription, else the oldest.
	sort.SliceStable(good, func(i, j int) bool {
		hi, hj := len(subsOf[good[i].SID]) > 0, len(subsOf[good[j].SID]) > 0
		if hi != hj {
			return hi
		}
		if !good[i].Created.Equal(good[j].Created) {
			return good[i].Created.Before(good[j].Created)
		}
		return good[i].SID < good[j].SID
	})

	var keep twilioapi.Sink
	if len(good) > 0 {
		keep = good[0]
	} else if s.dryRun {
		s.change("create a sink for %s: POST %s, batched", who, redacted(want.destination()))
		s.change("subscribe it to %d event types%s", len(pushTypes), withSubaccounts(subaccounts))
	} else {
		keep, err = ev.CreateSink(ctx, want.description(), want.destination(), http.MethodPost, true)
		if err != nil {
			return false, false, err
		}
		s.change("created sink %s for %s: POST %s, batched", keep.SID, who, redacted(want.destination()))
	}

	if keep.SID != "" {
		covers, known, err = s.subscription(ctx, ev, who, keep.SID, subsOf[keep.SID], subaccounts)
		if err != nil {
			return false, false, err
		}
	}

	// The replaced and duplicate sinks go once the kept one is in place.
	for _, sk := range badOrder {
		if err := s.remove(ctx, ev, sk.SID, subsOf[sk.SID]); err != nil {
			return false, false, err
		}
		s.change("%s sink %s of %s (%s)", s.verb("replaced", "replace"), sk.SID, who, strings.Join(bad[sk.SID], ", "))
	}
	for _, sk := range good[min(1, len(good)):] {
		if err := s.remove(ctx, ev, sk.SID, subsOf[sk.SID]); err != nil {
			return false, false, err
		}
		s.change("%s sink %s of %s: a duplicate of %s", s.verb("deleted", "delete"), sk.SID, who, keep.SID)
	}
	return covers, known, nil
}

// remove deletes a sink and, first, its subscriptions; not in a dry run.
func (s *setup) remove(ctx context.Context, ev *twilioapi.Events, sink string, subs []twilioapi.Subscription) error {
	if s.dryRun {
		return nil
	}
	for _, sub := range subs {
		if err := ev.DeleteSubscription(ctx, sub.SID); err != nil {
			return err
		}
	}
	return ev.DeleteSink(ctx, sink)
}

// withSubaccounts is what a dry run says of a subscription that would ask
// for the subaccounts' events.
func withSubaccounts(subaccounts bool) string {
	if subaccounts {
		return ", with every subaccount's events if Twilio allows"
	}
	return ""
}

// subscription makes sure sink has one subscription to every one of
// pushTypes, and reports whether it receives the subaccounts' events;
// known is false in a dry run that would create it.
func (s *setup) subscription(ctx context.Context, ev *twilioapi.Events, who, sink string, subs []twilioapi.Subscription, subaccounts bool) (covers, known bool, err error) {
	if len(subs) == 0 {
		if s.dryRun {
			s.change("subscribe sink %s of %s to %d event types%s", sink, who, len(pushTypes), withSubaccounts(subaccounts))
			return false, false, nil
		}
		sub, err := ev.CreateSubscription(ctx, sink, pushDescription, pushTypes, subaccounts)
		var refused *client.TwilioRestError
		if subaccounts && errors.As(err, &refused) && refused.Status == http.StatusBadRequest {
			// Twilio refuses the beta parameter: subscribe without it.
			sub, err = ev.CreateSubscription(ctx, sink, pushDescription, pushTypes, false)
		}
		if err != nil {
			return false, false, err
		}
		covers := subaccounts && sub.Subaccounts
		scope := ""
		switch {
		case covers:
			scope = ", with every subaccount's events"
		case subaccounts:
			scope = ", its own events only: Twilio does not let it receive its subaccounts' events, so each subaccount gets its own"
		}
		s.change("created subscription %s of sink %s for %s: %d event types%s", sub.SID, sink, who, len(pushTypes), scope)
		return covers, true, nil
	}
	// Keep the one that receives the subaccounts' events, else the oldest.
	sort.SliceStable(subs, func(i, j int) bool {
		if subs[i].Subaccounts != subs[j].Subaccounts {
			return subs[i].Subaccounts
		}
		if !subs[i].Created.Equal(subs[j].Created) {
			return subs[i].Created.Before(subs[j].Created)
		}
		return subs[i].SID < subs[j].SID
	})
	keep := subs[0]
	have, err := ev.Types(ctx, keep.SID)
	if err != nil {
		return false, false, err
	}
	var missing []string
	for _, t := range pushTypes {
		if !slices.Contains(have, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		if !s.dryRun {
			for _, t := range missing {
				if err := ev.AddType(ctx, keep.SID, t); err != nil {
					return false, false, err
				}
			}
		}
		s.change("%s %d event types to subscription %s of %s: %s", s.verb("added", "add"),
			len(missing), keep.SID, who, strings.Join(missing, ", "))
	}
	for _, sub := range subs[1:] {
		if !s.dryRun {
			if err := ev.DeleteSubscription(ctx, sub.SID); err != nil {
				return false, false, err
			}
		}
		s.change("%s subscription %s of %s: a duplicate of %s", s.verb("deleted", "delete"), sub.SID, who, keep.SID)
	}
	return subaccounts && keep.Subaccounts, true, nil
}
