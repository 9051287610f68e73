package backend_s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
)

// Move renames the file at src to dst: it copies src on the server to dst
// under a precondition on src's version, then removes src under the same
// precondition, and returns the Info of dst as Stat reports it. dst is a
// new commit: its ETag differs from src's (a fresh commit id, see
// commitMeta) and its ModTime is the time of the copy. src's content type
// moves with it.
//
// The copy is guarded by x-amz-copy-source-if-match on src's ETag. Without
// opts.Overwrite it is create-only, which S3 can only express on a
// multipart upload (CopyObject's If-None-Match is ignored by some servers,
// versitygw among them): the copy is one or more UploadPartCopy parts of a
// multipart upload completed with If-None-Match "*", so a file that
// appears at dst meanwhile makes Move fail with fs.ErrExist and leaves it
// alone. With opts.Overwrite a file of up to MaxPartSize is copied with one
// CopyObject, a larger one in parts. src is then removed with DeleteObject
// carrying If-Match on the same ETag.
//
// When src changes in between (an append commits to it), the copy's or
// the removal's precondition fails and Move returns an error wrapping
// backend.ErrConflict, src keeping every byte. Without opts.Overwrite it
// first removes its copy, guarded by the copy's ETag so that a newer file
// at dst is never removed; with opts.Overwrite dst keeps the copy of the
// earlier version.
//
// How safe the removal is depends on the server evaluating If-Match on
// DeleteObject atomically with the conditional writes of appends, as AWS
// does. versitygw v1.8.0 checks it but not under the lock its writes take;
// see removeSource.
//
// opts.IfMatch is checked against the version of src that is moved, which
// the copy and the removal are guarded by already: a src changed in
// between is then backend.ErrPrecondition rather than
// backend.ErrConflict (with opts.Overwrite, dst keeps the copy of the
// version named, as it does after a conflict).
//
// opts.Keep keeps src's version under src (backend.ReasonMoved) and, with
// opts.Overwrite, the file it replaces at dst under dst
// (backend.ReasonOverwritten), each copied on the server under a guard on
// its S3 ETag before anything changes (see keep). dst's version is read
// with a one-byte GET in place of the HEAD that checks the destination
// otherwise, and the copy onto dst is then guarded by it (If-Match on its
// S3 ETag, If-None-Match "*" when dst had no file), so that the version
// kept is the version replaced: a multipart copy, as servers may ignore
// conditions on CopyObject's destination. A dst changed in between makes
// Move return backend.ErrConflict. A Move that does not happen forgets the
// kept versions it made: src's whenever src was not removed, dst's when
// dst was left as it was.
//
// Errors: fs.ErrNotExist when src holds no file, backend.ErrIsFolder when
// src or dst is a folder, fs.ErrExist when a file is at dst and
// opts.Overwrite is false, backend.ErrNotFolder when a parent of dst is a
// file on a server that says so (versitygw), backend.ErrConflict as
// above, and the context's error. A Move that fails before src is removed
// leaves src as it was and removes its copy (without opts.Overwrite), on
// a context of its own that outlives a cancelled ctx by half a second
// (grace.Period). A removal of src whose outcome is unknown (no answer, a
// 5xx, a cancelled ctx) is retried rather than undone, as undoing the copy
// while the request may still land could lose the file: Move then returns
// the error and keeps the copy at dst, also when the retry could not
// remove src (it changed, or the server is still unreachable).
func (b *Backend) Move(ctx context.Context, src, dst string, opts backend.MoveOptions) (backend.Info, error) {
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	m := &move{b: b, src: src, dst: dst, srcKey: b.key(src), dstKey: b.key(dst), overwrite: opts.Overwrite,
		ifMatch: opts.IfMatch != "", keep: opts.Keep, guard: opts.Keep != nil && opts.Overwrite}
	from, err := b.version(ctx, m.srcKey)
	if err != nil {
		if isNotFound(err) {
			return backend.Info{}, b.missing(ctx, src, err)
		}
		return backend.Info{}, classify(err)
	}
	m.from = from
	if err := (backend.Precondition{IfMatch: opts.IfMatch}).Check(true, fileInfo(src, 0, time.Time{}, from.etag, from.commit).ETag); err != nil {
		return backend.Info{}, err
	}
	if m.guard {
		err = m.target(ctx)
	} else {
		err = objstore.CheckMoveTarget(ctx, objects{b}, dst, opts.Overwrite)
	}
	if err != nil {
		return backend.Info{}, err
	}
	info, err := m.run(ctx)
	return info, classify(err)
}

