package backend_gcs

import (
	"context"
	"errors"
	"io/fs"
	"sync"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
)

// markerKey is the metadata key that tags an object with the writer that
// produced it. When the SDK retries a guarded request whose first try
// succeeded but whose response was lost, the retry fails its precondition
// against the writer's own result; the marker tells that case apart from
// a real loss.
const markerKey = "roomstore-writer"

// guard is what a Create's upload is conditional on.
type guard int

const (
	// guardNone: nothing; a plain overwrite.
	guardNone guard = iota
	// guardNew: no file may be there (Exclusive, IfNoneMatch "*").
	guardNew
	// guardMatch: the file must be the version IfMatch names.
	guardMatch
	// guardFound: the file must still be the version found when the
	// upload begins (Keep, which keeps that version, or IfNoneMatch of an
	// ETag, which that version must not have).
	guardFound
	// guardNever: the precondition can never hold.
	guardNever
)

// guardFor returns the guard of a Create with opts, and the generation
// of guardMatch.
func guardFor(opts backend.WriteOptions) (guard, int64) {
	p := opts.Precondition
	switch {
	case p.IfMatch != "":
		gen, ok := parseETag(p.IfMatch)
		if !ok || opts.Exclusive || p.IfNoneMatch == "*" || p.IfNoneMatch == p.IfMatch {
			return guardNever, 0
		}
		return guardMatch, gen
	case opts.Exclusive || p.IfNoneMatch == "*":
		return guardNew, 0
	case opts.Keep != nil || p.IfNoneMatch != "":
		return guardFound, 0
	}
	return guardNone, 0
}

// Create returns a writer that uploads straight to the object at path.
// Commit finalises the upload, which replaces the object atomically.
// Nothing is visible before Commit. Create itself does no I/O.
//
// The upload carries the preconditions of opts: DoesNotExist for
// Exclusive (fs.ErrExist when an object is there by Commit) and for
// IfNoneMatch "*", the generation IfMatch names, and, with Keep or an
// IfNoneMatch of an ETag, the generation of the version it replaces,
// which Commit keeps (see keep) before it finalises. A resumable upload
// states its preconditions when it begins, so such a writer holds its
// first chunk and decides only when its bytes pass it (asking the
// generation then) or at Commit (guessing first that no file is there, so
// that a new file costs nothing more). A commit that lost to another at
// that point yields ErrConflict, the bytes still held, and may be
// called again; a larger upload, already begun on the version it found,
// cannot follow the file to a later one, and yields ErrPrecondition when
// the file changed while it ran. A failed precondition yields
// ErrPrecondition in every other case.
func (b *Backend) Create(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	w := &createWriter{b: b, path: path, obj: b.bucket.Object(b.key(path)), opts: opts, id: newID()}
	w.guard, w.gen = guardFor(opts)
	meta := map[string]string{markerKey: w.id}
	switch w.guard {
	case guardNone:
		// Re-sending an unconditional upload can only write the same bytes
		// again, so it is safe to retry, which the SDK does not do for
		// uploads without preconditions by default.
		// A handle of its own (see retryable).
		w.up = b.startUpload(ctx, retryable(b.bucket.Object(b.key(path)), storage.WithPolicy(storage.RetryAlways)), opts.ContentType, nil)
	case guardNew:
		w.up = b.startUpload(ctx, w.obj.If(storage.Conditions{DoesNotExist: true}), opts.ContentType, meta)
	case guardMatch:
		w.up = b.startUpload(ctx, w.obj.If(storage.Conditions{GenerationMatch: w.gen}), opts.ContentType, meta)
	case guardFound:
		w.up = b.deferUpload(ctx, opts.ContentType, meta, w.look)
	}
	return w, nil
}

// createWriter is the backend.Writer of Create.
type createWriter struct {
	b     *Backend
	path  string
	obj   *storage.ObjectHandle // without conditions, for the marker check
	opts  backend.WriteOptions
	guard guard
	gen   int64 // guardMatch's
	id    string
	up    *upload // nil for guardNever

	// base is the version a guardFound upload that has begun is
	// conditional on (nil: none was there); seen says that an attempt of
	// a guardFound commit found a file.
	base *storage.ObjectAttrs
	seen bool

	mu   sync.Mutex
	done bool
}

// look starts a guardFound upload whose bytes pass one chunk: it reads
// the version the upload is to replace, which the upload is then
// conditional on.
func (w *createWriter) look(ctx context.Context) (*storage.ObjectHandle, error) {
	a, err := w.current(ctx)
	if err != nil {
		return nil, classify(err)
	}
	w.base = a
	if a == nil {
		return w.obj.If(storage.Conditions{DoesNotExist: true}), nil
	}
	return w.obj.If(storage.Conditions{GenerationMatch: a.Generation}), nil
}

func (w *createWriter) Write(ctx context.Context, p []byte) error {
	if w.up == nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.done {
			return fs.ErrClosed
		}
		return ctx.Err()
	}
	if err := w.up.write(ctx, p); err != nil {
		return classify(err)
	}
	return nil
}

