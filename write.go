package roomstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	mrand "math/rand/v2"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// OpenOptions say how Open treats an existing file.
type OpenOptions struct {
	// Overwrite replaces the file's content at Close. Without it, Close
	// appends the written bytes to the file as it is then (creating it
	// when missing).
	Overwrite bool
	// Exclusive fails with fs.ErrExist if the file exists at Open or
	// appears before Close; of several racing exclusive creators, also
	// across engines sharing a store, exactly one wins.
	Exclusive bool
	// Size, when positive, is the number of bytes the caller means to
	// write: with a Quota, Open refuses with ErrQuotaExceeded a size the
	// quota cannot hold, before the first byte. It bounds nothing else.
	Size int64
	// IfMatch, when set, lets the write happen only while the file is the
	// version with this ETag (Entry.ETag, as Stat or a Reader reported
	// it): checked at Open, and again at Close atomically with the commit,
	// also against the other engines of the store. Otherwise Open or Close
	// fails with ErrPrecondition, the handle's bytes are discarded and the
	// file is left as the other writer made it. A missing file fails it.
	IfMatch string
	// IfNoneMatch, when set, lets the write happen only while the file is
	// not the version with this ETag, or with "*" only while no file is
	// there (as Exclusive, but failing with ErrPrecondition); checked as
	// IfMatch is.
	IfNoneMatch string
}

// precondition is the backend's form of o's preconditions.
func (o OpenOptions) precondition() backend.Precondition {
	return backend.Precondition{IfMatch: o.IfMatch, IfNoneMatch: o.IfNoneMatch}
}

// Open starts a write to the file at path; see OpenOptions for how an
// existing file is treated. Open fails with ErrIsFolder on a folder,
// ErrNotFolder when a parent is a file, fs.ErrExist for Exclusive on an
// existing file, ErrPrecondition when the file is not the version
// IfMatch or IfNoneMatch require, ErrTooManyHandles past
// WithMaxOpenHandles, fs.ErrInvalid for IfMatch with Exclusive (which
// cannot both hold), and
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
	if opts.IfMatch != "" && opts.Exclusive {
		return fail(fmt.Errorf("%w: IfMatch asks for a file that Exclusive forbids", fs.ErrInvalid))
	}

	info, err := e.b.Stat(ctx, clean)
	pre := opts.precondition()
	switch {
	case err == nil && !info.IsFolder:
		if perr := pre.Check(true, info.ETag); perr != nil && !opts.Exclusive {
			return fail(e.masked(g, clean, perr))
		}
	case errors.Is(err, fs.ErrNotExist):
		if perr := pre.Check(false, ""); perr != nil {
			return fail(e.masked(g, clean, perr))
		}
	}
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
	h := &Handle{e: e, id: hex.EncodeToString(idb[:]), path: clean, owner: ParticipantFrom(ctx), policy: g.p, replace: opts.Overwrite || opts.Exclusive, mu: newCtxMutex()}
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
	wopts := backend.WriteOptions{Exclusive: opts.Exclusive, ContentType: mimeTypeByExt(clean), Precondition: pre}
	if opts.Exclusive || opts.Overwrite {
		wopts.Keep = e.keep(ctx, backend.ReasonOverwritten)
		h.w, err = e.b.Create(h.ctx, clean, wopts)
	} else {
		wopts.Keep = e.keep(ctx, backend.ReasonAppended)
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
		h.mu.tryLock()          // free: nobody else has h
		h.setState(ctx, handleAborted, fs.ErrClosed)
		h.mu.unlock()
		return fail(fs.ErrClosed)
	}
	h.timer.Reset(e.cfg.idleTimeout)
	return h, nil
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
	if err := h.mu.lock(ctx); err != nil {
		return pathError("write", h.path, err)
	}
	defer h.mu.unlock()
	if h.state != handleOpen {
		return &fs.PathError{Op: "write", Path: h.path, Err: h.reason}
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
	if err := h.mu.lock(ctx); err != nil {
		return backend.Info{}, -1, pathError(op, h.path, err)
	}
	defer h.mu.unlock()
	if h.state != handleOpen {
		return backend.Info{}, -1, &fs.PathError{Op: op, Path: h.path, Err: h.reason}
	}
	h.setState(ctx, handleClosing, nil)
	if r := h.discarding.Load(); r != nil { // discarded while this call waited for h.mu
		return backend.Info{}, -1, h.failLocked(ctx, op, *r, *r)
	}
	// The policy is asked again, so that rights withdrawn while the handle
	// was open (a revoked token) stop its commit.
	if err := (gate{ctx: ctx, p: h.policy}).check(Write, h.path); err != nil {
		return backend.Info{}, -1, h.failLocked(ctx, op, err, errCloseFailed)
	}
	mu := e.stripes[e.stripeIndex(h.path)]
	if !mu.tryLock() {
		wctx, cancel := h.callContext(ctx) // an Abort or Shutdown ends the wait
		err := mu.lock(wctx)
		cancel()
		if err != nil {
			return backend.Info{}, -1, h.failLocked(ctx, op, err, errCloseFailed)
		}
	}
	unlocked := false
	defer func() {
		if !unlocked {
			mu.unlock()
		}
	}()
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
	h.setState(ctx, handleClosed, errCommitted)
	e.tel.BytesWritten(ctx, top, h.size)
	e.publish(ctx, EventFileUpdated, h.path, info.Size, info.ETag)
	mu.unlock()
	unlocked = true
	e.trim(ctx, h.path)
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

// stripeIndex returns the index of p's stripe in e.stripes.
func (e *Engine) stripeIndex(p string) int {
	return int(maphash.String(e.seed, p) % uint64(len(e.stripes)))
}

// lockStripe takes stripe i, waiting as ctx allows; a call whose context
// has ended takes none, even a free one, and changes nothing.
func (e *Engine) lockStripe(ctx context.Context, i int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.stripes[i].lock(ctx)
}

// backoff sleeps before commit attempt n (n >= 1) with full jitter, so
// writers that lost a race do not collide again in step.
func backoff(ctx context.Context, n int) error {
	ceiling := min(time.Millisecond<<min(n, 10), 200*time.Millisecond)
	t := time.NewTimer(mrand.N(ceiling) + time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
