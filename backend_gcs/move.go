package backend_gcs

import (
	"context"
	"errors"
	"io/fs"
	"maps"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
)

// Move renames the object at src to dst by a server-side copy of the
// generation it read, then a delete of that generation; see the package
// documentation for the protocol. It returns dst's Info as Stat reports
// it.
//
// It yields fs.ErrNotExist when src holds no object, backend.ErrIsFolder
// when src or dst is a folder, fs.ErrExist when an object is at dst and
// opts.Overwrite is false, and backend.ErrConflict when src changed
// during the move or an append to src is under way: the copy is then
// removed (unless opts.Overwrite, when dst keeps a copy of the earlier
// version), src keeps every byte, and the caller may call Move again. A
// Move that fails otherwise, its context's end included, leaves src as
// it was and removes its copy, unless opts.Overwrite and the copy had
// replaced dst. When removing the copy fails too, Move returns that
// failure rather than ErrConflict, since a retry would meet the copy.
//
// opts.IfMatch makes the move conditional on src's version, which the
// copy and the delete pin: ErrPrecondition (after fs.ErrNotExist) when
// src is not, or is no longer, that version. opts.Keep keeps, before the
// copy, src's version under src (ReasonMoved) and a dst that the move
// replaces under dst (ReasonOverwritten); the copy is then conditional on
// that dst's generation (DoesNotExist where none was), and a dst that
// changed in between yields ErrConflict.
func (b *Backend) Move(ctx context.Context, src, dst string, opts backend.MoveOptions) (backend.Info, error) {
	srcObj := b.bucket.Object(b.key(src))
	a, err := srcObj.Attrs(ctx)
	if isNotExist(err) {
		return backend.Info{}, b.missing(ctx, src, err)
	}
	if err != nil {
		return backend.Info{}, classify(err)
	}
	if err := check(backend.Precondition{IfMatch: opts.IfMatch}, a); err != nil {
		return backend.Info{}, err
	}
	gen := a.Generation
	dstObj := b.bucket.Object(b.key(dst))
	// On Cloud Storage the copy's DoesNotExist precondition decides a
	// file at dst atomically; the emulator ignores that precondition,
	// and there this check is the only guard, one that a file created at
	// dst just after it can slip past.
	target := &statRecorder{objects: objects{b}}
	if err := objstore.CheckMoveTarget(ctx, target, dst, opts.Overwrite); err != nil {
		return backend.Info{}, err
	}

	// Holding the claims on gen and on 0 keeps every appender off src
	// until the move is decided: none can compose onto gen, and none can
	// create src afresh once it is deleted (see deleteSource).
	release, err := b.claim(ctx, src, srcObj.ObjectName(), gen)
	if err != nil {
		return backend.Info{}, err
	}
	defer release()
	releaseCreate, err := b.claim(ctx, src, srcObj.ObjectName(), 0)
	if err != nil {
		return backend.Info{}, err
	}
	defer releaseCreate()
	// As in an append, an appender may have composed onto gen and
	// released its claim between the read above and ours.
	now, err := srcObj.Attrs(ctx)
	if err != nil && !isNotExist(err) {
		return backend.Info{}, classify(err)
	}
	m := &move{bucket: b.bucket, src: srcObj, gen: gen, dst: dstObj, overwrite: opts.Overwrite, ifMatch: opts.IfMatch != "", id: newID()}
	if err != nil || now.Generation != gen {
		return backend.Info{}, m.changed("file changed before the copy", nil)
	}

	var keptSrc, keptDst *kept
	if opts.Keep != nil {
		m.guardDst, m.dstAttrs = true, target.attrs
		if keptDst, err = b.keep(ctx, dst, target.attrs, opts.Keep, backend.ReasonOverwritten); err != nil {
			if errors.Is(err, errVersionGone) {
				err = conflict("the destination changed before the copy", nil)
			}
			return backend.Info{}, err
		}
		if keptSrc, err = b.keep(ctx, src, now, opts.Keep, backend.ReasonMoved); err != nil {
			b.forget(ctx, keptDst)
			if errors.Is(err, errVersionGone) {
				err = m.changed("file changed before the copy", nil)
			}
			return backend.Info{}, err
		}
	}
	copied, err := m.copyGeneration(ctx, now)
	if err != nil {
		b.forget(ctx, keptSrc)
		if m.dstUntouched {
			b.forget(ctx, keptDst)
		}
		return backend.Info{}, err
	}
	if err := m.deleteSource(ctx, copied); err != nil {
		if m.srcStays {
			b.forget(ctx, keptSrc)
		}
		return backend.Info{}, err
	}
	return fileInfo(dst, copied), nil
}

// statRecorder is the Store that CheckMoveTarget asks, keeping the
// attributes of the file it finds, so that Move can keep that version
// without asking again.
type statRecorder struct {
	objects
	attrs *storage.ObjectAttrs
}

func (r *statRecorder) StatFile(ctx context.Context, path string) (backend.Info, error) {
	a, err := r.b.bucket.Object(r.b.key(path)).Attrs(ctx)
	if err != nil {
		return backend.Info{}, classify(err)
	}
	r.attrs = a
	return fileInfo(path, a), nil
}

