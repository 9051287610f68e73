package backend_disk_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

// TestSymlinksNeverLeadOutOfTheRoot plants symbolic links inside an afero
// root that point outside it and checks that no operation follows them.
func TestSymlinksNeverLeadOutOfTheRoot(t *testing.T) {
	onEachDisk(t, testSymlinksNeverLeadOutOfTheRoot)
}

func testSymlinksNeverLeadOutOfTheRoot(t *testing.T, kind string) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	must(t, os.Symlink(outside, filepath.Join(root, "dirlink")))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "filelink")))
	must(t, os.MkdirAll(filepath.Join(root, "real"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "real", "ok"), []byte("inside"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(root, "real", "nested")))

	e, err := roomstore.New(diskBackend(t, kind, root))
	must(t, err)
	defer e.Shutdown(context.Background())
	ctx := t.Context()

	for _, p := range []string{"dirlink/secret", "filelink", "real/nested/secret"} {
		if _, err := e.Download(ctx, p); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Download(%q) = %v, want fs.ErrPermission", p, err)
		}
		if _, err := e.Stat(ctx, p); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Stat(%q) = %v, want fs.ErrPermission", p, err)
		}
		if err := e.Delete(ctx, p); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Delete(%q) = %v, want fs.ErrPermission", p, err)
		}
	}
	if _, err := e.List(ctx, "dirlink"); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("List(dirlink) = %v, want fs.ErrPermission", err)
	}
	for _, p := range []string{"dirlink/new", "real/nested/new"} {
		h, err := e.Open(ctx, p, roomstore.OpenOptions{Overwrite: true})
		if err == nil {
			must(t, e.Write(ctx, h, []byte("escaped")))
			err = e.Close(ctx, h)
		}
		if !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("writing %q: %v, want fs.ErrPermission", p, err)
		}
	}
	names := func(dir string) []string {
		es, err := e.List(ctx, dir)
		must(t, err)
		var out []string
		for _, x := range es {
			out = append(out, x.Name)
		}
		return out
	}
	if got := names(""); !slices.Equal(got, []string{"real"}) {
		t.Fatalf("root lists %v, want only real (links are left out)", got)
	}
	if got := names("real"); !slices.Equal(got, []string{"ok"}) {
		t.Fatalf("real lists %v", got)
	}
	ents, err := os.ReadDir(outside)
	if err != nil || len(ents) != 1 {
		t.Fatalf("the outside folder changed: %v (%v)", ents, err)
	}
	got, err := os.ReadFile(filepath.Join(outside, "secret"))
	if err != nil || string(got) != "outside" {
		t.Fatalf("outside file changed: %q (%v)", got, err)
	}
	// Overwriting the link itself is refused, as any path through a link
	// is, and never reaches its target.
	h, err := e.Open(ctx, "filelink", roomstore.OpenOptions{Overwrite: true})
	if err == nil {
		must(t, e.Write(ctx, h, []byte("replaced")))
		err = e.Close(ctx, h)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("overwriting the link: %v, want fs.ErrPermission", err)
	}
	got, err = os.ReadFile(filepath.Join(outside, "secret"))
	if err != nil || string(got) != "outside" {
		t.Fatalf("writing through a link changed the outside file: %q (%v)", got, err)
	}
}

// TestEmptyDirectoriesLeftByACrashAreNotFolders checks that directories
// without files (as a crash between a removal and its pruning leaves them)
// are neither listed nor reported as existing.
func TestEmptyDirectoriesLeftByACrashAreNotFolders(t *testing.T) {
	onEachDisk(t, testEmptyDirectoriesLeftByACrashAreNotFolders)
}

func testEmptyDirectoriesLeftByACrashAreNotFolders(t *testing.T, kind string) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "empty", "deeper"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "full"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "full", "f"), nil, 0o644))
	e, err := roomstore.New(diskBackend(t, kind, root))
	must(t, err)
	defer e.Shutdown(context.Background())
	if ok, _ := e.Exists(t.Context(), "empty/deeper"); ok {
		t.Fatal("an empty directory exists as a folder")
	}
	es, err := e.List(t.Context(), "empty")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List(empty) = %v, %v; want fs.ErrNotExist", es, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestASymlinkSwappedInMidCommitCannotLeadOutOfAnOSRoot races a commit of
