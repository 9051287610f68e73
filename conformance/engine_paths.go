package conformance

import (
	"bytes"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/roomstore/roomstore"
)

func runEngine(t *testing.T, h Harness) {
	t.Run("paths", func(t *testing.T) { cases(t, h, pathCases) })
	t.Run("folders", func(t *testing.T) { cases(t, h, folderCases) })
	t.Run("writes", func(t *testing.T) { cases(t, h, writeCases) })
	t.Run("sizes", func(t *testing.T) { cases(t, h, sizeCases(h)) })
	t.Run("handles", func(t *testing.T) { cases(t, h, handleCases) })
	t.Run("concurrency", func(t *testing.T) { cases(t, h, concurrencyCases) })
	t.Run("reads", func(t *testing.T) { cases(t, h, readCases) })
	t.Run("urls", func(t *testing.T) { cases(t, h, append(slices.Clone(urlCases), attachmentCases...)) })
	t.Run("moves", func(t *testing.T) { cases(t, h, moveCases) })
	t.Run("access", func(t *testing.T) { cases(t, h, accessCases) })
	t.Run("quota", func(t *testing.T) { cases(t, h, quotaCases) })
	t.Run("preconditions", func(t *testing.T) { cases(t, h, preconditionCases) })
	t.Run("history", func(t *testing.T) { cases(t, h, historyCases) })
	t.Run("resumable", func(t *testing.T) { cases(t, h, resumableCases) })
	t.Run("streams", func(t *testing.T) { cases(t, h, streamCases(h)) })
	t.Run("events", func(t *testing.T) { cases(t, h, eventCases) })
	t.Run("outside", func(t *testing.T) { cases(t, h, outsideCases) })
	t.Run("shutdown", func(t *testing.T) { cases(t, h, shutdownCases) })
	t.Run("stress", func(t *testing.T) { cases(t, h, stressCases) })
	t.Run("errors", func(t *testing.T) { cases(t, h, engineErrorCases) })
	t.Run("broken", func(t *testing.T) { cases(t, h, brokenCases) })
}

// invalidPaths are rejected by every operation.
var invalidPaths = []string{
	"a/../b", "../x", "..", "a//b", "./a", "a/./b", "a/..",
	"nul\x00byte", "new\nline", "tab\tname", "del\x7f", "c1\u0085",
	"bad\xffutf8", strings.Repeat("n", 256), strings.Repeat("p/", 512) + "x",
	".roomstore", ".roomstore-tmp/x", "a/.roomstorefile", "//a",
}

// invalidFilePaths are fine for folders but not for files.
var invalidFilePaths = []string{"", "/", ".", "a/"}

// weirdNames round-trip byte for byte.
var weirdNames = []string{
	"space name.txt", `quote"'.txt`, "%41", "q?x=1", "hash#frag", "plus+sign",
	`back\slash`, "emoji 🎉.png", "t-/x", "t/x", "ü/é/名前", "a b/c d", "~tilde", "semi;colon:colon",
	"amp&eq=", "[brackets]", "percent%2F", "dots...", ".hidden", "-dash", strings.Repeat("l", 255),
}

