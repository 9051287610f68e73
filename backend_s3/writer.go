package backend_s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/roomstore/roomstore/backend"
)

// upload is one multipart upload of key, started lazily by its first part.
type upload struct {
	b           *Backend
	key         string
	contentType string
	metadata    map[string]string
	id          string
	parts       []types.CompletedPart
}

func (u *upload) start(ctx context.Context) error {
	if u.id != "" {
		return nil
	}
	out, err := u.b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:      aws.String(u.b.bucket),
		Key:         aws.String(u.key),
		ContentType: optional(u.contentType),
		Metadata:    u.metadata,
	})
	if err != nil {
		return err
	}
	u.id = aws.ToString(out.UploadId)
	return nil
}

func (u *upload) nextPart() (int32, error) {
	if len(u.parts) >= MaxParts {
		return 0, backend.Errorf(fs.ErrInvalid, nil, "file over %d parts of %d bytes; raise WithPartSize", MaxParts, u.b.partSize)
	}
	return int32(len(u.parts) + 1), nil
}

// uploadPart sends body (n bytes) as the next part.
func (u *upload) uploadPart(ctx context.Context, body io.ReadSeeker, n int64) error {
	num, err := u.nextPart()
	if err != nil {
		return err
	}
	if err := u.start(ctx); err != nil {
		return err
	}
	out, err := u.b.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:        aws.String(u.b.bucket),
		Key:           aws.String(u.key),
		UploadId:      aws.String(u.id),
		PartNumber:    aws.Int32(num),
		Body:          body,
		ContentLength: aws.Int64(n),
	})
	if err != nil {
		return err
	}
	u.parts = append(u.parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag})
	return nil
}

// copyParts copies n bytes of srcKey from off as the next parts, server
// side, each at most MaxPartSize and, as they are cut evenly, at least
// MaxPartSize/2 unless n is smaller. ifMatch, when set, guards the source.
func (u *upload) copyParts(ctx context.Context, srcKey string, ifMatch *string, off, n int64) error {
	if err := u.start(ctx); err != nil {
		return err
	}
	for n > 0 {
		pieces := (n + MaxPartSize - 1) / MaxPartSize
		size := (n + pieces - 1) / pieces
		num, err := u.nextPart()
		if err != nil {
			return err
		}
		out, err := u.b.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket:            aws.String(u.b.bucket),
			Key:               aws.String(u.key),
			UploadId:          aws.String(u.id),
			PartNumber:        aws.Int32(num),
			CopySource:        aws.String(copySource(u.b.bucket, srcKey)),
			CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+size-1)),
			CopySourceIfMatch: ifMatch,
		})
		if err != nil {
			return err
		}
		var etag *string
		if out.CopyPartResult != nil {
			etag = out.CopyPartResult.ETag
		}
		u.parts = append(u.parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: etag})
		off += size
		n -= size
	}
	return nil
}

// complete finishes the upload with its parts; in may carry
// preconditions.
func (u *upload) complete(ctx context.Context, in *s3.CompleteMultipartUploadInput) (*s3.CompleteMultipartUploadOutput, error) {
	in.Bucket = aws.String(u.b.bucket)
	in.Key = aws.String(u.key)
	in.UploadId = aws.String(u.id)
	in.MultipartUpload = &types.CompletedMultipartUpload{Parts: u.parts}
	out, err := u.b.client.CompleteMultipartUpload(ctx, in)
	if err == nil {
		u.id = ""
		u.parts = nil
	}
	return out, err
}

// abort drops the upload, if any, on a cleanup context with the given
// effort, so that no parts stay stored (and billed) after a failure,
// whatever state ctx is in. An upload the server no longer knows counts as
// aborted.
func (u *upload) abort(ctx context.Context, e effort) error {
	if u.id == "" {
		return nil
	}
	err := u.b.runCleanup(ctx, e, func(ctx context.Context, opts ...func(*s3.Options)) error {
		_, err := u.b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(u.b.bucket),
			Key:      aws.String(u.key),
			UploadId: aws.String(u.id),
		}, opts...)
		return err
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("abort multipart upload of %s: %w", u.key, err)
	}
	u.id = ""
	u.parts = nil
	return nil
}

