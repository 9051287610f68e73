package roomstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// Handle is an open write to one file, made by Engine.Open. Its bytes stay
// invisible until Close commits them. A Handle implements io.WriteCloser
// for code that has no context to pass; those calls act as the participant
// that opened it, bounded by WithHandleTimeout.
type Handle struct {
	e     *Engine
	id    string
	path  string
	owner string
	// policy is the Policy the handle was opened under (nil: none), asked
	// again at Close.
	policy Policy
	// replace is whether Close replaces the file (Overwrite, Exclusive)
	// rather than append to it.
	replace bool
	w       backend.Writer
	ctx     context.Context // lives as long as the handle; cancelled by discard
	stop    context.CancelFunc
	timer   *time.Timer

	// discarding holds the reason of the first discard (Abort, idle
	// timeout, Shutdown), set before it interrupts a running call so that
	// the call can report it.
	discarding atomic.Pointer[error]
	lastUsed   atomic.Int64 // UnixNano of the last Write, read by the idle timer

	// mu serialises Write, Close and Abort: a one-slot semaphore, so that
	// a call waiting for another honours its context.
	mu   chan struct{}
	done error // why the handle is finished; nil while open; guarded by mu
	size int64 // guarded by mu
}

// lock takes h.mu, waiting as ctx allows.
func (h *Handle) lock(ctx context.Context) error {
	select {
	case h.mu <- struct{}{}:
		return nil
	default:
	}
	select {
	case h.mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Handle) unlock() { <-h.mu }

// ID returns the handle's id: 32 random hex digits, safe to hand to a
// client and resolve later with Engine.Handle.
func (h *Handle) ID() string { return h.id }

// Path returns the clean path the handle writes.
func (h *Handle) Path() string { return h.path }

// Participant returns the participant that opened the handle.
func (h *Handle) Participant() string { return h.owner }

// Write stages p as the handle's owner (see Engine.Write), on a context
// that ends after WithHandleTimeout.
func (h *Handle) Write(p []byte) (int, error) {
	ctx, cancel := h.ownerContext()
	defer cancel()
	if err := h.e.Write(ctx, h, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close commits the handle as its owner (see Engine.Close), on a context
// that ends after WithHandleTimeout.
func (h *Handle) Close() error {
	ctx, cancel := h.ownerContext()
	defer cancel()
	return h.e.Close(ctx, h)
}

// Abort discards the handle as its owner (see Engine.Abort), on a context
// that ends after WithHandleTimeout.
func (h *Handle) Abort() error {
	ctx, cancel := h.ownerContext()
	defer cancel()
	return h.e.Abort(ctx, h)
}

// ownerContext is the context of the calls made without one: the owner's,
// bounded by WithHandleTimeout.
func (h *Handle) ownerContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(WithParticipant(context.Background(), h.owner), h.e.cfg.handleCall)
}

// Open starts a write to the file at path; see OpenOptions for how an
// existing file is treated. Open fails with ErrIsFolder on a folder,
// ErrNotFolder when a parent is a file, fs.ErrExist for Exclusive on an
// existing file, ErrTooManyHandles past WithMaxOpenHandles, and
// fs.ErrInvalid on a bad path, and with an *AccessError when the Policy
// of ctx does not let the file be written (asked again at Close, so that
// rights withdrawn meanwhile stop the commit). The handle belongs to
// ParticipantFrom(ctx) and outlives ctx: only the calls on it are bound
// to their own contexts.
func (e *Engine) Open(ctx context.Context, p string, opts OpenOptions) (_ *Handle, err error) {
	life := ctx // without the open span, which ends when Open returns
	ctx, call := e.tel.Start(ctx, telemetry.Open, p)
	defer call.End(&err)
	return e.open(ctx, life, p, opts)
}

// open is Open, unrecorded, for Upload. The handle's own context, which
// lives as long as the handle, derives from life: the caller's context
// before Open's span began (a span that ends when Open returns must not
// be the parent of the backend's later work, nor kept alive by it), or
// for Upload, whose handle ends within it, Upload's own.
func (e *Engine) open(ctx, life context.Context, p string, opts OpenOptions) (*Handle, error) {
	clean, err := e.enter("open", p, roompath.TargetFile)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	fail := func(err error) (*Handle, error) { return nil, pathError("open", p, err) }
	g := gateOf(ctx)
	if err := g.check(Write, clean); err != nil {
		return fail(err)
	}

	info, err := e.b.Stat(ctx, clean)
	switch {
	case err == nil && info.IsFolder:
		return fail(e.masked(g, clean, ErrIsFolder))
	case err == nil && opts.Exclusive:
		return fail(e.masked(g, clean, fs.ErrExist))
	case errors.Is(err, fs.ErrNotExist):
		if err := e.checkParents(ctx, clean); err != nil {
			return fail(e.masked(g, clean, err))
		}
	case err != nil:
		return fail(err)
	}

	var idb [16]byte
	_, _ = rand.Read(idb[:])
	if e.usage != nil {
		if err := e.usage.admit(ctx, e, clean, opts.Size, opts.Overwrite || opts.Exclusive); err != nil {
			return fail(err)
		}
	}
	h := &Handle{e: e, id: hex.EncodeToString(idb[:]), path: clean, owner: ParticipantFrom(ctx), policy: g.p, replace: opts.Overwrite || opts.Exclusive, mu: make(chan struct{}, 1)}
	h.lastUsed.Store(time.Now().UnixNano())
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return fail(fs.ErrClosed)
	case len(e.handles)+e.reserved >= e.cfg.maxHandles:
		e.mu.Unlock()
		return fail(ErrTooManyHandles)
	}
	e.reserved++ // so that concurrent Opens respect the limit
	e.mu.Unlock()
	release := func() { e.mu.Lock(); e.reserved--; e.mu.Unlock() }

	// The writer may keep its context for the whole upload (GCS does), so it
	// gets one that lives with the handle rather than with this call.
	h.ctx, h.stop = context.WithCancel(context.WithoutCancel(life))
	wopts := backend.WriteOptions{Exclusive: opts.Exclusive, ContentType: mimeTypeByExt(clean)}
	if opts.Exclusive || opts.Overwrite {
		h.w, err = e.b.Create(h.ctx, clean, wopts)
	} else {
		h.w, err = e.b.Append(h.ctx, clean, wopts)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if h.w != nil { // the context ended after the writer was made
			e.abortWriter(ctx, h.w)
		}
		h.stop()
		release()
		return fail(err)
	}
	// Armed only once registered, so that an idle timeout always finds the
	// handle to remove; created stopped, so that a discard before then can
	// stop it.
	h.timer = time.AfterFunc(time.Hour, h.idle)
	h.timer.Stop()
	// roomstore.handles.open counts the handle before it is registered:
	// once registered, a Shutdown can discard it and count it closed at
	// once, and counted only after that (once e.mu is released), the metric
	// would read one less for a moment (-1 with no other handle open).
	// Counted first, it reads one more for a moment instead, taken back
	// below if Shutdown came first. The SDK is not called under e.mu, which
	// every Open, Close, Shutdown and Stats takes: an instrument's Add takes
	// the SDK's own locks and runs its views and exemplar reservoir, which
	// they would all wait for.
	e.tel.HandleOpened(ctx)
	e.mu.Lock()
	e.reserved--
	closed := e.closed
	if !closed {
		e.handles[h.id] = h
	}
	e.mu.Unlock()
	if closed { // Shutdown ran meanwhile and could not see this handle
		e.tel.HandleClosed(ctx) // it was counted, but is never registered for forget to take back
		h.mu <- struct{}{}
		h.finishLocked(ctx, fs.ErrClosed)
		h.unlock()
		return fail(fs.ErrClosed)
	}
	h.timer.Reset(e.cfg.idleTimeout)
	return h, nil
}

// Handle returns the open handle with the given ID, for servers that hand
// IDs to their clients. An ID that is not 32 hex digits yields
// fs.ErrInvalid; one of no open handle (never opened, or finished since)
// fs.ErrNotExist; another participant's handle fs.ErrPermission; and
// after Shutdown every ID yields fs.ErrClosed.
func (e *Engine) Handle(ctx context.Context, id string) (*Handle, error) {
	if !validHandleID(id) {
		return nil, &fs.PathError{Op: "handle", Path: "", Err: fmt.Errorf("%w: malformed handle ID (want 32 hex digits)", fs.ErrInvalid)}
	}
	e.mu.Lock()
	h := e.handles[id]
	closed := e.closed
	e.mu.Unlock()
	switch {
	case closed:
		return nil, &fs.PathError{Op: "handle", Path: id, Err: fmt.Errorf("%w: engine shut down", fs.ErrClosed)}
	case h == nil:
		return nil, &fs.PathError{Op: "handle", Path: id, Err: fmt.Errorf("%w: no open handle with this ID", fs.ErrNotExist)}
	case h.owner != ParticipantFrom(ctx):
		return nil, &fs.PathError{Op: "handle", Path: h.path, Err: fmt.Errorf("%w: handle belongs to another participant", fs.ErrPermission)}
	}
	return h, nil
}

// validHandleID reports whether id has the form of a handle's ID.
func validHandleID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// check admits a call on h: it must be this engine's handle and the caller
// its owner. It changes nothing, so a refused caller cannot disturb the
// owner's handle.
func (e *Engine) check(ctx context.Context, op string, h *Handle) error {
	switch {
	case h == nil:
		return &fs.PathError{Op: op, Path: "", Err: fmt.Errorf("%w: nil handle", fs.ErrInvalid)}
	case h.e != e:
		return &fs.PathError{Op: op, Path: h.path, Err: fmt.Errorf("%w: handle belongs to another engine", fs.ErrInvalid)}
	case h.owner != ParticipantFrom(ctx):
		return &fs.PathError{Op: op, Path: h.path, Err: fmt.Errorf("%w: handle belongs to another participant", fs.ErrPermission)}
	}
	return e.begin(op, h.path)
}

// callContext bounds one call on h by both the call's context and the
// handle's life, so Abort, an idle timeout or Shutdown interrupt it.
func (h *Handle) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(h.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// Write stages data on h; like an io.Writer, it keeps no reference to data
// once it returns. Nothing is visible before Close. Writing to a
// finished handle yields fs.ErrClosed and another participant's handle
// fs.ErrPermission (the handle is left alone). If the write fails or ctx
// is cancelled, the handle is discarded and the file keeps its old
// content; but a Write whose ctx ends while it waits for another call on
// the same handle returns the context's error and leaves the handle alone.
func (e *Engine) Write(ctx context.Context, h *Handle, data []byte) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Write, handlePath(h))
	defer call.End(&err)
	if err = e.write(ctx, h, data); err == nil { // a failed Write staged nothing
		call.SetBytes(int64(len(data)))
	}
	return err
}