// target reads the version of the file at dst that an overwriting Move
// keeps, with the GET of version in place of the HEAD of
// objstore.CheckMoveTarget, and refuses a folder at dst as that does.
func (m *move) target(ctx context.Context) error {
	to, err := m.b.version(ctx, m.dstKey)
	switch {
	case err == nil:
		m.to, m.toFound = to, true
		return nil
	case !isNotFound(err):
		return classify(err)
	}
	if err := m.b.missing(ctx, m.dst, err); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// move is one Move call.
type move struct {
	b              *Backend
	src, dst       string
	srcKey, dstKey string
	overwrite      bool
	// ifMatch says that the caller named src's version: a src changed
	// since is a failed precondition.
	ifMatch bool
	keep    *backend.Keep
	// guard makes the copy find dst as target read it (Keep with
	// Overwrite): to is that version, when toFound.
	guard   bool
	to      objectHead
	toFound bool
	// srcKept and dstKept are the keys of the versions kept for the move
	// ("" for none).
	srcKept, dstKept string
	// from is the version of src that is moved.
	from objectHead
	// commit is the commit id of the copy (see commitMeta).
	commit string
	// copied is the S3 ETag of the copy once dst holds it; landed is set
	// when a request that makes the copy may have landed although no
	// answer said so (it was cut short), so that undoing the copy looks
	// for it by its commit id.
	copied string
	landed bool
}

// version reads the version of the file at key that a Move copies: its
// ETag, size, modification time, commit id and content type. They come
// from one ranged GET rather than a HEAD for the reason current gives: the
// size then belongs to the ETag's version or a later one, which fails the
// copy's precondition, whereas a HEAD may pair an old size with a new
// ETag and a copy of that many bytes would drop the tail of an append.
func (b *Backend) version(ctx context.Context, key string) (objectHead, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    aws.String(key),
		Range:  aws.String("bytes=0-0"),
	})
	if err != nil && isRangeNotSatisfiable(err) {
		// An empty file, and a 416 carries no ETag: ask without a range.
		out, err = b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	}
	if err != nil {
		return objectHead{}, err
	}
	defer out.Body.Close()
	h := objectHead{
		size:        aws.ToInt64(out.ContentLength),
		modTime:     aws.ToTime(out.LastModified),
		etag:        aws.ToString(out.ETag),
		commit:      out.Metadata[commitMeta],
		contentType: aws.ToString(out.ContentType),
	}
	if out.ContentRange != nil {
		total, ok := totalFromContentRange(*out.ContentRange)
		if !ok {
			return objectHead{}, backend.Errorf(nil, nil, "S3 answered with Content-Range %q", *out.ContentRange)
		}
		h.size = total
	}
	// At most one byte; reading it keeps the connection reusable.
	if _, err := io.Copy(io.Discard, io.LimitReader(out.Body, 2)); err != nil {
		return objectHead{}, err
	}
	return h, nil
}

func (m *move) run(ctx context.Context) (backend.Info, error) {
	commit, meta, err := newCommit()
	if err != nil {
		return backend.Info{}, err
	}
	m.commit = commit
	if err := m.keepVersions(ctx); err != nil {
		return backend.Info{}, err
	}
	if err := m.copy(ctx, meta); err != nil {
		return backend.Info{}, m.failed(ctx, err)
	}
	if err := ctx.Err(); err != nil {
		// Nothing was sent to remove src: it is intact, and the copy goes.
		return backend.Info{}, m.failed(ctx, err)
	}
	err = m.removeSource(ctx, singleAttempt)
	switch {
	case err == nil:
		return m.b.committedInfo(ctx, m.dst, m.copied, m.commit, m.from.size), nil
	case isPreconditionFailed(err):
		// The one request sent was refused: src changed since the copy
		// and holds every byte, so the copy is stale.
		return backend.Info{}, m.failed(ctx, m.srcLost(err))
	case answered(err):
		// Refused for another reason (AccessDenied): src is intact.
		return backend.Info{}, m.failed(ctx, err)
	}
	// The removal may have landed, or may still land: undoing the copy now
	// could leave neither file. Finish the move instead, on a context that
	// outlives ctx by the grace period. The retry's answers are read
	// conservatively: a failed precondition may mean that the first
	// request removed src and an append then created it anew (the copy is
	// then the only one of the old content), so the copy stays whatever
	// the retry answers.
	if rerr := m.b.runCleanup(ctx, once, m.removeSource); rerr == nil && ctx.Err() == nil {
		return m.b.committedInfo(ctx, m.dst, m.copied, m.commit, m.from.size), nil
	}
	return backend.Info{}, err
}

