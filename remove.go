package roomstore

import (
	"context"
	"errors"
	"io/fs"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// Delete removes the file at path and publishes EventFileDeleted. A missing
// file yields fs.ErrNotExist and no event; a folder yields ErrIsFolder (see
// RemoveAll); a file the Policy of ctx does not let be written, an
// *AccessError.
func (e *Engine) Delete(ctx context.Context, p string) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Delete, p)
	defer call.End(&err)
	clean, err := e.enter("delete", p, roompath.TargetFile)
	if err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := gateOf(ctx).check(Write, clean); err != nil {
		return pathError("delete", p, err)
	}
	if err := e.remove(ctx, clean); err != nil {
		return pathError("delete", p, err)
	}
	return nil
}

func (e *Engine) remove(ctx context.Context, clean string) error {
	i := e.stripeIndex(clean)
	if err := e.lockStripe(ctx, i); err != nil {
		return err
	}
	defer e.stripes[i].unlock()
	if err := e.b.Remove(ctx, clean, backend.RemoveOptions{}); err != nil {
		return err
	}
	e.publish(ctx, EventFileDeleted, clean, 0, "")
	return nil
}

// RemoveAll removes the file at path, or every file in the folder at path
// and below (the whole store for the root), publishing EventFileDeleted for
// each file removed. A missing path is not an error, as with os.RemoveAll.
// With a Policy in ctx, every file must be writable: if one is not,
// nothing is removed and the *AccessError names that file when the policy
// lets it be read (a file that appears meanwhile where the policy refuses
// Write is left); a missing path outside what the policy lets be written
// yields an *AccessError too.
func (e *Engine) RemoveAll(ctx context.Context, p string) (err error) {
	ctx, call := e.tel.Start(ctx, telemetry.RemoveAll, p)
	defer call.End(&err)
	clean, err := e.enter(opRemoveAll, p, roompath.TargetAny)
	if err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := e.removeTree(ctx, gateOf(ctx), clean, folderMeant(p, clean)); err != nil {
		return pathError(opRemoveAll, p, err)
	}
	return nil
}

// removeTree removes clean: a file (unless folderOnly) or a folder tree,
// each file only if the gate lets it be written. When one may not be,
// nothing is removed (see treeWritable); a file that a policy refuses
// once the removal is under way (one added meanwhile) is left.
func (e *Engine) removeTree(ctx context.Context, g gate, clean string, folderOnly bool) error {
	if clean != "" {
		info, err := e.b.Stat(ctx, clean)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return unnamed(g.reaches(Write, clean, true), clean)
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
			return ignoreNotExist(e.remove(ctx, clean))
		}
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
		if err := ignoreNotExist(e.remove(ctx, c.Path)); err != nil {
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
