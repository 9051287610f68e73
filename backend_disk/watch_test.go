package backend_disk_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
)

// TestWatchReportsOnlyWhatARoomstorePathNames watches a file:// store and
// changes it: a file, a folder, the reserved folder and a name no path can
// have. Only the file and the folder are reported; the watch ends with its
// context.
func TestWatchReportsOnlyWhatARoomstorePathNames(t *testing.T) {
	dir := t.TempDir()
	b, err := backend.Open(t.Context(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(t.Context())
	changes := make(chan backend.Change, 100)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.(backend.Watcher).Watch(ctx, func() { close(ready) }, func(c backend.Change) { changes <- c })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	write := func(rel string) {
		t.Helper()
		name := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".roomstore/tmp/staged")   // the store's own
	write("bad\nname")               // no roomstore path
	write("sub/.roomstore-x/hidden") // a reserved element deeper down
	write("a.txt")                   // the marker of the end of the ignored
	var got []backend.Change
	timeout := time.After(10 * time.Second)
	for len(got) == 0 || got[len(got)-1].Path != "a.txt" {
		select {
		case c := <-changes:
			got = append(got, c)
		case <-timeout:
			t.Fatalf("a.txt not reported within 10s; got %+v", got)
		}
	}
	for _, c := range got {
		switch {
		case c.Path == "a.txt" && !c.Folder, c.Path == "sub" && c.Folder:
		default:
			t.Errorf("reported %+v", c)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not end within 10s of its context")
	}
}

// TestWatchIsUnsupportedOverAnyOtherFs: only an OS root has a native feed.
func TestWatchIsUnsupportedOverAnyOtherFs(t *testing.T) {
	b := backend_disk.NewAfero(afero.NewMemMapFs())
	err := b.Watch(t.Context(), nil, func(backend.Change) {})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Watch over MemMapFs: %v, want errors.ErrUnsupported", err)
	}
}