// handlePath is h's path for a call's record, "" for a nil h.
func handlePath(h *Handle) string {
	if h == nil {
		return ""
	}
	return h.path
}

// write is Write, unrecorded, for Upload.
func (e *Engine) write(ctx context.Context, h *Handle, data []byte) error {
	if err := e.check(ctx, "write", h); err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := h.lock(ctx); err != nil {
		return pathError("write", h.path, err)
	}
	defer h.unlock()
	if h.done != nil {
		return &fs.PathError{Op: "write", Path: h.path, Err: h.done}
	}
	cctx, cancel := h.callContext(ctx)
	defer cancel()
	err := cctx.Err()
	if err == nil && e.usage != nil {
		err = e.usage.stage(h.path, h.size, int64(len(data)))
	}
	if err == nil {
		err = h.w.Write(cctx, data)
		if err != nil && e.usage != nil {
			e.usage.unstage(int64(len(data)))
		}
	}
	if err != nil {
		return h.failLocked(ctx, "write", err, fmt.Errorf("%w: handle discarded after a failed write", fs.ErrClosed))
	}
	h.size += int64(len(data))
	h.lastUsed.Store(time.Now().UnixNano())
	h.timer.Reset(e.cfg.idleTimeout)
	return nil
}

// failLocked ends h after a failed call and returns the call's error: the
// caller's own context error, else the reason of a discard that
// interrupted it, else the backend's. The caller holds h.mu.
func (h *Handle) failLocked(ctx context.Context, op string, err, reason error) error {
	r := h.discarding.Load()
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case r != nil:
		err = *r
	}
	if r != nil {
		reason = *r
	}
	h.finishLocked(ctx, reason)
	return pathError(op, h.path, err)
}

