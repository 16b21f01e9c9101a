package twiliofake_test

import (
	"fmt"
	"net/http"
	"time"

	twilio "github.com/twilio/twilio-go"
	"github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"sentinel/internal/twiliofake"
)

// Example points twilio-go at the fake: the transport sends what twilio-go
// addresses to https://api.twilio.com to the fake's loopback listener.
func Example() {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	s := twiliofake.New(twiliofake.Options{Now: func() time.Time { return now }, Seed: 1})
	s.Start()
	defer s.Close()
	sub, _ := s.AddSubaccount(twiliofake.Account{FriendlyName: "shop"})
	_, _ = s.Generate(twiliofake.Traffic{AccountSID: sub.SID, N: 120, From: now.Add(-time.Hour), To: now, Failed: 0.5})

	c := &client.Client{
		Credentials: client.NewCredentials(s.ParentSID(), s.ParentToken()),
		HTTPClient:  &http.Client{Transport: s.Transport()},
	}
	c.SetAccountSid(s.ParentSID())
	tw := twilio.NewRestClientWithParams(twilio.ClientParams{Client: c}).Api

	msgs, err := tw.ListMessage((&api.ListMessageParams{}).SetPathAccountSid(sub.SID).SetPageSize(50))
	fmt.Println(len(msgs), err, len(s.Requests()))
	acct, err := tw.UpdateAccount(sub.SID, (&api.UpdateAccountParams{}).SetStatus("suspended"))
	fmt.Println(*acct.Status, err)
	// Output:
	// 120 <nil> 3
	// suspended <nil>
}
