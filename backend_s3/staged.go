package backend_s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"iter"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
)

// Staged uploads (backend.Staging) are objects under
// .roomstore/uploads/<id>/ (see objstore.Staging): an append puts its
// bytes in parts of the backend's part size plus MinPartSize (what an
// append holds in memory at most), and the commit makes them the file
// with one multipart upload, copying the parts on the server
// (UploadPartCopy) and reading through the backend only the small ones
// (the tail of each append) and the MinPartSize bytes at most that join
// each to the next part.

// staging is the store's objstore.Staging.
func (b *Backend) staging() objstore.Staging {
	// A part is larger than a multipart part by MinPartSize, so that a
	// commit that must fill a part from a small one before it (the tail
	// of an append) still copies the rest of the next on the server.
	return objstore.Staging{Objects: stagedObjects{b}, PartSize: int(b.partSize + MinPartSize)}
}

// stagedObjects is the Backend as objstore.Staging sees it.
type stagedObjects struct{ b *Backend }

func (o stagedObjects) put(ctx context.Context, key string, data []byte, ifNoneMatch *string) error {
	_, err := o.b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(o.b.bucket),
		Key:           aws.String(o.b.key(key)),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		IfNoneMatch:   ifNoneMatch,
	})
	return err
}

func (o stagedObjects) PutNew(ctx context.Context, key string, data []byte) error {
	err := o.put(ctx, key, data, aws.String("*"))
	if err != nil && isLost(err) {
		return backend.Errorf(fs.ErrExist, err, "object exists")
	}
	return classify(err)
}

func (o stagedObjects) Put(ctx context.Context, key string, data []byte) error {
	return classify(o.put(ctx, key, data, nil))
}

func (o stagedObjects) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := o.b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.b.bucket), Key: aws.String(o.b.key(key))})
	if err != nil {
		if isNotFound(err) {
			return nil, backend.Errorf(fs.ErrNotExist, err, "no object")
		}
		return nil, classify(err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, backend.MaxStagedRecord+1))
	if err != nil {
		return nil, classify(err)
	}
	return data, nil
}

func (o stagedObjects) List(ctx context.Context, prefix string) iter.Seq2[objstore.StagedObject, error] {
	return func(yield func(objstore.StagedObject, error) bool) {
		for obj, err := range o.b.objectsUnder(ctx, o.b.key(prefix), "") {
			if err != nil {
				yield(objstore.StagedObject{}, err)
				return
			}
			so := objstore.StagedObject{Key: strings.TrimPrefix(aws.ToString(obj.Key), o.b.prefix), Size: aws.ToInt64(obj.Size), Modified: aws.ToTime(obj.LastModified)}
			if !yield(so, nil) {
				return
			}
		}
	}
}

func (o stagedObjects) Delete(ctx context.Context, key string) error {
	_, err := o.b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(o.b.bucket), Key: aws.String(o.b.key(key))})
	if err != nil && !isNotFound(err) {
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

// CommitStaged implements backend.Staging: the parts become the file
// through a Writer of Create (so with its preconditions and its kept
// version), each part of at least MinPartSize copied on the server, the
// others read and written through.
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
	cw := w.(*createWriter)
	info, err := b.commitParts(ctx, cw, parts)
	if err != nil {
		return backend.Info{}, errors.Join(err, cw.Abort(ctx))
	}
	// Committed: what is left of the upload is only to be removed, and a
	// failure here leaves parts without a record, which expire.
	fctx, cancel := b.cleanup.Once(ctx)
	_ = st.Forget(fctx, id)
	cancel()
	return info, nil
}

// commitParts writes parts into w and commits it. Every part of the
// multipart upload but the last must hold MinPartSize bytes: a small
// staged part is read into the part being buffered, which the start of
// the next staged part then fills to MinPartSize, and the rest of that
// one, when it is MinPartSize or more, is copied on the server.
func (b *Backend) commitParts(ctx context.Context, w *createWriter, parts []objstore.Part) (backend.Info, error) {
	s := &w.s
	for _, p := range parts {
		var through int64 // read through the engine
		if n := int64(len(s.buf)); n > 0 && n < MinPartSize {
			through = min(p.Size, MinPartSize-n)
		}
		if p.Size-through < MinPartSize {
			through = p.Size
		}
		if through > 0 {
			if err := b.writeThrough(ctx, w, p.Key, through); err != nil {
				return backend.Info{}, err
			}
		}
		rest := p.Size - through
		if rest == 0 {
			continue
		}
		if len(s.buf) > 0 { // MinPartSize or more by now
			if err := s.flush(ctx); err != nil {
				return backend.Info{}, classify(err)
			}
		}
		if err := s.copyParts(ctx, b.key(p.Key), nil, through, rest); err != nil {
			return backend.Info{}, classify(err)
		}
		s.uploaded += rest
	}
	return w.Commit(ctx)
}

// writeThrough reads the first n bytes of the object key into w.
func (b *Backend) writeThrough(ctx context.Context, w *createWriter, key string, n int64) error {
	r, _, err := b.get(ctx, b.key(key), 0, n)
	if err != nil {
		return classify(err)
	}
	defer r.Close()
	buf := make([]byte, min(n, 1<<20))
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			if err := w.Write(ctx, buf[:m]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return classify(rerr)
		}
	}
}
