package roomstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomstore/roomstore/backend"
	_ "github.com/roomstore/roomstore/backend_mem" // registers mem://
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/keylock"
	"github.com/roomstore/roomstore/internal/telemetry"
)

// Engine is a room's file store. It is safe for concurrent use; several
// Engines (in one process or many) may share one store.
//
// Lock order: a goroutine that holds one of these locks takes only those
// listed after it, never one listed before.
//
//  1. Handle.mu, of one handle at a time: a call on the handle (Write,
//     Close, Abort, the idle timeout, Shutdown's abort); see Handle.
//  2. stripes, a ctxMutex per path hash: a commit or removal of the path
//     and the publishing of its event, so that this engine's events of a
//     path come in the order of its changes. Close, Delete and each file
//     of RemoveAll take one; Move takes both of its paths', lower index
//     first (lockPair).
//  3. usage.scanMu (one scan of the store for a Quota at a time).
//  4. The locks of the events.Bus and of the transport's events.Link,
//     taken by publish.
//  5. usage.mu: the bus tells the usage of events and gaps from under its
//     own lock.
//  6. mu, which guards closed, handles and reserved, and is held for
//     nothing else: nothing is called while it is held.
//
// A backend's own locks (on disk, a path's cross-process lock) are taken
// inside its calls, under any of 1 to 3. inflight and cleanups are
// counted, not held: Shutdown waits for them holding no lock.
type Engine struct {
	b        backend.Backend
	cfg      config
	bus      *events.Bus
	id       string      // the engine's origin in its events
	storeID  string      // "" unless a transport needed it
	link     events.Link // nil without WithEventTransport
	tel      *telemetry.Recorder
	evSeq    atomic.Uint64
	owned    bool // Shutdown closes b: OpenURL built it
	seed     maphash.Seed
	stripes  [64]ctxMutex // order commit+publish per path within this engine
	inflight sync.WaitGroup
	cleanups sync.WaitGroup // aborts of writers that go on after their call
	usage    *usage         // nil without a Quota
	watch    *watcher       // nil without WithWatch
	expiry   *time.Timer    // runs Expire; nil without a history
	// selfTrims: the store applies the History's count with each change.
	selfTrims bool
	// life ends at Shutdown, and with it the resumable writes in flight.
	life    context.Context
	endLife context.CancelFunc
	// createMu makes one CreateResumable at a time; resumables orders
	// the calls on each upload.
	createMu   ctxMutex
	resumables keylock.Locks

	mu       sync.Mutex
	closed   bool
	handles  map[string]*Handle
	reserved int // handles being opened, counted against the limit

	stopOnce sync.Once
	stopped  chan struct{} // closed when Shutdown's work is all done
	stopErr  error
}