var pathCases = []tcase{
	{"missing paths are not-exist for every operation", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		if ok, err := e.Exists(e.ctx, "nope"); ok || err != nil {
			t.Fatalf("Exists = %v, %v", ok, err)
		}
		_, err := e.Stat(e.ctx, "nope")
		wantErr(t, "Stat", err, fs.ErrNotExist)
		_, err = e.Download(e.ctx, "nope")
		wantErr(t, "Download", err, fs.ErrNotExist)
		_, err = e.OpenReader(e.ctx, "nope", 0, -1)
		wantErr(t, "OpenReader", err, fs.ErrNotExist)
		_, err = e.DownloadURL(e.ctx, "nope")
		wantErr(t, "DownloadURL", err, fs.ErrNotExist)
		wantErr(t, "Delete", e.Delete(e.ctx, "nope"), fs.ErrNotExist)
		_, err = e.List(e.ctx, "nope")
		wantErr(t, "List", err, fs.ErrNotExist)
		noErr(t, "RemoveAll of a missing path", e.RemoveAll(e.ctx, "nope"))
		e.none(t, "operations on missing paths")
	}},
	{"deleting twice fails the second time with not-exist", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("x"), overwrite)
		noErr(t, "Delete", e.Delete(e.ctx, "f"))
		wantErr(t, "second Delete", e.Delete(e.ctx, "f"), fs.ErrNotExist)
		if n := len(e.await(t, roomstore.EventFileDeleted, "f", 1)); n != 1 {
			t.Fatalf("%d file.deleted events, want 1", n)
		}
	}},
	{"invalid paths are rejected by every operation and change nothing", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "keep", []byte("x"), overwrite)
		e.await(t, roomstore.EventFileUpdated, "keep", 1)
		before := e.rec.snapshot()
		for _, p := range invalidPaths {
			_, err := e.Exists(e.ctx, p)
			wantErr(t, "Exists "+p, err, fs.ErrInvalid)
			_, err = e.Stat(e.ctx, p)
			wantErr(t, "Stat "+p, err, fs.ErrInvalid)
			_, err = e.List(e.ctx, p)
			wantErr(t, "List "+p, err, fs.ErrInvalid)
			wantErr(t, "RemoveAll "+p, e.RemoveAll(e.ctx, p), fs.ErrInvalid)
		}
		for _, p := range append(slices.Clone(invalidPaths), invalidFilePaths...) {
			_, err := e.Open(e.ctx, p, overwrite)
			wantErr(t, "Open "+p, err, fs.ErrInvalid)
			_, err = e.Download(e.ctx, p)
			wantErr(t, "Download "+p, err, fs.ErrInvalid)
			_, err = e.OpenReader(e.ctx, p, 0, -1)
			wantErr(t, "OpenReader "+p, err, fs.ErrInvalid)
			_, err = e.DownloadURL(e.ctx, p)
			wantErr(t, "DownloadURL "+p, err, fs.ErrInvalid)
			wantErr(t, "Delete "+p, e.Delete(e.ctx, p), fs.ErrInvalid)
		}
		if got := e.names(t, ""); !slices.Equal(got, []string{"keep"}) {
			t.Fatalf("store lists %v after invalid calls, want [keep]", got)
		}
		e.mustContain(t, "keep", []byte("x"))
		if got := e.rec.snapshot(); len(got) != len(before) {
			t.Fatalf("invalid calls published %v", got[len(before):])
		}
	}},
	{"weird names round-trip through write, read, list, url and delete", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		for i, p := range weirdNames {
			data := []byte("content of " + p)
			e.put(t, "/"+p, data, overwrite) // a leading slash is stripped
			e.mustContain(t, p, data)
			st, err := e.Stat(e.ctx, p)
			noErr(t, "Stat "+p, err)
			if st.Path != p || st.Size != int64(len(data)) || st.IsFolder {
				t.Fatalf("Stat(%q) = %+v", p, st)
			}
			dir, name := parentOf(p)
			if got := e.names(t, dir); !slices.Contains(got, name) {
				t.Fatalf("List(%q) = %v, missing %q", dir, got, name)
			}
			if body, status := fetch(t, e.url(t, p), nil); status != 200 || !bytes.Equal(body, data) {
				t.Fatalf("URL of %q: %d %q", p, status, body)
			}
			if i%2 == 0 { // half deleted one by one, half by RemoveAll below
				noErr(t, "Delete "+p, e.Delete(e.ctx, p))
				e.mustBeAbsent(t, p)
			}
		}
		noErr(t, "RemoveAll root", e.RemoveAll(e.ctx, "/"))
		if got := e.names(t, ""); len(got) != 0 {
			t.Fatalf("store lists %v after RemoveAll", got)
		}
	}},
	{"the root exists, stats as a folder and lists empty when the store is empty", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		for _, root := range []string{"", "/", "."} {
			if ok, err := e.Exists(e.ctx, root); !ok || err != nil {
				t.Fatalf("Exists(%q) = %v, %v", root, ok, err)
			}
			st, err := e.Stat(e.ctx, root)
			noErr(t, "Stat root", err)
			if !st.IsFolder || st.Path != "" {
				t.Fatalf("Stat(%q) = %+v", root, st)
			}
			es, err := e.List(e.ctx, root)
			if err != nil || len(es) != 0 {
				t.Fatalf("List(%q) = %v, %v; want empty", root, es, err)
			}
		}
	}},
}

