package twiliofake

import (
	"net/http"
	"net/url"
	"sort"
)

// envelope is the paging part of every list response.
type envelope struct {
	End             int     `json:"end"`
	FirstPageURI    string  `json:"first_page_uri"`
	NextPageURI     *string `json:"next_page_uri"`
	Page            int     `json:"page"`
	PageSize        int     `json:"page_size"`
	PreviousPageURI *string `json:"previous_page_uri"`
	Start           int     `json:"start"`
	URI             string  `json:"uri"`
}

// newEnvelope fills the envelope of a page of n items. next and prev are
// the tokens of the neighbouring pages, "" when there is none.
func (s *Server) newEnvelope(r *http.Request, filters url.Values, p paging, n int, next, prev string) envelope {
	path := r.URL.Path
	e := envelope{
		FirstPageURI: pageURI(path, filters, p.size, 0, ""),
		Page:         p.page,
		PageSize:     p.size,
		Start:        p.page * p.size,
		URI:          pageURI(path, filters, p.size, p.page, p.token),
	}
	e.End = e.Start
	if n > 0 {
		e.End = e.Start + n - 1
	}
	if next != "" {
		u := pageURI(path, filters, p.size, p.page+1, next)
		e.NextPageURI = &u
	}
	if prev != "" && p.page > 0 {
		u := pageURI(path, filters, p.size, p.page-1, prev)
		e.PreviousPageURI = &u
	}
	if at, ok := s.loopAt(path); ok && p.page >= at {
		u := e.URI
		e.NextPageURI = &u
	}
	return e
}

// pageByKey pages a small list sorted ascending by a unique string key,
// with tokens that name the key of the last (PA) or first (PB) item served.
// It returns the page and the tokens of the next and previous pages.
func pageByKey[T any](items []T, key func(T) string, size int, tokenStr string) (page []T, next, prev string, e *apiError) {
	lo, hi := 0, len(items)
	if tokenStr != "" {
		tok, err := parseToken(tokenStr)
		if err != nil {
			return nil, "", "", err
		}
		i := sort.Search(len(items), func(i int) bool { return key(items[i]) >= tok.key })
		if tok.back {
			hi, lo = i, max(0, i-size)
		} else {
			if i < len(items) && key(items[i]) == tok.key {
				i++
			}
			lo = i
		}
	}
	hi = min(hi, lo+size)
	page = items[lo:hi]
	if hi < len(items) && len(page) > 0 {
		next = pageToken{key: key(page[len(page)-1])}.String()
	}
	if lo > 0 && len(page) > 0 {
		prev = pageToken{back: true, key: key(page[0])}.String()
	}
	return page, next, prev, nil
}