// New returns an Engine over b. b stays the caller's: Shutdown does not
// close it. New fails only on a nil backend or a bad Option, with an
// *fs.PathError wrapping fs.ErrInvalid.
func New(b backend.Backend, opts ...Option) (*Engine, error) {
	if b == nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: fmt.Errorf("%w: nil backend", fs.ErrInvalid)}
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, &fs.PathError{Op: "new", Path: "", Err: err}
		}
	}
	if cfg.selfSign && cfg.baseURL.load() == nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithPresign(false) needs WithBaseURL: the URLs the engine signs are served below it")}
	}
	if cfg.signingKey == nil {
		cfg.signingKey = make([]byte, MinSigningKeyLen)
		_, _ = rand.Read(cfg.signingKey)
	}
	id := newEngineID()
	tel, err := telemetry.New(id, cfg.meters, cfg.tracers)
	if err != nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithMeterProvider: %v", err)}
	}
	var obs events.Observer = tel
	var u *usage
	if cfg.quota != (Quota{}) {
		u = &usage{q: cfg.quota, history: cfg.history.Versions > 0}
		obs = observer{Recorder: tel, u: u}
	}
	busOpts := []events.Option{events.WithBuffer(cfg.eventBuffer), events.WithHistory(cfg.eventHistory), events.WithLogger(cfg.logger), events.WithObserver(obs)}
	var e *Engine
	if cfg.watch != nil {
		// Set before any event can be published: the transport attaches
		// once e is made.
		busOpts = append(busOpts, events.WithAdmit(func(ev events.Event) bool { return e.admit(ev) }))
	}
	bus, err := events.New(busOpts...)
	if err != nil {
		return nil, &fs.PathError{Op: "new", Path: "", Err: err}
	}
	e = &Engine{
		b:        b,
		cfg:      cfg,
		bus:      bus,
		id:       id,
		tel:      tel,
		seed:     maphash.MakeSeed(),
		handles:  map[string]*Handle{},
		stopped:  make(chan struct{}),
		usage:    u,
		createMu: newCtxMutex(),
	}
	e.life, e.endLife = context.WithCancel(context.Background())
	e.selfTrims = selfTrims(b, u)
	if u != nil {
		if err := tel.ObserveUsage(u.snapshot, u.q.Bytes, u.q.Files); err != nil {
			_ = bus.Close(context.Background())
			return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithMeterProvider: %v", err)}
		}
	}
	for i := range e.stripes {
		e.stripes[i] = newCtxMutex()
	}
	if cfg.watch != nil {
		e.watch = newWatcher(e, *cfg.watch)
	}
	if cfg.transport != nil {
		if err := e.attach(); err != nil {
			_ = tel.Close()
			_ = bus.Close(context.Background())
			return nil, &fs.PathError{Op: "new", Path: "", Err: err}
		}
		if err := tel.ObserveTransport(e.link.Stats); err != nil {
			_ = tel.Close()
			_ = e.link.Close(context.Background())
			_ = bus.Close(context.Background())
			return nil, &fs.PathError{Op: "new", Path: "", Err: badOption("WithMeterProvider: %v", err)}
		}
	}
	if e.watch != nil {
		e.watch.start()
	}
	e.expireLater()
	return e, nil
}

// newEngineID returns 16 random hex digits: engines, even in different
// processes, never share an id.
func newEngineID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// attach connects the engine to its transport under the store's name.
func (e *Engine) attach() error {
	store := e.cfg.storeID
	if store == "" {
		if id, ok := e.b.(backend.Identifier); ok {
			store = id.StoreID()
		}
	}
	if store == "" {
		return badOption("WithEventTransport: the backend cannot name its store; name it with WithStoreID")
	}
	link, err := e.cfg.transport.Attach(store, e.id, e.bus)
	if err != nil {
		return fmt.Errorf("attach the event transport: %w", err)
	}
	e.storeID, e.link = store, link
	return nil
}

// ID returns the engine's id: 16 hex digits, unique among engines, which
// its events carry as Event.Origin.
func (e *Engine) ID() string { return e.id }

// StoreID returns the name under which the engine's transport exchanges
// events (see WithStoreID), or "" without WithEventTransport.
func (e *Engine) StoreID() string { return e.storeID }

// TransportStats returns the counters of the engine's event transport
// (published, received, given up, lag...; see events.TransportStats), all
// zero without WithEventTransport.
func (e *Engine) TransportStats() events.TransportStats {
	if e.link == nil {
		return events.TransportStats{}
	}
	return e.link.Stats()
}

// OpenURL opens the backend named by rawURL (see package backend for the
// registry; mem:// is built in, file://, s3:// and gs:// register when
// their packages backend_disk, backend_s3 and backend_gcs are imported, as
// in import _ "github.com/roomstore/roomstore/backend_disk") and returns
// an Engine over it. A scheme whose package is not imported is refused
// with fs.ErrInvalid and an error that names the import. The Engine
// owns that backend: Shutdown closes it. Errors are *fs.PathError values
// on the URL (its password, if any, redacted): fs.ErrInvalid for a bad
// URL or option, and whatever the backend's opener reports (a missing
// bucket is ErrStoreUnavailable).
func OpenURL(ctx context.Context, rawURL string, opts ...Option) (*Engine, error) {
	return openURL(ctx, rawURL, backend.Open, opts)
}

