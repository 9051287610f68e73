package backend_s3

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/aws/smithy-go"

	"github.com/roomstore/roomstore/backend"
)

// pathError reports err, mapped onto the fs and backend sentinels, as an
// *fs.PathError on a store path.
func pathError(op, path string, err error) error {
	return &fs.PathError{Op: op, Path: path, Err: classify(err)}
}

// sentinels are the conditions callers test for with errors.Is.
var sentinels = []error{
	fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, fs.ErrInvalid, fs.ErrClosed,
	backend.ErrIsFolder, backend.ErrNotFolder, backend.ErrConflict, errors.ErrUnsupported,
}

// classify wraps err with the sentinel its S3 code or HTTP status maps to,
// keeping err itself in the chain for errors.As. An error that already
// carries a sentinel (a lost race caused by a 404 is a conflict, not a
// missing file), or maps to none, is returned as it is.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return err
		}
	}
	if s := sentinel(err); s != nil {
		return fmt.Errorf("%w: %w", s, err)
	}
	return err
}

func sentinel(err error) error {
	switch errorCode(err) {
	case "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchUpload":
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
