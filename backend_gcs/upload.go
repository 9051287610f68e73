package backend_gcs

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
	"google.golang.org/api/googleapi"
)

// upload streams bytes into one object through a storage.Writer. The
// object appears only when finish finalises the upload; cancelling the
// upload's own context before that abandons it server-side, which is how
// abort, a cancelled call context and a failed Write leave nothing behind.
//
// The storage.Writer lives across many calls, each with its own context,
// so it runs on a private context that each call links to its own with
// context.AfterFunc for as long as the call lasts.
//
// A deferred upload (deferUpload) picks the object, and so the
// preconditions its upload carries, as late as it can: it holds its bytes
// until they would pass one chunk, which a storage.Writer would hold as
// well, and only then asks start for the object, whose preconditions are
// fixed from then on (a resumable upload states them when it begins).
// Bytes still held at the end go in one request (sendHeld), which may be
// sent again to an object under other preconditions.
type upload struct {
	ctx    context.Context    // the upload's own
	cancel context.CancelFunc // safe from any goroutine

	mu     sync.Mutex
	w      *storage.Writer // nil while a deferred upload holds its bytes
	opened bool            // bytes went to the storage.Writer, so it has a goroutine
	closed bool            // finished or aborted
	err    error           // sticky: the upload is broken

	head        []byte // a deferred upload's held bytes
	limit       int    // how many it holds at most
	start       func(context.Context) (*storage.ObjectHandle, error)
	chunkSize   int
	contentType string
	metadata    map[string]string
}

func (b *Backend) newUpload(ctx context.Context, contentType string, metadata map[string]string) *upload {
	uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &upload{ctx: uctx, cancel: cancel, chunkSize: b.cfg.chunkSize, contentType: contentType, metadata: metadata}
}

func (b *Backend) startUpload(ctx context.Context, obj *storage.ObjectHandle, contentType string, metadata map[string]string) *upload {
	u := b.newUpload(ctx, contentType, metadata)
	u.w = u.writer(obj)
	return u
}

// deferUpload returns an upload that holds up to one chunk and then
// streams to the object start returns (see upload).
func (b *Backend) deferUpload(ctx context.Context, contentType string, metadata map[string]string, start func(context.Context) (*storage.ObjectHandle, error)) *upload {
	u := b.newUpload(ctx, contentType, metadata)
	// The SDK's chunk, which it rounds up to a multiple of the smallest.
	u.limit = (b.cfg.chunkSize + googleapi.MinUploadChunkSize - 1) / googleapi.MinUploadChunkSize * googleapi.MinUploadChunkSize
	u.start = start
	return u
}

func (u *upload) writer(obj *storage.ObjectHandle) *storage.Writer {
	w := obj.NewWriter(u.ctx)
	w.ChunkSize = u.chunkSize
	w.ContentType = u.contentType
	w.Metadata = u.metadata
	return w
}

// link returns a context that ends with ctx and with the upload (an
// abort), for a call that runs under u.mu.
func (u *upload) link(ctx context.Context) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(u.ctx, cancel)
	return lctx, func() { stop(); cancel() }
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
	if u.w == nil {
		if len(u.head)+len(p) <= u.limit {
			u.hold(p)
			return nil
		}
		sctx, cancel := u.link(ctx)
		obj, err := u.start(sctx)
		cancel()
		if err != nil {
			u.breakWith(err)
			return err
		}
		u.w = u.writer(obj)
		if err := u.send(ctx, u.head); err != nil {
			return err
		}
		u.head = nil
	}
	return u.send(ctx, p)
}

// hold adds p to the held bytes, growing them at most to the limit.
func (u *upload) hold(p []byte) {
	if need := len(u.head) + len(p); need > cap(u.head) {
		u.head = slices.Grow(u.head, min(max(need, 2*cap(u.head)), u.limit)-len(u.head))
	}
	u.head = append(u.head, p...)
}

// send gives p to the storage.Writer.
func (u *upload) send(ctx context.Context, p []byte) error {
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

// held reports whether a deferred upload still holds all its bytes.
func (u *upload) held() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.w == nil && !u.closed && u.err == nil
}

// sendHeld uploads the bytes a deferred upload holds to obj in one
// request (which the SDK may send again) and returns the new object's
// attributes. On failure the bytes stay held, so that they may be sent
// again, to obj under other preconditions.
func (u *upload) sendHeld(ctx context.Context, obj *storage.ObjectHandle) (*storage.ObjectAttrs, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.closed || u.w != nil:
		return nil, fs.ErrClosed
	case u.err != nil:
		return nil, errFailedEarlier
	}
	sctx, cancel := u.link(ctx)
	defer cancel()
	w := obj.NewWriter(sctx)
	// More than it holds: one request, from a buffer the SDK can resend.
	w.ChunkSize = len(u.head) + 1
	w.ContentType = u.contentType
	w.Metadata = u.metadata
	_, err := w.Write(u.head)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	u.closeLocked()
	return w.Attrs(), nil
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
	u.head = nil
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
