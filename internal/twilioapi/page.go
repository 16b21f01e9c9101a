package twilioapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// walk reads a listing page by page: first fetches the first page, then each
// next_page_uri is requested as it is. fn sees each page and returns false to
// stop. The walk ends with ErrPageLoop when a next_page_uri repeats and with
// ErrTooManyPages when there is a next page after MaxPages pages.
func walk[P any](ctx context.Context, c *Client, endpoint string,
	first func(api *openapi.ApiService) (*P, error),
	next func(*P) *string,
	fn func(page *P, n int) (bool, error),
) error {
	var page *P
	err := c.do(ctx, endpoint, func(api *openapi.ApiService) (err error) {
		page, err = first(api)
		return err
	})
	if err != nil {
		return fmt.Errorf("page 1: %w", err)
	}
	seen := map[string]bool{}
	for n := 1; ; n++ {
		more, err := fn(page, n)
		if err != nil {
			return fmt.Errorf("page %d: %w", n, err)
		}
		if !more {
			return nil
		}
		uri := next(page)
		if uri == nil || *uri == "" {
			return nil
		}
		switch {
		case seen[*uri]:
			return fmt.Errorf("page %d: %w", n, ErrPageLoop)
		case n >= c.cfg.MaxPages:
			return fmt.Errorf("%w: more than %d", ErrTooManyPages, c.cfg.MaxPages)
		case !isPath(*uri):
			return fmt.Errorf("page %d: %w: next_page_uri is not a path", n, ErrMalformed)
		}
		seen[*uri] = true
		var p P
		err = c.do(ctx, endpoint, func(api *openapi.ApiService) error {
			return getJSON(api, *uri, &p)
		})
		if err != nil {
			return fmt.Errorf("page %d: %w", n+1, err)
		}
		page = &p
	}
}

// isPath reports whether uri is an absolute path with an optional query,
// which is what Twilio's next_page_uri is, written with the characters of
// RFC 3986 only, so that it goes out as it was written. Anything else would
// make twilio-go fail before sending, which would look like a transport error
// and be retried, or send a request line that no server can read (a space),
// or request a page already read under another name ("/p#2" is "/p#1" on the
// wire), or, starting with "//", name a host.
func isPath(uri string) bool {
	if !strings.HasPrefix(uri, "/") || strings.HasPrefix(uri, "//") {
		return false
	}
	for i := 0; i < len(uri); i++ {
		if !uriChar(uri[i]) {
			return false
		}
	}
	u, err := url.Parse(uri)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

// uriChar reports whether c may appear in a path and query (RFC 3986:
// unreserved, sub-delims, ':', '@', '/', '?' and '%' of a percent-encoding).
func uriChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/?%", c) >= 0
}

// getJSON requests a next_page_uri the way twilio-go's own getNext* helpers
// do: a GET of the URI with no query data of its own, so the URI's query
// (PageToken and the original filters) goes out as Twilio wrote it, untouched
// by twilio-go's query encoder. The host is a placeholder that the attempt's
// RoundTripper replaces with Config.BaseURL.
func getJSON(api *openapi.ApiService, uri string, v any) error {
	resp, err := api.RequestHandler().Get(DefaultBaseURL+uri, nil, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
