package backend_disk_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// On disk a staged upload's bytes are one file under the reserved
// folder, which every append extends and the commit renames into place:
// the committed file is that very file (its inode), no byte copied. The
// upload survives the sweep of a new opening of the store, and nothing
// of it is listed.
func TestAStagedUploadIsCommittedByRename(t *testing.T) {
	onEachDisk(t, func(t *testing.T, kind string) {
		dir := t.TempDir()
		b := diskBackend(t, kind, dir)
		ctx := t.Context()
		const id = "AAAAAAAAAAAAAAAAAAAAAA"
		if err := b.Stage(ctx, id, []byte(`{"r":1}`)); err != nil {
			t.Fatal(err)
		}
		if err := b.Stage(ctx, id, []byte(`{}`)); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("a second Stage of one id: %v, want fs.ErrExist", err)
		}
		data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
		if n, err := b.AppendStaged(ctx, id, 0, bytes.NewReader(data[:300<<10])); err != nil || n != 300<<10 {
			t.Fatalf("AppendStaged = %d, %v", n, err)
		}
		if _, err := b.AppendStaged(ctx, id, 1, bytes.NewReader(data)); !errors.Is(err, backend.ErrConflict) {
			t.Fatalf("AppendStaged at a wrong offset: %v, want ErrConflict", err)
		}
		staged := filepath.Join(dir, roompath.ReservedPrefix, "uploads", id, "data")
		before, err := os.Lstat(staged)
		if err != nil {
			t.Fatalf("the staged bytes are not at %s: %v", staged, err)
		}
		if n, err := b.AppendStaged(ctx, id, 300<<10, bytes.NewReader(data[300<<10:])); err != nil || n != int64(len(data)-300<<10) {
			t.Fatalf("AppendStaged = %d, %v", n, err)
		}
		got, err := os.ReadFile(staged)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the staged file holds %d bytes (%v), want the %d appended", len(got), err, len(data))
		}
		// A new opening sweeps the store's temporaries: not uploads.
		again := diskBackend(t, kind, dir)
		st, err := again.Staged(ctx, id)
		if err != nil || st.Size != int64(len(data)) || string(st.Record) != `{"r":1}` {
			t.Fatalf("Staged on a new opening = %+v, %v", st, err)
		}
		for info, err := range b.List(ctx, "") {
			t.Fatalf("List of the root yields %+v, %v", info, err)
		}
		if _, err := b.Stat(ctx, roompath.ReservedPrefix+"/uploads/"+id+"/data"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat of the staged file: %v", err)
		}
		info, err := again.CommitStaged(ctx, id, "d/f.bin", backend.WriteOptions{Exclusive: true})
		if err != nil || info.Size != int64(len(data)) {
			t.Fatalf("CommitStaged = %+v, %v", info, err)
		}
		after, err := os.Lstat(filepath.Join(dir, "d", "f.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if before.Sys().(*syscall.Stat_t).Ino != after.Sys().(*syscall.Stat_t).Ino {
			t.Fatalf("the committed file is a copy (inode %d), not the staged file (inode %d)", after.Sys().(*syscall.Stat_t).Ino, before.Sys().(*syscall.Stat_t).Ino)
		}
		if _, err := os.Lstat(filepath.Join(dir, roompath.ReservedPrefix, "uploads", id)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the upload's folder after the commit: %v", err)
		}
		if _, err := b.Staged(ctx, id); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Staged after the commit: %v", err)
		}
		if _, err := b.AppendStaged(ctx, id, int64(len(data)), strings.NewReader("x")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("AppendStaged after the commit: %v", err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "d", "f.bin")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the committed file holds %d bytes (%v)", len(got), err)
		}
	})
}

// An upload half removed (its data gone, its record left, as a crash
// between the two steps leaves it) is no upload, and ListStaged reports
// it without a record, for the Engine to remove.
func TestAHalfRemovedUploadIsListedWithoutRecord(t *testing.T) {
	dir := t.TempDir()
	b := diskBackend(t, "file", dir)
	ctx := t.Context()
	const id = "BBBBBBBBBBBBBBBBBBBBBB"
	if err := b.Stage(ctx, id, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, roompath.ReservedPrefix, "uploads", id, "data")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Staged(ctx, id); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Staged of a half removed upload: %v", err)
	}
	var seen []backend.Staged
	for st, err := range b.ListStaged(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, st)
	}
	if len(seen) != 1 || seen[0].ID != id || seen[0].Record != nil || seen[0].Modified.IsZero() {
		t.Fatalf("ListStaged = %+v", seen)
	}
	if err := b.RemoveStaged(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, roompath.ReservedPrefix, "uploads", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the folder after RemoveStaged: %v", err)
	}
}
