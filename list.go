package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"strings"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// List returns the direct children of the folder at path ("" or "/" for
// the root), ordered bytewise by name with a folder's name taken as ending
// in "/". The root of an empty store lists empty; a missing folder yields
// fs.ErrNotExist and a file ErrNotFolder. With a Policy in ctx, List
// returns only the entries it lets be read (a folder while a readable
// file lies beneath it), and a folder it shows nothing of yields an
// *AccessError.
func (e *Engine) List(ctx context.Context, p string) (_ []Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.List, p)
	defer call.End(&err)
	clean, err := e.enter("list", p, roompath.TargetAny)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	out, err := e.listSeen(gateOf(ctx), clean, 0)
	if err != nil {
		return nil, pathError("list", p, err)
	}
	return out, nil
}

// ListMax is List for a caller that takes at most max entries (max >= 1):
// a folder that holds more (counted before the Policy of ctx leaves any
// out) fails with ErrTooManyEntries once max+1 have been read, so that
// the work and memory of one listing stay bounded whatever the folder
// holds. It fails otherwise as List does, and with fs.ErrInvalid for a max
// below 1.
func (e *Engine) ListMax(ctx context.Context, p string, max int) (_ []Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.List, p)
	defer call.End(&err)
	if max < 1 {
		return nil, &fs.PathError{Op: "list", Path: p, Err: fmt.Errorf("%w: max %d entries", fs.ErrInvalid, max)}
	}
	clean, err := e.enter("list", p, roompath.TargetAny)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	out, err := e.listSeen(gateOf(ctx), clean, max)
	if err != nil {
		return nil, pathError("list", p, err)
	}
	return out, nil
}

// listSeen is list through a gate: what the participant may see of the
// folder clean, a folder it sees nothing in being, for it, not there
// (see Engine.see): fs.ErrNotExist or an *AccessError.
func (e *Engine) listSeen(g gate, clean string, max int) ([]Entry, error) {
	if g.open() {
		return e.listMax(g.ctx, clean, max)
	}
	g = g.memoized()
	s, err := g.beneath(Read, clean)
	switch {
	case err != nil:
		return nil, err
	case s.Empty():
		// Nothing beneath may be seen, so nothing is listed.
		v, err := g.hidden(clean)
		if v == seenAbsent && clean != "" {
			return nil, fs.ErrNotExist
		}
		return nil, refused(Read, err)
	}
	out, err := e.listMax(g.ctx, clean, max)
	switch {
	case err != nil && errors.Is(err, ErrTooManyEntries):
		return nil, err
	case err != nil && errors.Is(err, ErrNotFolder):
		// A file: said so only to a participant that may read it.
		ok, aerr := g.allowed(Read, clean)
		switch {
		case aerr != nil:
			return nil, aerr
		case ok:
			return nil, err
		case s.All:
			return nil, fs.ErrNotExist
		}
		return nil, &AccessError{Right: Read}
	case err != nil:
		// Nothing there, or the store failed: said only to a participant
		// that may read what would be there.
		if ok, aerr := g.allowed(Read, clean); aerr != nil || !(ok || s.All) {
			return nil, refused(Read, aerr)
		}
		return nil, err
	case s.All:
		return out, nil
	}
	if out, err = e.filter(g, out); err != nil {
		return nil, err
	}
	if len(out) == 0 && clean != "" {
		v, err := g.hidden(clean)
		if v == seenAbsent {
			return nil, fs.ErrNotExist
		}
		return nil, refused(Read, err)
	}
	return out, nil
}

// list is List of a clean path inside an admitted operation, with the
// backend's error.
func (e *Engine) list(ctx context.Context, clean string) ([]Entry, error) {
	return e.listMax(ctx, clean, 0)
}

// listMax is list that fails with ErrTooManyEntries past max entries (0:
// no bound), having read max+1.
func (e *Engine) listMax(ctx context.Context, clean string, max int) ([]Entry, error) {
	out, err := collect(e.b.List(ctx, clean), max)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 && clean != "" {
		info, err := e.b.Stat(ctx, clean)
		switch {
		case err != nil:
			return nil, err
		case !info.IsFolder:
			return nil, ErrNotFolder
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(sortKey(a), sortKey(b)) })
	return out, nil
}

func collect(seq iter.Seq2[backend.Info, error], max int) ([]Entry, error) {
	var out []Entry
	for info, err := range seq {
		if err != nil {
			return nil, err
		}
		if max > 0 && len(out) == max {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyEntries, max)
		}
		out = append(out, entry(info))
	}
	return out, nil
}

func sortKey(e Entry) string {
	if e.IsFolder {
		return e.Name + "/"
	}
	return e.Name
}
