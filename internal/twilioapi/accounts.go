package twilioapi

import (
	"context"
	"fmt"
	"strings"
	"time"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// Account is a Twilio account as sentinel needs it.
type Account struct {
	SID, FriendlyName string
	// Status is active, suspended or closed.
	Status string
	// OwnerSID is the parent's SID; a parent is its own owner.
	OwnerSID string
	// Updated is date_updated: when the account last changed, its status
	// included (a rename moves it too). Zero when Twilio gave none.
	Updated time.Time
}

// Account statuses that SetStatus may set.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// Accounts lists every account the parent's credentials can see, reading
// every page. Twilio includes the parent itself; compare with ParentSID.
func (c *Client) Accounts(ctx context.Context) ([]Account, error) {
	var out []Account
	err := walk(ctx, c, endpointAccounts,
		func(api *openapi.ApiService) (*openapi.ListAccountResponse, error) {
			return api.PageAccount((&openapi.ListAccountParams{}).SetPageSize(c.cfg.PageSize), "", "")
		},
		func(p *openapi.ListAccountResponse) *string { return p.NextPageUri },
		func(p *openapi.ListAccountResponse, _ int) (bool, error) {
			for i := range p.Accounts {
				a, err := convertAccount(&p.Accounts[i])
				if err != nil {
					return false, err
				}
				out = append(out, a)
			}
			return true, nil
		})
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}

// FetchAccount reads one account.
func (c *Client) FetchAccount(ctx context.Context, sid string) (Account, error) {
	if err := validSID(sid); err != nil {
		return Account{}, fmt.Errorf("fetch account: %w", err)
	}
	var raw *openapi.ApiV2010Account
	err := c.do(ctx, endpointAccount, func(api *openapi.ApiService) (err error) {
		raw, err = api.FetchAccount(sid)
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("fetch account %s: %w", sid, err)
	}
	a, err := convertAccount(raw)
	if err != nil {
		return Account{}, fmt.Errorf("fetch account %s: %w", sid, err)
	}
	return a, nil
}

// AuthToken reads a subaccount's auth token with the parent's credentials,
// to check the signatures of its status callbacks. The caller holds it in
// memory only; it is never part of an error.
func (c *Client) AuthToken(ctx context.Context, sid string) (string, error) {
	if err := validSID(sid); err != nil {
		return "", fmt.Errorf("fetch auth token: %w", err)
	}
	var raw *openapi.ApiV2010Account
	err := c.do(ctx, endpointAccount, func(api *openapi.ApiService) (err error) {
		raw, err = api.FetchAccount(sid)
		return err
	})
	switch {
	case err != nil:
		return "", fmt.Errorf("fetch auth token of %s: %w", sid, err)
	case raw == nil || raw.AuthToken == nil || *raw.AuthToken == "":
		return "", fmt.Errorf("fetch auth token of %s: Twilio's answer carries none", sid)
	}
	return *raw.AuthToken, nil
}

// SetStatus sets a subaccount's status to "active" or "suspended" and returns
// the account as Twilio reports it afterwards. It refuses, without any
// request, any other status ("closed" above all, which is permanent) with
// ErrStatus, and the parent account with ErrParent.
//
// A failed request is retried like a read: setting a status is idempotent,
// so sending it again after a lost response changes nothing. Twilio's
// refusals are final and keep their code (see Code): 21476 the parent is
// suspended, 21478 suspended by Twilio, 21479 closed.
func (c *Client) SetStatus(ctx context.Context, sid, status string) (Account, error) {
	if status != StatusActive && status != StatusSuspended {
		return Account{}, fmt.Errorf("set status of %s: %w %q", truncate(sid, 40), ErrStatus, truncate(status, 20))
	}
	if strings.EqualFold(sid, c.cfg.AccountSID) {
		return Account{}, fmt.Errorf("set status of %s: %w", sid, ErrParent)
	}
	if err := validSID(sid); err != nil {
		return Account{}, fmt.Errorf("set status: %w", err)
	}
	var raw *openapi.ApiV2010Account
	err := c.do(ctx, endpointAccountUpdate, func(api *openapi.ApiService) (err error) {
		raw, err = api.UpdateAccount(sid, (&openapi.UpdateAccountParams{}).SetStatus(status))
		return err
	})
	if err != nil {
		return Account{}, fmt.Errorf("set status of %s to %s: %w", sid, status, err)
	}
	a, err := convertAccount(raw)
	if err != nil {
		return Account{}, fmt.Errorf("set status of %s to %s: %w", sid, status, err)
	}
	return a, nil
}

// convertAccount keeps what sentinel needs and drops the rest, the account's
// auth_token above all.
func convertAccount(raw *openapi.ApiV2010Account) (Account, error) {
	if raw == nil || raw.Sid == nil || *raw.Sid == "" {
		return Account{}, fmt.Errorf("%w: account without sid", ErrMalformed)
	}
	a := Account{
		SID:          *raw.Sid,
		FriendlyName: deref(raw.FriendlyName),
		Status:       deref(raw.Status),
		OwnerSID:     deref(raw.OwnerAccountSid),
	}
	// date_updated only refines when a status changed (see
	// actions): one in another form is left out rather than failing the
	// whole account list.
	if t, err := parseDate(deref(raw.DateUpdated)); err == nil {
		a.Updated = t
	}
	return a, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
