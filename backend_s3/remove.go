package backend_s3

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
)

// removeAttempts bounds how often Remove looks at a file again that
// changed between its look and its guarded deletion.
const removeAttempts = 8

// Remove deletes the file at path. S3's DeleteObject succeeds on a missing
// key, so Remove reads the file's version first (a HEAD, or with
// opts.Keep the one-byte GET that Move uses, whose size belongs to its
// ETag) and yields an error wrapping fs.ErrNotExist when there is no file,
// backend.ErrIsFolder for a folder. Folders need no pruning: they vanish
// with their last object.
//
// opts.IfMatch is checked against that version (backend.ErrPrecondition),
// and opts.Keep copies it to a kept version (backend.ReasonDeleted, see
// keep); either makes the deletion carry If-Match on the version's S3
// ETag, so that a file changed since the look is not removed: Remove then
// forgets its kept copy and looks again (up to removeAttempts times),
// where a file that is gone is fs.ErrNotExist and another version fails
// opts.IfMatch (after the last attempt, the lost race is
// backend.ErrConflict). Without either, the deletion is unconditional, as a
// change needs no guard when nothing depends on the version it removes.
//
// How safe the guarded deletion is depends on the server: versitygw
// v1.8.0 checks If-Match on DeleteObject apart from the lock its writes
// take (see move.removeSource), so that a write committed by another
// process in that instant can be removed with the version; and it answers
// a guarded deletion of a missing key with success, so that two Removes
// racing to remove one version may both report success (each keeping a
// copy of it with opts.Keep). AWS evaluates the condition atomically.
func (b *Backend) Remove(ctx context.Context, path string, opts backend.RemoveOptions) error {
	var err error
	for range removeAttempts {
		if err = b.remove(ctx, path, opts); !errors.Is(err, backend.ErrConflict) {
			return err
		}
	}
	return err
}

// remove is one attempt of Remove; a lost race is an error wrapping
// backend.ErrConflict.
func (b *Backend) remove(ctx context.Context, path string, opts backend.RemoveOptions) error {
	key := b.key(path)
	var (
		cur objectHead
		err error
	)
	if opts.Keep != nil {
		cur, err = b.version(ctx, key)
	} else {
		cur, err = b.head(ctx, key, nil)
	}
	if err != nil {
		if isNotFound(err) {
			return b.missing(ctx, path, err)
		}
		return classify(err)
	}
	if err := (backend.Precondition{IfMatch: opts.IfMatch}).Check(true, fileInfo(path, 0, time.Time{}, cur.etag, cur.commit).ETag); err != nil {
		return err
	}
	if opts.IfMatch == "" && opts.Keep == nil {
		if _, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}); err != nil {
			return classify(err)
		}
		return nil
	}
	var kept string
	if opts.Keep != nil {
		if kept, err = b.keep(ctx, path, cur, opts.Keep, backend.ReasonDeleted, time.Now()); err != nil {
			return classify(err)
		}
	}
	err = b.deleteIfMatch(ctx, key, cur.etag)
	if err == nil {
		return nil
	}
	if answered(err) && (isPreconditionFailed(err) || isNotFound(err)) {
		err = conflict(err)
	}
	return classify(errors.Join(err, b.settleKept(ctx, kept, err)))
}

// deleteIfMatch deletes the object at key if its S3 ETag is etag. The
// first try is a single attempt, so that a refusal is the answer to that
// request and not to a retry after an earlier attempt that landed; a try
// with no answer is repeated once on the cleanup budget, and when that
// try does not settle it (it is refused), the first error is returned, as
// whether the object was removed is then unknown.
func (b *Backend) deleteIfMatch(ctx context.Context, key, etag string) error {
	del := func(ctx context.Context, opts ...func(*s3.Options)) error {
		_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket:  aws.String(b.bucket),
			Key:     aws.String(key),
			IfMatch: aws.String(etag),
		}, opts...)
		return err
	}
	err := del(ctx, singleAttempt)
	if err == nil || answered(err) {
		return err
	}
	if rerr := b.runCleanup(ctx, once, func(ctx context.Context, opts ...func(*s3.Options)) error {
		return del(ctx, append(opts, singleAttempt)...)
	}); rerr == nil || (answered(rerr) && isNotFound(rerr)) {
		return nil
	}
	return err
}
