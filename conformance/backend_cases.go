package conformance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
)

func runBackend(t *testing.T, h Harness) {
	t.Run("errors", func(t *testing.T) { cases(t, h, backendErrorCases) })
	cases(t, h, []tcase{
		{"stat of a missing file is not-exist", func(t *testing.T, h Harness) {
			b := h.New(t)
			_, err := b.Stat(t.Context(), "nope")
			wantIs(t, "Stat", err, fs.ErrNotExist)
		}},
		{"the root is always a folder", func(t *testing.T, h Harness) {
			info, err := h.New(t).Stat(t.Context(), "")
			noErr(t, "Stat root", err)
			if !info.IsFolder {
				t.Fatalf("root: %+v, want a folder", info)
			}
		}},
		{"create commits and reads back with its info", func(t *testing.T, h Harness) {
			b := h.New(t)
			info := commit(t, b, "d/f.bin", []byte("hello"), false)
			if info.Path != "d/f.bin" || info.Size != 5 || info.ETag == "" || info.ModTime.IsZero() {
				t.Fatalf("commit info %+v", info)
			}
			got, rinfo := read(t, b, "d/f.bin", 0, -1)
			if string(got) != "hello" || rinfo.Size != 5 || rinfo.ETag != info.ETag {
				t.Fatalf("read %q %+v, want hello with etag %q", got, rinfo, info.ETag)
			}
			sinfo, err := b.Stat(t.Context(), "d/f.bin")
			noErr(t, "Stat", err)
			if sinfo.Size != 5 || sinfo.IsFolder || sinfo.ETag != info.ETag {
				t.Fatalf("stat %+v", sinfo)
			}
			d, err := b.Stat(t.Context(), "d")
			noErr(t, "Stat folder", err)
			if !d.IsFolder || d.Path != "d" {
				t.Fatalf("stat folder %+v", d)
			}
		}},
		{"nothing is visible before commit", func(t *testing.T, h Harness) {
			b := h.New(t)
			w, err := b.Create(t.Context(), "new/x", backend.WriteOptions{})
			noErr(t, "Create", err)
			noErr(t, "Write", w.Write(t.Context(), []byte("data")))
			_, err = b.Stat(t.Context(), "new/x")
			wantIs(t, "Stat before commit", err, fs.ErrNotExist)
			_, err = b.Stat(t.Context(), "new")
			wantIs(t, "Stat folder before commit", err, fs.ErrNotExist)
			if got := listNames(t, b, ""); len(got) != 0 {
				t.Fatalf("root lists %v before commit", got)
			}
			_, err = w.Commit(t.Context())
			noErr(t, "Commit", err)
			if got := listNames(t, b, ""); !slices.Equal(got, []string{"new/"}) {
				t.Fatalf("root lists %v after commit, want [new/]", got)
			}
		}},
		{"abort keeps the old content and leaves no trace", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "f", []byte("old"), false)
			for _, appendMode := range []bool{false, true} {
				w := writer(t, b, "f", appendMode)
				noErr(t, "Write", w.Write(t.Context(), []byte("new")))
				noErr(t, "Abort", w.Abort(t.Context()))
				noErr(t, "second Abort", w.Abort(t.Context()))
			}
			if got, _ := read(t, b, "f", 0, -1); string(got) != "old" {
				t.Fatalf("after abort: %q", got)
			}
			if got := listNames(t, b, ""); !slices.Equal(got, []string{"f"}) {
				t.Fatalf("root lists %v, want [f]", got)
			}
		}},
		{"exclusive create fails when the file exists at commit", func(t *testing.T, h Harness) {
			b := h.New(t)
			w, err := b.Create(t.Context(), "x", backend.WriteOptions{Exclusive: true})
			noErr(t, "Create", err)
			noErr(t, "Write", w.Write(t.Context(), []byte("loser")))
			commit(t, b, "x", []byte("winner"), false)
			_, err = w.Commit(t.Context())
			wantIs(t, "exclusive Commit", err, fs.ErrExist)
			noErr(t, "Abort after the lost commit", w.Abort(t.Context()))
			if got, _ := read(t, b, "x", 0, -1); string(got) != "winner" {
				t.Fatalf("content %q, want winner", got)
			}
		}},
		{"append creates a missing file then appends", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "log", []byte("one,"), true)
			commit(t, b, "log", []byte("two,"), true)
			commit(t, b, "log", nil, true)
			if got, _ := read(t, b, "log", 0, -1); string(got) != "one,two," {
				t.Fatalf("content %q", got)
			}
		}},
		{"append sees commits made after it started", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "log", []byte("a"), false)
			w := writer(t, b, "log", true)
			noErr(t, "Write", w.Write(t.Context(), []byte("c")))
			commit(t, b, "log", []byte("b"), true)
			commitRetrying(t, w)
			if got, _ := read(t, b, "log", 0, -1); string(got) != "abc" {
				t.Fatalf("content %q, want abc", got)
			}
		}},
		{"each commit gets a new etag", func(t *testing.T, h Harness) {
			b := h.New(t)
			seen := map[string]bool{}
			for i := range 3 {
				info := commit(t, b, "f", []byte("same"), false)
				if seen[info.ETag] {
					t.Fatalf("commit %d reused etag %q", i, info.ETag)
				}
				seen[info.ETag] = true
			}
		}},
		{"ranged reads cut at the end and refuse offsets past it", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "r", []byte("0123456789"), false)
			for _, c := range []struct {
				off, n int64
				want   string
			}{{0, -1, "0123456789"}, {3, 4, "3456"}, {3, -1, "3456789"}, {8, 100, "89"}, {10, -1, ""}, {10, 5, ""}, {0, 0, ""}} {
				if got, _ := read(t, b, "r", c.off, c.n); string(got) != c.want {
					t.Fatalf("Read(%d, %d) = %q, want %q", c.off, c.n, got, c.want)
				}
			}
			_, _, err := b.Read(t.Context(), "r", 11, -1)
			wantIs(t, "Read past the end", err, fs.ErrInvalid)
			_, _, err = b.Read(t.Context(), "missing", 0, -1)
			wantIs(t, "Read missing", err, fs.ErrNotExist)
		}},
		{"list yields files and folders and never reserved names", func(t *testing.T, h Harness) {
			b := h.New(t)
			for _, p := range []string{"a", "d/x", "d/e/y", "z"} {
				commit(t, b, p, []byte(p), false)
			}
			w, err := b.Create(t.Context(), "pending", backend.WriteOptions{}) // leaves a temporary around
			noErr(t, "Create", err)
			noErr(t, "Write", w.Write(t.Context(), []byte("x")))
			defer w.Abort(context.Background())
			got := listNames(t, b, "")
			slices.Sort(got)
			if want := []string{"a", "d/", "z"}; !slices.Equal(got, want) {
				t.Fatalf("root lists %v, want %v", got, want)
			}
			got = listNames(t, b, "d")
			slices.Sort(got)
			if want := []string{"e/", "x"}; !slices.Equal(got, want) {
				t.Fatalf("d lists %v, want %v", got, want)
			}
			if got := listNames(t, b, "missing"); len(got) != 0 {
				t.Fatalf("missing folder lists %v", got)
			}
			for info, err := range b.List(t.Context(), "d") {
				noErr(t, "List", err)
				if info.IsFolder {
					continue
				}
				st, err := b.Stat(t.Context(), info.Path)
				noErr(t, "Stat", err)
				if info.Size != int64(len(info.Path)) || info.ModTime.IsZero() || !info.ModTime.Equal(st.ModTime) {
					t.Fatalf("list entry %+v lacks size or time, or disagrees with Stat's %+v", info, st)
				}
				if want := st.ETag; info.ETag != want && !(h.ListOmitsETags && info.ETag == "") {
					t.Fatalf("list entry has ETag %q, Stat %q", info.ETag, want)
				}
			}
		}},
		{"remove deletes the file and prunes its empty folders", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "a/b/c", []byte("x"), false)
			commit(t, b, "keep", []byte("x"), false)
			noErr(t, "Remove", b.Remove(t.Context(), "a/b/c", backend.RemoveOptions{}))
			wantIs(t, "Remove again", b.Remove(t.Context(), "a/b/c", backend.RemoveOptions{}), fs.ErrNotExist)
			_, err := b.Stat(t.Context(), "a")
			wantIs(t, "Stat pruned folder", err, fs.ErrNotExist)
			if got := listNames(t, b, ""); !slices.Equal(got, []string{"keep"}) {
				t.Fatalf("root lists %v, want [keep]", got)
			}
		}},
		{"presign gives a URL or reports unsupported", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "f", []byte("x"), false)
			u, err := b.Presign(t.Context(), "f", backend.PresignOptions{Expiry: time.Minute})
			switch {
			case errors.Is(err, errors.ErrUnsupported):
			case err != nil:
				t.Fatalf("Presign: %v", err)
			case !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://"):
				t.Fatalf("Presign gave %q", u)
			}
		}},
		{"move renames a file and returns the info stat reports", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "a/f", []byte("hello"), false)
			info, err := b.Move(t.Context(), "a/f", "b/c/g", backend.MoveOptions{})
			noErr(t, "Move", err)
			st, err := b.Stat(t.Context(), "b/c/g")
			noErr(t, "Stat", err)
			if info.Path != "b/c/g" || info.Size != 5 || info.ETag != st.ETag || !info.ModTime.Equal(st.ModTime) || st.Size != 5 {
				t.Fatalf("Move returned %+v, Stat says %+v", info, st)
			}
			if got, _ := read(t, b, "b/c/g", 0, -1); string(got) != "hello" {
				t.Fatalf("moved file holds %q", got)
			}
			_, err = b.Stat(t.Context(), "a/f")
			wantIs(t, "Stat of the source", err, fs.ErrNotExist)
			if got := listNames(t, b, ""); !slices.Equal(got, []string{"b/"}) {
				t.Fatalf("root lists %v, want [b/]", got)
			}
		}},
		{"move refuses a missing source, folders and an existing destination", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "src", []byte("s"), false)
			commit(t, b, "dst", []byte("d"), false)
			commit(t, b, "dir/x", []byte("x"), false)
			_, err := b.Move(t.Context(), "nope", "other", backend.MoveOptions{})
			wantIs(t, "Move of a missing file", err, fs.ErrNotExist)
			_, err = b.Move(t.Context(), "dir", "other", backend.MoveOptions{})
			wantIs(t, "Move of a folder", err, backend.ErrIsFolder)
			_, err = b.Move(t.Context(), "src", "dir", backend.MoveOptions{Overwrite: true})
			wantIs(t, "Move onto a folder", err, backend.ErrIsFolder)
			_, err = b.Move(t.Context(), "src", "dst", backend.MoveOptions{})
			wantIs(t, "Move onto a file", err, fs.ErrExist)
			if got, _ := read(t, b, "dst", 0, -1); string(got) != "d" {
				t.Fatalf("dst holds %q after refused moves", got)
			}
			_, err = b.Move(t.Context(), "src", "dst", backend.MoveOptions{Overwrite: true})
			noErr(t, "Move with Overwrite", err)
			if got, _ := read(t, b, "dst", 0, -1); string(got) != "s" {
				t.Fatalf("dst holds %q after the move", got)
			}
			if got := listNames(t, b, ""); !slices.Equal(sorted(got), []string{"dir/", "dst"}) {
				t.Fatalf("root lists %v, want [dir/ dst]", got)
			}
		}},
		{"a cancelled context fails calls", func(t *testing.T, h Harness) {
			b := h.New(t)
			commit(t, b, "f", []byte("x"), false)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := b.Stat(ctx, "f"); err == nil {
				t.Fatal("Stat with a cancelled context succeeded")
			}
			if _, _, err := b.Read(ctx, "f", 0, -1); err == nil {
				t.Fatal("Read with a cancelled context succeeded")
			}
			if err := b.Remove(ctx, "f", backend.RemoveOptions{}); err == nil {
				t.Fatal("Remove with a cancelled context succeeded")
			}
			if got, _ := read(t, b, "f", 0, -1); string(got) != "x" {
				t.Fatalf("content %q after cancelled calls", got)
			}
		}},
		{"appends through two backend values lose nothing", func(t *testing.T, h Harness) {
			b1 := h.New(t)
			b2 := h.Reopen(t, b1)
			var wg sync.WaitGroup
			const each = 8
			for i := range 2 * each {
				wg.Go(func() {
					// Errorf, not Fatalf: this runs off the test's goroutine.
					b := []backend.Backend{b1, b2}[i%2]
					w, err := b.Append(t.Context(), "log", backend.WriteOptions{})
					if err == nil {
						err = w.Write(t.Context(), []byte{'a' + byte(i)})
					}
					for attempt := 0; err == nil; attempt++ {
						if _, err = w.Commit(t.Context()); errors.Is(err, backend.ErrConflict) && attempt < 200 {
							err = nil
							time.Sleep(time.Duration(attempt%10) * time.Millisecond)
							continue
						}
						break
					}
					if err != nil {
						t.Errorf("append %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			got, _ := read(t, b1, "log", 0, -1)
			sorted := slices.Clone(got)
			slices.Sort(sorted)
			if string(sorted) != "abcdefghijklmnop" {
				t.Fatalf("log holds %q, want each of a..p once", got)
			}
		}},
	})
}

// wantIs checks errors.Is without requiring a PathError (backends may
// return context errors bare).
func wantIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func writer(t *testing.T, b backend.Backend, p string, appendMode bool) backend.Writer {
	t.Helper()
	var (
		w   backend.Writer
		err error
	)
	if appendMode {
		w, err = b.Append(t.Context(), p, backend.WriteOptions{})
	} else {
		w, err = b.Create(t.Context(), p, backend.WriteOptions{})
	}
	noErr(t, "open writer", err)
	return w
}

func commit(t *testing.T, b backend.Backend, p string, data []byte, appendMode bool) backend.Info {
	t.Helper()
	w := writer(t, b, p, appendMode)
	if len(data) > 0 {
		noErr(t, "Write", w.Write(t.Context(), data))
	}
	return commitRetrying(t, w)
}

// commitRetrying commits, retrying lost append races as the Engine does.
func commitRetrying(t *testing.T, w backend.Writer) backend.Info {
	t.Helper()
	for attempt := 0; ; attempt++ {
		info, err := w.Commit(t.Context())
		if err == nil {
			return info
		}
		if !errors.Is(err, backend.ErrConflict) || attempt > 200 {
			t.Fatalf("Commit: %v", err)
		}
		time.Sleep(time.Duration(attempt%10) * time.Millisecond)
	}
}

func read(t *testing.T, b backend.Backend, p string, off, n int64) ([]byte, backend.Info) {
	t.Helper()
	r, info, err := b.Read(t.Context(), p, off, n)
	noErr(t, "Read "+p, err)
	defer r.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		t.Fatalf("read %q: %v", p, err)
	}
	return buf.Bytes(), info
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func listNames(t *testing.T, b backend.Backend, dir string) []string {
	t.Helper()
	var out []string
	for info, err := range b.List(t.Context(), dir) {
		noErr(t, "List "+dir, err)
		name := info.Name()
		if info.IsFolder {
			name += "/"
		}
		out = append(out, name)
	}
	return out
}
