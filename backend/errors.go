package backend

import "errors"

var (
	// ErrIsFolder reports a file operation on a path that is a folder.
	ErrIsFolder = errors.New("is a folder")
	// ErrNotFolder reports a folder operation on a file, or a path that runs
	// through a file as if it were a folder.
	ErrNotFolder = errors.New("not a folder")
	// ErrConflict reports an append whose commit lost a race with another
	// writer; the Engine retries it.
	ErrConflict = errors.New("conflicting concurrent write")
)
