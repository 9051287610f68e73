package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

// moved checks that exactly one file.moved event arrived for dst, from
// src, by alice, with size, and that the move published nothing else.
func (e *env) moved(t *testing.T, src, dst string, size int64) {
	t.Helper()
	evs := e.await(t, roomstore.EventFileMoved, dst, 1)
	if len(evs) != 1 || evs[0].SourcePath != src || evs[0].ParticipantID != "alice" || evs[0].Size != size {
		t.Fatalf("file.moved events of %q: %+v, want one from %q by alice of %d bytes", dst, evs, src, size)
	}
	for _, ev := range e.rec.snapshot() {
		if (ev.Path == src || ev.Path == dst) && ev.Type == roomstore.EventFileDeleted {
			t.Fatalf("the move published %+v", ev)
		}
	}
}

var moveCases = []tcase{
	{"move renames a file with one file.moved event and prunes and makes folders", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		data := pattern(3000, 1)
		e.put(t, "a/x.txt", data, overwrite)
		before, err := e.Stat(e.ctx, "a/x.txt")
		noErr(t, "Stat", err)
		noErr(t, "Move", e.Move(e.ctx, "a/x.txt", "b/c/y.txt", roomstore.MoveOptions{}))
		e.mustContain(t, "b/c/y.txt", data)
		e.mustBeAbsent(t, "a/x.txt")
		e.mustBeAbsent(t, "a")
		if got := e.names(t, ""); !slices.Equal(got, []string{"b/"}) {
			t.Fatalf("root lists %v after the move, want [b/]", got)
		}
		after, err := e.Stat(e.ctx, "b/c/y.txt")
		noErr(t, "Stat", err)
		if after.Size != before.Size || after.Name != "y.txt" || after.ETag == "" {
			t.Fatalf("moved file %+v, was %+v", after, before)
		}
		e.moved(t, "a/x.txt", "b/c/y.txt", int64(len(data)))
	}},
	{"move onto an existing file needs overwrite", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "src", []byte("new"), overwrite)
		e.put(t, "dst", []byte("old"), overwrite)
		wantErr(t, "Move without Overwrite", e.Move(e.ctx, "src", "dst", roomstore.MoveOptions{}), fs.ErrExist)
		e.mustContain(t, "src", []byte("new"))
		e.mustContain(t, "dst", []byte("old"))
		noErr(t, "Move with Overwrite", e.Move(e.ctx, "src", "dst", roomstore.MoveOptions{Overwrite: true}))
		e.mustContain(t, "dst", []byte("new"))
		e.mustBeAbsent(t, "src")
		e.moved(t, "src", "dst", 3)
	}},
	{"move of a missing source is not-exist and changes nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "dst", []byte("keep"), overwrite)
		e.await(t, roomstore.EventFileUpdated, "dst", 1)
		for _, src := range []string{"nope", "dir/nope", "dst/below"} {
			wantErr(t, "Move "+src, e.Move(e.ctx, src, "other", roomstore.MoveOptions{Overwrite: true}), fs.ErrNotExist)
		}
		e.mustContain(t, "dst", []byte("keep"))
		e.mustBeAbsent(t, "other")
		e.barrier(t)
		if evs := e.rec.matching(roomstore.EventFileMoved, "other"); len(evs) > 0 {
			t.Fatalf("failed moves published %+v", evs)
		}
	}},
	{"a file cannot replace a folder nor go below a file", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "src", []byte("s"), overwrite)
		e.put(t, "d/inner", []byte("i"), overwrite)
		e.put(t, "f", []byte("f"), overwrite)
		for _, o := range []roomstore.MoveOptions{{}, {Overwrite: true}} {
			wantErr(t, "Move onto a folder", e.Move(e.ctx, "src", "d", o), roomstore.ErrIsFolder)
			wantErr(t, "Move below a file", e.Move(e.ctx, "src", "f/x", o), roomstore.ErrNotFolder)
			wantErr(t, "Move below a file, deeper", e.Move(e.ctx, "src", "f/x/y", o), roomstore.ErrNotFolder)
		}
		wantErr(t, "Move of a file named as a folder", e.Move(e.ctx, "src/", "elsewhere", roomstore.MoveOptions{}), roomstore.ErrNotFolder)
		e.mustContain(t, "src", []byte("s"))
		e.mustContain(t, "d/inner", []byte("i"))
		e.mustContain(t, "f", []byte("f"))
		if got := e.names(t, ""); !slices.Equal(got, []string{"d/", "f", "src"}) {
			t.Fatalf("root lists %v, want [d/ f src]", got)
		}
	}},
	{"move of a folder moves every file beneath with one event each", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		files := map[string][]byte{"a/1": []byte("one"), "a/b/2": []byte("two"), "a/b/c/3": []byte("three")}
		for p, d := range files {
			e.put(t, p, d, overwrite)
		}
		e.put(t, "a-x", []byte("sibling"), overwrite)
		noErr(t, "Move folder", e.Move(e.ctx, "a", "z/a2", roomstore.MoveOptions{}))
		for p, d := range files {
			dst := "z/a2" + strings.TrimPrefix(p, "a")
			e.mustContain(t, dst, d)
			e.mustBeAbsent(t, p)
			e.moved(t, p, dst, int64(len(d)))
		}
		e.mustBeAbsent(t, "a")
		e.mustContain(t, "a-x", []byte("sibling"))
		if got := e.names(t, ""); !slices.Equal(got, []string{"a-x", "z/"}) {
			t.Fatalf("root lists %v, want [a-x z/]", got)
		}
		n := 0
		for _, ev := range e.rec.snapshot() {
			if ev.Type == roomstore.EventFileMoved {
				n++
			}
		}
		if n != len(files) {
			t.Fatalf("%d file.moved events, want %d", n, len(files))
		}
	}},
	{"a folder merges into an existing folder only with overwrite", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "a/same", []byte("from a"), overwrite)
		e.put(t, "a/only-a", []byte("a"), overwrite)
		e.put(t, "b/same", []byte("from b"), overwrite)
		e.put(t, "b/only-b", []byte("b"), overwrite)
		e.put(t, "file", []byte("f"), overwrite)
		wantErr(t, "Move onto a folder", e.Move(e.ctx, "a", "b", roomstore.MoveOptions{}), fs.ErrExist)
		wantErr(t, "Move of a folder onto a file", e.Move(e.ctx, "a", "file", roomstore.MoveOptions{Overwrite: true}), roomstore.ErrNotFolder)
		e.mustContain(t, "a/same", []byte("from a"))
		e.mustContain(t, "b/same", []byte("from b"))
		noErr(t, "Move with Overwrite", e.Move(e.ctx, "a", "b", roomstore.MoveOptions{Overwrite: true}))
		e.mustContain(t, "b/same", []byte("from a"))
		e.mustContain(t, "b/only-a", []byte("a"))
		e.mustContain(t, "b/only-b", []byte("b"))
		e.mustBeAbsent(t, "a")
	}},
	{"invalid paths for source or destination are rejected before any backend call", func(t *testing.T, h Harness) {
		b := &counting{Backend: h.New(t)}
		e := newEnv(t, b)
		e.put(t, "ok", []byte("x"), overwrite)
		e.put(t, "dir/f", []byte("y"), overwrite)
		b.reset()
		for _, p := range invalidPaths {
			wantErr(t, "Move from "+p, e.Move(e.ctx, p, "new", roomstore.MoveOptions{}), fs.ErrInvalid)
			wantErr(t, "Move to "+p, e.Move(e.ctx, "ok", p, roomstore.MoveOptions{Overwrite: true}), fs.ErrInvalid)
		}
		wantErr(t, "Move to a path with a trailing slash", e.Move(e.ctx, "ok", "new/", roomstore.MoveOptions{}), fs.ErrInvalid)
		wantErr(t, "Move of a file onto the folder it lies in", e.Move(e.ctx, "dir/f", "dir", roomstore.MoveOptions{Overwrite: true}), fs.ErrInvalid)
		for _, root := range []string{"", "/", "."} {
			wantErr(t, "Move of the root", e.Move(e.ctx, root, "new", roomstore.MoveOptions{}), fs.ErrInvalid)
			wantErr(t, "Move onto the root", e.Move(e.ctx, "ok", root, roomstore.MoveOptions{Overwrite: true}), fs.ErrInvalid)
		}
		wantErr(t, "Move onto itself", e.Move(e.ctx, "ok", "/ok", roomstore.MoveOptions{Overwrite: true}), fs.ErrInvalid)
		wantErr(t, "Move of a folder into itself", e.Move(e.ctx, "dir", "dir/sub", roomstore.MoveOptions{}), fs.ErrInvalid)
		if n := b.calls.Load(); n != 0 {
			t.Fatalf("invalid moves made %d backend calls, want 0", n)
		}
		e.mustContain(t, "ok", []byte("x"))
		e.mustContain(t, "dir/f", []byte("y"))
		if got := e.names(t, ""); !slices.Equal(got, []string{"dir/", "ok"}) {
			t.Fatalf("root lists %v, want [dir/ ok]", got)
		}
	}},
	{"a move whose context is cancelled leaves the source and no destination", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "src", []byte("intact"), overwrite)
		e.put(t, "d/1", []byte("one"), overwrite)
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		wantErr(t, "cancelled Move", e.Move(ctx, "src", "dst", roomstore.MoveOptions{}), context.Canceled)
		wantErr(t, "cancelled folder Move", e.Move(ctx, "d", "e", roomstore.MoveOptions{}), context.Canceled)
		e.mustContain(t, "src", []byte("intact"))
		e.mustContain(t, "d/1", []byte("one"))
		e.mustBeAbsent(t, "dst")
		e.mustBeAbsent(t, "e")
	}},
	{"a move racing appends from another engine loses nothing", func(t *testing.T, h Harness) {
		// See Harness.DeletePreconditionRacy for the one store where the
		// appends come from the moving engine itself.
		e1 := fresh(t, h)
		e2 := e1
		if !h.DeletePreconditionRacy {
			e2 = newEnv(t, h.Reopen(t, e1.b))
		}
		const rounds, appends = 6, 6
		var landedAtDst, landedAtSrc, conflicts int
		for r := range rounds {
			src, dst := fmt.Sprintf("src%d", r), fmt.Sprintf("moved/dst%d", r)
			// Odd rounds overwrite a file at dst.
			opts := roomstore.MoveOptions{Overwrite: r%2 == 1}
			if opts.Overwrite {
				e1.put(t, dst, []byte("<old dst>"), overwrite)
			}
			e1.put(t, src, []byte("<base>"), overwrite)
			var wg sync.WaitGroup
			appendErrs := make([]error, appends)
			first := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range appends {
					appendErrs[i] = e2.write(e2.ctx, src, fmt.Appendf(nil, "<%d>", i), roomstore.OpenOptions{})
					if i == 0 {
						close(first)
					}
				}
			}()
			// The move starts once the first append has committed, while
			// the others are on their way.
			select {
			case <-first:
			case <-time.After(30 * time.Second):
				t.Fatal("the first append did not commit within 30s")
			}
			moveErr := e1.Move(e1.ctx, src, dst, opts)
			wg.Wait()
			for i, err := range appendErrs {
				noErr(t, fmt.Sprintf("append %d", i), err)
			}
			var at, left []byte
			switch {
			case errors.Is(moveErr, roomstore.ErrConflict) && opts.Overwrite:
				// dst holds the old dst or an earlier version of src; src
				// holds everything, so only src is checked below.
				conflicts++
				if got := e1.get(t, dst); !bytes.Equal(got, []byte("<old dst>")) && !bytes.HasPrefix(e1.get(t, src), got) {
					t.Fatalf("round %d: after a conflict dst holds %q, neither its old content nor a version of src", r, got)
				}
			case errors.Is(moveErr, roomstore.ErrConflict):
				conflicts++
				e1.mustBeAbsent(t, dst)
			case moveErr != nil:
				t.Fatalf("Move: %v", moveErr)
			default:
				at = e1.get(t, dst)
				e1.moved(t, src, dst, int64(len(at)))
			}
			if ok, err := e1.Exists(e1.ctx, src); err != nil {
				t.Fatalf("Exists: %v", err)
			} else if ok {
				left = e1.get(t, src)
			}
			// Every append is in exactly one of the two files, in order,
			// and the base content moved (or stayed) whole.
			all := append(slices.Clone(at), left...)
			if !bytes.HasPrefix(all, []byte("<base>")) || bytes.Count(all, []byte("<base>")) != 1 {
				t.Fatalf("round %d: dst %q + src %q lost or doubled the base", r, at, left)
			}
			pos := 0
			for i := range appends {
				tok := fmt.Appendf(nil, "<%d>", i)
				if bytes.Count(all, tok) != 1 {
					t.Fatalf("round %d: append %d appears %d times in dst %q + src %q", r, i, bytes.Count(all, tok), at, left)
				}
				j := bytes.Index(all, tok)
				if j < pos {
					t.Fatalf("round %d: append %d out of order in dst %q + src %q", r, i, at, left)
				}
				pos = j
			}
			landedAtDst += bytes.Count(at, []byte(">")) - bytes.Count(at, []byte("<base>"))
			landedAtSrc += bytes.Count(left, []byte(">")) - bytes.Count(left, []byte("<base>"))
		}
		t.Logf("%d appends moved with their file, %d landed after the move, %d moves lost every race", landedAtDst, landedAtSrc, conflicts)
		if conflicts < rounds && landedAtDst == 0 {
			t.Fatal("no append was moved with its file, though the first of each round committed before the move")
		}
	}},
}
