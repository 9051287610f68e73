package backend_gcs

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strconv"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"google.golang.org/api/googleapi"
)

// classify turns err into the form the backend contract asks for (see
// backend.Classify), with the HTTP status as its detail.
func classify(err error) error { return backend.Classify(err, sentinel, detail) }

// withKind classifies err as kind, for the cases where the status alone is
// ambiguous (a 412 means fs.ErrExist for an exclusive create and
// backend.ErrConflict for an append).
func withKind(kind, err error, why string) error {
	d := detail(err)
	if why != "" && d != "" {
		d = why + " (" + d + ")"
	} else if why != "" {
		d = why
	}
	return &backend.Error{Kind: kind, Detail: d, Cause: err}
}

// detail names the GCS status of err for people, "" when there is none.
func detail(err error) string {
	if code := statusCode(err); code != 0 {
		return "GCS " + strconv.Itoa(code) + " " + http.StatusText(code)
	}
	return ""
}

func sentinel(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if errors.Is(err, storage.ErrBucketNotExist) {
		return backend.ErrStoreUnavailable
	}
	if errors.Is(err, storage.ErrObjectNotExist) {
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
func conflict(why string, cause error) error {
	return withKind(backend.ErrConflict, cause, why)
}

// precondition reports a change refused because the file is not the
// version it was conditional on; cause (possibly nil) stays in the chain.
func precondition(why string, cause error) error {
	return withKind(backend.ErrPrecondition, cause, why)
}
