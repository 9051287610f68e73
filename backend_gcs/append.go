package backend_gcs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
)

// Append returns a writer that stages its bytes in a private temporary
// object and, at Commit, composes them onto the end of the object at path
// (creating it when missing) in one guarded attempt; see the package
// documentation for the protocol. A lost race yields an error wrapping
// backend.ErrConflict, keeps the staged bytes, and Commit may be called
// again. The temporary is deleted in every final outcome. Append itself
// does no I/O; opts.ContentType applies when the append creates the file.
//
// opts.Precondition is checked on the version the attempt composes onto,
// which the compose is conditional on: a file that is not, or is no
// longer, the version IfMatch names yields ErrPrecondition, never
// ErrConflict. opts.Keep keeps that version (ReasonAppended) before the
// compose.
func (b *Backend) Append(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	id := newID()
	temp := b.bucket.Object(b.tempName(id))
	return &appendWriter{
		b:           b,
		path:        path,
		obj:         b.bucket.Object(b.key(path)),
		contentType: opts.ContentType,
		pre:         opts.Precondition,
		keep:        opts.Keep,
		id:          id,
		temp:        temp,
		// Nobody else knows the temporary's name, so re-sending is safe.
		up: b.startUpload(ctx, retryable(b.bucket.Object(b.tempName(id)), storage.WithPolicy(storage.RetryAlways)), opts.ContentType, nil),
	}, nil
}

// appendWriter is the backend.Writer of Append.
type appendWriter struct {
	b           *Backend
	path        string
	obj         *storage.ObjectHandle
	contentType string
	pre         backend.Precondition
	keep        *backend.Keep
	id          string
	temp        *storage.ObjectHandle
	up          *upload

	mu     sync.Mutex
	staged *storage.ObjectAttrs // the finalised temporary, after the first Commit
	done   bool
}

func (w *appendWriter) Write(ctx context.Context, p []byte) error {
	if err := w.up.write(ctx, p); err != nil {
		return classify(err)
	}
	return nil
}

func (w *appendWriter) Commit(ctx context.Context) (backend.Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return backend.Info{}, fs.ErrClosed
	}
	if w.staged == nil {
		a, err := w.up.finish(ctx)
		if err != nil {
			w.done = true
			return backend.Info{}, classify(err)
		}
		w.staged = a
	}
	info, err := w.attempt(ctx)
	if errors.Is(err, backend.ErrConflict) {
		return backend.Info{}, err
	}
	w.done = true
	w.removeTemp(ctx)
	return info, err
}

func (w *appendWriter) Abort(ctx context.Context) error {
	w.up.abort()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.removeTemp(ctx)
	return nil
}

// removeTemp deletes the finalised temporary, if any. It is best effort:
// a leftover temporary wastes space but is invisible to every reader.
func (w *appendWriter) removeTemp(ctx context.Context) {
	if w.staged == nil {
		return
	}
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	_ = w.temp.Generation(w.staged.Generation).Delete(cctx)
}