// Close commits h: its bytes replace the file (Overwrite), create it
// (Exclusive, or a missing file) or are appended to the file as it is now,
// atomically, and EventFileUpdated is published. An append that loses a
// race with another writer is retried (WithCommitAttempts) before it fails
// with ErrConflict; an Exclusive handle whose file appeared meanwhile fails
// with fs.ErrExist. On any failure the handle is discarded and the file
// keeps its old content, with one exception inherent to remote stores: if
// ctx ends while the commit is in flight, the store may have applied it
// (then the file holds the new content whole, but no event is published).
// Closing a finished handle yields fs.ErrClosed. A Close whose ctx ends
// while it waits for another call on the same handle returns the
// context's error and leaves the handle alone; one whose ctx ends while it
// waits for another commit to the same path discards the handle.
func (e *Engine) Close(ctx context.Context, h *Handle) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Close, handlePath(h))
	defer call.End(&err)
	_, n, err := e.close(ctx, telemetry.Close, h)
	call.SetBytes(n)
	return err
}

// close is Close, unrecorded but for its commit attempts and bytes
// written, under the name of top (Close or Upload). It returns what it
// committed and how many of the handle's bytes that was (-1 on failure).
func (e *Engine) close(ctx context.Context, top telemetry.Op, h *Handle) (backend.Info, int64, error) {
	op := top.String() // "close" or "upload", as the error names it
	if err := e.check(ctx, op, h); err != nil {
		return backend.Info{}, -1, err
	}
	defer e.inflight.Done()
	if err := h.lock(ctx); err != nil {
		return backend.Info{}, -1, pathError(op, h.path, err)
	}
	defer h.unlock()
	if h.done != nil {
		return backend.Info{}, -1, &fs.PathError{Op: op, Path: h.path, Err: h.done}
	}
	h.timer.Stop()
	if r := h.discarding.Load(); r != nil { // discarded while this call waited for h.mu
		return backend.Info{}, -1, h.failLocked(ctx, op, *r, *r)
	}
	// The policy is asked again, so that rights withdrawn while the handle
	// was open (a revoked token) stop its commit.
	if err := (gate{ctx: ctx, p: h.policy}).check(Write, h.path); err != nil {
		return backend.Info{}, -1, h.failLocked(ctx, op, err, errCloseFailed)
	}
	mu := e.stripe(h.path)
	if !mu.TryAcquire(1) {
		wctx, cancel := h.callContext(ctx) // an Abort or Shutdown ends the wait
		err := mu.Acquire(wctx, 1)
		cancel()
		if err != nil {
			return backend.Info{}, -1, h.failLocked(ctx, op, err, errCloseFailed)
		}
	}
	defer mu.Release(1)
	if e.usage != nil {
		// Reserved until the commit's event has been applied to the usage
		// (or the commit failed), so that concurrent commits count it.
		release, err := e.usage.reserve(ctx, e, h.path, h.size, h.replace)
		if err != nil {
			return backend.Info{}, -1, h.failLocked(ctx, op, err, errCloseFailed)
		}
		defer release()
	}
	// Once a commit has begun, only the caller's context may cut it short:
	// an Abort or Shutdown waits for it rather than leave the outcome in
	// doubt on a remote store.
	info, tried, err := e.commit(ctx, top, h)
	if err != nil {
		if e.usage != nil && tried && ctx.Err() != nil {
			// The store may have applied it, and no event tells: what is
			// at the path says, at the next need (not on this call, whose
			// context has ended).
			e.usage.unsettle(h.path)
		}
		return backend.Info{}, -1, h.failLocked(ctx, op, err, errCloseFailed)
	}
	h.finishLocked(ctx, errCommitted)
	e.tel.BytesWritten(ctx, top, h.size)
	e.publish(ctx, EventFileUpdated, h.path, info.Size)
	return info, h.size, nil
}