// copySource encodes bucket/key for x-amz-copy-source. Servers decode it
// with query-unescaping (versitygw) or path-unescaping (AWS), which differ
// on '+' and agree on %XX, so every byte outside the unreserved set and '/'
// is percent-encoded.
func copySource(bucket, key string) string {
	const hexDigits = "0123456789ABCDEF"
	src := bucket + "/" + key
	var sb strings.Builder
	sb.Grow(len(src) * 3)
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '/':
			sb.WriteByte(c)
		default:
			sb.WriteByte('%')
			sb.WriteByte(hexDigits[c>>4])
			sb.WriteByte(hexDigits[c&15])
		}
	}
	return sb.String()
}

// stream buffers written bytes and uploads every full part of the
// backend's part size. Bytes short of a part stay in buf: the caller
// decides at commit whether they become a last part, a PutObject or a
// piece of a composed object.
type stream struct {
	upload
	buf      []byte
	uploaded int64 // bytes in parts
}

// firstBufCap is where a stream's buffer starts, so that many small files
// open at once do not each hold a whole part.
const firstBufCap = 64 << 10

// stage writes p unless ctx has ended; on an error it returns what failed
// makes of it (the writer finishing).
func (s *stream) stage(ctx context.Context, p []byte, failed func(context.Context, error) error) error {
	err := ctx.Err()
	if err == nil {
		err = s.write(ctx, p)
	}
	if err != nil {
		return failed(ctx, err)
	}
	return nil
}

