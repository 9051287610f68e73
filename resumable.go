package roomstore

import (
	"context"
	"errors"
	"io"
	"time"
)

// Resumable uploads (SPEC 9.6): a file whose bytes arrive in parts, over
// requests that may be cut, kept in the store under its reserved prefix
// (never listed, walked, served, counted as a file nor told by an event)
// until the last byte, then committed to its path at once, with one
// file.updated. The room server's tus endpoint (roomserver.Server.Uploads)
// is built on them; an embedder may use them for any protocol of its own.

// DefaultResumableAge is how long a resumable upload lives after its last
// write before Expire removes it (see WithResumable).
const DefaultResumableAge = 24 * time.Hour

// DefaultResumablePerParticipant is how many unfinished resumable uploads
// one participant may hold in a store at once (see WithResumable).
const DefaultResumablePerParticipant = 16

// MaxResumableMetadata bounds the metadata of one resumable upload, keys
// and values together, in bytes.
const MaxResumableMetadata = 4 << 10

// ResumableLimits bound the resumable uploads of an engine's store (see
// WithResumable).
type ResumableLimits struct {
	// MaxAge is how long an upload lives after its creation or its last
	// write; past it, Expire removes it and its bytes.
	MaxAge time.Duration
	// PerParticipant bounds the unfinished uploads of one participant
	// (WithParticipant; all anonymous callers share one count).
	PerParticipant int
}

// WithResumable sets the limits of resumable uploads (default
// DefaultResumableAge and DefaultResumablePerParticipant). Zero or
// negative values are refused.
func WithResumable(l ResumableLimits) Option {
	return func(c *config) error {
		if l.MaxAge <= 0 || l.PerParticipant <= 0 {
			return badOption("resumable limits must be positive, got %v and %d", l.MaxAge, l.PerParticipant)
		}
		c.resumable = l
		return nil
	}
}

// ResumableOptions describe a resumable upload at its creation.
type ResumableOptions struct {
	// Size is the upload's length in bytes, fixed at creation.
	Size int64
	// Overwrite lets the upload replace a file at its path; without it,
	// an existing file fails the creation, and the commit, with
	// fs.ErrExist.
	Overwrite bool
	// Metadata is kept with the upload and returned by Resumable (the tus
	// Upload-Metadata), at most MaxResumableMetadata bytes.
	Metadata map[string]string
}

// Resumable is the state of a resumable upload.
type Resumable struct {
	ID          string
	Path        string
	Size        int64
	Offset      int64 // the bytes kept so far
	Overwrite   bool
	Participant string // who created it (WithParticipant)
	Metadata    map[string]string
	Created     time.Time
	Expires     time.Time // when Expire removes it, unless written before
}

// errResumableStub marks the contract before its implementation.
var errResumableStub = errors.ErrUnsupported

// CreateResumable starts a resumable upload of opts.Size bytes to p and
// returns its state, with a new random ID. It checks what a commit would:
// p is valid and writable by the caller's Policy, no parent of p is a
// file, p is not a folder, p holds no file unless opts.Overwrite, and
// opts.Size fits the Quota (the bytes of unfinished uploads count against
// it until they finish or expire). Errors: fs.ErrInvalid (bad path, size
// or metadata), fs.ErrPermission, fs.ErrExist, ErrIsFolder, ErrNotFolder,
// ErrQuotaExceeded, ErrTooManyHandles (the participant's
// ResumableLimits.PerParticipant), fs.ErrClosed after Shutdown.
func (e *Engine) CreateResumable(ctx context.Context, p string, opts ResumableOptions) (Resumable, error) {
	return Resumable{}, errResumableStub
}

// Resumable returns the state of upload id. An unknown, finished, aborted
// or expired id fails with fs.ErrNotExist, as does one whose path the
// caller's Policy may no longer write.
func (e *Engine) Resumable(ctx context.Context, id string) (Resumable, error) {
	return Resumable{}, errResumableStub
}

// WriteResumable appends the bytes of r to upload id at offset, which
// must be its Offset (else ErrConflict), and returns its new state. The
// bytes r yields before an error are kept: a cut connection loses
// nothing it delivered. More bytes than the upload's Size fail with
// fs.ErrInvalid, keeping none of them. It does not commit (see
// CommitResumable). Errors also as Resumable's, and the store's.
func (e *Engine) WriteResumable(ctx context.Context, id string, offset int64, r io.Reader) (Resumable, error) {
	return Resumable{}, errResumableStub
}

// CommitResumable makes a complete upload (Offset == Size) the file at
// its path, atomically, publishing one file.updated, and forgets the
// upload. An incomplete upload fails with ErrConflict; a file that
// appeared at the path of an upload without Overwrite with fs.ErrExist
// (the upload is kept, and may be aborted); the Policy and the Quota are
// checked again.
func (e *Engine) CommitResumable(ctx context.Context, id string) (Entry, error) {
	return Entry{}, errResumableStub
}

// AbortResumable removes upload id and its bytes. Errors as Resumable's.
func (e *Engine) AbortResumable(ctx context.Context, id string) error {
	return errResumableStub
}
