package backend_disk

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/roomstore/roomstore/backend"
)

// osError classifies an error of the file system under an Afero backend.
// The layers that name a path (*fs.PathError, *os.LinkError,
// *os.SyscallError) are dropped, because under afero.NewBasePathFs they
// carry the host's absolute path and every one of them names a system
// call; the bare cause (a syscall.Errno, or afero's own sentinel) is kept
// for errors.As.
func osError(err error) error {
	if err == nil {
		return nil
	}
	var e *backend.Error
	if errors.As(err, &e) {
		return err // classified already
	}
	cause := bareCause(err)
	var (
		kind   error
		detail string
	)
	switch {
	case errors.Is(cause, syscall.EMFILE), errors.Is(cause, syscall.ENFILE):
		kind, detail = backend.ErrTooManyHandles, "out of file descriptors"
	case errors.Is(cause, syscall.ELOOP):
		kind, detail = fs.ErrPermission, "symbolic link"
	case errors.Is(cause, syscall.ENOTDIR):
		kind = backend.ErrNotFolder
	case errors.Is(cause, syscall.EISDIR):
		kind = backend.ErrIsFolder
	case errors.Is(cause, fs.ErrNotExist):
		kind = fs.ErrNotExist
	case errors.Is(cause, fs.ErrExist):
		kind = fs.ErrExist
	case errors.Is(cause, fs.ErrPermission):
		kind = fs.ErrPermission
	case errors.Is(cause, fs.ErrClosed):
		kind = fs.ErrClosed
	case strings.Contains(cause.Error(), "path escapes from parent"):
		// os.Root refusing a symbolic link that leads out of the root; the
		// os package does not export that error.
		kind, detail = fs.ErrPermission, "path leads out of the store"
	}
	return &backend.Error{Kind: kind, Detail: detail, Cause: cause}
}

// bareCause strips the layers of err that name a path or a system call.
func bareCause(err error) error {
	for {
		switch e := err.(type) {
		case *fs.PathError:
			err = e.Err
		case *os.LinkError:
			err = e.Err
		case *os.SyscallError:
			err = e.Err
		default:
			return err
		}
	}
}

// reservedError classifies a failure inside the reserved folder dir
// (staging, locks). The caller's path is not to blame: a missing store
// directory, or a reserved folder that is not a folder, makes the store
// unusable.
func reservedError(err error, dir string) error {
	cause := bareCause(err)
	err = osError(err)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, backend.ErrNotFolder), errors.Is(err, backend.ErrIsFolder), errors.Is(err, fs.ErrExist):
		return &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "reserved folder " + dir + " unusable", Cause: cause}
	}
	return err
}

// Answers of the path walk (Afero.lstat).
var (
	errSymlink     = &backend.Error{Kind: fs.ErrPermission, Detail: "path crosses a symbolic link"}
	errThroughFile = &backend.Error{Kind: fs.ErrNotExist, Detail: "path runs through a file"}
)
