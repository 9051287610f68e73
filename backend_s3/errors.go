package backend_s3

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/aws/smithy-go"

	"github.com/roomstore/roomstore/backend"
)

// classify turns err into the form the backend contract asks for: a
// *backend.Error whose kind is the sentinel err already carries (a lost
// race caused by a 404 is a conflict, not a missing file) or the one its
// S3 code or HTTP status maps to, with the S3 code as its detail and err
// as its cause, for errors.As. Errors of no kind (a network failure, a
// context's end) and errors classified already are returned as they are.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var be *backend.Error
	if errors.As(err, &be) {
		return err
	}
	kind := backend.KindOf(err)
	if kind == nil {
		kind = sentinel(err)
	}
	if kind == nil {
		return err
	}
	detail := ""
	if code := errorCode(err); code != "" {
		detail = "S3 " + code
	}
	return &backend.Error{Kind: kind, Detail: detail, Cause: err}
}

func sentinel(err error) error {
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

// exists marks err as a lost exclusive create.
func exists(err error) error {
	return fmt.Errorf("%w: %w", fs.ErrExist, err)
}
