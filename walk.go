package roomstore

import (
	"context"
	"errors"
	"io/fs"
	"iter"
)

// Walk yields every file and folder beneath the folder dir ("" or "/" for
// the whole store), depth-first: each folder's children in List order, a
// folder right before its contents. It holds one listing per level of
// depth, never the whole tree. A folder that vanishes while Walk runs is
// skipped. Errors are yielded once, and then Walk stops: fs.ErrInvalid
// for a bad dir, fs.ErrNotExist for a missing one, ErrNotFolder for a
// file, or the error of a listing below, as *fs.PathError values with
// the operation "walk" and the folder's path. Stopping the loop early is
// fine.
func (e *Engine) Walk(ctx context.Context, dir string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		children, err := e.List(ctx, dir)
		if err != nil {
			yield(Entry{}, reop("walk", err))
			return
		}
		e.walk(ctx, children, yield)
	}
}

// walk yields level and what lies below it; false means stop.
func (e *Engine) walk(ctx context.Context, level []Entry, yield func(Entry, error) bool) bool {
	for _, c := range level {
		if !yield(c, nil) {
			return false
		}
		if !c.IsFolder {
			continue
		}
		below, err := e.List(ctx, c.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNotFolder):
			continue // gone, or replaced by a file, since its parent was listed
		case err != nil:
			yield(Entry{}, reop("walk", err))
			return false
		}
		if !e.walk(ctx, below, yield) {
			return false
		}
	}
	return true
}
