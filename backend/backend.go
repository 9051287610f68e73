// Package backend defines the storage contract that roomstore's Engine runs
// on, the path rules every store shares, the URL-scheme registry used by
// roomstore.OpenURL, and the local-disk implementation over afero
// (NewAfero).
//
// A Backend only stores bytes. The Engine validates paths (Clean) before any
// backend call, owns handles, retries lost races, publishes events and signs
// URLs, so a backend can assume clean paths and stay small.
//
// # Errors
//
// Backends report conditions with the io/fs sentinels and the sentinels of
// this package, wrapped so that errors.Is works and the provider's own error
// stays reachable with errors.As:
//
//   - fs.ErrNotExist: no file at the path (Stat, Read, Remove).
//   - fs.ErrExist: an exclusive Create lost to an existing file.
//   - fs.ErrInvalid: a bad argument, such as a read offset past the end.
//   - fs.ErrPermission: the store refused access (or a path crosses a symlink
//     in an afero root).
//   - ErrIsFolder, ErrNotFolder: a file/folder conflict.
//   - ErrConflict: an append lost a race; the caller may Commit again.
//   - errors.ErrUnsupported: Presign on a store without native presigning.
package backend

import (
	"context"
	"io"
	"iter"
	"time"
)

// Backend stores files under clean paths (see Clean). Every method takes the
// context of the call first and must return promptly once it is done.
//
// Folders are implicit: a folder exists while at least one file lies beneath
// it. A backend must never report an empty folder, nor anything under
// ReservedPrefix.
type Backend interface {
	// Stat describes the file or folder at path. The root ("") is always a
	// folder. A path with neither a file nor a file beneath it yields
	// fs.ErrNotExist.
	Stat(ctx context.Context, path string) (Info, error)

	// Create starts a writer whose Commit replaces the file at path with the
	// written bytes (or, with opts.Exclusive, creates it only if no file is
	// there at commit time, else fs.ErrExist). Nothing is visible before
	// Commit.
	Create(ctx context.Context, path string, opts WriteOptions) (Writer, error)

	// Append starts a writer whose Commit makes the file hold its content as
	// of the commit followed by the written bytes, creating the file when it
	// is missing. Commit is atomic and guarded: when another writer changes
	// the file during the attempt it returns ErrConflict, keeps the staged
	// bytes, and may be called again. opts.Exclusive is ignored.
	Append(ctx context.Context, path string, opts WriteOptions) (Writer, error)

	// Read streams length bytes of the file from offset (length < 0: to the
	// end) together with the Info of the version it reads. offset past the
	// end yields fs.ErrInvalid; offset equal to the size yields an empty
	// reader. A length past the end is cut at the end.
	Read(ctx context.Context, path string, offset, length int64) (io.ReadCloser, Info, error)

	// Presign returns a URL that serves the file to a plain HTTP GET until
	// expiry has passed, or errors.ErrUnsupported when the store cannot sign
	// URLs itself (the Engine then signs its own).
	Presign(ctx context.Context, path string, expiry time.Duration) (string, error)

	// List yields the direct children of the folder dir ("" is the root),
	// files and folders, in any order, paging internally so that memory does
	// not grow with the folder. A missing folder, or a file, yields nothing.
	List(ctx context.Context, dir string) iter.Seq2[Info, error]

	// Remove deletes the file at path, pruning folders it leaves empty.
	// A missing file yields fs.ErrNotExist.
	Remove(ctx context.Context, path string) error
}

// Writer stages bytes for one file. It is used by one goroutine at a time.
type Writer interface {
	// Write stages p. Nothing is visible to readers until Commit. An error
	// leaves the writer unusable; the caller must Abort it.
	Write(ctx context.Context, p []byte) error

	// Commit makes the staged content visible atomically: readers see the
	// old content or the new, never a mix. After a nil error, or any error
	// but ErrConflict, the writer is finished; after ErrConflict the staged
	// bytes are kept and Commit may be called again.
	Commit(ctx context.Context) (Info, error)

	// Abort discards the staged bytes and leaves the file as it was. It is
	// idempotent and a no-op after a successful Commit.
	Abort(ctx context.Context) error
}

// WriteOptions tune Create and Append.
type WriteOptions struct {
	// Exclusive makes Create fail with fs.ErrExist when a file exists at
	// commit time, atomically even across processes sharing the store.
	Exclusive bool
	// ContentType is stored with the object where the store keeps one (S3,
	// GCS), so that presigned URLs serve it. Empty means unset.
	ContentType string
}

// Info describes a file or a folder.
type Info struct {
	// Path is the clean path, without a trailing slash.
	Path string
	// IsFolder reports an implicit folder; Size, ModTime and ETag are then
	// zero.
	IsFolder bool
	// Size is the file's length in bytes.
	Size int64
	// ModTime is the time of the file's last commit.
	ModTime time.Time
	// ETag identifies this version of the file's content; it changes with
	// every commit. It is opaque and unquoted.
	ETag string
}

// Name returns the last element of the path ("" for the root).
func (i Info) Name() string {
	for j := len(i.Path) - 1; j >= 0; j-- {
		if i.Path[j] == '/' {
			return i.Path[j+1:]
		}
	}
	return i.Path
}