// move is one attempt of Move, from generation gen of src to dst.
type move struct {
	bucket    *storage.BucketHandle
	src       *storage.ObjectHandle
	gen       int64
	dst       *storage.ObjectHandle
	overwrite bool
	ifMatch   bool // the move is conditional on src's version
	// guardDst makes the copy conditional on dstAttrs, the version of dst
	// it replaces (nil: none), which the move has kept.
	guardDst bool
	dstAttrs *storage.ObjectAttrs
	// id tags the copy (markerKey), so that a copy whose response was
	// lost is known for ours.
	id string

	// What a failed attempt left: dst as it was (dstUntouched), src
	// whole (srcStays).
	dstUntouched bool
	srcStays     bool
}

// changed is the error of an attempt that found src no longer at gen:
// ErrPrecondition when the move is conditional on that version, else
// ErrConflict (the caller may call Move again).
func (m *move) changed(why string, cause error) error {
	if m.ifMatch {
		return precondition(why, cause)
	}
	return conflict(why, cause)
}

// copyGeneration copies generation gen of src, whose attributes are a,
// to dst on the server and returns the copy's attributes. Pinning the
// source generation makes the copy read the version checked or fail with
// 404, on the emulator too, which ignores source preconditions.
func (m *move) copyGeneration(ctx context.Context, a *storage.ObjectAttrs) (*storage.ObjectAttrs, error) {
	to := m.dst
	switch {
	case m.guardDst && m.dstAttrs != nil:
		to = to.If(storage.Conditions{GenerationMatch: m.dstAttrs.Generation})
	case m.overwrite && !m.guardDst:
		// Copying the same generation again writes the same bytes.
		// A handle of its own (see retryable).
		to = retryable(m.bucket.Object(m.dst.ObjectName()), storage.WithPolicy(storage.RetryAlways))
	default:
		to = to.If(storage.Conditions{DoesNotExist: true})
	}
	c := to.CopierFrom(m.src.Generation(m.gen))
	// A destination resource may replace the source's metadata as a
	// whole, so it restates what the source carries besides the marker.
	meta := maps.Clone(a.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[markerKey] = m.id
	c.ContentType = a.ContentType
	c.ContentEncoding = a.ContentEncoding
	c.ContentLanguage = a.ContentLanguage
	c.ContentDisposition = a.ContentDisposition
	c.CacheControl = a.CacheControl
	c.Metadata = meta
	res, err := c.Run(ctx)
	switch {
	case err == nil:
		return res, nil
	case isNotExist(err):
		m.dstUntouched = true
		return nil, m.changed("file changed before the copy", err)
	case isPrecondition(err):
		// Our own copy, retried by the SDK after a lost response, fails
		// the precondition against itself.
		if own := m.ownCopy(ctx); own != nil {
			return own, nil
		}
		m.dstUntouched = true
		if m.overwrite {
			return nil, conflict("the destination changed before the copy", err)
		}
		return nil, withKind(fs.ErrExist, err, "a file is at the destination")
	}
	// The copy may have landed all the same.
	if own := m.ownCopy(ctx); own != nil && !m.overwrite {
		if uerr := m.undoCopy(ctx, own); uerr != nil {
			return nil, uerr
		}
	}
	return nil, classify(err)
}

// deleteSource deletes generation gen of src, and otherwise finds out
// what happened: the move is done when src is gone; it is undone (the
// copy removed unless overwrite) when src still holds gen or a newer
// generation.
//
// The delete pins gen rather than carrying a GenerationMatch
// precondition, which the emulator ignores on deletes; on a bucket
// without versioning the two are the same, and on a versioned bucket the
// pinned delete removes src's version outright instead of archiving it.
func (m *move) deleteSource(ctx context.Context, copied *storage.ObjectAttrs) error {
	err := m.src.Generation(m.gen).Delete(ctx)
	if err == nil {
		return nil
	}
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	cur, aerr := m.src.Attrs(cctx)
	switch {
	case isNotExist(aerr):
		// A 404 on a retry whose first try deleted gen. No appender can
		// have created src since (we hold its claim on 0), and a Remove
		// racing a Move may go either way, so src is ours and gone.
		return nil
	case aerr != nil:
		// src may be gone, leaving the copy the only one: keep it.
		return classify(err)
	case cur.Generation != m.gen:
		// Only an upload can have replaced gen while we hold the claim
		// on it; src keeps that upload's bytes.
		err = m.changed("file changed before the delete", err)
	default:
		err = classify(err)
	}
	m.srcStays = true
	if !m.overwrite {
		if uerr := m.undoCopy(ctx, copied); uerr != nil {
			return uerr
		}
	}
	return err
}

// ownCopy returns dst's attributes when its current version is this
// move's copy, else nil.
func (m *move) ownCopy(ctx context.Context) *storage.ObjectAttrs {
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	a, err := m.dst.Attrs(cctx)
	if err != nil || a.Metadata[markerKey] != m.id {
		return nil
	}
	return a
}

// undoCopy deletes the copy's generation only, so that a file written to
// dst since is never removed. A copy already gone is no failure.
func (m *move) undoCopy(ctx context.Context, copied *storage.ObjectAttrs) error {
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	err := m.dst.Generation(copied.Generation).Delete(cctx)
	if err == nil || isNotExist(err) {
		return nil
	}
	kind := backend.KindOf(classify(err))
	if kind == nil { // a network failure, the grace period's end
		return backend.Errorf(nil, err, "removing the copy after a failed move: %v", err)
	}
	return withKind(kind, err, "removing the copy after a failed move")
}
