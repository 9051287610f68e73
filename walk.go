package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"

	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// Walk yields every file and folder beneath the folder dir ("" or "/" for
// the whole store), depth-first: each folder's children in List order, a
// folder right before its contents. It holds one listing per level of
// depth, never the whole tree. A folder that vanishes while Walk runs is
// skipped. Errors are yielded once, and then Walk stops: fs.ErrInvalid
// for a bad dir, fs.ErrNotExist for a missing one, ErrNotFolder for a
// file, fs.ErrClosed after Shutdown, or the error of a listing below, as
// *fs.PathError values with the operation "walk" on dir; with a Policy in
// ctx, Walk yields only what List would show at each level, and a dir it
// shows nothing of yields an *AccessError. Stopping the loop
// early is fine. A Walk that has begun runs to its end across a Shutdown.
// Each range over the sequence is one call in Stats and metrics, and one
// span, from its start to its end (its loop's too: a loop body's time
// counts in it).
func (e *Engine) Walk(ctx context.Context, dir string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		wctx, call := e.tel.Start(ctx, telemetry.Walk, dir)
		var err error
		defer call.End(&err)
		clean, err := e.enter("walk", dir, roompath.TargetAny)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		defer e.inflight.Done()
		for en, lerr := range e.walkSeen(gateOf(wctx), clean) {
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

// walkClean is Walk of a clean path inside an admitted operation, seeing
// everything. Its one error is the backend's, naming the folder below dir
// that failed.
func (e *Engine) walkClean(ctx context.Context, clean string) iter.Seq2[Entry, error] {
	return e.walkSeen(gate{ctx: ctx}, clean)
}

// walkSeen is walkClean through a gate: only what the participant may
// see (see listSeen), and an *AccessError when that is nothing.
func (e *Engine) walkSeen(g gate, clean string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		g = g.memoized()
		children, err := e.listSeen(g, clean, 0)
		if err != nil {
			yield(Entry{}, err)
			return
		}
		if !g.open() {
			// Beneath a folder whose every path is readable, nothing
			// needs to be filtered.
			if s, err := g.beneath(Read, clean); err == nil && s.All {
				g.p = nil
			}
		}
		e.walk(g, children, yield)
	}
}

// walk yields level and what lies below it, filtered through the gate;
// false means stop.
func (e *Engine) walk(g gate, level []Entry, yield func(Entry, error) bool) bool {
	for _, c := range level {
		if !yield(c, nil) {
			return false
		}
		if !c.IsFolder {
			continue
		}
		below, err := e.list(g.ctx, c.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNotFolder):
			continue // gone, or replaced by a file, since its parent was listed
		case err != nil:
			yield(Entry{}, fmt.Errorf("listing %s: %w", c.Path, err))
			return false
		}
		sub := g
		if !g.open() {
			s, err := g.beneath(Read, c.Path)
			if err == nil && s.All {
				sub.p = nil
			} else if err == nil {
				below, err = e.filter(g, below)
			}
			if err != nil {
				yield(Entry{}, err)
				return false
			}
		}
		if !e.walk(sub, below, yield) {
			return false
		}
	}
	return true
}