// commit commits h's writer, retrying conflicts; tried says whether the
// store was asked at all.
func (e *Engine) commit(ctx context.Context, top telemetry.Op, h *Handle) (_ backend.Info, tried bool, _ error) {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return backend.Info{}, tried, err
		}
		tried = true
		info, err := h.w.Commit(ctx)
		conflict := err != nil && errors.Is(err, ErrConflict)
		retry := conflict && attempt < e.cfg.attempts
		e.tel.Attempt(ctx, top, conflict, retry)
		if !retry {
			return info, tried, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return backend.Info{}, tried, err
		}
	}
}

// Abort discards h: its bytes are dropped and the file keeps its old
// content. It yields fs.ErrClosed on a finished handle (so a deferred Abort
// after Close is harmless) and fs.ErrPermission on another participant's.
// Abort interrupts a Write running on h; a Close that is already committing
// finishes first, and Abort then yields fs.ErrClosed, or the context's
// error if ctx ends before that Close does. Removing the staged bytes from
// a remote store goes on in the background once ctx has ended.
func (e *Engine) Abort(ctx context.Context, h *Handle) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Abort, handlePath(h))
	defer call.End(&err)
	if err := e.check(ctx, "abort", h); err != nil {
		return err
	}
	defer e.inflight.Done()
	open, err := h.discard(ctx, fmt.Errorf("%w: handle aborted", fs.ErrClosed), "")
	switch {
	case err != nil:
		return pathError("abort", h.path, err)
	case !open:
		return &fs.PathError{Op: "abort", Path: h.path, Err: fs.ErrClosed}
	}
	return nil
}