func parentOf(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

var folderCases = []tcase{
	{"list orders bytewise with folders compared as name slash", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		for _, p := range []string{"b", "a", "t-/x", "t/x", "t.txt", "B", "é", "t0", "a-b/c", "a b"} {
			e.put(t, p, []byte(p), overwrite)
		}
		want := []string{"B", "a", "a b", "a-b/", "b", "t-/", "t.txt", "t/", "t0", "é"}
		if got := e.names(t, ""); !slices.Equal(got, want) {
			t.Fatalf("List = %v\nwant   %v", got, want)
		}
	}},
	{"list gives files their size and time and folders neither", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "d/f", []byte("12345"), overwrite)
		e.put(t, "d/sub/g", []byte("1"), overwrite)
		es, err := e.List(e.ctx, "d/") // a trailing slash names the folder
		noErr(t, "List", err)
		if len(es) != 2 {
			t.Fatalf("List = %+v", es)
		}
		f, sub := es[0], es[1]
		if f.Name != "f" || f.Path != "d/f" || f.IsFolder || f.Size != 5 || f.ModTime.IsZero() {
			t.Fatalf("file entry %+v", f)
		}
		if sub.Name != "sub" || sub.Path != "d/sub" || !sub.IsFolder || sub.Size != 0 || !sub.ModTime.IsZero() {
			t.Fatalf("folder entry %+v", sub)
		}
	}},
	{"folders vanish with their last file", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "a/b/c.txt", []byte("x"), overwrite)
		e.put(t, "a/b/d.txt", []byte("x"), overwrite)
		if ok, err := e.Exists(e.ctx, "a/b/"); err != nil || !ok {
			t.Fatalf("Exists(a/b/) = %v, %v; want true", ok, err)
		}
		noErr(t, "Delete", e.Delete(e.ctx, "a/b/c.txt"))
		if got := e.names(t, "a"); !slices.Equal(got, []string{"b/"}) {
			t.Fatalf("a lists %v", got)
		}
		noErr(t, "Delete", e.Delete(e.ctx, "a/b/d.txt"))
		e.mustBeAbsent(t, "a/b")
		e.mustBeAbsent(t, "a")
		if got := e.names(t, ""); len(got) != 0 {
			t.Fatalf("root lists %v, want empty", got)
		}
		_, err := e.List(e.ctx, "a")
		wantErr(t, "List vanished folder", err, fs.ErrNotExist)
	}},
	{"a file where a folder is meant and the reverse are refused", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "dir/inner", []byte("x"), overwrite)
		e.put(t, "file", []byte("x"), overwrite)
		e.await(t, roomstore.EventFileUpdated, "file", 1)
		before := len(e.rec.snapshot())
		_, err := e.Open(e.ctx, "dir", overwrite)
		wantErr(t, "Open a folder", err, roomstore.ErrIsFolder)
		_, err = e.Open(e.ctx, "file/below", overwrite)
		wantErr(t, "Open below a file", err, roomstore.ErrNotFolder)
		_, err = e.Open(e.ctx, "file/deeper/below", overwrite)
		wantErr(t, "Open two below a file", err, roomstore.ErrNotFolder)
		wantErr(t, "Delete a folder", e.Delete(e.ctx, "dir"), roomstore.ErrIsFolder)
		_, err = e.Download(e.ctx, "dir")
		wantErr(t, "Download a folder", err, roomstore.ErrIsFolder)
		_, err = e.OpenReader(e.ctx, "dir", 0, -1)
		wantErr(t, "OpenReader a folder", err, roomstore.ErrIsFolder)
		_, err = e.DownloadURL(e.ctx, "dir")
		wantErr(t, "DownloadURL a folder", err, roomstore.ErrIsFolder)
		_, err = e.List(e.ctx, "file")
		wantErr(t, "List a file", err, roomstore.ErrNotFolder)
		st, err := e.Stat(e.ctx, "dir")
		if err != nil || !st.IsFolder {
			t.Fatalf("Stat folder = %+v, %v", st, err)
		}
		if ok, err := e.Exists(e.ctx, "file/below"); ok || err != nil {
			t.Fatalf("Exists below a file = %v, %v", ok, err)
		}
		if got := e.names(t, ""); !slices.Equal(got, []string{"dir/", "file"}) {
			t.Fatalf("store changed: %v", got)
		}
		e.mustContain(t, "dir/inner", []byte("x"))
		e.barrier(t)
		if evs := e.rec.snapshot(); len(evs) != before {
			t.Fatalf("refused calls published %v", evs[before:])
		}
	}},
	{"remove all removes a folder tree with one event per file", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		files := []string{"tree/a", "tree/b/c", "tree/b/d/e", "tree-sibling", "other/x"}
		for _, p := range files {
			e.put(t, p, []byte(p), overwrite)
		}
		noErr(t, "RemoveAll", e.RemoveAll(e.ctx, "tree"))
		if got := e.names(t, ""); !slices.Equal(got, []string{"other/", "tree-sibling"}) {
			t.Fatalf("root lists %v", got)
		}
		for _, p := range files[:3] {
			if n := len(e.await(t, roomstore.EventFileDeleted, p, 1)); n != 1 {
				t.Fatalf("%d file.deleted events for %q", n, p)
			}
		}
		noErr(t, "RemoveAll of a file", e.RemoveAll(e.ctx, "tree-sibling"))
		e.mustBeAbsent(t, "tree-sibling")
		if evs := e.rec.matching(roomstore.EventFileDeleted, "other/x"); len(evs) != 0 {
			t.Fatalf("untouched file got events %v", evs)
		}
	}},
}
