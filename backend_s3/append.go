package backend_s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
)

// Append returns a Writer whose Commit makes the file at path hold its
// content as of the commit followed by the written bytes, creating it when
// it is missing.
//
// Full parts are streamed into a temporary object under
// prefix/.roomstore/tmp/ while the handle is open; the bytes short of a
// part stay in memory. Each Commit call is one guarded attempt: a HEAD reads
// the current ETag, then a new object is composed from the old content, the
// temporary and the tail, and written with If-Match on that ETag
// (If-None-Match "*" when the file is missing). Old content of at least
// MinPartSize and the temporary are copied on the server (UploadPartCopy);
// smaller pieces are downloaded and re-uploaded, which S3's minimum part
// size forces. When another writer changes the file during the attempt,
// Commit returns an error wrapping backend.ErrConflict and keeps everything
// staged, so it can be called again; Write can then no longer be called.
// The temporary is removed once the writer commits, fails or is aborted.
// opts.ContentType, when empty, keeps the old object's content type.
//
// opts.Precondition is checked against the version each attempt reads,
// which the commit is guarded by already: a file changed since is then
// backend.ErrPrecondition (with IfMatch, or If-None-Match "*" meeting a
// file that appeared), never backend.ErrConflict, and finishes the
// writer. opts.Keep copies that version on the server to a kept version
// (backend.ReasonAppended) under the same guard before the commit, one
// request more for an existing file and none for a new one; an attempt
// that then fails forgets the copy.
func (b *Backend) Append(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	id, err := newID()
	if err != nil {
		return nil, classify(err)
	}
	return &appendWriter{
		path:        path,
		contentType: opts.ContentType,
		pre:         opts.Precondition,
		keep:        opts.Keep,
		s:           stream{upload: upload{b: b, key: b.prefix + tmpDir + id}},
	}, nil
}

type appendWriter struct {
	lifecycle
	path        string
	contentType string
	pre         backend.Precondition
	keep        *backend.Keep
	// s stages the appended bytes: full parts in a multipart upload of the
	// temporary key, the rest in s.buf.
	s stream
	// staged is set once the temporary object exists, holding the
	// s.uploaded bytes of full parts; it survives lost commit attempts.
	staged bool
	// orphans are the composed uploads of failed commit attempts not
	// aborted yet: Commit aborts them once before it returns, and
	// cleanup (Abort persistently) retries those the server could not be
	// told about.
	orphans []*upload
}

// Write stages p. A cancelled ctx or a failed upload discards everything
// staged and finishes the writer.
func (w *appendWriter) Write(ctx context.Context, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == writerRetrying {
		return backend.Errorf(fs.ErrClosed, nil, "write after a commit attempt")
	}
	return w.s.stage(ctx, p, w.failed)
}

// failed finishes the writer with err, first cleaning up once (Abort,
// which the caller owes, persists).
func (w *appendWriter) failed(ctx context.Context, err error) error {
	return w.fail(classify(errors.Join(err, w.cleanup(ctx, once))))
}

// Commit makes one attempt to append the staged bytes; see Append. An
// error wrapping backend.ErrConflict keeps the writer ready for another
// Commit; any other error finishes it and discards the staged bytes.
func (w *appendWriter) Commit(ctx context.Context) (backend.Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return backend.Info{}, err
	}
	info, err := w.commit(ctx)
	if errors.Is(err, backend.ErrConflict) && (w.pre.IfMatch != "" || w.pre.IfNoneMatch == "*") {
		// The version the caller named is gone: no retry can bring it back.
		err = precondition(err)
	}
	switch {
	case err == nil:
		w.state = writerCommitted
		// The content is committed and visible; a temporary that cannot be
		// removed now is left for a lifecycle rule rather than reported
		// as a failed commit.
		_ = w.cleanup(ctx, once)
		return info, nil
	case errors.Is(err, backend.ErrConflict):
		w.state = writerRetrying
		return backend.Info{}, classify(errors.Join(err, w.abortOrphans(ctx, once)))
	default:
		return backend.Info{}, w.failed(ctx, err)
	}
}

// Abort discards the staged bytes, the multipart upload and the temporary
// object, trying again while the server cannot be reached, until the
// cleanup timeout (WithCleanupTimeout). It is idempotent, a no-op after
// Commit, and reports only a failed cleanup, which the next Abort retries.
func (w *appendWriter) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.abortable() {
		return nil
	}
	if err := w.cleanup(ctx, persist); err != nil {
		return classify(err)
	}
	return nil
}

