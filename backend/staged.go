package backend

import (
	"context"
	"io"
	"iter"
	"time"
)

// MaxStagedRecord bounds the record of a staged upload (Staging.Stage),
// in bytes.
const MaxStagedRecord = 16 << 10

// Staged describes a staged upload (see Staging).
type Staged struct {
	// ID names the upload (see ValidStagedID).
	ID string
	// Record is what the last Stage or Restage of the upload stored, or
	// nil for an upload found half made or half removed (a process died
	// between two steps of Stage, CommitStaged or RemoveStaged): such an
	// upload is no upload for Staged, only for ListStaged, so that
	// whoever expires uploads can remove it (with RemoveStaged) once
	// Modified is old enough that no Stage can still be making it.
	Record []byte
	// Size is how many bytes the upload holds.
	Size int64
	// Modified is when the upload last changed, by the store's clock.
	Modified time.Time
}

// Staging is the part of the Backend contract that keeps resumable
// uploads: bytes that arrive in parts, over calls that may be cut, and
// become a file at once. A store keeps them under roompath.ReservedPrefix
// (as .roomstore/uploads/<id>/...), where List, Stat, Read, a Watcher
// and a Scanner never see them, so that another Backend value over the
// same store, in any process, continues what one began.
//
// The Engine guarantees that every id passes ValidStagedID and that a
// record is at most MaxStagedRecord bytes. The Engine keeps the calls on
// one id within one engine in order; a store makes AppendStaged and
// CommitStaged on one id exclude each other also across processes, so
// that an append never lands in a committed file.
type Staging interface {
	// Stage creates upload id holding record and no bytes. An id in use
	// yields fs.ErrExist.
	Stage(ctx context.Context, id string, record []byte) error
	// Staged describes upload id. An unknown id (never staged, committed,
	// removed) yields fs.ErrNotExist.
	Staged(ctx context.Context, id string) (Staged, error)
	// Restage replaces the record of upload id. An unknown id yields
	// fs.ErrNotExist.
	Restage(ctx context.Context, id string, record []byte) error
	// AppendStaged appends what r yields to upload id, which must hold
	// offset bytes (else ErrConflict, with nothing read from r), until r
	// ends, and returns how many bytes it kept. The bytes r yields before
	// an error (or before ctx ends) are kept, and counted in n, with the
	// error returned; an error of r is returned as it is. With the
	// store's durability on (disk's fsync), the n bytes are on stable
	// storage when it returns. An unknown id yields fs.ErrNotExist.
	AppendStaged(ctx context.Context, id string, offset int64, r io.Reader) (n int64, err error)
	// CommitStaged makes the bytes of upload id the file at path,
	// atomically, and forgets the upload, as a Writer of Create with opts
	// commits: opts.Exclusive fails with fs.ErrExist when a file is
	// there, opts.Precondition with ErrPrecondition, opts.Keep keeps the
	// version replaced; a folder at path is ErrIsFolder, a file above it
	// ErrNotFolder (where the store can tell, as for Writer.Commit). On
	// any error but the context's the upload is kept, with its bytes. An
	// unknown id yields fs.ErrNotExist.
	CommitStaged(ctx context.Context, id, path string, opts WriteOptions) (Info, error)
	// RemoveStaged forgets upload id and its bytes; an append of it in
	// flight elsewhere may fail, or its bytes vanish with the upload. An
	// unknown id yields fs.ErrNotExist.
	RemoveStaged(ctx context.Context, id string) error
	// ListStaged yields every upload of the store, in any order, paging
	// internally, those half made or half removed included (Record nil);
	// a failed page yields one error and ends the sequence.
	ListStaged(ctx context.Context) iter.Seq2[Staged, error]
}

// MaxStagedID is the longest id of a staged upload.
const MaxStagedID = 64

// ValidStagedID reports whether id may name a staged upload: 1 to
// MaxStagedID ASCII letters, digits, '-' and '_' (no '.', no '/'), so
// that it is one safe name in every store.
func ValidStagedID(id string) bool {
	if id == "" || len(id) > MaxStagedID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
