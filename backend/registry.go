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

// Prober reports whether the store a URL names exists, creating
// nothing, for OpenExisting. It must not keep ctx beyond the call.
type Prober func(ctx context.Context, u *url.URL) (bool, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
	probers    = map[string]Prober{}
)

// Register makes a URL scheme available to Open (and so to
// roomstore.OpenURL). Backend packages call it from init; registering a
// scheme twice panics, as with database/sql drivers.
func Register(scheme string, open Opener) { register("Register", registry, scheme, open) }

// RegisterProber lets OpenExisting tell whether a store of scheme
// exists before opening it, for a scheme whose Opener creates the store
// it opens (file:// makes its directory, mem:// its named store).
// Registering a scheme's prober twice panics.
func RegisterProber(scheme string, p Prober) { register("RegisterProber", probers, scheme, p) }

// register adds v to m under scheme, in lower case; fn, the exported
// function called, names the panic of a scheme registered twice.
func register[V any](fn string, m map[string]V, scheme string, v V) {
	scheme = strings.ToLower(scheme)
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := m[scheme]; dup {
		panic("backend: " + fn + " called twice for scheme " + scheme)
	}
	m[scheme] = v
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
	u, open, _, err := lookup(rawURL)
	if err != nil {
		return nil, err
	}
	return open(ctx, u)
}

// ErrNoStore reports a store that OpenExisting found not to exist. It
// wraps fs.ErrNotExist.
var ErrNoStore = Errorf(fs.ErrNotExist, nil, "no such store")

// OpenExisting is Open for a store that exists: when the scheme's Prober
// (RegisterProber) finds none at rawURL it fails with ErrNoStore and
// creates nothing. A scheme without a prober opens as Open does: its
// Opener creates nothing (an S3 or GCS store is a prefix of a bucket that
// must exist).
func OpenExisting(ctx context.Context, rawURL string) (Backend, error) {
	u, open, probe, err := lookup(rawURL)
	if err != nil {
		return nil, err
	}
	if probe != nil {
		ok, err := probe(ctx, u)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrNoStore
		}
	}
	return open(ctx, u)
}

// schemePackages names the package that registers each of roomstore's own
// schemes, for the error that tells a program which import it lacks: only
// mem:// comes with the roomstore package, so that a program that embeds
// the engine or its client compiles no store it does not use.
var schemePackages = map[string]string{
	"file": "github.com/roomstore/roomstore/backend_disk",
	"mem":  "github.com/roomstore/roomstore/backend_mem",
	"s3":   "github.com/roomstore/roomstore/backend_s3",
	"gs":   "github.com/roomstore/roomstore/backend_gcs",
}

func lookup(rawURL string) (*url.URL, Opener, Prober, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("backend: bad store URL: %w: %w", fs.ErrInvalid, err)
	}
	scheme := strings.ToLower(u.Scheme)
	registryMu.RLock()
	open, ok := registry[scheme]
	probe := probers[scheme]
	registryMu.RUnlock()
	if !ok {
		if pkg, known := schemePackages[scheme]; known {
			return nil, nil, nil, fmt.Errorf("backend: %w: no backend for %s:// URLs in this program: import _ %q to register it",
				fs.ErrInvalid, scheme, pkg)
		}
		return nil, nil, nil, fmt.Errorf("backend: %w: no backend for scheme %q (registered: %s; import the backend package to register its scheme)",
			fs.ErrInvalid, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return u, open, probe, nil
}