// cleanup removes whatever is staged on the server, on a cleanup context
// with the given effort.
func (w *appendWriter) cleanup(ctx context.Context, e effort) error {
	err := errors.Join(w.s.discard(ctx, e), w.abortOrphans(ctx, e))
	if w.staged {
		if derr := w.s.b.deleteTemp(ctx, w.s.key, e); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove temporary %s: %w", w.s.key, derr))
		} else {
			w.staged = false
		}
	}
	return err
}

func (w *appendWriter) commit(ctx context.Context) (backend.Info, error) {
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	if !w.staged && w.s.id != "" {
		// Marked staged before the request: when the call is cut short
		// after the server completed the upload, the temporary exists
		// although no answer said so, and cleanup must remove it (a
		// temporary that is not there counts as removed).
		w.staged = true
		if _, err := w.s.complete(ctx, &s3.CompleteMultipartUploadInput{}); err != nil {
			return backend.Info{}, err
		}
	}
	b := w.s.b
	key := b.key(w.path)
	old, exists, err := b.current(ctx, key)
	if err != nil {
		return backend.Info{}, err
	}
	if err := w.pre.Check(exists, fileInfo(w.path, 0, time.Time{}, old.etag, old.commit).ETag); err != nil {
		return backend.Info{}, err
	}
	if !exists {
		return w.create(ctx, key)
	}
	if w.s.size() == 0 {
		// Nothing to add: the file as it is already is the result.
		return fileInfo(w.path, old.size, old.modTime, old.etag, old.commit), nil
	}
	var kept string
	if w.keep != nil {
		if kept, err = b.keep(ctx, w.path, old.objectHead, w.keep, backend.ReasonAppended, time.Now()); err != nil {
			return backend.Info{}, err
		}
	}
	info, err := w.extend(ctx, key, old)
	if err != nil {
		return backend.Info{}, errors.Join(err, b.settleKept(ctx, kept, err))
	}
	return info, nil
}

// currentFile is what an append attempt knows of the file it extends.
type currentFile struct {
	objectHead
	// prior is the whole content of a file under MinPartSize, which is
	// re-uploaded rather than copied.
	prior []byte
}

// probeSize is how much of the file the first GET of an append attempt
// asks for: files up to this size need no second request.
const probeSize = 64 << 10

// current reads the version of the file at key that an append attempt
// builds on: its ETag, its size and, for a file under MinPartSize, its
// bytes.
//
// The size is taken from a GET, not a HEAD, because a server that stores
// objects as files may answer a HEAD racing with a replacement with the
// old file's size and the new file's ETag (versitygw's posix backend
// stats the path, then reads the ETag). Copying that many bytes under the
// new ETag would pass every precondition and silently drop the tail. A GET
// reads the ETag first and the size and bytes from the file it then
// opens, so they belong to that version or a later one, and any later
// version fails the If-Match guards of the commit.
func (b *Backend) current(ctx context.Context, key string) (currentFile, bool, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    aws.String(key),
		Range:  aws.String(fmt.Sprintf("bytes=0-%d", probeSize-1)),
	})
	if err != nil && isRangeNotSatisfiable(err) {
		// The file is empty, and a 416 carries no ETag: ask without a
		// range.
		out, err = b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	}
	if err != nil {
		if isNotFound(err) {
			return currentFile{}, false, nil
		}
		return currentFile{}, false, err
	}
	defer out.Body.Close()
	cur := currentFile{objectHead: objectHead{
		modTime:     aws.ToTime(out.LastModified),
		etag:        aws.ToString(out.ETag),
		commit:      out.Metadata[commitMeta],
		contentType: aws.ToString(out.ContentType),
	}}
	cur.size = aws.ToInt64(out.ContentLength)
	if out.ContentRange != nil {
		total, ok := totalFromContentRange(*out.ContentRange)
		if !ok {
			return currentFile{}, false, backend.Errorf(nil, nil, "S3 answered with Content-Range %q", *out.ContentRange)
		}
		cur.size = total
	}
	// Reading the probe to its end keeps the connection reusable.
	probe, err := io.ReadAll(io.LimitReader(out.Body, probeSize+1))
	if err != nil {
		return currentFile{}, false, err
	}
	switch {
	case cur.size <= probeSize:
		if int64(len(probe)) != cur.size {
			return currentFile{}, false, conflict(errors.New("the file changed while being read"))
		}
		cur.prior = probe
	case cur.size < MinPartSize:
		prior, err := b.getSmall(ctx, key, aws.String(cur.etag))
		if err != nil {
			return currentFile{}, false, err
		}
		cur.prior = prior
		cur.size = int64(len(prior))
	}
	return cur, true, nil
}

// getSmall downloads the whole file at key, which is expected to be under
// MinPartSize, if it is still the version ifMatch. A larger file, or
// another version, is a lost race.
func (b *Backend) getSmall(ctx context.Context, key string, ifMatch *string) ([]byte, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), IfMatch: ifMatch})
	if err != nil {
		return nil, guarded(err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, MinPartSize))
	if err != nil {
		return nil, err
	}
	if len(data) >= MinPartSize {
		return nil, conflict(errors.New("the file grew while being read"))
	}
	return data, nil
}