// OpenExistingURL is OpenURL for a store that already exists: where
// opening would create the store (file:// makes its directory, mem://name
// its named store) and there is none, it fails with an error wrapping
// fs.ErrNotExist and creates nothing. An s3:// or gs:// store is a prefix
// of a bucket that must exist: it opens as with OpenURL. A server opens a
// room with it for callers that may only read, so that a read never
// creates a store.
func OpenExistingURL(ctx context.Context, rawURL string, opts ...Option) (*Engine, error) {
	return openURL(ctx, rawURL, backend.OpenExisting, opts)
}

func openURL(ctx context.Context, rawURL string, open func(context.Context, string) (backend.Backend, error), opts []Option) (*Engine, error) {
	b, err := open(ctx, rawURL)
	if err != nil {
		return nil, &fs.PathError{Op: "openurl", Path: redact(rawURL), Err: err}
	}
	e, err := New(b, opts...)
	if err != nil {
		b.Close()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &fs.PathError{Op: "openurl", Path: redact(rawURL), Err: err}
	}
	e.owned = true
	return e, nil
}

// redact hides a password in a store URL.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return "(malformed URL)"
	case u.User != nil:
		return u.Redacted()
	}
	return rawURL
}

type participantKey struct{}

// WithParticipant returns a context that carries the participant id; the
// engine records it as the owner of handles opened with it and in the
// events of changes made with it.
func WithParticipant(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, participantKey{}, id)
}

// ParticipantFrom returns the participant id in ctx, or "".
func ParticipantFrom(ctx context.Context) string {
	id, _ := ctx.Value(participantKey{}).(string)
	return id
}

// begin admits an operation unless the engine is shut down; the caller
// must call e.inflight.Done when it ends.
func (e *Engine) begin(op, p string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return &fs.PathError{Op: op, Path: p, Err: fs.ErrClosed}
	}
	e.inflight.Add(1)
	return nil
}

// Shutdown stops the engine: later calls fail with fs.ErrClosed, open
// handles are aborted (their bytes discarded, files left as they were),
// running operations and the cleanups of aborted writes are awaited (a
// Close that is committing finishes), queued events are delivered, and a
// backend built by OpenURL is closed.
// If ctx ends first, Shutdown returns its error and the rest still
// finishes in the background; a later Shutdown waits for it again. Called
// from an event handler, Shutdown does not wait for event delivery.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.stopOnce.Do(func() { go e.stop() })
	if e.bus.InHandler() {
		return nil // the rest waits for this very handler to return
	}
	select {
	case <-e.stopped:
		if e.stopErr != nil {
			return &fs.PathError{Op: "shutdown", Path: "", Err: e.stopErr}
		}
		return nil
	case <-ctx.Done():
		return &fs.PathError{Op: "shutdown", Path: "", Err: ctx.Err()}
	}
}

// stop does Shutdown's work once, whatever the callers' contexts.
func (e *Engine) stop() {
	defer close(e.stopped)
	e.mu.Lock()
	open := make([]*Handle, 0, len(e.handles))
	for _, h := range e.handles {
		open = append(open, h)
	}
	e.mu.Unlock()
	if e.expiry != nil {
		e.expiry.Stop()
	}
	e.endLife()
	for _, h := range open {
		_, _ = h.discard(context.Background(), fmt.Errorf("%w: engine shut down", fs.ErrClosed), "engine shut down")
	}
	e.inflight.Wait()
	if e.watch != nil {
		e.watch.stop() // its events go out before the link closes
	}
	e.cleanups.Wait()
	var err error
	if e.link != nil {
		// Published what is queued (within the transport's own bound), and
		// stops delivering others' events before the bus closes.
		err = e.link.Close(context.Background())
	}
	if e.watch != nil {
		e.watch.leave() // once the link has published what it could
	}
	err = errors.Join(err, e.bus.Close(context.Background()), e.tel.Close())
	if e.owned {
		err = errors.Join(err, e.b.Close())
	}
	e.stopErr = err
}