// d/x against another program that keeps replacing folder d with a link to
// a directory outside the root: with NewOSRoot (what file:// uses) the
// kernel refuses to follow it, so nothing ever lands outside.
func TestASymlinkSwappedInMidCommitCannotLeadOutOfAnOSRoot(t *testing.T) {
	// What file:// opens (openat2 on Linux), and the same through os.Root.
	for _, kind := range []string{"file", "osroot"} {
		t.Run(kind, func(t *testing.T) { testASymlinkSwappedInMidCommit(t, kind) })
	}
}

func testASymlinkSwappedInMidCommit(t *testing.T, kind string) {
	outside, root := t.TempDir(), t.TempDir()
	b, err := openDisk(kind, root, false)
	must(t, err)
	defer b.Close()
	e, err := roomstore.New(b)
	must(t, err)
	defer e.Shutdown(context.Background())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		d := filepath.Join(root, "d")
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.RemoveAll(d)
			os.Symlink(outside, d)
			time.Sleep(50 * time.Microsecond)
			os.Remove(d)
			os.Mkdir(d, 0o755)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	// Both outcomes must happen, or the race was never run: commits that
	// found d a folder and landed, and commits refused because d was a
	// link (or missing for a moment).
	landed, refused := 0, 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) || landed == 0 || refused == 0; {
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatalf("after 22s: %d commits landed and %d were refused; the race did not go both ways", landed, refused)
		}
		err := write(t.Context(), e, "d/x", "written through the link")
		switch {
		case err == nil:
			landed++
		case errors.Is(err, fs.ErrPermission), errors.Is(err, roomstore.ErrNotFolder), errors.Is(err, fs.ErrNotExist):
			refused++
		default:
			t.Fatalf("a racing write failed unexpectedly: %v", err)
		}
	}
	close(stop)
	<-done
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Fatalf("after %d commits, %s was written outside the root", landed+refused, ents[0].Name())
	}
	t.Logf("%d racing writes landed inside the root and %d were refused; nothing outside", landed, refused)
}

// TestAnEmptyDirectoryLeftByACrashDoesNotBlockItsPath checks that a file
// can be written, read and deleted where a crash left an empty directory.
func TestAnEmptyDirectoryLeftByACrashDoesNotBlockItsPath(t *testing.T) {
	onEachDisk(t, testAnEmptyDirectoryLeftByACrashDoesNotBlockItsPath)
}

func testAnEmptyDirectoryLeftByACrashDoesNotBlockItsPath(t *testing.T, kind string) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "report", "sub"), 0o755))
	e, err := roomstore.New(diskBackend(t, kind, root))
	must(t, err)
	defer e.Shutdown(context.Background())
	ctx := t.Context()
	if _, err := e.Download(ctx, "report"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Download of an empty directory: %v, want fs.ErrNotExist", err)
	}
	if err := e.Delete(ctx, "report"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Delete of an empty directory: %v, want fs.ErrNotExist", err)
	}
	h, err := e.Open(ctx, "report", roomstore.OpenOptions{Overwrite: true})
	must(t, err)
	must(t, e.Write(ctx, h, []byte("now a file")))
	must(t, e.Close(ctx, h))
	f, err := e.Download(ctx, "report")
	if err != nil || string(f.Data) != "now a file" {
		t.Fatalf("Download = %v, %v", f, err)
	}
}

// TestSpecialFilesAreNotFilesOfTheStore checks that a FIFO in the root
// neither shows nor hangs a read.
func TestSpecialFilesAreNotFilesOfTheStore(t *testing.T) {
	onEachDisk(t, testSpecialFilesAreNotFilesOfTheStore)
}

func testSpecialFilesAreNotFilesOfTheStore(t *testing.T, kind string) {
	root := t.TempDir()
	must(t, syscall.Mkfifo(filepath.Join(root, "pipe"), 0o644))
	e, err := roomstore.New(diskBackend(t, kind, root))
	must(t, err)
	defer e.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if ok, _ := e.Exists(ctx, "pipe"); ok {
		t.Fatal("a FIFO exists as a file")
	}
	if _, err := e.Download(ctx, "pipe"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Download of a FIFO: %v, want fs.ErrNotExist", err)
	}
}
