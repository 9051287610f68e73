package backend_gcs

import (
	"context"
	"errors"
	"io/fs"
	"sync"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
)

// upload streams bytes into one object through a storage.Writer. The
// object appears only when finish finalises the upload; cancelling the
// upload's own context before that abandons it server-side, which is how
// abort, a cancelled call context and a failed Write leave nothing behind.
//
// The storage.Writer lives across many calls, each with its own context,
// so it runs on a private context that each call links to its own with
// context.AfterFunc for as long as the call lasts.
type upload struct {
	cancel context.CancelFunc // safe from any goroutine

	mu     sync.Mutex
	w      *storage.Writer
	opened bool  // bytes went to the storage.Writer, so it has a goroutine
	closed bool  // finished or aborted
	err    error // sticky: the upload is broken
}

func (b *Backend) startUpload(ctx context.Context, obj *storage.ObjectHandle, contentType string, metadata map[string]string) *upload {
	uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := obj.NewWriter(uctx)
	w.ChunkSize = b.cfg.chunkSize
	w.ContentType = contentType
	w.Metadata = metadata
	return &upload{cancel: cancel, w: w}
}

func (u *upload) write(ctx context.Context, p []byte) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return fs.ErrClosed
	}
	if u.err != nil {
		return errFailedEarlier
	}
	if err := ctx.Err(); err != nil {
		u.breakWith(err)
		return err
	}
	if len(p) == 0 {
		return nil
	}
	u.opened = true
	stop := context.AfterFunc(ctx, u.cancel)
	_, err := u.w.Write(p)
	if !stop() {
		// The call's context ended mid-write and took the upload with it.
		err = errors.Join(ctx.Err(), err)
	}
	if err != nil {
		u.breakWith(err)
	}
	return err
}

// errFailedEarlier answers a call on an upload that an error broke.
var errFailedEarlier = backend.Errorf(fs.ErrClosed, nil, "the writer failed earlier")

// breakWith marks the upload unusable and abandons it.
func (u *upload) breakWith(err error) {
	u.err = err
	u.cancel()
}

// finish finalises the upload and returns the new object's attributes. A
// context that ends during the call abandons the upload unless the server
// had already finalised it, in which case the object exists and finish
// reports success, because it does.
func (u *upload) finish(ctx context.Context) (*storage.ObjectAttrs, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, fs.ErrClosed
	}
	if u.err != nil {
		u.closeLocked()
		return nil, errFailedEarlier
	}
	if err := ctx.Err(); err != nil {
		u.breakWith(err)
		u.closeLocked()
		return nil, err
	}
	stop := context.AfterFunc(ctx, u.cancel)
	err := u.w.Close()
	stopped := stop()
	u.closed = true
	u.cancel()
	if err != nil {
		if !stopped {
			err = errors.Join(ctx.Err(), err)
		}
		u.err = err
		return nil, err
	}
	return u.w.Attrs(), nil
}

// abort abandons the upload. It is idempotent and may run while a write
// is blocked in another goroutine: the cancel unblocks it first.
func (u *upload) abort() {
	u.cancel()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closeLocked()
}

func (u *upload) closeLocked() {
	if u.closed {
		return
	}
	u.closed = true
	u.cancel()
	// Close only reaps the writer's goroutine: its context is cancelled,
	// so no request (the finalising one included) can reach the server.
	// A writer that never got bytes has no goroutine, and Close would
	// start an upload just to fail it.
	if u.opened {
		_ = u.w.Close()
	}
}

// cleanup bounds the best-effort work that follows an operation (deleting
// a temporary, a claim or a copy, telling whether a compose landed): it
// runs once, on cleanup.Once, so a caller whose context ends waits at most
// grace.Period more.
var cleanup = objstore.Cleanup{Timeout: objstore.DefaultCleanupTimeout}
