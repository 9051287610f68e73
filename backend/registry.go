package backend

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Opener builds a Backend from a store URL, such as "s3://bucket/prefix".
// It must not keep ctx beyond the call.
type Opener func(ctx context.Context, u *url.URL) (Backend, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a URL scheme available to Open (and so to
// roomstore.OpenURL). Backend packages call it from init; registering a
// scheme twice panics, as with database/sql drivers.
func Register(scheme string, open Opener) {
	scheme = strings.ToLower(scheme)
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic("backend: Register called twice for scheme " + scheme)
	}
	registry[scheme] = open
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open parses rawURL and hands it to the Opener registered for its scheme.
// An unknown scheme yields an error wrapping fs.ErrInvalid that lists the
// registered ones (a backend package registers its scheme when imported).
func Open(ctx context.Context, rawURL string) (Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backend: bad store URL: %w: %w", fs.ErrInvalid, err)
	}
	registryMu.RLock()
	open, ok := registry[strings.ToLower(u.Scheme)]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("backend: %w: no backend for scheme %q (registered: %s; import the backend package to register its scheme)",
			fs.ErrInvalid, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}
