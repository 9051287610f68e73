package backend_gcs

import (
	"context"
	"errors"
	"sync/atomic"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
)

// maxRemoveAttempts bounds how often a Remove that keeps the removed
// version starts over because the file changed between its read and its
// delete; each time another writer committed within a round trip.
const maxRemoveAttempts = 10

// Remove deletes the object at path; a missing one yields fs.ErrNotExist
// and a folder backend.ErrIsFolder. Folders need no pruning: they vanish
// with their last object.
//
// With opts.IfMatch or opts.Keep, Remove reads the file's generation,
// checks IfMatch on it (ErrPrecondition, after fs.ErrNotExist), keeps
// that version (ReasonDeleted) when Keep asks, and deletes that
// generation only, which Cloud Storage and the emulator both refuse once
// it is no longer the file's. A file changed in between makes Remove
// start over, or, with IfMatch, yields ErrPrecondition; a file removed in
// between yields fs.ErrNotExist.
func (b *Backend) Remove(ctx context.Context, path string, opts backend.RemoveOptions) error {
	obj := b.bucket.Object(b.key(path))
	if opts.IfMatch == "" && opts.Keep == nil {
		err := obj.Delete(ctx)
		if isNotExist(err) {
			return b.missing(ctx, path, err)
		}
		return classify(err)
	}
	pre := backend.Precondition{IfMatch: opts.IfMatch}
	for attempt := 1; ; attempt++ {
		a, err := obj.Attrs(ctx)
		if isNotExist(err) {
			return b.missing(ctx, path, err)
		}
		if err != nil {
			return classify(err)
		}
		if err := check(pre, a); err != nil {
			return err
		}
		k, err := b.keep(ctx, path, a, opts.Keep, backend.ReasonDeleted)
		retried := false
		switch {
		case err == nil:
			var deleted bool
			if deleted, retried, err = b.deleteGeneration(ctx, path, a.Generation); deleted || err != nil {
				// Deleted, or perhaps: what was kept stays.
				return err
			}
			if !retried {
				b.forget(ctx, k)
			}
		case !errors.Is(err, errVersionGone):
			return err
		}
		// The generation read was gone when the delete arrived. A retry's
		// 404 may answer our own first try, whose response was lost, so
		// after one a missing file counts as removed, and what was kept
		// stays.
		if _, err := obj.Attrs(ctx); isNotExist(err) {
			if retried {
				return nil
			}
			return b.missing(ctx, path, err)
		}
		switch {
		case opts.IfMatch != "":
			return precondition("the file changed before the delete", nil)
		case attempt == maxRemoveAttempts:
			return conflict("the file kept changing", nil)
		}
	}
}

// deleteGeneration deletes generation gen of the object of path and
// reports whether it did; a 404 means that gen was not there, unless the
// SDK sent the request again (retried), when it may answer our own first
// try.
func (b *Backend) deleteGeneration(ctx context.Context, path string, gen int64) (deleted, retried bool, err error) {
	var again atomic.Bool
	// A handle of its own (see retryable).
	obj := retryable(b.bucket.Object(b.key(path)), storage.WithErrorFunc(func(err error) bool {
		retry := storage.ShouldRetry(err)
		if retry {
			again.Store(true)
		}
		return retry
	}))
	err = obj.Generation(gen).Delete(ctx)
	switch {
	case err == nil:
		return true, again.Load(), nil
	case isNotExist(err):
		return false, again.Load(), nil
	}
	return false, again.Load(), classify(err)
}
