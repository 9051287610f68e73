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
// own error (an S3 or GCS API error, a syscall.Errno) stays reachable with
// errors.As. They are the backend package's sentinels, so that a backend's
// answer and the engine's are one and the same.
var (
	// ErrIsFolder reports a file operation on a folder.
	ErrIsFolder = backend.ErrIsFolder
	// ErrNotFolder reports a folder operation on a file, or a path that runs
	// through a file.
	ErrNotFolder = backend.ErrNotFolder
	// ErrConflict reports an append that kept losing races with other
	// writers through all its attempts (WithCommitAttempts), or a move on
	// an object store whose source kept changing under it (the source then
	// keeps every byte).
	ErrConflict = backend.ErrConflict
	// ErrPrecondition reports a change refused because the file was not
	// the version the caller required (OpenOptions.IfMatch and
	// IfNoneMatch, MoveOptions.IfMatch, DeleteOptions.IfMatch): another
	// participant changed it since the caller read it. Nothing changed; a
	// handle's bytes are discarded. Read the file again, merge, and save
	// under its new ETag. The room protocol's code for it is 412.
	ErrPrecondition = backend.ErrPrecondition
	// ErrTooManyHandles reports an Open while WithMaxOpenHandles handles are
	// open, or a write that found the process out of file descriptors.
	// Nothing was changed; retry once other handles are closed.
	ErrTooManyHandles = backend.ErrTooManyHandles
	// ErrTooManyEntries reports a ListMax of a folder that holds more
	// entries than its caller takes. Nothing was changed; the entries
	// are still reached by their paths (Stat, Walk).
	ErrTooManyEntries = errors.New("too many entries")
	// ErrStoreUnavailable reports that the store itself cannot be used:
	// its bucket or directory is missing, or its staging area is broken.
	// A missing file is never reported so: a vanished store does not pass
	// for an empty one.
	ErrStoreUnavailable = backend.ErrStoreUnavailable
)

// pathError puts a backend's error under the engine's operation and the
// caller's path. Backends name no path of their own (see package
// backend), so this is the one wrapping an error gets.
func pathError(op, path string, err error) error {
	return &fs.PathError{Op: op, Path: path, Err: err}
}