// keepVersions keeps the versions the move replaces, as m.keep asks: src's
// and, when target found one, dst's. A src changed since it was read is a
// lost race (see srcLost), a dst changed a conflict; either leaves nothing
// kept.
func (m *move) keepVersions(ctx context.Context) error {
	if m.keep == nil {
		return nil
	}
	now := time.Now()
	var err error
	if m.srcKept, err = m.b.keep(ctx, m.src, m.from, m.keep, backend.ReasonMoved, now); err != nil {
		return m.srcChanged(err)
	}
	if m.toFound {
		if m.dstKept, err = m.b.keep(ctx, m.dst, m.to, m.keep, backend.ReasonOverwritten, now); err != nil {
			return errors.Join(err, m.forget(ctx))
		}
	}
	return nil
}

// failed undoes what the move did, for a move that failed with err before
// src was removed, and forgets the versions it kept for it.
func (m *move) failed(ctx context.Context, err error) error {
	err = errors.Join(err, m.undo(ctx))
	return errors.Join(err, m.forget(ctx))
}

// forget forgets the versions kept for a move that did not happen: src's
// (src was not removed), and dst's unless dst may hold the copy.
func (m *move) forget(ctx context.Context) error {
	var err error
	if m.srcKept != "" {
		err = m.b.forgetKept(ctx, m.srcKept)
		m.srcKept = ""
	}
	if m.dstKept != "" && m.copied == "" && !m.landed {
		err = errors.Join(err, m.b.forgetKept(ctx, m.dstKept))
		m.dstKept = ""
	}
	return err
}

// srcLost reports err, a request refused because src is no longer the
// version moved, as a lost race: a failed precondition when the caller
// named that version, else a conflict.
func (m *move) srcLost(err error) error {
	if m.ifMatch {
		return precondition(err)
	}
	return conflict(err)
}

// srcChanged is srcLost for an error that may already be marked a
// conflict (see Backend.sourceChanged).
func (m *move) srcChanged(err error) error {
	if m.ifMatch && errors.Is(err, backend.ErrConflict) {
		return precondition(err)
	}
	return err
}

// creates reports a copy that makes a file at dst where there was none,
// which undoing the move removes.
func (m *move) creates() bool { return !m.overwrite || (m.guard && !m.toFound) }

// copy makes dst a copy of the version m.from of src, with the metadata
// meta, under a precondition on that version; only if no file is at dst
// when it creates one (see creates), and only onto the version m.to when
// it guards dst. It sets m.copied to the copy's S3 ETag.
func (m *move) copy(ctx context.Context, meta map[string]string) error {
	b := m.b
	ifMatch := aws.String(m.from.etag)
	contentType := optional(m.from.contentType)
	var dstIfMatch, ifNoneMatch *string
	switch {
	case m.creates():
		ifNoneMatch = aws.String("*")
	case m.guard:
		dstIfMatch = aws.String(m.to.etag)
	}
	switch {
	case m.overwrite && !m.guard && m.from.size <= MaxPartSize:
		out, err := b.client.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket:            aws.String(b.bucket),
			Key:               aws.String(m.dstKey),
			CopySource:        aws.String(copySource(b.bucket, m.srcKey)),
			CopySourceIfMatch: ifMatch,
			MetadataDirective: types.MetadataDirectiveReplace,
			Metadata:          meta,
			ContentType:       contentType,
		})
		if err != nil {
			return m.srcChanged(b.sourceChanged(ctx, m.srcKey, ifMatch, err))
		}
		if out.CopyObjectResult != nil {
			m.copied = aws.ToString(out.CopyObjectResult.ETag)
		}
		return nil
	case m.from.size == 0:
		// S3 cannot complete a multipart upload of no parts; the content is
		// known, and removing src checks that it is still this version.
		out, err := b.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(b.bucket),
			Key:           aws.String(m.dstKey),
			Body:          newChain(),
			ContentLength: aws.Int64(0),
			ContentType:   contentType,
			Metadata:      meta,
			IfMatch:       dstIfMatch,
			IfNoneMatch:   ifNoneMatch,
		})
		if err != nil {
			return m.created(err)
		}
		m.copied = aws.ToString(out.ETag)
		return nil
	}
	u := &upload{b: b, key: m.dstKey, contentType: m.from.contentType, metadata: meta}
	if err := u.copyParts(ctx, m.srcKey, ifMatch, 0, m.from.size); err != nil {
		return errors.Join(m.srcChanged(b.sourceChanged(ctx, m.srcKey, ifMatch, err)), u.abort(ctx, once))
	}
	out, err := u.complete(ctx, &s3.CompleteMultipartUploadInput{IfMatch: dstIfMatch, IfNoneMatch: ifNoneMatch})
	if err != nil {
		return errors.Join(m.created(err), u.abort(ctx, once))
	}
	m.copied = aws.ToString(out.ETag)
	return nil
}

