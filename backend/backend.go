// Package backend defines the storage contract that roomstore's Engine runs
// on: the Backend interface and its optional interfaces, Info, the errors a
// backend reports, and the URL-scheme registry used by roomstore.OpenURL.
// Each store lives in a package of its own (backend_disk, backend_mem,
// backend_s3, backend_gcs) that imports this one; the path rules every
// store shares are in package roompath.
//
// A Backend only stores bytes. The Engine validates paths (roompath.Clean)
// before any backend call, owns handles, retries lost races, publishes
// events and signs URLs, so a backend can assume clean paths and stay small
// (see Backend for what the Engine guarantees).
//
// # Errors
//
// The contract below states each method's errors. Backends classify their
// provider's errors once, with the io/fs sentinels and the sentinels of
// this package, as *Error values (or the bare sentinel) that name no path:
// the Engine wraps every error once in an *fs.PathError with the caller's
// operation and path. The provider's own error stays reachable with
// errors.As; a context's error is returned as it is (or wrapped), so that
// errors.Is(err, context.Canceled) holds.
//
//   - fs.ErrNotExist: no file at the path (Stat, Read, Remove), also when
//     the path runs through a file.
//   - fs.ErrExist: an exclusive Create lost to an existing file.
//   - fs.ErrInvalid: a bad argument, such as a read offset past the end.
//   - fs.ErrPermission: the store refused access (or a path crosses a
//     symbolic link in an afero root).
//   - fs.ErrClosed: a call on a finished Writer, or on a closed Backend.
//   - ErrIsFolder: Read, Remove or a Commit on a path that is a folder.
//   - ErrNotFolder: a Commit below a file.
//   - ErrConflict: an append lost a race; the caller may Commit again.
//   - ErrPrecondition: a change's Precondition (WriteOptions, MoveOptions,
//     RemoveOptions) did not hold; nothing changed.
//   - ErrTooManyHandles: the process is out of file descriptors.
//   - ErrStoreUnavailable: the store's bucket or directory is missing, or
//     its staging area is broken.
//   - errors.ErrUnsupported: Presign on a store without native presigning.
package backend

import (
	"context"
	"io"
	"iter"
	"time"
)

// Identifier is implemented by backends that can name the store they hold:
// backends over the same stored files, in any process, return the same
// StoreID, and backends over different stores different ones; "" means the
// backend cannot tell. Engines use it to find the other engines of their
// store (see roomstore.WithEventTransport), so it must never name a store
// another store could share: a file store names its absolute directory, an
// object store its endpoint, bucket and prefix. Credentials and options
// that do not change which files are meant never appear in it.
type Identifier interface {
	StoreID() string
}

// Backend stores files under clean paths (see roompath.Clean). Every method takes the
// context of the call first and must return promptly once it is done,
// with an error matching the context's. Errors follow the package's
// # Errors section; any method may also fail with ErrStoreUnavailable, or
// with an error of no kind (a network failure, a full disk).
//
// Folders are implicit: a folder exists while at least one file lies beneath
// it. A backend must never report an empty folder, nor anything under
// roompath.ReservedPrefix.
//
// The Engine guarantees, so that a backend need not check again:
//
//   - every path is the clean form roompath.Clean returns: no leading or
//     trailing slash, no empty, "." or ".." element, none starting with
//     roompath.ReservedPrefix, within roompath.MaxPathLen;
//   - a path that names a file (Create, Append, Read, Presign, Remove,
//     Move) is never the root; only Stat and List get "";
//   - Read's offset is not negative;
//   - Move's src and dst differ, neither is the root nor beneath the
//     other, src held a file when the Engine looked, and the Engine has
//     checked that no parent of dst is a file (a check an object store
//     cannot make atomically; a store that can tell still reports
//     ErrNotFolder);
//   - Presign's expiry is at least a second.
//
// A Backend used without the Engine (tests, tools) gets none of these.
type Backend interface {
	// Stat describes the file or folder at path. The root ("") is always a
	// folder. A path with neither a file nor a file beneath it, or one that
	// runs through a file, yields fs.ErrNotExist.
	Stat(ctx context.Context, path string) (Info, error)

	// Create starts a writer whose Commit replaces the file at path with the
	// written bytes (or, with opts.Exclusive, creates it only if no file is
	// there at commit time, else fs.ErrExist). Nothing is visible before
	// Commit. On error it returns a nil Writer and has staged nothing
	// (ErrTooManyHandles, ErrStoreUnavailable, the context's error).
	Create(ctx context.Context, path string, opts WriteOptions) (Writer, error)

	// Append starts a writer whose Commit makes the file hold its content as
	// of the commit followed by the written bytes, creating the file when it
	// is missing. Commit is atomic and guarded: when another writer changes
	// the file during the attempt it returns ErrConflict, keeps the staged
	// bytes, and may be called again. opts.Exclusive is ignored. Errors are
	// those of Create.
	Append(ctx context.Context, path string, opts WriteOptions) (Writer, error)

	// Read streams length bytes of the file from offset (length < 0: to the
	// end) together with the Info of the version it reads. offset past the
	// end yields fs.ErrInvalid; offset equal to the size yields an empty
	// reader. A length past the end is cut at the end. A missing file
	// yields fs.ErrNotExist and a folder ErrIsFolder.
	Read(ctx context.Context, path string, offset, length int64) (io.ReadCloser, Info, error)

	// Presign returns a URL that serves the file to a plain HTTP GET until
	// opts.Expiry has passed, with the response headers opts asks for, or
	// errors.ErrUnsupported when the store cannot sign URLs itself (the
	// Engine then signs its own). An expiry the store cannot sign yields
	// fs.ErrInvalid.
	Presign(ctx context.Context, path string, opts PresignOptions) (string, error)

	// List yields the direct children of the folder dir ("" is the root),
	// files and folders, in any order, paging internally so that memory does
	// not grow with the folder. A missing folder, or a file, yields nothing.
	List(ctx context.Context, dir string) iter.Seq2[Info, error]

	// Remove deletes the file at path, pruning folders it leaves empty,
	// under opts's precondition and keeping the removed version as
	// opts.Keep asks. A missing file yields fs.ErrNotExist (before
	// ErrPrecondition) and a folder ErrIsFolder.
	Remove(ctx context.Context, path string, opts RemoveOptions) error

	// Move renames the file at src to dst (src != dst, neither beneath the
	// other) and returns the Info of dst, pruning folders src leaves empty
	// and making those dst needs. It yields fs.ErrNotExist when src holds
	// no file, ErrIsFolder when src or dst is a folder, fs.ErrExist when a
	// file is at dst and opts.Overwrite is false, and, where the store can
	// tell (disk and memory), ErrNotFolder when a parent of dst is a file.
	//
	// The file moves whole: dst gets src's content as of one commit, and
	// an append that commits to src while Move runs is never lost. On disk
	// and in memory Move is one atomic rename: a reader sees the file at
	// src or at dst, never neither. An object store copies on the server
	// under a precondition on src's version and then removes src under the
	// same precondition; when src changed in between it returns
	// ErrConflict, having removed its copy unless opts.Overwrite (then dst
	// holds a copy of an earlier version of src), src keeping every byte,
	// and the caller may call Move again. A failed Move otherwise leaves
	// src and dst as they were.
	//
	// opts.IfMatch makes the move conditional on src's version
	// (ErrPrecondition, after fs.ErrNotExist); opts.Keep keeps src's
	// version under src (ReasonMoved) and a replaced dst's under dst
	// (ReasonOverwritten), atomically with the move.
	Move(ctx context.Context, src, dst string, opts MoveOptions) (Info, error)

	// Close releases what the backend holds (descriptors, a client it
	// built itself); a client the caller handed in stays the caller's.
	// Writers still open are not committed. Later calls may fail with
	// fs.ErrClosed. It is idempotent. The Engine closes a backend that
	// roomstore.OpenURL built at Shutdown; one given to roomstore.New is
	// the caller's to close after Shutdown.
	Close() error

	// History keeps the past versions that changes asked to keep.
	History

	// Staging keeps resumable uploads until they become files.
	Staging
}