// tempSize is the size of the temporary object (0 when there is none).
func (w *appendWriter) tempSize() int64 {
	if !w.staged {
		return 0
	}
	return w.s.uploaded
}

// create writes the staged bytes as a new file, only if none exists.
func (w *appendWriter) create(ctx context.Context, key string) (backend.Info, error) {
	b := w.s.b
	tail := w.s.buf
	size := w.s.size()
	commit, meta, err := newCommit()
	if err != nil {
		return backend.Info{}, err
	}
	if w.tempSize() == 0 {
		out, err := b.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(b.bucket),
			Key:           aws.String(key),
			Body:          newChain(tail),
			ContentLength: aws.Int64(int64(len(tail))),
			ContentType:   optional(w.contentType),
			Metadata:      meta,
			IfNoneMatch:   aws.String("*"),
		})
		etag, err := w.settled(ctx, key, commit, out, err)
		if err != nil {
			return backend.Info{}, err
		}
		return b.committedInfo(ctx, w.path, etag, commit, size), nil
	}
	u := &upload{b: b, key: key, contentType: w.contentType, metadata: meta}
	etag, err := w.compose(ctx, u, commit, func() error {
		if err := u.copyParts(ctx, w.s.key, nil, 0, w.tempSize()); err != nil {
			return err
		}
		return uploadTail(ctx, u, tail)
	}, &s3.CompleteMultipartUploadInput{IfNoneMatch: aws.String("*")})
	if err != nil {
		return backend.Info{}, err
	}
	return b.committedInfo(ctx, w.path, etag, commit, size), nil
}

// extend writes old content + staged bytes over the file whose current
// version is old, only if it is still that version.
func (w *appendWriter) extend(ctx context.Context, key string, old currentFile) (backend.Info, error) {
	b := w.s.b
	tail := w.s.buf
	tmpSize := w.tempSize()
	size := old.size + w.s.size()
	ifMatch := aws.String(old.etag)
	contentType := w.contentType
	if contentType == "" {
		contentType = old.contentType
	}
	commit, meta, err := newCommit()
	if err != nil {
		return backend.Info{}, err
	}

	if old.size < MinPartSize && tmpSize == 0 {
		// Everything is small: one PutObject of the old bytes and the tail.
		out, err := b.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(b.bucket),
			Key:           aws.String(key),
			Body:          newChain(old.prior, tail),
			ContentLength: aws.Int64(int64(len(old.prior) + len(tail))),
			ContentType:   optional(contentType),
			Metadata:      meta,
			IfMatch:       ifMatch,
		})
		etag, err := w.settled(ctx, key, commit, out, err)
		if err != nil {
			return backend.Info{}, err
		}
		return b.committedInfo(ctx, w.path, etag, commit, size), nil
	}

	u := &upload{b: b, key: key, contentType: contentType, metadata: meta}
	etag, err := w.compose(ctx, u, commit, func() error {
		if old.size == 0 || old.size >= MinPartSize {
			if err := u.copyParts(ctx, key, ifMatch, 0, old.size); err != nil {
				return b.sourceChanged(ctx, key, ifMatch, err)
			}
			if err := u.copyParts(ctx, w.s.key, nil, 0, tmpSize); err != nil {
				return err
			}
			return uploadTail(ctx, u, tail)
		}
		// The old content is too small to be a part of its own: the first
		// part is the old bytes topped up to MinPartSize with the head of
		// the temporary (which holds at least one full part, so at least
		// MinPartSize bytes).
		buf := append(make([]byte, 0, MinPartSize), old.prior...)
		cut := MinPartSize - old.size
		buf, err := b.getRange(ctx, w.s.key, 0, cut, buf)
		if err != nil {
			return err
		}
		if err := u.uploadPart(ctx, newChain(buf), int64(len(buf))); err != nil {
			return err
		}
		rest := tmpSize - cut
		if len(tail) == 0 || rest >= MinPartSize {
			if err := u.copyParts(ctx, w.s.key, nil, cut, rest); err != nil {
				return err
			}
			return uploadTail(ctx, u, tail)
		}
		// The rest of the temporary is too small to precede the tail as a
		// part: it joins the tail in the last part.
		if buf, err = b.getRange(ctx, w.s.key, cut, rest, buf[:0]); err != nil {
			return err
		}
		return u.uploadPart(ctx, newChain(buf, tail), int64(len(buf)+len(tail)))
	}, &s3.CompleteMultipartUploadInput{IfMatch: ifMatch})
	if err != nil {
		return backend.Info{}, err
	}
	return b.committedInfo(ctx, w.path, etag, commit, size), nil
}