// attempt runs one guarded append of the staged temporary onto the file.
func (w *appendWriter) attempt(ctx context.Context) (backend.Info, error) {
	base, err := w.current(ctx)
	if err != nil {
		return backend.Info{}, classify(err)
	}
	if base != nil && base.Metadata[markerKey] == w.id {
		// An earlier attempt landed although it reported a failure (its
		// response was lost); composing again would append twice.
		return fileInfo(w.path, base), nil
	}
	if err := check(w.pre, base); err != nil {
		return backend.Info{}, err
	}
	gen := generation(base)

	release, err := w.b.claim(ctx, w.path, w.obj.ObjectName(), gen)
	if err != nil {
		return backend.Info{}, err
	}
	defer release()

	// The claim is on gen, but the file may have moved past gen between
	// the read above and the claim (its previous claimant finished and
	// released in between). Only with the file still at gen does holding
	// the claim mean nobody else can compose onto it now.
	now, err := w.current(ctx)
	if err != nil {
		return backend.Info{}, classify(err)
	}
	if generation(now) != gen {
		return backend.Info{}, w.changed("file changed before compose", nil)
	}
	k, err := w.b.keep(ctx, w.path, now, w.keep, backend.ReasonAppended)
	if errors.Is(err, errVersionGone) {
		return backend.Info{}, w.changed("file changed before compose", nil)
	}
	if err != nil {
		return backend.Info{}, err
	}

	var (
		// A handle of its own (see retryable).
		dst         = retryable(w.b.bucket.Object(w.obj.ObjectName()), storage.WithMaxAttempts(composeAttempts))
		srcs        []*storage.ObjectHandle
		contentType = w.contentType
	)
	if base == nil {
		dst = dst.If(storage.Conditions{DoesNotExist: true})
		if contentType == "" {
			contentType = w.staged.ContentType
		}
	} else {
		// The destination precondition is what makes this safe on Cloud
		// Storage; pinning the source generation makes a compose that
		// slipped past it read the version we checked or fail (the
		// emulator reads its sources as they are).
		dst = dst.If(storage.Conditions{GenerationMatch: gen})
		srcs = append(srcs, w.obj.Generation(gen))
		contentType = now.ContentType
	}
	srcs = append(srcs, w.temp.Generation(w.staged.Generation))
	// The SDK retries a failed compose until the context ends; a source
	// deleted under us (which the emulator reports as a 500) must not
	// stall the Commit, so the retries are bounded and the file checked.
	c := dst.ComposerFrom(srcs...)
	c.ContentType = contentType
	c.Metadata = map[string]string{markerKey: w.id}
	res, err := c.Run(ctx)
	if err != nil {
		// A retried compose whose first try landed fails its precondition
		// against our own result; the marker says so.
		if landed := w.landed(ctx); landed != nil {
			return fileInfo(w.path, landed), nil
		}
		if isPrecondition(err) || isNotExist(err) || w.moved(ctx, gen) {
			w.b.forget(ctx, k)
			return backend.Info{}, w.changed("file changed during compose", err)
		}
		// The compose may have landed: k stays.
		return backend.Info{}, classify(err)
	}
	info, err := w.verify(gen, res)
	if err != nil && res.Generation == gen {
		w.b.forget(ctx, k)
	}
	return info, err
}

// changed is the error of an attempt that found the file no longer at
// the version it read: ErrPrecondition when the append is conditional
// on that version, else ErrConflict (the retry reads the file again).
func (w *appendWriter) changed(why string, cause error) error {
	if w.pre.IfMatch != "" {
		return precondition(why, cause)
	}
	return conflict(why, cause)
}

// composeAttempts bounds the SDK's tries of one compose.
const composeAttempts = 4

// moved reports whether the file is known to be at a generation other
// than gen (0: missing), so that a failed compose met a race rather than
// a broken server.
func (w *appendWriter) moved(ctx context.Context, gen int64) bool {
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	cur, err := w.current(cctx)
	return err == nil && generation(cur) != gen
}

// verify checks the compose result. The bytes we staged are the last
// source, so a result with a new generation holds them exactly once at
// its end, after whatever the file held when the server composed; a
// retry would append them twice, so such a result is a success even if
// its size shows that the base was not the version we checked (an
// unguarded overwrite raced us on a server that ignores compose
// preconditions). Only a result that cannot contain our bytes is a
// conflict, because then retrying is what makes the file right.
func (w *appendWriter) verify(gen int64, res *storage.ObjectAttrs) (backend.Info, error) {
	if res.Generation == gen || res.Size < w.staged.Size {
		return backend.Info{}, conflict(fmt.Sprintf("compose returned generation %d (%d bytes), which cannot hold the %d staged bytes", res.Generation, res.Size, w.staged.Size), nil)
	}
	return fileInfo(w.path, res), nil
}

// landed returns the file's attributes when its current version is this
// writer's compose result, else nil.
func (w *appendWriter) landed(ctx context.Context) *storage.ObjectAttrs {
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	a, err := w.obj.Attrs(cctx)
	if err != nil || a.Metadata[markerKey] != w.id {
		return nil
	}
	return a
}

// current returns the file's attributes, nil when it is missing.
func (w *appendWriter) current(ctx context.Context) (*storage.ObjectAttrs, error) {
	a, err := w.obj.Attrs(ctx)
	if isNotExist(err) {
		return nil, nil
	}
	return a, err
}

func generation(a *storage.ObjectAttrs) int64 {
	if a == nil {
		return 0
	}
	return a.Generation
}
