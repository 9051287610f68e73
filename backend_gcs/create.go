package backend_gcs

import (
	"context"
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

// Create returns a writer that uploads straight to the object at path.
// Commit finalises the upload, which replaces the object atomically; with
// opts.Exclusive the upload carries a DoesNotExist precondition and Commit
// yields fs.ErrExist when an object is there by then. Nothing is visible
// before Commit. Create itself does no I/O.
func (b *Backend) Create(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	obj := b.bucket.Object(b.key(path))
	w := &createWriter{b: b, path: path, obj: obj, exclusive: opts.Exclusive, id: newID()}
	var meta map[string]string
	if opts.Exclusive {
		obj = obj.If(storage.Conditions{DoesNotExist: true})
		meta = map[string]string{markerKey: w.id}
	} else {
		// Re-sending an unconditional upload can only write the same bytes
		// again, so it is safe to retry, which the SDK does not do for
		// uploads without preconditions by default.
		// A handle of its own (see retryable).
		obj = retryable(b.bucket.Object(b.key(path)), storage.WithPolicy(storage.RetryAlways))
	}
	w.up = b.startUpload(ctx, obj, opts.ContentType, meta)
	return w, nil
}

// createWriter is the backend.Writer of Create.
type createWriter struct {
	b         *Backend
	path      string
	obj       *storage.ObjectHandle // without conditions, for the marker check
	exclusive bool
	id        string
	up        *upload

	mu   sync.Mutex
	done bool
}

func (w *createWriter) Write(ctx context.Context, p []byte) error {
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
	w.done = true
	a, err := w.up.finish(ctx)
	if err == nil {
		return fileInfo(w.path, a), nil
	}
	if w.exclusive && isPrecondition(err) {
		cctx, cancel := cleanup.Once(ctx)
		defer cancel()
		if cur, aerr := w.obj.Attrs(cctx); aerr == nil && cur.Metadata[markerKey] == w.id {
			return fileInfo(w.path, cur), nil
		}
		return backend.Info{}, withKind(fs.ErrExist, err, "exclusive create lost")
	}
	return backend.Info{}, classify(err)
}

func (w *createWriter) Abort(ctx context.Context) error {
	w.up.abort()
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	return nil
}
