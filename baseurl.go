package roomstore

import (
	"io/fs"
	"net/url"
	"strings"
	"sync/atomic"
)

// baseRef holds where Handler is served (WithBaseURL, SetBaseURL): nil
// until set. Read on every DownloadURL and signed request, set at any
// time.
type baseRef struct{ p atomic.Pointer[url.URL] }

// load returns the base URL, or nil.
func (b *baseRef) load() *url.URL { return b.p.Load() }

// parseBaseURL checks a base URL as WithBaseURL and SetBaseURL take it,
// and returns it without a trailing slash.
func parseBaseURL(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, badOption("base URL must be an absolute http(s) URL without query, got %q", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// SetBaseURL sets where Engine.Handler is served, as WithBaseURL does,
// for a server whose address is known only once the engine exists (an
// httptest.Server, a listener on port 0): from then on DownloadURL signs
// URLs below base, and Handler serves them. It is safe for concurrent
// use with every other method: a DownloadURL signs below the base set
// before it or below the one set after. A URL signed below an earlier
// base stays valid only if the new base has the same path (the
// signature covers the path, not the host). A base that is not an
// absolute http(s) URL without query fails with an *fs.PathError
// wrapping fs.ErrInvalid and changes nothing.
func (e *Engine) SetBaseURL(base string) error {
	u, err := parseBaseURL(base)
	if err != nil {
		return &fs.PathError{Op: "set_base_url", Path: base, Err: err}
	}
	e.cfg.baseURL.p.Store(u)
	return nil
}
