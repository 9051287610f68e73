package backend_disk_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spf13/afero"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/conformance"
	"github.com/roomstore/roomstore/roompath"
)

// leftovers lists the temporaries under an afero store's reserved
// folder, and the folders of staged uploads.
func leftovers(t *testing.T, b backend.Backend) []string {
	var out []string
	for _, dir := range []string{"/tmp", "/uploads"} {
		f, err := b.(*backend_disk.Afero).Fs().Open(roompath.ReservedPrefix + dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatalf("open %s: %v", dir, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			t.Fatalf("list %s: %v", dir, err)
		}
		out = append(out, names...)
	}
	return out
}

// closing closes b when the test ends.
func closing(t *testing.T, b backend.Backend) backend.Backend {
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformanceMemMapFs(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		Leftovers: leftovers,
		New:       func(t *testing.T) backend.Backend { return closing(t, backend_disk.NewAfero(afero.NewMemMapFs())) },
		Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
			return closing(t, backend_disk.NewAfero(b.(*backend_disk.Afero).Fs()))
		},
		Broken: func(t *testing.T) []conformance.BrokenStore {
			return []conformance.BrokenStore{{
				Name:    "the file system is read-only",
				Backend: closing(t, backend_disk.NewAfero(afero.NewReadOnlyFs(afero.NewMemMapFs()))),
			}}
		},
	})
}

// diskBroken returns the ways a store on disk breaks, each over its own
// directory, through open.
func diskBroken(t *testing.T, open func(t *testing.T, dir string) backend.Backend) []conformance.BrokenStore {
	staging := t.TempDir()
	if err := os.WriteFile(filepath.Join(staging, roompath.ReservedPrefix), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	removed := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(removed, 0o755); err != nil {
		t.Fatal(err)
	}
	gone := open(t, removed)
	if err := os.Remove(removed); err != nil {
		t.Fatal(err)
	}
	return []conformance.BrokenStore{
		{Name: "the staging folder is a file", Backend: open(t, staging), Hidden: []string{staging}},
		{Name: "the store directory was removed", Backend: gone, Gone: true, Hidden: []string{removed}},
	}
}

// runDisk runs the suite on stores in fresh directories, opened by open.
func runDisk(t *testing.T, open func(t *testing.T, dir string) backend.Backend) {
	var dirs sync.Map // backend.Backend -> its directory; subtests run in parallel
	conformance.Run(t, conformance.Harness{
		Leftovers: leftovers,
		New: func(t *testing.T) backend.Backend {
			dir := t.TempDir()
			b := open(t, dir)
			dirs.Store(b, dir)
			return b
		},
		Reopen: func(t *testing.T, b backend.Backend) backend.Backend {
			dir, _ := dirs.Load(b)
			return open(t, dir.(string))
		},
		Broken: func(t *testing.T) []conformance.BrokenStore { return diskBroken(t, open) },
	})
}

func TestConformanceOsFs(t *testing.T) {
	runDisk(t, func(t *testing.T, dir string) backend.Backend {
		return closing(t, backend_disk.NewAfero(afero.NewBasePathFs(afero.NewOsFs(), dir))) // fsync on, as users get it
	})
}

// TestConformanceOSRootPortable runs the suite on NewOSRoot without the
// Linux fast path: every call through os.Root, as platforms without
// openat2 (or kernels before 5.6) store.
func TestConformanceOSRootPortable(t *testing.T) {
	runDisk(t, func(t *testing.T, dir string) backend.Backend {
		b, err := backend_disk.NewPortableOSRoot(dir, backend_disk.WithFsync(false))
		if err != nil {
			t.Fatal(err)
		}
		return closing(t, b)
	})
}

// TestConformanceFileURL runs the suite on the store users get: what
// backend.Open (and so roomstore.OpenURL) builds for a file:// URL.
func TestConformanceFileURL(t *testing.T) {
	runDisk(t, func(t *testing.T, dir string) backend.Backend {
		b, err := backend.Open(context.Background(), "file://"+filepath.ToSlash(dir)+"?fsync=false")
		if err != nil {
			t.Fatal(err)
		}
		return closing(t, b)
	})
}
