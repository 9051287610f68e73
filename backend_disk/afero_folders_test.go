package backend_disk_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spf13/afero"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
)

func put(t *testing.T, b backend.Backend, p, data string) {
	t.Helper()
	w, err := b.Create(t.Context(), p, backend.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), []byte(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// remove deletes p from b, failing t on an error.
func remove(t *testing.T, b backend.Backend, p string) {
	t.Helper()
	if err := b.Remove(t.Context(), p, backend.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
}

// twoProcesses opens two backends of kind on one new directory, as two
// processes would; both close when t ends.
func twoProcesses(t *testing.T, kind string) (dir string, a, other *backend_disk.Afero) {
	t.Helper()
	dir = t.TempDir()
	a = mustOpenDisk(t, kind, dir)
	t.Cleanup(func() { a.Close() })
	other = mustOpenDisk(t, kind, dir)
	t.Cleanup(func() { other.Close() })
	return dir, a, other
}

// deferredInBoth opens two processes on one directory that holds
// keep.txt, chain/D/x and chain/y, then deletes chain/D/x through a (D
// waits in a: chain keeps y) and chain/y through other (which sees D, and
// keeps chain).
func deferredInBoth(t *testing.T, kind, chain string) (dir string, a, other *backend_disk.Afero) {
	t.Helper()
	dir, a, other = twoProcesses(t, kind)
	put(t, a, "keep.txt", "k")
	put(t, a, chain+"/D/x", "x")
	put(t, a, chain+"/y", "y")
	remove(t, a, chain+"/D/x")
	remove(t, other, chain+"/y")
	return dir, a, other
}

// goneFromDisk fails t, saying what, unless nothing is at path.
func goneFromDisk(t *testing.T, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s: %v", what, err)
	}
}

func listed(t *testing.T, b backend.Backend, dir string) []string {
	t.Helper()
	var out []string
	for info, err := range b.List(t.Context(), dir) {
		if err != nil {
			t.Fatal(err)
		}
		if info.IsFolder {
			out = append(out, info.Path+"/")
		} else {
			out = append(out, info.Path)
		}
	}
	slices.Sort(out)
	return out
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A folder that empties and fills again keeps its directory (no rmdir
// and mkdir per cycle), while no reader, in this process or another,
// ever sees it empty; once it stays empty for a while it is removed, and
// Close removes what is left at once.
func TestAnEmptiedFolderIsHiddenAtOnceAndRemovedLater(t *testing.T) {
	for _, kind := range diskKinds {
		t.Run(kind, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				a := mustOpenDisk(t, kind, dir)
				other := mustOpenDisk(t, kind, dir) // as another process would
				defer other.Close()
				put(t, a, "keep.txt", "k")
				put(t, a, "inbox/1.txt", "1")
				ino := inode(t, filepath.Join(dir, "inbox"))
				for i := range 3 {
					remove(t, a, "inbox/1.txt")
					for _, b := range []backend.Backend{a, other} {
						if got := listed(t, b, ""); !slices.Equal(got, []string{"keep.txt"}) {
							t.Fatalf("cycle %d: the root lists %v", i, got)
						}
						if _, err := b.Stat(t.Context(), "inbox"); !errors.Is(err, fs.ErrNotExist) {
							t.Fatalf("cycle %d: Stat of the emptied folder: %v", i, err)
						}
					}
					time.Sleep(time.Second) // less than the delay
					put(t, a, "inbox/1.txt", "1")
					if got := inode(t, filepath.Join(dir, "inbox")); got != ino {
						t.Fatalf("cycle %d: the folder was made anew", i)
					}
				}
				remove(t, a, "inbox/1.txt")
				time.Sleep(3 * time.Second)
				synctest.Wait()
				goneFromDisk(t, filepath.Join(dir, "inbox"), "the emptied directory is still there after the delay")
				put(t, a, "outbox/1.txt", "1")
				remove(t, a, "outbox/1.txt")
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				goneFromDisk(t, filepath.Join(dir, "outbox"), "Close left an emptied directory")
			})
		})
	}
}

// Emptying never leaves two empty levels: a folder whose last file goes
// while an emptied subfolder waits is removed with it, and so are
// emptied chains; a listing at any depth sees none of them.
func TestEmptiedFoldersNeverNest(t *testing.T) {
	for _, kind := range diskKinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			a := mustOpenDisk(t, kind, dir)
			defer a.Close()
			put(t, a, "top/f.txt", "f")
			put(t, a, "top/x/1.txt", "1")
			put(t, a, "deep/a/b/c/1.txt", "1")
			remove(t, a, "top/x/1.txt")      // x waits: top keeps f.txt
			remove(t, a, "top/f.txt")        // top goes, x with it
			remove(t, a, "deep/a/b/c/1.txt") // a chain: pruned whole
			for _, d := range []string{"top", "deep"} {
				goneFromDisk(t, filepath.Join(dir, d), d+" is still on disk")
			}
			if got := listed(t, a, ""); len(got) != 0 {
				t.Fatalf("the root lists %v", got)
			}
		})
	}
}

