package backend

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
)

// Sentinels of the backend contract besides the io/fs ones. The roomstore
// package re-exports each under the same name.
var (
	// ErrIsFolder reports a file operation on a path that is a folder.
	ErrIsFolder = errors.New("is a folder")
	// ErrNotFolder reports a file written below a file (a path that runs
	// through a file as if it were a folder), or a folder operation on a
	// file.
	ErrNotFolder = errors.New("not a folder")
	// ErrConflict reports an append whose commit lost a race with another
	// writer; the Engine retries it.
	ErrConflict = errors.New("conflicting concurrent write")
	// ErrPrecondition reports a change whose precondition (an If-Match or
	// If-None-Match on the file's version) did not hold. Nothing changed.
	ErrPrecondition = errors.New("precondition failed: the file is not the version required")
	// ErrTooManyHandles reports that the process ran out of what open
	// writes need: the engine's handle limit, or the operating system's
	// file descriptors. Nothing was changed; the call may be retried once
	// other writes have finished.
	ErrTooManyHandles = errors.New("too many open handles")
	// ErrStoreUnavailable reports that the store itself cannot be used:
	// its bucket or directory is missing, or the folder where it stages
	// writes is broken. It is never the answer for a file that is simply
	// missing, so that a vanished store does not pass for an empty one.
	ErrStoreUnavailable = errors.New("store unavailable")
)

// Error is a classified failure of a backend call, the form in which every
// backend of this module reports the conditions of the contract. For the
// sentinels in Kinds, Kind alone answers errors.Is, so that the provider's
// own error cannot make a store that is gone look like a missing file (a
// syscall.ENOENT under ErrStoreUnavailable); Cause keeps that error (an S3
// API error, a GCS *googleapi.Error, a syscall.Errno) reachable with
// errors.As, and errors.Is with its own sentinels. The message
// holds the kind and a short detail for people, never a host path, a
// bucket key or a system call name: the Engine puts the caller's
// operation and path in front of it.
type Error struct {
	// Kind is the sentinel the failure stands for (fs.ErrNotExist,
	// ErrConflict...), or nil when it maps to none.
	Kind error
	// Detail says more, for people: "offset 11 past the end of 10 bytes",
	// "S3 AccessDenied". It may be empty.
	Detail string
	// Cause is the provider's error, or nil.
	Cause error
}

// Errorf returns an *Error of the given kind and cause whose detail is
// formatted from format and args (no detail when format is "").
func Errorf(kind, cause error, format string, args ...any) error {
	e := &Error{Kind: kind, Cause: cause}
	if format != "" {
		e.Detail = fmt.Sprintf(format, args...)
	}
	return e
}

// Error returns "kind: detail", or the part that is set; an error of no
// kind and no detail reads as its cause.
func (e *Error) Error() string {
	switch {
	case e.Kind != nil && e.Detail != "":
		return e.Kind.Error() + ": " + e.Detail
	case e.Kind != nil:
		return e.Kind.Error()
	case e.Detail != "":
		return e.Detail
	case e.Cause != nil:
		return e.Cause.Error()
	}
	return "backend error"
}

// Unwrap returns the kind, for errors.Is; an error of no kind unwraps to
// its cause.
func (e *Error) Unwrap() error {
	if e.Kind == nil {
		return e.Cause
	}
	return e.Kind
}

// Is answers for the cause's own sentinels (storage.ErrObjectNotExist,
// syscall.ENOSPC), but never for one of Kinds: those are the kind's alone.
func (e *Error) Is(target error) bool {
	if e.Kind == nil || e.Cause == nil || slices.Contains(Kinds, target) {
		return false
	}
	return errors.Is(e.Cause, target)
}

// As lets errors.As reach the cause.
func (e *Error) As(target any) bool {
	return e.Kind != nil && e.Cause != nil && errors.As(e.Cause, target)
}

// Kinds lists the sentinels a backend error may stand for, in the order
// KindOf tries them.
var Kinds = []error{
	ErrConflict, ErrPrecondition, ErrStoreUnavailable, ErrTooManyHandles, ErrIsFolder, ErrNotFolder,
	fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, fs.ErrInvalid, fs.ErrClosed,
	errors.ErrUnsupported,
}

// KindOf returns the first of Kinds that err matches, or nil.
func KindOf(err error) error {
	for _, k := range Kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// Classify returns a provider's error in the form the contract asks for:
// nil, an error that holds an *Error already, and an error of no kind
// (kind returns nil for it; a network failure, a context's end) come back
// as they are; any other becomes an *Error whose kind is the sentinel err
// carries already (a lost race wrapped around a 404 is a conflict, not a
// missing file) or else kind(err), whose detail is detail(err), and whose
// cause is err. Backends call it once, with their provider's mapping.
func Classify(err error, kind func(error) error, detail func(error) string) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	k := KindOf(err)
	if k == nil {
		k = kind(err)
	}
	if k == nil {
		return err
	}
	return &Error{Kind: k, Detail: detail(err), Cause: err}
}