// idle runs when the idle timer fires.
func (h *Handle) idle() {
	wait := h.e.cfg.idleTimeout - time.Since(time.Unix(0, h.lastUsed.Load()))
	if wait > 0 { // a Write just reset the timer while it fired
		h.timer.Reset(wait)
		return
	}
	_, _ = h.discard(context.Background(), fmt.Errorf("%w: handle aborted after %v idle", fs.ErrClosed, h.e.cfg.idleTimeout), "idle timeout")
}

// discard interrupts whatever runs on h, then aborts its writer. It
// reports whether h was still open, or ctx's error if ctx ends before the
// call running on h lets go of it (that call then ends h with reason, or
// commits). A non-empty why is logged.
func (h *Handle) discard(ctx context.Context, reason error, why string) (bool, error) {
	h.discarding.CompareAndSwap(nil, &reason)
	h.stop() // so that a Write or Close stuck in the backend lets go of h.mu
	if err := h.lock(ctx); err != nil {
		return false, err
	}
	defer h.unlock()
	if h.done != nil {
		return h.done == reason, nil // an interrupted call already ended h for us
	}
	if why != "" {
		h.e.cfg.logger.Warn("roomstore: handle discarded", "path", h.path, "handle", h.id, "participant", h.owner, "reason", why, "bytes", h.size)
	}
	h.finishLocked(ctx, reason)
	return true, nil
}

// errCommitted is why a handle that Close committed is finished. One
// value serves every handle: building it per Close was a measurable part
// of a small commit.
var errCommitted = fmt.Errorf("%w: handle already closed", fs.ErrClosed)

// errCloseFailed is why a handle whose Close failed is finished.
var errCloseFailed = fmt.Errorf("%w: handle discarded after a failed close", fs.ErrClosed)

// finishLocked ends h for good: the writer is aborted (unless it
// committed: Abort is then a no-op by the backend.Writer contract, and the
// goroutine and bounded context it needs would cost every Close), the
// timer stopped and the slot freed. The abort is waited for as long as ctx
// allows. The caller holds h.mu.
func (h *Handle) finishLocked(ctx context.Context, reason error) {
	h.done = reason
	if h.e.usage != nil {
		h.e.usage.unstage(h.size)
	}
	h.timer.Stop()
	if reason != errCommitted {
		h.e.abortWriter(ctx, h.w)
	}
	h.stop()
	h.e.forget(h)
}

// abortTimeout bounds the abort of a writer, which removes what it staged
// (on a remote store, requests that retry while the server is away).
const abortTimeout = 30 * time.Second

// abortWriter aborts w on a context of its own, bounded by abortTimeout,
// and waits for it as long as ctx allows: what is left goes on in the
// background, and Shutdown waits for it.
func (e *Engine) abortWriter(ctx context.Context, w backend.Writer) {
	done := make(chan struct{})
	e.cleanups.Add(1)
	go func() {
		defer e.cleanups.Done()
		defer close(done)
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_ = w.Abort(actx)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// forget unregisters h, if it was registered.
func (e *Engine) forget(h *Handle) {
	e.mu.Lock()
	_, registered := e.handles[h.id]
	delete(e.handles, h.id)
	e.mu.Unlock()
	if registered {
		e.tel.HandleClosed(context.Background())
	}
}
