package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// MoveOptions say how Move treats what is at the destination.
type MoveOptions struct {
	// Overwrite lets a moved file replace a file at its destination (and a
	// moved folder merge into an existing folder, its files replacing
	// those of the same name).
	Overwrite bool
	// IfMatch, when set, moves the file at src only while it is the
	// version with this ETag, atomically with the move, also against the
	// other engines of the store; otherwise Move fails with
	// ErrPrecondition and moves nothing (a folder at src fails it too).
	IfMatch string
}

// Move renames the file or folder at src to dst and publishes
// EventFileMoved for every file moved (Event.Path the destination,
// Event.SourcePath the source). Folders that src leaves empty vanish; those
// dst needs appear.
//
// A file moves whole and is never lost: on disk and in memory the move is
// one atomic rename (a reader sees the file at src or at dst, never
// neither); on S3 and GCS it is a server-side copy pinned to src's version
// followed by a removal of src guarded by that version, so an append that
// commits to src meanwhile makes Move try again (up to WithCommitAttempts
// times; the append then moves too) or fail with ErrConflict, src keeping
// every byte. Such a failure, or a ctx that ends, changes nothing, with
// two exceptions on S3 and GCS: with Overwrite, dst may already have been
// replaced by a copy of an earlier version of src (its old content was
// to be replaced anyway; src still holds everything); and when the
// store's answer to the removal of src is lost, Move returns the error
// with the file at dst and possibly also still at src (a copy too many,
// never one too few). A folder moves file by file in Walk order, each file
// as above; the folder as a whole is not atomic on S3 and GCS (a reader may
// see part of it moved), and a Move that fails midway leaves the files it
// moved at dst and the rest at src. A Move runs to its end across a
// Shutdown.
//
// Both paths are validated before anything else, with fs.ErrInvalid for
// an invalid path, the root, a dst with a trailing slash, src equal to
// dst, or one inside the other. Move then fails with fs.ErrNotExist when
// nothing is at src; fs.ErrExist when a file (or, moving a folder, a
// folder) is at dst without Overwrite; ErrIsFolder when a file would
// replace a folder; ErrNotFolder when src is written as a folder ("a/")
// but is a file, when a folder would replace a file, or when a parent of
// dst is a file; ErrConflict as above; ErrPrecondition when src is not
// the version MoveOptions.IfMatch names; and the context's error. With a
// history (see WithHistory), src's version is kept under src (Reason
// "moved"), and a file that an Overwrite replaces at dst under dst. With a
// Policy in ctx, the participant must see src, and Write must be granted
// on src and dst (for a folder, on every file beneath src and on where it
// goes): else Move fails with an *AccessError naming the refused path
// (beneath a folder, only a path the policy lets be read), before
// anything moves; a file refused once the folder's move is under way (one
// added meanwhile) stays where it is, and a conflict at dst with
// something the participant may not see is an *AccessError too.
// Errors are *fs.PathError values on src whose message names dst.
//
// A Move is one call in Stats and metrics, and one span, however many
// files it moves; each file's move counts as a commit attempt (and a
// retried one as a retry) of the operation "move".
func (e *Engine) Move(ctx context.Context, src, dst string, opts MoveOptions) (err error) {
	ctx, call := e.tel.StartMove(ctx, src, dst)
	defer call.End(&err)
	from, err := roompath.Clean(src, roompath.TargetAny)
	if err != nil {
		return &fs.PathError{Op: "move", Path: src, Err: err}
	}
	to, err := roompath.Clean(dst, roompath.TargetAny)
	if err != nil {
		return &fs.PathError{Op: "move", Path: src, Err: fmt.Errorf("destination %q: %w", dst, err)}
	}
	fail := func(err error) error {
		return &fs.PathError{Op: "move", Path: src, Err: fmt.Errorf("to %s: %w", dst, err)}
	}
	switch {
	case from == "" || to == "":
		return fail(fmt.Errorf("%w: the root cannot be moved or replaced", fs.ErrInvalid))
	case folderMeant(dst, to):
		return fail(fmt.Errorf("%w: the destination names the new path itself, without a trailing slash", fs.ErrInvalid))
	case from == to:
		return fail(fmt.Errorf("%w: source and destination are the same", fs.ErrInvalid))
	case strings.HasPrefix(to, from+"/"):
		return fail(fmt.Errorf("%w: a folder cannot move into itself", fs.ErrInvalid))
	case strings.HasPrefix(from, to+"/"):
		return fail(fmt.Errorf("%w: nothing can replace a folder it lies in", fs.ErrInvalid))
	}
	if err := e.begin("move", src); err != nil {
		return err
	}
	defer e.inflight.Done()
	g := gateOf(ctx)
	// Nothing of either path is told to a participant that may write to
	// neither a file there nor anything beneath it.
	for _, q := range []string{from, to} {
		if err := g.reaches(Write, q, false); err != nil {
			return fail(err)
		}
	}
	info, err := e.b.Stat(ctx, from)
	if err != nil && !g.open() {
		// That nothing is there is told only to whoever may see it.
		if v, verr := e.see(g.memoized(), from, info, err); v == seenNothing {
			return fail(named(refused(Write, verr), from))
		}
	}
	switch {
	case err != nil:
		return fail(err)
	case !info.IsFolder:
		if !g.open() {
			switch v, verr := e.see(g.memoized(), from, info, nil); v {
			case seenNothing:
				return fail(named(refused(Write, verr), from))
			case seenAbsent:
				return fail(fs.ErrNotExist) // for this participant nothing is there
			}
		}
		for _, q := range []string{from, to} {
			if err := g.check(Write, q); err != nil {
				return fail(named(err, q))
			}
		}
		if folderMeant(src, from) {
			return fail(ErrNotFolder)
		}
		err = e.moveFile(ctx, from, to, opts)
	case opts.IfMatch != "":
		err = fmt.Errorf("%w: a folder is no version of a file", ErrPrecondition)
	default:
		perFile, werr := e.treeWritable(g, from, to)
		if werr != nil {
			return fail(werr)
		}
		err = e.moveFolder(ctx, g, perFile, from, to, opts)
	}
	if err != nil {
		return fail(named(e.masked(g, to, err), to))
	}
	return nil
}

