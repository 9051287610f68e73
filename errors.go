package roomstore

import (
	"errors"
	"io/fs"

	"github.com/roomstore/roomstore/backend"
)

// Errors of the engine besides the io/fs sentinels. Every error the Engine
// returns is, or wraps, an *fs.PathError whose Err matches one of these or
// one of fs.ErrNotExist, fs.ErrExist, fs.ErrInvalid, fs.ErrClosed,
// fs.ErrPermission and errors.ErrUnsupported under errors.Is; a provider's
// own error (an S3 or GCS API error) stays reachable with errors.As.
var (
	// ErrIsFolder reports a file operation on a folder.
	ErrIsFolder = backend.ErrIsFolder
	// ErrNotFolder reports a folder operation on a file, or a path that runs
	// through a file.
	ErrNotFolder = backend.ErrNotFolder
	// ErrConflict reports an append that kept losing races with other
	// writers through all its attempts (WithCommitAttempts).
	ErrConflict = backend.ErrConflict
	// ErrTooManyHandles reports an Open while WithMaxOpenHandles handles are
	// open.
	ErrTooManyHandles = errors.New("too many open handles")
)

// pathError puts err under the engine's operation and the caller's path,
// dropping a backend's own PathError layer (whose path may be a bucket key)
// but keeping everything it wrapped.
func pathError(op, path string, err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}
