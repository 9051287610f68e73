package backend_disk_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/roompath"
)

// TestFileStoresTakeTheFastPathOnLinux checks that what a file:// URL
// opens here resolves paths with openat2, so that the other tests of the
// "file" kind test that path.
func TestFileStoresTakeTheFastPathOnLinux(t *testing.T) {
	b := diskBackend(t, "file", t.TempDir())
	if !backend_disk.UsesFastPath(b.Fs()) {
		t.Fatal("a file:// store on Linux does not use the openat2 path")
	}
}

// TestAppendsFromTwoEnginesLoseNothingAfterTheReservedFolderChanges
// removes (or renames away) the lock files an engine has used, then
// appends from it and from a second engine on the same folder at once:
// both must lock the files now at the names, or they exclude nobody and
// appends get lost.
func TestAppendsFromTwoEnginesLoseNothingAfterTheReservedFolderChanges(t *testing.T) {
	reserved := func(dir string) string { return filepath.Join(dir, roompath.ReservedPrefix) }
	for name, change := range map[string]func(dir string) error{
		"lock folder removed":     func(dir string) error { return os.RemoveAll(filepath.Join(reserved(dir), "lock")) },
		"reserved folder renamed": func(dir string) error { return os.Rename(reserved(dir), reserved(dir)+".old") },
	} {
		t.Run(name, func(t *testing.T) { testAppendsAfterTheReservedFolderChanges(t, change) })
	}
}

func testAppendsAfterTheReservedFolderChanges(t *testing.T, change func(dir string) error) {
	dir := t.TempDir()
	ctx := t.Context()
	open := func() *roomstore.Engine {
		e, err := roomstore.OpenURL(ctx, "file://"+dir+"?fsync=false")
		must(t, err)
		t.Cleanup(func() { e.Shutdown(context.Background()) })
		return e
	}
	e1 := open()
	// Every stripe's lock file opened and kept by e1.
	for i := range 256 {
		must(t, write(ctx, e1, fmt.Sprintf("warm/%d", i), "x"))
	}
	must(t, change(dir))
	e2 := open()
	const each = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for w, e := range []*roomstore.Engine{e1, e2} {
		wg.Go(func() {
			for i := range each {
				h, err := e.Open(ctx, "log", roomstore.OpenOptions{})
				if err == nil {
					err = e.Write(ctx, h, fmt.Appendf(nil, "%d-%d\n", w, i))
				}
				if err == nil {
					err = e.Close(ctx, h)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f, err := e2.Download(ctx, "log")
	must(t, err)
	lines := strings.Split(strings.TrimSuffix(string(f.Data), "\n"), "\n")
	if len(lines) != 2*each {
		t.Fatalf("the log holds %d records after %d appends: appends were lost", len(lines), 2*each)
	}
	for w := range 2 {
		for i := range each {
			if !bytes.Contains(f.Data, fmt.Appendf(nil, "%d-%d\n", w, i)) {
				t.Fatalf("record %d-%d is missing", w, i)
			}
		}
	}
}

// TestWritesGoOnAfterTheTemporariesFolderIsRemoved removes the folder of
// temporaries that a store keeps open between commits: the next write
// makes it again.
func TestWritesGoOnAfterTheTemporariesFolderIsRemoved(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	e, err := roomstore.OpenURL(ctx, "file://"+dir)
	must(t, err)
	defer e.Shutdown(context.Background())
	must(t, write(ctx, e, "a", "first"))
	must(t, os.RemoveAll(filepath.Join(dir, roompath.ReservedPrefix, "tmp")))
	must(t, write(ctx, e, "a", "second"))
	f, err := e.Download(ctx, "a")
	if err != nil || string(f.Data) != "second" {
		t.Fatalf("Download after the temporaries' folder was removed = %v, %v", f, err)
	}
}
