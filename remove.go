package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// DeleteOptions make a Delete or a RemoveAll conditional.
type DeleteOptions struct {
	// IfMatch, when set, removes the file only while it is the version
	// with this ETag, atomically with the removal, also against the other
	// engines of the store; otherwise the call fails with ErrPrecondition
	// and removes nothing. A RemoveAll with IfMatch removes a file only:
	// on a folder or a missing path it fails so too.
	IfMatch string
}

// deleteOptions is the one DeleteOptions of a variadic argument.
func deleteOptions(op, p string, opts []DeleteOptions) (DeleteOptions, error) {
	switch len(opts) {
	case 0:
		return DeleteOptions{}, nil
	case 1:
		return opts[0], nil
	}
	return DeleteOptions{}, &fs.PathError{Op: op, Path: p, Err: fmt.Errorf("%w: %d DeleteOptions, at most one", fs.ErrInvalid, len(opts))}
}

// Delete removes the file at path and publishes EventFileDeleted; with a
// history (see WithHistory), the removed version is kept and Restore
// brings it back. At most one DeleteOptions may make it conditional. A
// missing file yields fs.ErrNotExist and no event; a folder yields
// ErrIsFolder (see RemoveAll); a file that is not the version
// DeleteOptions.IfMatch names, ErrPrecondition; a file the Policy of ctx
// does not let be written, an *AccessError.
func (e *Engine) Delete(ctx context.Context, p string, opts ...DeleteOptions) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Delete, p)
	defer call.End(&err)
	clean, err := e.enter("delete", p, roompath.TargetFile)
	if err != nil {
		return err
	}
	defer e.inflight.Done()
	o, err := deleteOptions("delete", p, opts)
	if err != nil {
		return err
	}
	if err := gateOf(ctx).check(Write, clean); err != nil {
		return pathError("delete", p, err)
	}
	if err := e.remove(ctx, clean, o.IfMatch); err != nil {
		return pathError("delete", p, err)
	}
	return nil
}

// remove removes the file at clean, while it is the version ifMatch
// names when that is set.
func (e *Engine) remove(ctx context.Context, clean, ifMatch string) error {
	i := e.stripeIndex(clean)
	if err := e.lockStripe(ctx, i); err != nil {
		return err
	}
	err := e.b.Remove(ctx, clean, backend.RemoveOptions{IfMatch: ifMatch, Keep: e.keep(ctx, backend.ReasonDeleted)})
	if err == nil {
		e.publish(ctx, EventFileDeleted, clean, 0, "")
	}
	e.stripes[i].unlock()
	if err == nil {
		e.trim(ctx, clean)
	}
	return err
}

// RemoveAll removes the file at path, or every file in the folder at path
// and below (the whole store for the root), publishing EventFileDeleted for
// each file removed. A missing path is not an error, as with os.RemoveAll.
// With a Policy in ctx, every file must be writable: if one is not,
// nothing is removed and the *AccessError names that file when the policy
// lets it be read (a file that appears meanwhile where the policy refuses
// Write is left); a missing path outside what the policy lets be written
// yields an *AccessError too.
//
// With DeleteOptions.IfMatch (at most one DeleteOptions), RemoveAll
// removes the file at path only while it is that version, and fails with
// ErrPrecondition otherwise: when it changed, is missing or is a folder.
func (e *Engine) RemoveAll(ctx context.Context, p string, opts ...DeleteOptions) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.RemoveAll, p)
	defer call.End(&err)
	clean, err := e.enter(opRemoveAll, p, roompath.TargetAny)
	if err != nil {
		return err
	}
	defer e.inflight.Done()
	o, err := deleteOptions(opRemoveAll, p, opts)
	if err != nil {
		return err
	}
	if err := e.removeTree(ctx, gateOf(ctx), clean, folderMeant(p, clean), o.IfMatch); err != nil {
		return pathError(opRemoveAll, p, err)
	}
	return nil
}

// removeTree removes clean: a file (unless folderOnly) or a folder tree,
// each file only if the gate lets it be written. When one may not be,
// nothing is removed (see treeWritable); a file that a policy refuses
// once the removal is under way (one added meanwhile) is left.
func (e *Engine) removeTree(ctx context.Context, g gate, clean string, folderOnly bool, ifMatch string) error {
	if clean != "" {
		info, err := e.b.Stat(ctx, clean)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if werr := unnamed(g.reaches(Write, clean, true), clean); werr != nil || ifMatch == "" {
				return werr
			}
			return ErrPrecondition
		case err != nil:
			if werr := unnamed(g.reaches(Write, clean, true), clean); werr != nil {
				return werr
			}
			return err
		case !info.IsFolder:
			if err := g.check(Write, clean); err != nil {
				if v, _ := e.see(g.memoized(), clean, info, nil); v == seenAbsent {
					return nil // for this participant nothing is there
				}
				return err
			}
			if folderOnly {
				return ErrNotFolder
			}
			err := e.remove(ctx, clean, ifMatch)
			if ifMatch != "" && errors.Is(err, fs.ErrNotExist) {
				return ErrPrecondition // removed meanwhile: not that version
			}
			return ignoreNotExist(err)
		}
	}
	if ifMatch != "" {
		if err := g.check(Write, clean); err != nil {
			return err
		}
		return fmt.Errorf("%w: a folder is no version of a file", ErrPrecondition)
	}
	perFile, err := e.treeWritable(g, clean, "")
	if err != nil {
		return err
	}
	for c, err := range e.walkClean(ctx, clean) {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // removed meanwhile
		case err != nil:
			return err
		case c.IsFolder:
			continue
		case perFile:
			ok, err := g.treeFileWritable(c.Path, clean, "")
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		if err := ignoreNotExist(e.remove(ctx, c.Path, "")); err != nil {
			return err
		}
	}
	return nil
}

// ignoreNotExist treats a file that vanished meanwhile as removed.
func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
