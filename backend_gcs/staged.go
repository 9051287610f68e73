package backend_gcs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"iter"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
)

// Staged uploads (backend.Staging) are objects under
// .roomstore/uploads/<id>/ (see objstore.Staging): an append puts its
// bytes in parts of the backend's chunk size (so an append holds at most
// one chunk in memory), and the commit streams them through a Writer of
// Create, which reads each part once and uploads it again.

// staging is the store's objstore.Staging.
func (b *Backend) staging() objstore.Staging {
	return objstore.Staging{Objects: stagedObjects{b}, PartSize: max(b.cfg.chunkSize, 1<<20)}
}

// stagedObjects is the Backend as objstore.Staging sees it.
type stagedObjects struct{ b *Backend }

// rel is the key of an object name, relative to the store's root.
func (o stagedObjects) rel(name string) string {
	if o.b.prefix == "" {
		return name
	}
	return strings.TrimPrefix(name, o.b.prefix+"/")
}

func (o stagedObjects) put(ctx context.Context, key string, data []byte, conds *storage.Conditions) error {
	obj := o.b.bucket.Object(o.b.key(key))
	if conds != nil {
		obj = retryable(obj.If(*conds), storage.WithPolicy(storage.RetryAlways))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.NewWriter(ctx)
	w.ChunkSize = 0 // one request: the part is in memory
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

func (o stagedObjects) PutNew(ctx context.Context, key string, data []byte) error {
	err := o.put(ctx, key, data, &storage.Conditions{DoesNotExist: true})
	if err != nil && isPrecondition(err) {
		return backend.Errorf(fs.ErrExist, err, "object exists")
	}
	return classify(err)
}

func (o stagedObjects) Put(ctx context.Context, key string, data []byte) error {
	return classify(o.put(ctx, key, data, nil))
}

func (o stagedObjects) Get(ctx context.Context, key string) ([]byte, error) {
	r, err := o.b.bucket.Object(o.b.key(key)).NewReader(ctx)
	if err != nil {
		if isNotExist(err) {
			return nil, backend.Errorf(fs.ErrNotExist, err, "no object")
		}
		return nil, classify(err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, backend.MaxStagedRecord+1))
	if err != nil {
		return nil, classify(err)
	}
	return data, nil
}

func (o stagedObjects) List(ctx context.Context, prefix string) iter.Seq2[objstore.StagedObject, error] {
	return func(yield func(objstore.StagedObject, error) bool) {
		q := &storage.Query{Prefix: o.b.key(prefix)}
		if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
			yield(objstore.StagedObject{}, classify(err))
			return
		}
		it := o.b.bucket.Objects(ctx, q)
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return
			}
			if err != nil {
				yield(objstore.StagedObject{}, listError(err))
				return
			}
			if !yield(objstore.StagedObject{Key: o.rel(a.Name), Size: a.Size, Modified: a.Updated}, nil) {
				return
			}
		}
	}
}

func (o stagedObjects) Delete(ctx context.Context, key string) error {
	err := o.b.bucket.Object(o.b.key(key)).Delete(ctx)
	if err != nil && !isNotExist(err) {
		return classify(err)
	}
	return nil
}

// Stage implements backend.Staging.
func (b *Backend) Stage(ctx context.Context, id string, record []byte) error {
	return b.staging().Stage(ctx, id, record)
}

// Staged implements backend.Staging.
func (b *Backend) Staged(ctx context.Context, id string) (backend.Staged, error) {
	return b.staging().Staged(ctx, id)
}

// Restage implements backend.Staging.
func (b *Backend) Restage(ctx context.Context, id string, record []byte) error {
	return b.staging().Restage(ctx, id, record)
}

// AppendStaged implements backend.Staging.
func (b *Backend) AppendStaged(ctx context.Context, id string, offset int64, r io.Reader) (int64, error) {
	return b.staging().AppendStaged(ctx, id, offset, r)
}

// RemoveStaged implements backend.Staging.
func (b *Backend) RemoveStaged(ctx context.Context, id string) error {
	return b.staging().RemoveStaged(ctx, id)
}

// ListStaged implements backend.Staging.
func (b *Backend) ListStaged(ctx context.Context) iter.Seq2[backend.Staged, error] {
	return b.staging().ListStaged(ctx)
}

// CommitStaged implements backend.Staging: the parts, read in order,
// become the file through a Writer of Create (so with its preconditions
// and its kept version).
func (b *Backend) CommitStaged(ctx context.Context, id, path string, opts backend.WriteOptions) (backend.Info, error) {
	st := b.staging()
	if _, err := st.Staged(ctx, id); err != nil {
		return backend.Info{}, err
	}
	parts, _, err := st.Parts(ctx, id)
	if err != nil {
		return backend.Info{}, err
	}
	w, err := b.Create(ctx, path, opts)
	if err != nil {
		return backend.Info{}, err
	}
	info, err := b.commitParts(ctx, w, parts)
	if err != nil {
		return backend.Info{}, errors.Join(err, w.Abort(ctx))
	}
	// Committed: what is left of the upload is only to be removed, and a
	// failure here leaves parts without a record, which expire.
	fctx, cancel := cleanup.Once(ctx)
	_ = st.Forget(fctx, id)
	cancel()
	return info, nil
}

// commitParts writes parts into w and commits it.
func (b *Backend) commitParts(ctx context.Context, w backend.Writer, parts []objstore.Part) (backend.Info, error) {
	buf := make([]byte, 1<<20)
	for _, p := range parts {
		r, err := b.bucket.Object(b.key(p.Key)).NewReader(ctx)
		if err != nil {
			return backend.Info{}, classify(err)
		}
		for {
			m, rerr := r.Read(buf)
			if m > 0 {
				if err := w.Write(ctx, buf[:m]); err != nil {
					r.Close()
					return backend.Info{}, err
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				r.Close()
				return backend.Info{}, classify(rerr)
			}
		}
		r.Close()
	}
	return w.Commit(ctx)
}
