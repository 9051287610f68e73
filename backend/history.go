package backend

import (
	"context"
	"io"
	"iter"
	"time"
	"unicode/utf8"
)

// Reasons a version stopped being current (Version.Reason, Keep.Reason).
const (
	ReasonOverwritten = "overwritten"
	ReasonAppended    = "appended"
	ReasonDeleted     = "deleted"
	ReasonMoved       = "moved"
)

// Precondition makes a change conditional on the version of the file it
// changes, checked by the store atomically with the change, so that of
// several processes racing to change one version exactly one wins. A
// failed precondition is ErrPrecondition, and the change has changed
// nothing (a writer's staged bytes are discarded with it).
type Precondition struct {
	// IfMatch, when set, lets the change happen only while the file is
	// the version with this ETag; a missing file fails it.
	IfMatch string
	// IfNoneMatch, when set, lets the change happen only while the file
	// is not the version with this ETag; "*" only while no file is there
	// (a folder, which is no version, fails neither form).
	IfNoneMatch string
}

// Keep asks a change to keep the version of the file it replaces (by an
// overwrite, an append, a removal or a move) as a past version of its
// path, atomically with the change: a crash never leaves the change
// without its kept version. A kept version made for a change that then
// did not happen (the change failed, or the process died before it) has
// the ETag of the path's current file: the Engine never shows such a
// version and removes it once it is older than its grace (see Forget).
// Where no file was replaced, nothing is kept.
type Keep struct {
	// Reason is one of the Reason constants; Move keeps the source's
	// version with ReasonMoved and a replaced destination's with
	// ReasonOverwritten whatever Reason says.
	Reason string
	// Participant is who made the change ("" when unknown). A store may
	// cut an identifier longer than MaxKeptParticipant bytes to that
	// length.
	Participant string
	// Retain, when positive, asks a store that implements Retainer to
	// forget, once the change is made and in the same step, the oldest
	// kept versions of each path the change kept one of, beyond Retain.
	// Other stores ignore it.
	Retain int
}

// Retainer is implemented by stores that honour Keep.Retain, cheaply and
// under the lock that orders the changes of a path (disk, memory), so
// that the Engine need not list a path's versions after each change to
// apply its retention. RetainsKept reports whether this store does.
type Retainer interface {
	RetainsKept() bool
}

// MaxKeptParticipant is the longest participant identifier every store
// keeps whole with a version.
const MaxKeptParticipant = 128

// Version is a past version of a file, kept under the reserved prefix:
// never listed by List, never reported by a Watcher or a Scanner.
type Version struct {
	// Path is the path of the file it was a version of.
	Path string
	// ID names the version among those of its path: opaque, made of
	// ASCII letters, digits, '-', '_' and '.', at most 255 bytes, never
	// starting with '.', stable while the version is kept.
	ID string
	// ETag is the ETag the version had while it was current.
	ETag string
	// Size is its length in bytes.
	Size int64
	// ModTime is when it was committed.
	ModTime time.Time
	// Replaced is when it stopped being current.
	Replaced time.Time
	// Participant is who replaced it, as Keep said.
	Participant string
	// Reason is why, as Keep said.
	Reason string
}

// History is the part of the Backend contract that keeps past versions
// (see Keep). Every method takes clean paths, as Backend's do.
type History interface {
	// Versions yields the kept versions of the file at path, in any
	// order, whether or not a file is at path now; a path with none
	// yields nothing.
	Versions(ctx context.Context, path string) iter.Seq2[Version, error]
	// Kept yields the kept versions of every path at or beneath dir (""
	// the whole store), in any order, paging internally so that memory
	// does not grow with the store; a failed page yields one error and
	// ends the sequence. Each has Path, ID, ETag, Size, Replaced and
	// Reason; Participant and ModTime may be left empty where the store's
	// listings do not carry them (Versions and ReadVersion tell all).
	Kept(ctx context.Context, dir string) iter.Seq2[Version, error]
	// ReadVersion streams length bytes (length < 0: to the end) of the
	// kept version id of path from offset, as Read does, with its
	// description. An unknown id yields fs.ErrNotExist.
	ReadVersion(ctx context.Context, path, id string, offset, length int64) (io.ReadCloser, Version, error)
	// Forget removes the kept version id of path; an unknown one yields
	// fs.ErrNotExist. A reader of it already open may go on reading.
	Forget(ctx context.Context, path, id string) error
}

// RemoveOptions tune Remove.
type RemoveOptions struct {
	// IfMatch, when set, removes the file only while it is the version
	// with this ETag (else ErrPrecondition).
	IfMatch string
	// Keep, when set, keeps the removed version (see Keep).
	Keep *Keep
}

// Check returns ErrPrecondition unless p holds for the file at a path:
// exists says whether a file is there, and etag is its ETag. A store
// that can hold the file still (under a lock) while it changes it calls
// Check under that lock.
func (p Precondition) Check(exists bool, etag string) error {
	switch {
	case p.IfMatch != "" && (!exists || etag != p.IfMatch):
		return ErrPrecondition
	case p.IfNoneMatch == "*" && exists:
		return ErrPrecondition
	case p.IfNoneMatch != "" && p.IfNoneMatch != "*" && exists && etag == p.IfNoneMatch:
		return ErrPrecondition
	}
	return nil
}

// KeptParticipant returns id cut to MaxKeptParticipant bytes, at a
// character boundary.
func KeptParticipant(id string) string {
	if len(id) <= MaxKeptParticipant {
		return id
	}
	cut := MaxKeptParticipant
	for cut > 0 && !utf8.RuneStart(id[cut]) {
		cut--
	}
	return id[:cut]
}