// A file deep beneath a folder is found without walking down to it: a
// directory with a non-empty subdirectory holds files.
func TestADeepFileMakesItsFoldersShow(t *testing.T) {
	dir := t.TempDir()
	a, err := openDisk("file", dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var p bytes.Buffer
	for i := range 300 {
		if i > 0 {
			p.WriteByte('/')
		}
		p.WriteString("d")
	}
	deep := p.String() + "/f.txt"
	put(t, a, deep, "x")
	if got := listed(t, a, ""); !slices.Equal(got, []string{"d/"}) {
		t.Fatalf("the root lists %v", got)
	}
	if err := a.Remove(t.Context(), deep, backend.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, a, ""); len(got) != 0 {
		t.Fatalf("after the delete the root lists %v", got)
	}
	goneFromDisk(t, filepath.Join(dir, "d"), "the chain is still on disk")
}

// Two backends on one directory (two processes) each defer what they
// empty, knowing nothing of the other's: what they leave shows nowhere,
// and a file can be written where it lies.
func TestTwoProcessesDeferringShowNoFolder(t *testing.T) {
	for _, kind := range diskKinds {
		t.Run(kind, func(t *testing.T) {
			_, a, other := deferredInBoth(t, kind, "F/E")
			for _, b := range []backend.Backend{a, other} {
				if got := listed(t, b, ""); !slices.Equal(got, []string{"keep.txt"}) {
					t.Fatalf("the root lists %v", got)
				}
				if _, err := b.Stat(t.Context(), "F"); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("Stat(F): %v", err)
				}
			}
			put(t, other, "F", "a file where the empty chain was")
			if info, err := a.Stat(t.Context(), "F"); err != nil || info.IsFolder {
				t.Fatalf("Stat(F) after a file was written there: %+v %v", info, err)
			}
		})
	}
}

// Deeper, the same: the chain another process's deferral left is pruned
// with the folder emptied here, and Close waits for the pruning the
// timer began.
func TestTwoProcessesDeferringDeepShowNoFolder(t *testing.T) {
	for _, kind := range diskKinds {
		t.Run(kind, func(t *testing.T) {
			dir, a, _ := deferredInBoth(t, kind, "G/F/E")
			if got := listed(t, a, ""); !slices.Equal(got, []string{"keep.txt"}) {
				t.Fatalf("the root lists %v", got)
			}
			goneFromDisk(t, filepath.Join(dir, "G"), "the empty chain is still on disk")
		})
	}
}

// Pruning removes empty directories and nothing else: a file beside the
// folder it prunes stays, on every kind of disk and in memory.
func TestPruningNeverRemovesAFile(t *testing.T) {
	for _, kind := range append(diskKinds, "memmapfs") {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			var a *backend_disk.Afero
			var err error
			if kind == "memmapfs" {
				a = backend_disk.NewAfero(afero.NewMemMapFs())
			} else if a, err = openDisk(kind, dir, false); err != nil {
				t.Fatal(err)
			}
			put(t, a, "P/a.txt", "a")
			put(t, a, "P/D/x", "x")
			remove(t, a, "P/D/x")
			mem := a.Fs()
			if err := a.Close(); err != nil { // prunes what waits
				t.Fatal(err)
			}
			if kind == "memmapfs" {
				if _, err := mem.Stat("P/a.txt"); err != nil {
					t.Fatalf("the file beside the pruned folder: %v", err)
				}
				return
			}
			if _, err := os.Stat(filepath.Join(dir, "P", "a.txt")); err != nil {
				t.Fatalf("the file beside the pruned folder: %v", err)
			}
			goneFromDisk(t, filepath.Join(dir, "P", "D"), "the emptied folder")
		})
	}
}
