package conformance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
)

// BrokenStore is a store that cannot work, for the broken-store cases.
type BrokenStore struct {
	// Name says how it is broken, as in "staging folder is a file".
	Name string
	// Backend is a Backend over the broken store.
	Backend backend.Backend
	// Gone says that the store itself is missing (its directory removed,
	// its bucket absent): every call, reads included, must then fail with
	// backend.ErrStoreUnavailable. Otherwise only writes must fail.
	Gone bool
	// Hidden lists strings that no error may show, such as the host
	// directory the store lives in.
	Hidden []string
}

// backendErrorCases check the errors the backend.Backend contract states
// for each method.
var backendErrorCases = []tcase{
	{"a path through a file is not-exist", func(t *testing.T, h Harness) {
		b := h.New(t)
		commit(t, b, "f", []byte("x"), false)
		_, err := b.Stat(t.Context(), "f/x")
		wantIs(t, "Stat through a file", err, fs.ErrNotExist)
		_, _, err = b.Read(t.Context(), "f/x/y", 0, -1)
		wantIs(t, "Read through a file", err, fs.ErrNotExist)
		wantIs(t, "Remove through a file", b.Remove(t.Context(), "f/x", backend.RemoveOptions{}), fs.ErrNotExist)
	}},
	{"read and remove of a folder are is-folder", func(t *testing.T, h Harness) {
		b := h.New(t)
		commit(t, b, "d/x", []byte("x"), false)
		_, _, err := b.Read(t.Context(), "d", 0, -1)
		wantIs(t, "Read of a folder", err, backend.ErrIsFolder)
		wantIs(t, "Remove of a folder", b.Remove(t.Context(), "d", backend.RemoveOptions{}), backend.ErrIsFolder)
		if got, _ := read(t, b, "d/x", 0, -1); string(got) != "x" {
			t.Fatalf("d/x holds %q after the refused calls", got)
		}
	}},
	{"a commit over a folder or below a file fails and changes nothing", func(t *testing.T, h Harness) {
		b := h.New(t)
		commit(t, b, "d/x", []byte("x"), false)
		commit(t, b, "f", []byte("f"), false)
		if h.CommitIgnoresFolders {
			e := newEnv(t, b)
			for _, o := range []roomstore.OpenOptions{{}, {Overwrite: true}} {
				_, err := e.Open(e.ctx, "d", o)
				wantErr(t, "Open over a folder", err, roomstore.ErrIsFolder)
				_, err = e.Open(e.ctx, "f/x", o)
				wantErr(t, "Open below a file", err, roomstore.ErrNotFolder)
			}
			return
		}
		for _, appendMode := range []bool{false, true} {
			w := writer(t, b, "d", appendMode)
			noErr(t, "Write", w.Write(t.Context(), []byte("y")))
			_, err := w.Commit(t.Context())
			wantIs(t, fmt.Sprintf("Commit over a folder (append %v)", appendMode), err, backend.ErrIsFolder)
			noErr(t, "Abort", w.Abort(t.Context()))
			w = writer(t, b, "f/x", appendMode)
			noErr(t, "Write", w.Write(t.Context(), []byte("y")))
			_, err = w.Commit(t.Context())
			wantIs(t, fmt.Sprintf("Commit below a file (append %v)", appendMode), err, backend.ErrNotFolder)
			noErr(t, "Abort", w.Abort(t.Context()))
		}
		if got, _ := read(t, b, "f", 0, -1); string(got) != "f" {
			t.Fatalf("f holds %q", got)
		}
		if got, _ := read(t, b, "d/x", 0, -1); string(got) != "x" {
			t.Fatalf("d/x holds %q", got)
		}
	}},
	{"a finished writer refuses writes and commits with closed", func(t *testing.T, h Harness) {
		b := h.New(t)
		for _, appendMode := range []bool{false, true} {
			committed := writer(t, b, "c", appendMode)
			noErr(t, "Write", committed.Write(t.Context(), []byte("x")))
			commitRetrying(t, committed)
			aborted := writer(t, b, "a", appendMode)
			noErr(t, "Write", aborted.Write(t.Context(), []byte("x")))
			noErr(t, "Abort", aborted.Abort(t.Context()))
			for name, w := range map[string]backend.Writer{"committed": committed, "aborted": aborted} {
				what := fmt.Sprintf("%s writer (append %v)", name, appendMode)
				wantIs(t, "Write on a "+what, w.Write(t.Context(), []byte("y")), fs.ErrClosed)
				_, err := w.Commit(t.Context())
				wantIs(t, "Commit on a "+what, err, fs.ErrClosed)
				noErr(t, "Abort on a "+what, w.Abort(t.Context()))
			}
		}
		if got, _ := read(t, b, "c", 0, -1); string(got) != "xx" {
			t.Fatalf("c holds %q", got)
		}
		_, err := b.Stat(t.Context(), "a")
		wantIs(t, "Stat of the aborted file", err, fs.ErrNotExist)
	}},
	{"a cancelled writer fails with the context's error", func(t *testing.T, h Harness) {
		b := h.New(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for _, appendMode := range []bool{false, true} {
			w := writer(t, b, "f", appendMode)
			if err := w.Write(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
				t.Fatalf("Write with a cancelled context: %v", err)
			}
			noErr(t, "Abort", w.Abort(t.Context()))
			w = writer(t, b, "f", appendMode)
			noErr(t, "Write", w.Write(t.Context(), []byte("x")))
			if _, err := w.Commit(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Commit with a cancelled context: %v", err)
			}
			noErr(t, "Abort", w.Abort(t.Context()))
		}
		_, err := b.Stat(t.Context(), "f")
		wantIs(t, "Stat after cancelled writes", err, fs.ErrNotExist)
	}},
	{"errors name no path of their own", func(t *testing.T, h Harness) {
		b := h.New(t)
		_, err := b.Stat(t.Context(), "some-missing-name")
		wantIs(t, "Stat", err, fs.ErrNotExist)
		_, _, rerr := b.Read(t.Context(), "some-missing-name", 0, -1)
		wantIs(t, "Read", rerr, fs.ErrNotExist)
		for _, err := range []error{err, rerr, b.Remove(t.Context(), "some-missing-name", backend.RemoveOptions{})} {
			var pe *fs.PathError
			if errors.As(err, &pe) || strings.Contains(err.Error(), "some-missing-name") {
				t.Fatalf("backend error %q names a path: the engine adds the caller's", err)
			}
		}
	}},
}

// engineErrorCases check what errors say to people.
var engineErrorCases = []tcase{
	{"errors name the operation and the caller's path, and no system call", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "file", []byte("x"), overwrite)
		e.put(t, "dir/x", []byte("x"), overwrite)
		check := func(op, p string, err, kind error) {
			t.Helper()
			var pe *fs.PathError
			if !errors.Is(err, kind) || !errors.As(err, &pe) || pe.Op != op || pe.Path != p {
				t.Fatalf("%s %q: %v (%#v), want a PathError{%s, %q} for %v", op, p, err, err, op, p, kind)
			}
			msg := err.Error()
			if want := op + " " + p + ": " + kind.Error(); !strings.HasPrefix(msg, want) {
				t.Fatalf("%s %q says %q, want it to start with %q", op, p, msg, want)
			}
			for _, leak := range []string{"statat", "openat", "lstat", "renameat", "unlinkat", "mkdirat", ".roomstore", "\n"} {
				if strings.Contains(msg, leak) {
					t.Fatalf("%s %q says %q, which shows %q", op, p, msg, leak)
				}
			}
		}
		_, err := e.Stat(e.ctx, "nope")
		check("stat", "nope", err, fs.ErrNotExist)
		_, err = e.Download(e.ctx, "nope")
		check("download", "nope", err, fs.ErrNotExist)
		_, err = e.OpenReader(e.ctx, "deep/nope", 0, -1)
		check("read", "deep/nope", err, fs.ErrNotExist)
		_, err = e.DownloadURL(e.ctx, "nope")
		check("download_url", "nope", err, fs.ErrNotExist)
		check("delete", "nope", e.Delete(e.ctx, "nope"), fs.ErrNotExist)
		check("delete", "dir", e.Delete(e.ctx, "dir"), roomstore.ErrIsFolder)
		_, err = e.Download(e.ctx, "dir")
		check("download", "dir", err, roomstore.ErrIsFolder)
		_, err = e.Open(e.ctx, "file/below", overwrite)
		check("open", "file/below", err, roomstore.ErrNotFolder)
		_, err = e.OpenReader(e.ctx, "file", 5, -1)
		check("read", "file", err, fs.ErrInvalid)
		_, err = e.List(e.ctx, "file")
		check("list", "file", err, roomstore.ErrNotFolder)
	}},
}

