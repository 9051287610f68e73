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
// one chunk in memory), and the commit composes them on the server into
// the file, no byte crossing the backend again.

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

// maxCompose is the most sources one compose request takes.
const maxCompose = 32

// CommitStaged implements backend.Staging: the parts are composed on the
// server into the file (in rounds of temporaries when there are more
// than maxCompose), with the conditions of a Writer of Create: no file
// for Exclusive, the version replaced, which is kept first, for Keep.
// Other preconditions, which the Engine never asks of an upload, go
// through a Writer of Create, the parts read and written again.
func (b *Backend) CommitStaged(ctx context.Context, id, path string, opts backend.WriteOptions) (backend.Info, error) {
	st := b.staging()
	if _, err := st.Staged(ctx, id); err != nil {
		return backend.Info{}, err
	}
	parts, _, err := st.Parts(ctx, id)
	if err != nil {
		return backend.Info{}, err
	}
	var info backend.Info
	if g, _ := guardFor(opts); len(parts) == 0 || g == guardMatch || g == guardNever {
		info, err = b.streamParts(ctx, path, opts, parts)
	} else {
		info, err = b.composeParts(ctx, path, opts, g, parts)
	}
	if err != nil {
		return backend.Info{}, err
	}
	// Committed: what is left of the upload is only to be removed, and a
	// failure here leaves parts without a record, which expire.
	fctx, cancel := cleanup.Once(ctx)
	_ = st.Forget(fctx, id)
	cancel()
	return info, nil
}

// composeParts composes parts into the file at path under the
// conditions of g (guardNone, guardNew or guardFound).
func (b *Backend) composeParts(ctx context.Context, path string, opts backend.WriteOptions, g guard, parts []objstore.Part) (backend.Info, error) {
	srcs := make([]*storage.ObjectHandle, len(parts))
	for i, p := range parts {
		srcs[i] = b.bucket.Object(b.key(p.Key))
	}
	var temps []*storage.ObjectHandle
	defer func() {
		cctx, cancel := cleanup.Once(ctx)
		defer cancel()
		for _, t := range temps {
			_ = t.Delete(cctx)
		}
	}()
	for len(srcs) > maxCompose {
		var next []*storage.ObjectHandle
		for i := 0; i < len(srcs); i += maxCompose {
			t := b.bucket.Object(b.tempName(newID()))
			temps = append(temps, t)
			// Nobody else knows the name: sending it again is safe.
			if _, err := retryable(t, storage.WithPolicy(storage.RetryAlways)).ComposerFrom(srcs[i:min(i+maxCompose, len(srcs))]...).Run(ctx); err != nil {
				return backend.Info{}, classify(err)
			}
			next = append(next, t)
		}
		srcs = next
	}
	obj := b.bucket.Object(b.key(path))
	marker := newID()
	cur := func() (*storage.ObjectAttrs, error) {
		a, err := obj.Attrs(ctx)
		if isNotExist(err) {
			return nil, nil
		}
		return a, classify(err)
	}
	var conds *storage.Conditions
	var k *kept
	switch g {
	case guardNew:
		// Asked first too: a server that ignores a compose's conditions
		// (the emulator) still refuses what is there already.
		a, err := cur()
		if err != nil {
			return backend.Info{}, err
		}
		if a != nil {
			return backend.Info{}, withKind(fs.ErrExist, nil, "a file is at the path")
		}
		conds = &storage.Conditions{DoesNotExist: true}
	case guardFound:
		base, err := cur()
		if err != nil {
			return backend.Info{}, err
		}
		if err := check(opts.Precondition, base); err != nil {
			return backend.Info{}, err
		}
		if base == nil {
			conds = &storage.Conditions{DoesNotExist: true}
		} else {
			conds = &storage.Conditions{GenerationMatch: base.Generation}
		}
		k, err = b.keep(ctx, path, base, opts.Keep, backend.ReasonOverwritten)
		if errors.Is(err, errVersionGone) {
			return backend.Info{}, conflict("the file changed before the commit", nil)
		}
		if err != nil {
			return backend.Info{}, err
		}
	}
	dst := obj
	if conds != nil {
		dst = obj.If(*conds)
	}
	c := dst.ComposerFrom(srcs...)
	c.ContentType = opts.ContentType
	c.Metadata = map[string]string{markerKey: marker}
	a, err := c.Run(ctx)
	switch {
	case err == nil:
		return fileInfo(path, a), nil
	case isPrecondition(err):
		// Ours, composed by a try whose answer was lost, or another's.
		cctx, cancel := cleanup.Once(ctx)
		own, aerr := obj.Attrs(cctx)
		cancel()
		if aerr == nil && own.Metadata[markerKey] == marker {
			return fileInfo(path, own), nil
		}
		b.forget(ctx, k)
		if g == guardNew {
			return backend.Info{}, withKind(fs.ErrExist, err, "a file appeared at the path")
		}
		return backend.Info{}, conflict("the file changed during the commit", err)
	}
	// The compose may have landed: k stays.
	return backend.Info{}, classify(err)
}

// streamParts writes parts, read in order, through a Writer of Create.
func (b *Backend) streamParts(ctx context.Context, path string, opts backend.WriteOptions, parts []objstore.Part) (backend.Info, error) {
	w, err := b.Create(ctx, path, opts)
	if err != nil {
		return backend.Info{}, err
	}
	info, err := b.writeParts(ctx, w, parts)
	if err != nil {
		return backend.Info{}, errors.Join(err, w.Abort(ctx))
	}
	return info, nil
}

// writeParts writes parts into w and commits it.
func (b *Backend) writeParts(ctx context.Context, w backend.Writer, parts []objstore.Part) (backend.Info, error) {
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
