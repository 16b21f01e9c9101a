package twiliofake

import (
	"net/http"
	"net/url"
	"sort"
	"time"
)

// rfc2822 is how Twilio writes dates: "Fri, 24 May 2019 17:44:50 +0000".
const rfc2822 = time.RFC1123Z

type accountJSON struct {
	AuthToken       string            `json:"auth_token"`
	DateCreated     string            `json:"date_created"`
	DateUpdated     string            `json:"date_updated"`
	FriendlyName    string            `json:"friendly_name"`
	OwnerAccountSID string            `json:"owner_account_sid"`
	SID             string            `json:"sid"`
	Status          string            `json:"status"`
	SubresourceURIs map[string]string `json:"subresource_uris"`
	Type            string            `json:"type"`
	URI             string            `json:"uri"`
}

type accountPage struct {
	envelope
	Accounts []accountJSON `json:"accounts"`
}

// accountSubresources are the subresource_uris Twilio lists for an account.
var accountSubresources = map[string]string{
	"available_phone_numbers": "AvailablePhoneNumbers", "calls": "Calls", "conferences": "Conferences",
	"incoming_phone_numbers": "IncomingPhoneNumbers", "notifications": "Notifications",
	"outgoing_caller_ids": "OutgoingCallerIds", "recordings": "Recordings", "transcriptions": "Transcriptions",
	"addresses": "Addresses", "signing_keys": "SigningKeys", "connect_apps": "ConnectApps", "sip": "SIP",
	"authorized_connect_apps": "AuthorizedConnectApps", "usage": "Usage", "keys": "Keys",
	"applications": "Applications", "short_codes": "SMS/ShortCodes", "queues": "Queues",
	"messages": "Messages", "balance": "Balance",
}

func (s *Server) accountJSON(a *Account) accountJSON {
	base := "/2010-04-01/Accounts/" + a.SID
	subs := make(map[string]string, len(accountSubresources))
	for k, v := range accountSubresources {
		subs[k] = base + "/" + v + ".json"
	}
	return accountJSON{
		AuthToken:       a.Token,
		DateCreated:     a.Created.UTC().Format(rfc2822),
		DateUpdated:     a.Updated.UTC().Format(rfc2822),
		FriendlyName:    a.FriendlyName,
		OwnerAccountSID: s.opts.ParentSID,
		SID:             a.SID,
		Status:          a.Status,
		SubresourceURIs: subs,
		Type:            "Full",
		URI:             base + ".json",
	}
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	p, e := parsePaging(q)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	filters := url.Values{}
	status, hasStatus := q["Status"]
	if hasStatus {
		if !validAccountStatus(status[0]) {
			writeAPIError(w, badParam("Status must be active, suspended or closed, got %q", status[0]))
			return
		}
		filters.Set("Status", status[0])
	}
	name, hasName := q["FriendlyName"]
	if hasName {
		filters.Set("FriendlyName", name[0])
	}

	s.mu.RLock()
	var accts []Account
	for _, a := range s.accounts {
		switch {
		case user != s.opts.ParentSID && a.SID != user:
			// A subaccount sees only itself.
		case a.Parent && s.opts.HideParent:
		case hasStatus && a.Status != status[0]:
		case hasName && a.FriendlyName != name[0]:
		default:
			accts = append(accts, a.Account)
		}
	}
	s.mu.RUnlock()
	sort.Slice(accts, func(i, j int) bool { return accts[i].SID < accts[j].SID })

	page, next, prev, e := pageByKey(accts, func(a Account) string { return a.SID }, p.size, p.token)
	if e == nil && p.token != "" && !accountSIDRe.MatchString(p.token[2:]) {
		e = badParam("Invalid PageToken %q", p.token)
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	out := accountPage{envelope: s.newEnvelope(r, filters, p, len(page), next, prev), Accounts: make([]accountJSON, 0, len(page))}
	for i := range page {
		out.Accounts = append(out.Accounts, s.accountJSON(&page[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) fetchAccount(w http.ResponseWriter, a *account) {
	s.mu.RLock()
	acct := a.Account
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, s.accountJSON(&acct))
}

// updateAccount applies Status and FriendlyName with Twilio's rules.
func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request, user string, a *account) {
	if err := r.ParseForm(); err != nil {
		writeAPIError(w, badParam("Invalid form body"))
		return
	}
	form := r.PostForm
	status, hasStatus := form["Status"]
	name, hasName := form["FriendlyName"]
	if hasStatus && !validAccountStatus(status[0]) {
		// 21100 is Twilio's error for the Accounts resource, whose page
		// names an invalid Status value as a cause.
		writeError(w, http.StatusBadRequest, 21100, "Status must be one of active, suspended, closed")
		return
	}
	if hasName && len(name[0]) > 64 {
		writeError(w, http.StatusBadRequest, 21100, "FriendlyName is longer than 64 characters")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case hasStatus && a.Parent:
		// "You cannot suspend your main account"; same error page (21100).
		writeError(w, http.StatusBadRequest, 21100, "Cannot change the status of the main account")
		return
	case hasStatus && user != s.opts.ParentSID:
		// Only the parent's credentials may change a subaccount's status.
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	case a.Status == StatusClosed && (hasStatus || hasName):
		writeError(w, http.StatusBadRequest, 21479, "Unable to update status of subaccount: closed accounts cannot be reopened")
		return
	case hasStatus && !a.Parent && s.parent.Status != StatusActive:
		writeError(w, http.StatusBadRequest, 21476, "Unable to update status of subaccount: parent account is suspended")
		return
	case hasStatus && a.SuspendedByTwilio:
		writeError(w, http.StatusBadRequest, 21478, "Unable to update status of subaccount: subaccount has been suspended by Twilio")
		return
	}
	if hasName {
		a.FriendlyName = name[0]
		a.Updated = s.now()
	}
	if hasStatus {
		s.setStatus(a, status[0], "api")
	}
	writeJSON(w, http.StatusOK, s.accountJSON(&a.Account))
}