func (s *stream) write(ctx context.Context, p []byte) error {
	partSize := int(s.b.partSize)
	for len(p) > 0 {
		n := min(len(p), partSize-len(s.buf))
		if cap(s.buf)-len(s.buf) < n {
			grown := make([]byte, len(s.buf), min(max(2*cap(s.buf), len(s.buf)+n, firstBufCap), partSize))
			copy(grown, s.buf)
			s.buf = grown
		}
		s.buf = append(s.buf, p[:n]...)
		p = p[n:]
		if len(s.buf) == partSize {
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush uploads buf as the next part and empties it.
func (s *stream) flush(ctx context.Context) error {
	if err := s.uploadPart(ctx, bytes.NewReader(s.buf), int64(len(s.buf))); err != nil {
		return err
	}
	s.uploaded += int64(len(s.buf))
	s.buf = s.buf[:0]
	return nil
}

// size is the number of bytes written so far.
func (s *stream) size() int64 { return s.uploaded + int64(len(s.buf)) }

// discard drops the buffer and the upload.
func (s *stream) discard(ctx context.Context, e effort) error {
	s.buf = nil
	return s.abort(ctx, e)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// writerState tracks a writer through its life.
type writerState int

const (
	writerOpen writerState = iota
	// writerRetrying: a Commit lost a race; only Commit and Abort remain.
	writerRetrying
	writerCommitted
	writerAborted
	// writerFailed: an error finished the writer; err holds it.
	writerFailed
)

// lifecycle holds what both writers share: the state, the error that
// finished the writer, and the lock that keeps an Abort from running
// beside a Write.
type lifecycle struct {
	mu    sync.Mutex
	state writerState
	err   error
}

// usable returns the error that a call on a finished writer gets.
func (l *lifecycle) usable() error {
	switch l.state {
	case writerCommitted, writerAborted:
		return fs.ErrClosed
	case writerFailed:
		return errFailedEarlier
	}
	return nil
}

// errFailedEarlier answers a call on a writer that an error finished.
var errFailedEarlier = backend.Errorf(fs.ErrClosed, nil, "the writer failed earlier")

// abortable moves the writer to the aborted state, unless it committed,
// and reports whether there may be something to clean up. A failed writer
// keeps its error but is cleaned up again, in case the cleanup that
// followed the failure failed too.
func (l *lifecycle) abortable() bool {
	switch l.state {
	case writerCommitted:
		return false
	case writerOpen, writerRetrying:
		l.state = writerAborted
	}
	return true
}

// fail finishes the writer with err.
func (l *lifecycle) fail(err error) error {
	l.state = writerFailed
	l.err = err
	return err
}

// Create returns a Writer whose Commit replaces the file at path. Parts are
// uploaded straight to a multipart upload of the file's own key, which S3
// keeps invisible until it is completed; a file that stays under one part
// is sent with a single PutObject at Commit. With opts.Exclusive the commit
// carries If-None-Match "*" and fails with an error wrapping fs.ErrExist
// when a file is there by then. Create itself makes no request.
//
// opts.Precondition is checked at Commit. If-None-Match "*" is the
// commit's own condition (backend.ErrPrecondition when a file is there).
// Any other precondition is checked against the version of the file that
// a one-byte GET reads (S3 cannot test an ETag that holds a commit id, see
// commitMeta), and an IfMatch commit then carries If-Match on that
// version's S3 ETag, so that it lands only on the version it checked:
// of two commits guarded by one version, the server lets one win, and
// the other fails with backend.ErrPrecondition, its upload aborted. An
// IfNoneMatch ETag needs no guard: a version that is gone never comes
// back, as every commit writes a new commit id.
//
// opts.Keep keeps the version the commit replaces: it is copied on the
// server to a kept version (backend.ReasonOverwritten) under a guard on
// its S3 ETag, and the commit then carries If-Match on that same ETag, so
// that the version kept is the version replaced; a commit that then fails
// forgets the copy. Without a precondition, the commit first tries
// If-None-Match "*": a new file costs nothing more than without Keep, and
// only a file found there makes it keep and guard (an overwrite then
// costs three requests more: the refused write, which for a file under
// one part has sent its body, the HEAD that settles it and reads the
// version in the way, and the copy). A file changed by another writer in
// between makes Commit return an error wrapping backend.ErrConflict,
// keeping the staged bytes: it may be called again (the Engine does), and
// Write no longer.
//
// S3's ETag hashes the content, so a version committed with the very bytes
// of the version it replaced has that version's S3 ETag, and a guard on
// it cannot tell the two apart: of two commits guarded by one version
// with different bytes exactly one wins, but a commit that rewrites the
// version's own bytes and another commit of that version may both win.
// No byte is lost then (the second lands on identical bytes); the
// history shows the original version kept twice and the identical
// rewrite not at all.
func (b *Backend) Create(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	commit, err := newID()
	if err != nil {
		return nil, classify(err)
	}
	meta := map[string]string{commitMeta: commit}
	return &createWriter{
		path:      path,
		exclusive: opts.Exclusive,
		pre:       opts.Precondition,
		keep:      opts.Keep,
		commitID:  commit,
		s:         stream{upload: upload{b: b, key: b.key(path), contentType: opts.ContentType, metadata: meta}},
	}, nil
}

type createWriter struct {
	lifecycle
	path      string
	exclusive bool
	pre       backend.Precondition
	keep      *backend.Keep
	commitID  string
	s         stream
	// replacing is set once an attempt found a file at the path, so that
	// the next one reads its version at once.
	replacing bool
	// seen is the version in the way of the last refused commit request,
	// as the HEAD that settled it read it (see Backend.settled), nil when
	// none did.
	seen *objectHead
}

// Write stages p, uploading each full part. A cancelled ctx or a failed
// upload aborts the multipart upload and finishes the writer.
func (w *createWriter) Write(ctx context.Context, p []byte) error {
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

// Commit makes the written bytes the file's content in one request
// (PutObject, or CompleteMultipartUpload after the last part), after the
// requests that opts.Precondition and opts.Keep need (see Create). An
// error wrapping backend.ErrConflict keeps the writer ready for another
// Commit; any other error finishes it and discards the staged bytes.
func (w *createWriter) Commit(ctx context.Context) (backend.Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return backend.Info{}, err
	}
	info, err := w.commit(ctx)
	switch {
	case err == nil:
		w.state = writerCommitted
		w.s.buf = nil
		return info, nil
	case errors.Is(err, backend.ErrConflict):
		w.state = writerRetrying
		return backend.Info{}, classify(err)
	}
	return backend.Info{}, w.failed(ctx, err)
}

func (w *createWriter) commit(ctx context.Context) (backend.Info, error) {
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	if s := &w.s; s.id != "" && len(s.buf) > 0 {
		// Every uploaded part is a full one, so the rest may be the last
		// part whatever its size; none is sent when nothing is left, and
		// none again by a later attempt.
		if err := s.flush(ctx); err != nil {
			return backend.Info{}, err
		}
	}
	star := aws.String("*")
	switch {
	case w.pre.IfMatch == "" && (w.exclusive || w.pre.IfNoneMatch == "*"):
		info, lost, err := w.send(ctx, nil, star)
		switch {
		case lost && w.pre.IfNoneMatch == "*":
			return backend.Info{}, precondition(err)
		case lost:
			return backend.Info{}, exists(err)
		}
		return info, err
	case w.pre == (backend.Precondition{}) && w.keep == nil:
		info, _, err := w.send(ctx, nil, nil)
		return info, err
	case w.pre == (backend.Precondition{}) && !w.replacing:
		// A new file replaces nothing: trying it first costs no request
		// more, and only a file found there makes the commit keep it.
		info, lost, err := w.send(ctx, nil, star)
		if !lost {
			return info, err
		}
		w.replacing = true
	}
	return w.replace(ctx)
}

// replace commits over the version of the file it reads, which it checks
// against the precondition and keeps as asked. A lost race is an error
// wrapping backend.ErrPrecondition with IfMatch, else
// backend.ErrConflict.
func (w *createWriter) replace(ctx context.Context) (backend.Info, error) {
	b := w.s.b
	var (
		cur   objectHead
		found = true
		err   error
	)
	if seen := w.seen; seen != nil && seen.size <= MaxPartSize {
		// The HEAD that settled the If-None-Match "*" try read the file
		// in the way: reading it again would cost a request. Its size may
		// pair with another version's ETag on a server that stores
		// objects as files (see current), which matters only for a copy
		// in parts, cut by the size: the GET below reads those.
		cur = *seen
	} else if cur, err = b.version(ctx, w.s.key); err != nil {
		if !isNotFound(err) {
			return backend.Info{}, err
		}
		found = false
	}
	w.seen = nil
	if err := w.pre.Check(found, fileInfo(w.path, 0, time.Time{}, cur.etag, cur.commit).ETag); err != nil {
		return backend.Info{}, err
	}
	if w.exclusive {
		// Only with IfMatch, which needs the file that Exclusive refuses.
		return backend.Info{}, backend.Errorf(fs.ErrExist, nil, "a file is at the path")
	}
	lose := conflict
	if w.pre.IfMatch != "" {
		lose = precondition
	}
	var ifMatch, ifNoneMatch *string
	switch {
	case !found && w.keep != nil:
		// A file that appears meanwhile would be replaced unkept.
		ifNoneMatch = aws.String("*")
	case found && (w.keep != nil || w.pre.IfMatch != ""):
		ifMatch = aws.String(cur.etag)
	}
	var kept string
	if found && w.keep != nil {
		if kept, err = b.keep(ctx, w.path, cur, w.keep, backend.ReasonOverwritten, time.Now()); err != nil {
			if errors.Is(err, backend.ErrConflict) {
				return backend.Info{}, lose(err)
			}
			return backend.Info{}, err
		}
	}
	info, lost, err := w.send(ctx, ifMatch, ifNoneMatch)
	if lost {
		err = lose(err)
	}
	if err != nil {
		return backend.Info{}, errors.Join(err, b.settleKept(ctx, kept, err))
	}
	return info, nil
}

// send commits the staged bytes, with a PutObject or by completing the
// multipart upload, under the given conditions. A conditional commit that
// failed is settled by Backend.settled: lost reports one refused by its
// conditions, which leaves the upload to another attempt.
func (w *createWriter) send(ctx context.Context, ifMatch, ifNoneMatch *string) (_ backend.Info, lost bool, _ error) {
	s := &w.s
	size := s.size()
	var etag string
	var err error
	if s.id == "" {
		var out *s3.PutObjectOutput
		out, err = s.b.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(s.b.bucket),
			Key:           aws.String(s.key),
			Body:          bytes.NewReader(s.buf),
			ContentLength: aws.Int64(int64(len(s.buf))),
			ContentType:   optional(s.contentType),
			Metadata:      s.metadata,
			IfMatch:       ifMatch,
			IfNoneMatch:   ifNoneMatch,
		})
		if err == nil {
			etag = aws.ToString(out.ETag)
		}
	} else {
		var out *s3.CompleteMultipartUploadOutput
		out, err = s.complete(ctx, &s3.CompleteMultipartUploadInput{IfMatch: ifMatch, IfNoneMatch: ifNoneMatch})
		if err == nil {
			etag = aws.ToString(out.ETag)
		}
	}
	if err != nil {
		if ifMatch == nil && ifNoneMatch == nil {
			return backend.Info{}, false, err
		}
		if etag, lost, w.seen, err = s.b.settled(ctx, s.key, w.commitID, err); err != nil {
			return backend.Info{}, lost, err
		}
	}
	return s.b.committedInfo(ctx, w.path, etag, w.commitID, size), false, nil
}

// failed finishes the writer with err, first aborting the upload once
// (Abort, which the caller owes, persists).
func (w *createWriter) failed(ctx context.Context, err error) error {
	return w.fail(classify(errors.Join(err, w.s.discard(ctx, once))))
}

// settled tells what became of a conditional write of commit to key that
// failed with err. An unsettled failure (see unsettled) is settled by the
// object's commit id: this commit's means the write landed (an earlier
// try of the request wrote it before its answer was lost), and the S3
// ETag is returned; another's means it was refused (lost). Otherwise lost
// says whether err itself is a refusal by the conditions (see isLost).
// seen is the other commit's object, as the HEAD that settled it read it.
func (b *Backend) settled(ctx context.Context, key, commit string, err error) (etag string, lost bool, seen *objectHead, _ error) {
	if !unsettled(err) {
		return "", isLost(err), nil, err
	}
	h, found := b.settle(ctx, key)
	switch {
	case found && h.commit == commit:
		return h.etag, false, nil, nil
	case found:
		return "", true, &h, err
	}
	return "", isLost(err), nil, err
}

// unsettled reports a failure of a conditional write that does not say
// whether the write landed: no answer at all (the server may reset the
// connection of a refused PUT while its body is still coming in, and the
// SDK then reports a transport error), a 5xx, or a failed precondition or
// vanished upload met by a retry whose earlier try may have written the
// object.
func unsettled(err error) bool {
	return !answered(err) || isPreconditionFailed(err) || errorCode(err) == "NoSuchUpload"
}

// settle reads the object at key after a conditional write to it failed
// without a definitive answer, on the cleanup budget's Once context (the
// call's own may have ended). found is false when there is no object or
// the HEAD failed too.
func (b *Backend) settle(ctx context.Context, key string) (h objectHead, found bool) {
	hctx, cancel := b.cleanup.Once(ctx)
	defer cancel()
	h, err := b.head(hctx, key, nil)
	return h, err == nil
}

// Abort discards the staged bytes and aborts the multipart upload, trying
// again while the server cannot be reached, until the cleanup timeout
// (WithCleanupTimeout). It is idempotent, a no-op after Commit, and
// reports only a failed cleanup, which the next Abort retries.
func (w *createWriter) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.abortable() {
		return nil
	}
	if err := w.s.discard(ctx, persist); err != nil {
		return classify(err)
	}
	return nil
}

// committedInfo describes the version a commit just wrote (S3 ETag etag,
// commit id commit). It asks the server for the modification time with a
// HEAD guarded by the new ETag; when another commit has already replaced
// that version, the local clock stands in, as the version itself is gone.
func (b *Backend) committedInfo(ctx context.Context, path, etag, commit string, size int64) backend.Info {
	info := fileInfo(path, size, time.Now().UTC().Truncate(time.Second), etag, commit)
	if etag == "" {
		return info
	}
	if h, err := b.head(ctx, b.key(path), aws.String(etag)); err == nil && h.commit == commit {
		info.ModTime = h.modTime
	}
	return info
}