// Writer stages bytes for one file. It is used by one goroutine at a time;
// a Write or Commit in flight is interrupted through its context.
type Writer interface {
	// Write stages p, keeping no reference to it once it returns (the
	// caller reuses it). Nothing is visible to readers until Commit. An error
	// finishes the writer; the caller must still Abort it, which cleans up.
	// A finished writer's Write yields fs.ErrClosed.
	Write(ctx context.Context, p []byte) error

	// Commit makes the staged content visible atomically: readers see the
	// old content or the new, never a mix. After a nil error, or any error
	// but ErrConflict, the writer is finished; after ErrConflict the staged
	// bytes are kept and Commit may be called again. It yields
	// ErrPrecondition when the WriteOptions' Precondition does not hold at
	// commit time (checked atomically with the commit: for an append, on
	// the version it appends to; never ErrConflict then), fs.ErrExist
	// for an exclusive Create that lost, fs.ErrClosed on a finished
	// writer, and, where the store can tell at commit, ErrIsFolder when a
	// folder is at the path and ErrNotFolder when a parent is a file (disk
	// and memory stores always; a plain object store cannot, and the
	// Engine refuses both at Open).
	Commit(ctx context.Context) (Info, error)

	// Abort discards the staged bytes and leaves the file as it was. It is
	// idempotent and a no-op after a successful Commit; it reports only a
	// cleanup that failed (which a later Abort may retry).
	Abort(ctx context.Context) error
}

// MoveOptions tune Move.
type MoveOptions struct {
	// Overwrite lets Move replace a file at dst.
	Overwrite bool
	// IfMatch, when set, moves src only while it is the version with
	// this ETag (else ErrPrecondition).
	IfMatch string
	// Keep, when set, keeps the versions the move replaces (see Keep).
	Keep *Keep
}

// PresignOptions tune Presign.
type PresignOptions struct {
	// Expiry is how long the URL stays valid; it must be positive.
	Expiry time.Duration
	// ContentDisposition, when set, is the Content-Disposition header the
	// URL's response carries (such as `attachment; filename="a.txt"`),
	// signed into the URL so that it cannot be changed.
	ContentDisposition string
}

// WriteOptions tune Create and Append.
type WriteOptions struct {
	// Exclusive makes Create fail with fs.ErrExist when a file exists at
	// commit time, atomically even across processes sharing the store.
	Exclusive bool
	// ContentType is stored with the object where the store keeps one (S3,
	// GCS), so that presigned URLs serve it. Empty means unset.
	ContentType string
	// Precondition, checked at Commit (ErrPrecondition).
	Precondition
	// Keep, when set, keeps the version the commit replaces (see Keep).
	Keep *Keep
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
	// every commit. It is opaque and unquoted. List may leave it empty
	// where the store's listings do not carry it (S3), never set it to
	// another value than Stat reports.
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
