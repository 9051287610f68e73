package backend_gcs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"google.golang.org/api/googleapi"
)

// pathError wraps err for op on path, adding the io/fs sentinel that the
// SDK error stands for so that errors.Is works while errors.As still
// reaches the SDK's error.
func pathError(op, path string, err error) error {
	if err == nil {
		return nil
	}
	if s := sentinel(err); s != nil && !errors.Is(err, s) {
		err = fmt.Errorf("%w: %w", s, err)
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// withSentinel is pathError with a sentinel chosen by the caller, for the
// cases where the status alone is ambiguous (a 412 means fs.ErrExist for
// an exclusive create and backend.ErrConflict for an append).
func withSentinel(op, path string, s, err error) error {
	return &fs.PathError{Op: op, Path: path, Err: fmt.Errorf("%w: %w", s, err)}
}

func sentinel(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return fs.ErrNotExist
	}
	switch statusCode(err) {
	case http.StatusNotFound:
		return fs.ErrNotExist
	case http.StatusPreconditionFailed:
		return fs.ErrExist
	case http.StatusUnauthorized, http.StatusForbidden:
		return fs.ErrPermission
	}
	return nil
}

// statusCode returns the HTTP status of an SDK error, or 0.
func statusCode(err error) int {
	var g *googleapi.Error
	if errors.As(err, &g) {
		return g.Code
	}
	return 0
}

func isPrecondition(err error) bool { return statusCode(err) == http.StatusPreconditionFailed }

func isNotExist(err error) bool {
	return errors.Is(err, storage.ErrObjectNotExist) || statusCode(err) == http.StatusNotFound
}

// conflict reports a lost append race; cause (possibly nil) stays in the
// chain for errors.As.
func conflict(path, why string, cause error) error {
	if cause == nil {
		return &fs.PathError{Op: "append", Path: path, Err: fmt.Errorf("%w: %s", backend.ErrConflict, why)}
	}
	return &fs.PathError{Op: "append", Path: path, Err: fmt.Errorf("%w: %s: %w", backend.ErrConflict, why, cause)}
}
