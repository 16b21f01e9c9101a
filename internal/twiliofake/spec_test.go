package twiliofake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"sentinel/internal/twiliofake"
)

// specPath is Twilio's official OpenAPI document for the 2010-04-01 API,
// kept beside the repository clone and never copied into it.
var specPath = filepath.Join("..", "..", "..", "shared", "twilio", "twilio_api_v2010.json")

// loadSpec loads the spec and builds a router over it.
func loadSpec(t *testing.T) routers.Router {
	t.Helper()
	if _, err := os.Stat(specPath); err != nil {
		t.Skipf("Twilio OpenAPI spec not found at %s (it lives in ../shared beside the repo clone): %v", specPath, err)
	}
	doc, err := openapi3.NewLoader().LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	allowStringPrice(t, doc)
	// The document itself is only checked loosely: its examples and
	// Twilio's own formats (date-time-rfc-2822, phone-number, currency,
	// uri-map) are not ours to validate. Response bodies are checked in full.
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation(), openapi3.DisableSchemaFormatValidation()); err != nil {
		t.Fatalf("validate spec: %v", err)
	}
	// gorillamux, unlike the legacy router, matches a path variable that
	// is only part of a segment, as in /Accounts/{Sid}.json.
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return router
}

// allowStringPrice lets a usage record's price be a decimal string as well
// as a number. The schema says number, but Twilio sends a string: the
// spec's own examples show "price": "0", and twilio-go decodes the field
// with UnmarshalFloat32, which exists to accept both. Only this one
// property of the two usage record schemas is relaxed.
func allowStringPrice(t *testing.T, doc *openapi3.T) {
	t.Helper()
	for _, name := range []string{
		"api.v2010.account.usage.usage_record.usage_record_today",
		"api.v2010.account.usage.usage_record.usage_record_daily",
	} {
		s := doc.Components.Schemas[name]
		if s == nil || s.Value.Properties["price"] == nil {
			t.Fatalf("spec has no %s.price to relax: has the spec changed?", name)
		}
		old := s.Value.Properties["price"].Value
		if !old.Type.Is("number") {
			t.Fatalf("%s.price is %v, want number: has the spec changed?", name, old.Type)
		}
		s.Value.Properties["price"] = openapi3.NewSchemaRef("", &openapi3.Schema{
			Nullable:    true,
			Description: old.Description,
			AnyOf: openapi3.SchemaRefs{
				openapi3.NewSchemaRef("", &openapi3.Schema{Type: &openapi3.Types{"number"}}),
				openapi3.NewSchemaRef("", &openapi3.Schema{Type: &openapi3.Types{"string"}, Pattern: `^-?[0-9]+(\.[0-9]+)?$`}),
			},
		})
	}
}

