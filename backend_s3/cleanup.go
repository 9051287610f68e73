package backend_s3

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// effort says how hard a cleanup call (AbortMultipartUpload, DeleteObject
// of a temporary) tries.
type effort int

const (
	// once sends the call a single time (retried only by the client's own
	// retryer) on the cleanup budget's Once context, so that the call it
	// follows waits at most grace.Period past its deadline. It is the
	// cleanup a failed Write or Commit runs before it returns (the caller
	// must Abort the writer next, and Abort persists), and the removal of
	// the temporary of an append that committed (one that cannot be
	// removed is left to a lifecycle rule).
	once effort = iota
	// persist retries the call until it succeeds, the server gives an
	// answer that retrying cannot change, or the cleanup timeout passes
	// (objstore.Cleanup.Persist), so that a server that restarts within
	// the timeout still has the upload aborted. It is the cleanup of
	// Abort.
	persist
)

// runCleanup runs call with the given effort and returns its last error.
// call passes opts to the client.
//
// A persistent cleanup sends each try as a single attempt (the client's
// retryer is told not to retry), so that the pauses between tries are
// the budget's alone and an outage does not drain the client's retry
// quota, which the caller's other requests share. A try is repeated when
// it failed for a reason the SDK's default retryer deems transient: no
// answer at all (connection refused or reset, as while the server
// restarts), a 5xx, throttling.
func (b *Backend) runCleanup(parent context.Context, e effort, call func(ctx context.Context, opts ...func(*s3.Options)) error) error {
	if e == once {
		ctx, cancel := b.cleanup.Once(parent)
		defer cancel()
		return call(ctx)
	}
	return b.cleanup.Persist(parent, func(ctx context.Context) error { return call(ctx, singleAttempt) }, transient)
}

func singleAttempt(o *s3.Options) { o.RetryMaxAttempts = 1 }

var defaultRetryables = retry.IsErrorRetryables(retry.DefaultRetryables)

// transient reports an error that the same request may not meet again.
func transient(err error) bool {
	return defaultRetryables.IsErrorRetryable(err) == aws.TrueTernary
}

// deleteTemp removes a temporary object with the given effort. A
// temporary that is already gone counts as removed.
func (b *Backend) deleteTemp(ctx context.Context, key string, e effort) error {
	return b.runCleanup(ctx, e, func(ctx context.Context, opts ...func(*s3.Options)) error {
		_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}, opts...)
		if isNotFound(err) {
			return nil
		}
		return err
	})
}