// newCommit returns a fresh commit id and the metadata that records it.
func newCommit() (string, map[string]string, error) {
	id, err := newID()
	if err != nil {
		return "", nil, err
	}
	return id, map[string]string{commitMeta: id}, nil
}

// compose fills the multipart upload u with parts and completes it, as
// the given commit, with the preconditions in done. On any failure u joins
// the orphans, which Commit aborts before it returns. A completion that
// failed is settled as settled says.
func (w *appendWriter) compose(ctx context.Context, u *upload, commit string, parts func() error, done *s3.CompleteMultipartUploadInput) (string, error) {
	if err := parts(); err != nil {
		w.orphans = append(w.orphans, u)
		return "", err
	}
	out, err := u.complete(ctx, done)
	if err != nil {
		w.orphans = append(w.orphans, u)
		return w.settled(ctx, u.key, commit, nil, err)
	}
	return aws.ToString(out.ETag), nil
}

// settled returns the S3 ETag that the write of commit to key, guarded by
// the file's version, produced (out holds its answer, when it has one), or
// the error that describes its failure err, a lost race
// (backend.ErrConflict) when Backend.settled says so.
func (w *appendWriter) settled(ctx context.Context, key, commit string, out *s3.PutObjectOutput, err error) (string, error) {
	if err == nil {
		return aws.ToString(out.ETag), nil
	}
	etag, lost, _, err := w.s.b.settled(ctx, key, commit, err)
	if lost {
		return "", conflict(err)
	}
	return etag, err
}

// abortOrphans aborts the composed uploads of failed commit attempts with
// the given effort, keeping those that could not be aborted for the next
// cleanup.
func (w *appendWriter) abortOrphans(ctx context.Context, e effort) error {
	var err error
	w.orphans = slices.DeleteFunc(w.orphans, func(u *upload) bool {
		aerr := u.abort(ctx, e)
		err = errors.Join(err, aerr)
		return aerr == nil
	})
	return err
}

// uploadTail sends the bytes short of a part as the last part, if any.
func uploadTail(ctx context.Context, u *upload, tail []byte) error {
	if len(tail) == 0 {
		return nil
	}
	return u.uploadPart(ctx, newChain(tail), int64(len(tail)))
}

// guarded reports the failure of a request guarded by the file's version
// as a lost race: a failed precondition, or the file vanishing under it
// (If-Match on a missing key answers 404). A vanished multipart upload is
// not a race.
func guarded(err error) error {
	if isLost(err) {
		return conflict(err)
	}
	return err
}

// isLost reports the refusal of a request guarded by the file's version:
// a failed precondition, or the file vanishing under it.
func isLost(err error) bool {
	return isPreconditionFailed(err) || (isNotFound(err) && errorCode(err) != "NoSuchUpload")
}

// sourceChanged reports the failure of a copy from key guarded by ifMatch.
// Servers may check the copy range before the precondition (versitygw
// answers a shrunken source with 400 InvalidArgument), so an error that is
// not already a lost race is checked against the current version: when it
// is no longer ifMatch, the race was lost.
func (b *Backend) sourceChanged(ctx context.Context, key string, ifMatch *string, err error) error {
	if err := guarded(err); errors.Is(err, backend.ErrConflict) {
		return err
	}
	if _, herr := b.head(ctx, key, ifMatch); herr != nil && errors.Is(guarded(herr), backend.ErrConflict) {
		return conflict(err)
	}
	return err
}

// getRange downloads n bytes of the temporary at key from off, appended to
// dst.
func (b *Backend) getRange(ctx context.Context, key string, off, n int64, dst []byte) ([]byte, error) {
	if n == 0 {
		return dst, nil
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    aws.String(key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
	})
	if err != nil {
		return dst, err
	}
	defer out.Body.Close()
	start := len(dst)
	dst = slices.Grow(dst, int(n))[:start+int(n)]
	if _, err := io.ReadFull(out.Body, dst[start:]); err != nil {
		return dst[:start], fmt.Errorf("read %s bytes %d-%d: %w", key, off, off+n-1, err)
	}
	return dst, nil
}

// chain reads byte slices one after another; as an io.SectionReader it is
// the seekable body the SDK needs, without copying the slices together.
type chain [][]byte

func newChain(bufs ...[]byte) *io.SectionReader {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return io.NewSectionReader(chain(bufs), 0, n)
}

// ReadAt implements io.ReaderAt.
func (c chain) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for _, b := range c {
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		k := copy(p[n:], b[off:])
		n += k
		off = 0
		if n == len(p) {
			return n, nil
		}
	}
	return n, io.EOF
}
