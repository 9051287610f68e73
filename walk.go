package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
)

// Walk yields every file and folder beneath the folder dir ("" or "/" for
// the whole store), depth-first: each folder's children in List order, a
// folder right before its contents. It holds one listing per level of
// depth, never the whole tree. A folder that vanishes while Walk runs is
// skipped. Errors are yielded once, and then Walk stops: fs.ErrInvalid
// for a bad dir, fs.ErrNotExist for a missing one, ErrNotFolder for a
// file, fs.ErrClosed after Shutdown, or the error of a listing below, as
// *fs.PathError values with the operation "walk" on dir. Stopping the loop
// early is fine. A Walk that has begun runs to its end across a Shutdown.
// Each range over the sequence is one call in Stats and metrics, and one
// span, from its start to its end (its loop's too: a loop body's time
// counts in it).
func (e *Engine) Walk(ctx context.Context, dir string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		wctx, call := e.tel.Start(ctx, telemetry.Walk, dir)
		var err error
		defer call.End(&err)
		clean, err := e.enter("walk", dir, backend.TargetAny)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		defer e.inflight.Done()
		for en, lerr := range e.walkClean(wctx, clean) {
			if lerr != nil {
				err = pathError("walk", dir, lerr)
				yield(Entry{}, err)
				return
			}
			if !yield(en, nil) {
				return
			}
		}
	}
}

// walkClean is Walk of a clean path inside an admitted operation. Its one
// error is the backend's, naming the folder below dir that failed.
func (e *Engine) walkClean(ctx context.Context, clean string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		children, err := e.list(ctx, clean)
		if err != nil {
			yield(Entry{}, err)
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
		below, err := e.list(ctx, c.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNotFolder):
			continue // gone, or replaced by a file, since its parent was listed
		case err != nil:
			yield(Entry{}, fmt.Errorf("listing %s: %w", c.Path, err))
			return false
		}
		if !e.walk(ctx, below, yield) {
			return false
		}
	}
	return true
}