// brokenCases run every way the harness has to break a store.
var brokenCases = []tcase{
	{"writes to a broken store fail, free their handle and publish nothing", func(t *testing.T, h Harness) {
		for _, bs := range h.Broken(t) {
			for _, size := range []int{10, 100 << 10} { // in memory until Close; spilled to staging at Write
				for _, o := range []roomstore.OpenOptions{{}, {Overwrite: true}, {Exclusive: true}} {
					what := fmt.Sprintf("%s: %d bytes, %+v", bs.Name, size, o)
					e := newEnv(t, bs.Backend, roomstore.WithMaxOpenHandles(1))
					err := e.write(e.ctx, "f", pattern(size, 1), o)
					var pe *fs.PathError
					if err == nil || !errors.As(err, &pe) || pe.Path != "f" {
						t.Fatalf("%s: write = %v, want a PathError on f", what, err)
					}
					if bs.Gone && !errors.Is(err, roomstore.ErrStoreUnavailable) {
						t.Fatalf("%s: write = %v, want ErrStoreUnavailable", what, err)
					}
					hidden(t, what, err, bs.Hidden)
					// The handle's slot is free again: only a broken store,
					// not the handle limit, refuses this one.
					if hd, err := e.Open(e.ctx, "g", o); err == nil {
						noErr(t, "Abort", e.Abort(e.ctx, hd))
					} else if errors.Is(err, roomstore.ErrTooManyHandles) {
						t.Fatalf("%s: the failed write kept its handle: %v", what, err)
					}
					shutdown(t, e)
					if evs := e.rec.snapshot(); len(evs) > 0 {
						t.Fatalf("%s: events %+v after failed writes", what, evs)
					}
				}
			}
		}
	}},
	{"a store that is gone says so on every call", func(t *testing.T, h Harness) {
		for _, bs := range h.Broken(t) {
			if !bs.Gone {
				continue
			}
			e := newEnv(t, bs.Backend)
			gone := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, roomstore.ErrStoreUnavailable) || errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s: %s = %v, want ErrStoreUnavailable and not fs.ErrNotExist", bs.Name, op, err)
				}
				hidden(t, bs.Name+": "+op, err, bs.Hidden)
			}
			ok, err := e.Exists(e.ctx, "f")
			if ok {
				t.Fatalf("%s: Exists = true", bs.Name)
			}
			gone("Exists", err)
			_, err = e.Stat(e.ctx, "d/f")
			gone("Stat", err)
			_, err = e.Download(e.ctx, "f")
			gone("Download", err)
			_, err = e.OpenReader(e.ctx, "f", 0, -1)
			gone("OpenReader", err)
			_, err = e.DownloadURL(e.ctx, "f")
			gone("DownloadURL", err)
			_, err = e.List(e.ctx, "")
			gone("List of the root", err)
			gone("Delete", e.Delete(e.ctx, "f"))
			gone("RemoveAll", e.RemoveAll(e.ctx, ""))
			shutdown(t, e)
			if evs := e.rec.snapshot(); len(evs) > 0 {
				t.Fatalf("%s: events %+v", bs.Name, evs)
			}
		}
	}},
}

// hidden fails the test when err shows one of the hidden strings.
func hidden(t *testing.T, what string, err error, hide []string) {
	t.Helper()
	for _, s := range hide {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("%s: error %q shows %q", what, err, s)
		}
	}
}

// shutdown shuts e down, which delivers every event it queued.
func shutdown(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	noErr(t, "Shutdown", e.Shutdown(ctx))
}
