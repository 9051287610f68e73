package backend_disk_test

import (
	"context"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/spf13/afero"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
)

// diskKinds are the ways the afero backend reaches a folder on disk:
// "file" is what a file:// URL opens (NewOSRoot: on Linux the openat2
// fast path), "osroot" the same without the fast path (every call through
// os.Root, as where openat2 is missing), "basepath" afero.NewBasePathFs
// over OsFs (the portable walk, one call per path element).
var diskKinds = []string{"file", "osroot", "basepath"}

// openDisk opens the afero backend of kind on dir. The caller closes it.
// mustOpenDisk is openDisk with fsync off, failing t on an error.
func mustOpenDisk(t *testing.T, kind, dir string) *backend_disk.Afero {
	t.Helper()
	a, err := openDisk(kind, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func openDisk(kind, dir string, fsync bool) (*backend_disk.Afero, error) {
	switch kind {
	case "basepath":
		return backend_disk.NewAfero(afero.NewBasePathFs(afero.NewOsFs(), dir), backend_disk.WithFsync(fsync)), nil
	case "osroot":
		return backend_disk.NewPortableOSRoot(dir, backend_disk.WithFsync(fsync))
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(dir), RawQuery: "fsync=" + strconv.FormatBool(fsync)}
	b, err := backend.Open(context.Background(), u.String())
	if err != nil {
		return nil, err
	}
	return b.(*backend_disk.Afero), nil
}

// onEachDisk runs test as a subtest on each kind of disk backend.
func onEachDisk(t *testing.T, test func(t *testing.T, kind string)) {
	for _, kind := range diskKinds {
		t.Run(kind, func(t *testing.T) { test(t, kind) })
	}
}

// diskBackend opens kind on dir with fsync on, closed when t ends.
func diskBackend(t *testing.T, kind, dir string) *backend_disk.Afero {
	t.Helper()
	b, err := openDisk(kind, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