// moveFile moves one file, retrying a move that lost a race with a commit
// to src. The checks an object store cannot make atomically (dst's
// parents) come first; the backend makes the others.
func (e *Engine) moveFile(ctx context.Context, src, dst string, opts MoveOptions) error {
	if err := e.checkParents(ctx, dst); err != nil {
		return err
	}
	unlock, err := e.lockPair(ctx, src, dst)
	if err != nil {
		return err
	}
	defer func() { unlock() }()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := e.b.Move(ctx, src, dst, backend.MoveOptions{Overwrite: opts.Overwrite, IfMatch: opts.IfMatch, Keep: e.keep(ctx, backend.ReasonMoved)})
		conflict := err != nil && errors.Is(err, ErrConflict)
		retry := conflict && attempt < e.cfg.attempts
		e.tel.Attempt(ctx, telemetry.Move, conflict, retry)
		if err == nil {
			e.publishEvent(ctx, events.Event{Type: EventFileMoved, Path: dst, SourcePath: src, Size: info.Size, ETag: info.ETag})
			unlock()
			unlock = func() {}
			e.trim(ctx, src)
			if opts.Overwrite {
				e.trim(ctx, dst)
			}
			return nil
		}
		if !retry {
			return err
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// moveFolder moves every file beneath src to the same place beneath dst;
// with perFile, only those the gate lets be moved now.
func (e *Engine) moveFolder(ctx context.Context, g gate, perFile bool, src, dst string, opts MoveOptions) error {
	info, err := e.b.Stat(ctx, dst)
	switch {
	case err == nil && !info.IsFolder:
		return fmt.Errorf("%w: a folder cannot replace a file", ErrNotFolder)
	case err == nil && !opts.Overwrite:
		return fs.ErrExist
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	for entry, err := range e.walkClean(ctx, src) {
		if err != nil {
			return err
		}
		if entry.IsFolder {
			continue
		}
		if perFile {
			ok, err := g.treeFileWritable(entry.Path, src, dst)
			if err != nil {
				return err
			}
			if !ok {
				continue // refused since the check: left where it is
			}
		}
		err := e.moveFile(ctx, entry.Path, dst+entry.Path[len(src):], opts)
		if errors.Is(err, fs.ErrNotExist) { // removed meanwhile: nothing to move
			continue
		}
		if err != nil {
			return fmt.Errorf("moving %s: %w", entry.Path, err)
		}
	}
	return nil
}

// lockPair takes the engine's stripes of two paths, lower first so that
// two moves never wait for each other crosswise, and a shared one once.
func (e *Engine) lockPair(ctx context.Context, p, q string) (func(), error) {
	a, b := e.stripeIndex(p), e.stripeIndex(q)
	if a > b {
		a, b = b, a
	}
	if err := e.lockStripe(ctx, a); err != nil {
		return nil, err
	}
	if a == b {
		return e.stripes[a].unlock, nil
	}
	if err := e.lockStripe(ctx, b); err != nil {
		e.stripes[a].unlock()
		return nil, err
	}
	return func() { e.stripes[b].unlock(); e.stripes[a].unlock() }, nil
}