func TestResponsesMatchSpec(t *testing.T) {
	t.Parallel()
	router := loadSpec(t)
	s := mustStart(t, twiliofake.Options{})
	sub := mustAdd(t, s, twiliofake.Account{FriendlyName: "shop"})
	mustAdd(t, s, twiliofake.Account{Status: twiliofake.StatusClosed})
	mustAdd(t, s, twiliofake.Account{Status: twiliofake.StatusSuspended})
	if _, err := s.Generate(twiliofake.Traffic{
		AccountSID: sub.SID, N: 300, From: epoch.Add(-72 * time.Hour), To: epoch, Seed: 3,
		Inbound: 0.2, OptOut: 0.3, Failed: 0.2, ErrorCodes: []int{30007, 30003, 21610, 12345},
		Unsent: 0.05, UnsentErrorCode: 30034, NoService: 0.3, Unbilled: 0.1,
	}); err != nil {
		t.Fatal(err)
	}
	acct := "/2010-04-01/Accounts/" + sub.SID
	// The last three are for FetchMessage and UpdateMessage, a redaction
	// and a cancellation, and DeleteMessage.
	sids, err := s.AppendMessages(
		twiliofake.Message{AccountSID: sub.SID, NumMedia: 2, DateSent: epoch, Body: "", To: "+15550001111", From: "+15550002222"},
		twiliofake.Message{AccountSID: sub.SID, Status: "queued", DateCreated: epoch},
		twiliofake.Message{AccountSID: sub.SID, Status: "undelivered", ErrorCode: 30007, DateSent: epoch.Add(-time.Hour), Body: "WIN", To: "+15550001111", Price: "-0.00790"},
		twiliofake.Message{AccountSID: sub.SID, Status: "scheduled", DateCreated: epoch.Add(-time.Hour), Body: "Sale", MessagingServiceSID: "MG00000000000000000000000000000001"},
		twiliofake.Message{AccountSID: sub.SID, Direction: "inbound", DateSent: epoch.Add(-time.Hour), Body: "STOP"},
	)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(i int) string { return acct + "/Messages/" + sids[i] + ".json" }
	if err := s.SetUsage(sub.SID, "2024-03-09", "sms", twiliofake.UsageRecord{Count: 5, Usage: 7, Price: 0.0553}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		op, method, path, query string
		form                    url.Values
	}{
		{"ListAccount", "GET", "/2010-04-01/Accounts.json", "PageSize=2", nil},
		{"ListAccount page 2", "GET", "/2010-04-01/Accounts.json", "", nil}, // filled in from page 1
		{"ListAccount filtered", "GET", "/2010-04-01/Accounts.json", "Status=closed", nil},
		{"FetchAccount", "GET", acct + ".json", "", nil},
		{"UpdateAccount", "POST", acct + ".json", "", url.Values{"Status": {"suspended"}}},
		{"UpdateAccount back", "POST", acct + ".json", "", url.Values{"Status": {"active"}, "FriendlyName": {"shop 2"}}},
		{"ListMessage", "GET", acct + "/Messages.json", "PageSize=200", nil},
		{"ListMessage page 2", "GET", acct + "/Messages.json", "", nil}, // filled in from page 1
		{"ListMessage filtered", "GET", acct + "/Messages.json", "DateSent%3E=2024-03-09T00:00:00Z&To=%2B15550001111", nil},
		{"ListMessage empty", "GET", "/2010-04-01/Accounts/" + parentSID + "/Messages.json", "", nil},
		{"FetchMessage", "GET", msg(2), "", nil},
		{"FetchMessage null date_sent", "GET", msg(1), "", nil},
		{"UpdateMessage redact", "POST", msg(2), "", url.Values{"Body": {""}}},
		{"UpdateMessage cancel", "POST", msg(3), "", url.Values{"Status": {"canceled"}}},
		{"DeleteMessage", "DELETE", msg(4), "", nil},
		{"ListUsageRecordToday", "GET", acct + "/Usage/Records/Today.json", "", nil},
		{"ListUsageRecordDaily", "GET", acct + "/Usage/Records/Daily.json", "StartDate=2024-03-01&EndDate=2024-03-10&PageSize=20", nil},
		{"ListUsageRecordDaily page 2", "GET", acct + "/Usage/Records/Daily.json", "", nil}, // filled in from page 1
		{"ListUsageRecordDaily parent", "GET", "/2010-04-01/Accounts/" + parentSID + "/Usage/Records/Daily.json", "Category=totalprice&StartDate=-3days", nil},
	} {
		t.Run(tc.op, func(t *testing.T) {
			path, query := tc.path, tc.query
			if strings.HasSuffix(tc.op, "page 2") {
				path, query = nextPage(t, s, tc.path)
			}
			body, res := call(t, s, tc.method, path, query, tc.form)
			want := http.StatusOK
			if tc.method == http.MethodDelete {
				want = http.StatusNoContent
			}
			if res.StatusCode != want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, want, body)
			}
			validate(t, router, tc.method, path, query, tc.form, res, body)
		})
	}

	// The validator must be able to fail: a body off the schema is caught.
	t.Run("validator bites", func(t *testing.T) {
		body, res := call(t, s, "GET", acct+".json", "", nil)
		bad := strings.Replace(string(body), `"status":"active"`, `"status":"paused"`, 1)
		if bad == string(body) {
			t.Fatalf("no active status in %.200s", body)
		}
		if err := validateErr(router, "GET", acct+".json", "", nil, res, []byte(bad)); err == nil {
			t.Error("a status outside the enum passed validation")
		}
	})
}

// nextPage returns the path and query of the next page of the last
// response to path, from its next_page_uri.
func nextPage(t *testing.T, s *twiliofake.Server, path string) (string, string) {
	t.Helper()
	reqs := s.Requests()
	r := reqs[len(reqs)-1]
	if r.Path != path {
		t.Fatalf("last request was %s, want %s", r.Path, path)
	}
	body, _ := call(t, s, r.Method, r.Path, r.RawQuery, nil)
	var page struct {
		NextPageURI *string `json:"next_page_uri"`
	}
	if err := json.Unmarshal(body, &page); err != nil || page.NextPageURI == nil {
		t.Fatalf("no next_page_uri (err %v) in %.200s", err, body)
	}
	u, err := url.Parse(*page.NextPageURI)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path, u.RawQuery
}

func call(t *testing.T, s *twiliofake.Server, method, path, query string, form url.Values) ([]byte, *http.Response) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.URL()+path+"?"+query, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.SetBasicAuth(parentSID, parentToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, res
}

// validate checks one response against the spec's schema for the operation
// that the spec's server URL and path select.
func validate(t *testing.T, router routers.Router, method, path, query string, form url.Values, res *http.Response, body []byte) {
	t.Helper()
	err := validateErr(router, method, path, query, form, res, body)
	var me openapi3.MultiError
	switch {
	case err == nil:
	case errors.As(err, &me):
		for _, e := range me {
			t.Errorf("%s %s: %v", method, path, e)
		}
	default:
		t.Errorf("%s %s: %v", method, path, err)
	}
}

func validateErr(router routers.Router, method, path, query string, form url.Values, res *http.Response, body []byte) error {
	var rb io.Reader
	if form != nil {
		rb = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "https://api.twilio.com"+path+"?"+query, rb)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("find route: %w", err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 res.StatusCode,
		Header:                 res.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}
