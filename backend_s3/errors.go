package backend_s3

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/roomstore/roomstore/backend"
)

// classify turns err into the form the backend contract asks for (see
// backend.Classify), with the S3 code as its detail.
func classify(err error) error { return backend.Classify(err, sentinel, codeDetail) }

// codeDetail names the S3 code of err for people, "" when there is none.
func codeDetail(err error) string {
	var ce *credentialsError
	if errors.As(err, &ce) {
		return ce.detail()
	}
	if code := errorCode(err); code != "" {
		return "S3 " + code
	}
	return ""
}

func sentinel(err error) error {
	var ce *credentialsError
	if errors.As(err, &ce) {
		// Before the status: the instance metadata service's 403 may be
		// in the chain.
		return fs.ErrPermission
	}
	switch errorCode(err) {
	case "NoSuchBucket":
		return backend.ErrStoreUnavailable
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return fs.ErrNotExist
	case "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken", "InvalidToken":
		return fs.ErrPermission
	case "InvalidRange", "InvalidArgument", "KeyTooLongError":
		return fs.ErrInvalid
	case "ExistingObjectIsDirectory":
		return backend.ErrIsFolder
	case "ObjectParentIsFile":
		return backend.ErrNotFolder
	case "NotImplemented":
		return errors.ErrUnsupported
	}
	switch httpStatus(err) {
	case http.StatusNotFound:
		return fs.ErrNotExist
	case http.StatusForbidden, http.StatusUnauthorized:
		return fs.ErrPermission
	case http.StatusRequestedRangeNotSatisfiable:
		return fs.ErrInvalid
	case http.StatusNotImplemented:
		return errors.ErrUnsupported
	}
	return nil
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isPreconditionFailed reports a failed If-Match / If-None-Match (412), or
// AWS's 409 ConditionalRequestConflict, which it answers when a concurrent
// conditional write to the same key is in flight.
func isPreconditionFailed(err error) bool {
	switch errorCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	return httpStatus(err) == http.StatusPreconditionFailed
}

// isNotFound reports a 404 of any kind.
func isNotFound(err error) bool {
	return sentinel(err) == fs.ErrNotExist
}

func isRangeNotSatisfiable(err error) bool {
	return errorCode(err) == "InvalidRange" || httpStatus(err) == http.StatusRequestedRangeNotSatisfiable
}

// conflict marks err as a lost race of an append commit.
func conflict(err error) error {
	return fmt.Errorf("%w: %w", backend.ErrConflict, err)
}

// precondition marks err, a lost race of a change whose caller named the
// version it changes (If-Match, or If-None-Match "*"), as that
// precondition failing: never a conflict, which the caller would retry.
// The cause stays reachable with errors.As.
func precondition(err error) error {
	return backend.Errorf(backend.ErrPrecondition, err, "%s", codeDetail(err))
}

// exists marks err as a lost exclusive create.
func exists(err error) error {
	return fmt.Errorf("%w: %w", fs.ErrExist, err)
}

// credentialsError is a failure to get credentials from the AWS chain
// (see credentials).
type credentialsError struct {
	instanceOnly bool
	err          error
}

func (e *credentialsError) Error() string { return "get AWS credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// detail says what went wrong and what to do, in one line.
func (e *credentialsError) detail() string {
	if e.instanceOnly {
		return "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; an endpoint= server needs them too)"
	}
	return "cannot get AWS credentials: " + strings.ReplaceAll(e.err.Error(), "\n", " ")
}