// created reports the failure of the request that writes the copy: a
// failed If-None-Match is a file at dst (a conflict when Overwrite let
// Move replace one it did not find), a failed If-Match another version
// at dst than the one kept, and a request with no answer may have landed.
func (m *move) created(err error) error {
	switch {
	case !m.overwrite && isPreconditionFailed(err):
		return exists(err)
	case m.guard && isLost(err):
		return conflict(err)
	}
	if !answered(err) {
		m.landed = true
	}
	return err
}

// removeSource deletes src if it is still the version that was copied. A
// src that is gone counts as removed: the copy holds its content (a
// server may answer If-Match on a missing key with 404; versitygw answers
// 204). The
// first try is sent as a single attempt (singleAttempt in opts), so that
// a failed precondition is the answer to that request, not to a retry
// after an earlier attempt that landed.
//
// The If-Match makes an append that committed to src since the copy fail
// the removal (412), and one still in flight fail its own If-Match once
// src is gone, so that the engine retries it and it creates src anew. That
// holds where the server evaluates the condition and unlinks the object
// in one step. versitygw v1.8.0 (posix) does not: its DeleteObject reads
// the ETag, compares it and unlinks the file without the per-key publish
// lock that PutObject and CompleteMultipartUpload hold across their own
// check and rename. A conditional write by another process that lands
// between that check and the unlink is removed with src although it was
// acknowledged: racing a PUT and a DELETE, both with If-Match on the same
// version, sometimes sees both succeed and the key vanish. Within one
// engine the path locks keep an append commit and a Move of the same path
// apart, so only writers in other processes meet that window. Any order of
// requests from this side leaves some such window (a HEAD before an
// unconditional delete, a wider one); closing it without the server's lock
// would take a protocol that every writer follows, such as a fenced
// version of src that appends refuse to build on for a lease.
func (m *move) removeSource(ctx context.Context, opts ...func(*s3.Options)) error {
	_, err := m.b.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket:  aws.String(m.b.bucket),
		Key:     aws.String(m.srcKey),
		IfMatch: aws.String(m.from.etag),
	}, opts...)
	if isNotFound(err) {
		return nil
	}
	return err
}

// undo removes the copy at dst after a failed Move that created it (see
// creates; a file the copy replaced is gone anyway), once, on a grace
// context that outlives a cancelled ctx. The removal is guarded by the
// copy's ETag, so that a file another writer put at dst since is left
// alone; a copy whose request was cut short is first found by its commit
// id.
func (m *move) undo(ctx context.Context) error {
	if !m.creates() || (m.copied == "" && !m.landed) {
		return nil
	}
	err := m.b.runCleanup(ctx, once, func(ctx context.Context, opts ...func(*s3.Options)) error {
		etag := m.copied
		if etag == "" {
			h, err := m.b.head(ctx, m.dstKey, nil)
			switch {
			case isNotFound(err):
				return nil
			case err != nil:
				return err
			case h.commit != m.commit:
				return nil // not the copy: it never landed
			}
			etag = h.etag
		}
		_, err := m.b.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket:  aws.String(m.b.bucket),
			Key:     aws.String(m.dstKey),
			IfMatch: aws.String(etag),
		}, opts...)
		if isNotFound(err) || isPreconditionFailed(err) {
			return nil // gone, or replaced by another writer's file
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("remove the copy: %w", err)
	}
	m.copied, m.landed = "", false
	return nil
}

// answered reports an error that is the server's definitive answer to the
// request (a 4xx): the request did not take effect. Without an answer, or
// with a 5xx, it may have.
func answered(err error) bool {
	s := httpStatus(err)
	return s >= http.StatusBadRequest && s < http.StatusInternalServerError
}
