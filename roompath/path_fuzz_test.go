package roompath_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/roompath"
	"github.com/spf13/afero"
)

// FuzzClean checks that path validation never panics, that what it accepts
// is clean and stable, and that an accepted file path stays inside an afero
// OsFs root and round-trips through write, read, list and delete on disk
// and in memory.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"a", "/a/b", "a/", "", ".", "..", "a/../b", "a//b", "t-/x", "%2e%2e/x", `..\x`, "a\x00b", "émoji 🎉", ".roomstore/x", strings.Repeat("x", 300)} {
		f.Add(s)
	}
	root := f.TempDir()
	disk, err := roomstore.New(backend_disk.NewAfero(afero.NewBasePathFs(afero.NewOsFs(), root), backend_disk.WithFsync(false)))
	if err != nil {
		f.Fatal(err)
	}
	mem, err := roomstore.New(backend_mem.New())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		disk.Shutdown(context.Background())
		mem.Shutdown(context.Background())
	})
	f.Fuzz(func(t *testing.T, p string) {
		for _, target := range []roompath.Target{roompath.TargetFile, roompath.TargetAny} {
			c, err := roompath.Clean(p, target)
			if err != nil {
				if !isInvalid(err) {
					t.Fatalf("Clean(%q) error %v does not match fs.ErrInvalid", p, err)
				}
				continue
			}
			if c != "" && !fs.ValidPath(c) || !utf8.ValidString(c) || len(c) > roompath.MaxPathLen {
				t.Fatalf("Clean(%q) = %q, not a clean path", p, c)
			}
			if again, err := roompath.Clean(c, target); err != nil || again != c {
				t.Fatalf("Clean is not stable on %q: %q, %v", c, again, err)
			}
			for elem := range strings.SplitSeq(c, "/") {
				if roompath.IsReserved(elem) {
					t.Fatalf("Clean(%q) accepted the reserved element %q", p, elem)
				}
			}
		}
		c, err := roompath.Clean(p, roompath.TargetFile)
		if err != nil {
			return
		}
		data := []byte("fuzz:" + c)
		for _, e := range []*roomstore.Engine{disk, mem} {
			roundTrip(t, e, p, c, data)
		}
		// On disk the file lies inside the root.
		real := filepath.Join(root, filepath.FromSlash(c))
		if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			t.Fatalf("%q maps outside the root: %s", p, real)
		}
	})
}

func roundTrip(t *testing.T, e *roomstore.Engine, p, c string, data []byte) {
	ctx := context.Background()
	h, err := e.Open(ctx, p, roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatalf("Open(%q): %v", p, err)
	}
	if err := e.Write(ctx, h, data); err != nil {
		t.Fatalf("Write(%q): %v", p, err)
	}
	if err := e.Close(ctx, h); err != nil {
		t.Fatalf("Close(%q): %v", p, err)
	}
	got, err := e.Download(ctx, c)
	if err != nil || !bytes.Equal(got.Data, data) || got.Path != c {
		t.Fatalf("Download(%q) = %v, %v", c, got, err)
	}
	dir, name := "", c
	if i := strings.LastIndexByte(c, '/'); i >= 0 {
		dir, name = c[:i], c[i+1:]
	}
	es, err := e.List(ctx, dir)
	if err != nil || !slices.ContainsFunc(es, func(x roomstore.Entry) bool { return x.Name == name && !x.IsFolder }) {
		t.Fatalf("List(%q) = %v, %v; missing %q", dir, es, err, name)
	}
	if err := e.RemoveAll(ctx, ""); err != nil {
		t.Fatalf("RemoveAll: %v", err)
	}
	if es, _ := e.List(ctx, ""); len(es) != 0 {
		t.Fatalf("store not empty after RemoveAll: %v", es)
	}
}

func isInvalid(err error) bool { return err != nil && errors.Is(err, fs.ErrInvalid) }