func (w *createWriter) Commit(ctx context.Context) (backend.Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return backend.Info{}, fs.ErrClosed
	}
	if w.guard == guardFound && w.up.held() {
		info, err := w.commitHeld(ctx)
		if !errors.Is(err, backend.ErrConflict) {
			w.done = true
			w.up.abort()
		}
		return info, err
	}
	w.done = true
	switch w.guard {
	case guardNever:
		return backend.Info{}, precondition("the precondition can never hold", nil)
	case guardNone:
		a, err := w.up.finish(ctx)
		if err != nil {
			return backend.Info{}, classify(err)
		}
		return fileInfo(w.path, a), nil
	}
	return w.commitBegun(ctx)
}

// commitBegun finalises a guarded upload that has begun, keeping first,
// when Keep asks, the version it is conditional on.
func (w *createWriter) commitBegun(ctx context.Context) (backend.Info, error) {
	var base *storage.ObjectAttrs
	switch w.guard {
	case guardMatch:
		if w.opts.Keep != nil {
			// The version IfMatch names, if it is still the file's.
			a, err := w.obj.Generation(w.gen).Attrs(ctx)
			if isNotExist(err) {
				w.up.abort()
				return w.lost(err)
			}
			if err != nil {
				w.up.abort()
				return backend.Info{}, classify(err)
			}
			base = a
		}
	case guardFound:
		base = w.base
		if err := check(w.opts.Precondition, base); err != nil {
			w.up.abort()
			return backend.Info{}, err
		}
	}
	k, err := w.b.keep(ctx, w.path, base, w.opts.Keep, backend.ReasonOverwritten)
	if err != nil {
		w.up.abort()
		if errors.Is(err, errVersionGone) {
			return w.lost(nil)
		}
		return backend.Info{}, err
	}
	a, err := w.up.finish(ctx)
	switch {
	case err == nil:
		return fileInfo(w.path, a), nil
	case isPrecondition(err):
		if own := w.landed(ctx); own != nil {
			return fileInfo(w.path, own), nil
		}
		w.b.forget(ctx, k)
		return w.lost(err)
	}
	// The upload may have landed: k stays.
	return backend.Info{}, classify(err)
}

// lost is the error of a begun upload whose precondition failed.
func (w *createWriter) lost(cause error) (backend.Info, error) {
	switch {
	case w.guard == guardNew && w.opts.IfNoneMatch == "*":
		return backend.Info{}, precondition("a file is there", cause)
	case w.guard == guardNew:
		return backend.Info{}, withKind(fs.ErrExist, cause, "exclusive create lost")
	case w.guard == guardMatch:
		return backend.Info{}, precondition("the file is not the version IfMatch names", cause)
	}
	return backend.Info{}, precondition("the file changed while the upload ran, which began on the version before", cause)
}

// commitHeld commits the bytes that a guardFound writer still holds. It
// guesses first that no file is there, unless an earlier attempt found
// one; otherwise it keeps the file's version and sends the bytes
// conditional on it. A file that changes in between yields ErrConflict,
// the bytes still held.
func (w *createWriter) commitHeld(ctx context.Context) (backend.Info, error) {
	var base *storage.ObjectAttrs
	if w.seen {
		a, err := w.current(ctx)
		if err != nil {
			return backend.Info{}, classify(err)
		}
		base = a
	}
	if base == nil {
		if err := check(w.opts.Precondition, nil); err != nil {
			return backend.Info{}, err
		}
		a, err := w.up.sendHeld(ctx, w.obj.If(storage.Conditions{DoesNotExist: true}))
		if err == nil {
			return fileInfo(w.path, a), nil
		}
		if !isPrecondition(err) {
			return backend.Info{}, classify(err)
		}
		w.seen = true
		if base, err = w.current(ctx); err != nil {
			return backend.Info{}, classify(err)
		}
		switch {
		case base == nil:
			return backend.Info{}, conflict("the file came and went during the commit", nil)
		case base.Metadata[markerKey] == w.id:
			// Our own upload, sent again by the SDK after a lost response.
			return fileInfo(w.path, base), nil
		}
	}
	if err := check(w.opts.Precondition, base); err != nil {
		return backend.Info{}, err
	}
	k, err := w.b.keep(ctx, w.path, base, w.opts.Keep, backend.ReasonOverwritten)
	if errors.Is(err, errVersionGone) {
		return backend.Info{}, conflict("the file changed before the commit", nil)
	}
	if err != nil {
		return backend.Info{}, err
	}
	a, err := w.up.sendHeld(ctx, w.obj.If(storage.Conditions{GenerationMatch: base.Generation}))
	switch {
	case err == nil:
		return fileInfo(w.path, a), nil
	case isPrecondition(err):
		if own := w.landed(ctx); own != nil {
			return fileInfo(w.path, own), nil
		}
		w.b.forget(ctx, k)
		return backend.Info{}, conflict("the file changed during the commit", err)
	}
	// The upload may have landed: k stays.
	return backend.Info{}, classify(err)
}

// current returns the file's attributes, nil when it is missing.
func (w *createWriter) current(ctx context.Context) (*storage.ObjectAttrs, error) {
	a, err := w.obj.Attrs(ctx)
	if isNotExist(err) {
		return nil, nil
	}
	return a, err
}

// landed returns the file's attributes when its current version is this
// writer's upload, else nil.
func (w *createWriter) landed(ctx context.Context) *storage.ObjectAttrs {
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	a, err := w.obj.Attrs(cctx)
	if err != nil || a.Metadata[markerKey] != w.id {
		return nil
	}
	return a
}

func (w *createWriter) Abort(ctx context.Context) error {
	if w.up != nil {
		w.up.abort()
	}
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	return nil
}
