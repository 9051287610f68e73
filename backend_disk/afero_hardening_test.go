package backend_disk_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/roompath"
	"github.com/spf13/afero"
)

// within runs call with a context of the given deadline, failing the test
// if it has not returned a second after the deadline.
func within(t *testing.T, what string, deadline time.Duration, call func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(deadline + time.Second):
		t.Fatalf("%s still blocked a second after its %v deadline", what, deadline)
		return nil
	}
}

// stallingFs holds the first rename into place of a committed file until
// released, with the locks the commit holds.
type stallingFs struct {
	afero.Fs
	armed   atomic.Bool
	stalled chan struct{}
	release chan struct{}
}

func (s *stallingFs) Rename(oldname, newname string) error {
	if strings.Contains(oldname, roompath.ReservedPrefix) && !strings.Contains(newname, roompath.ReservedPrefix) && s.armed.CompareAndSwap(true, false) {
		close(s.stalled)
		<-s.release
	}
	return s.Fs.Rename(oldname, newname)
}

// TestLockWaitsEndWithTheirContext stalls a commit of f inside an afero
// backend, holding its stripe lock (and flock), and checks that a second
// engine on the same directory gives up waiting for that lock when its
// context ends.
func TestLockWaitsEndWithTheirContext(t *testing.T) {
	for name, base := range map[string]func(t *testing.T) afero.Fs{
		"memory": func(*testing.T) afero.Fs { return afero.NewMemMapFs() },
		"disk":   func(t *testing.T) afero.Fs { return afero.NewBasePathFs(afero.NewOsFs(), t.TempDir()) },
	} {
		t.Run(name, func(t *testing.T) {
			fsys := &stallingFs{Fs: base(t), stalled: make(chan struct{}), release: make(chan struct{})}
			engine := func() *roomstore.Engine {
				b := closing(t, backend_disk.NewAfero(fsys, backend_disk.WithFsync(false)))
				e, err := roomstore.New(b)
				must(t, err)
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					e.Shutdown(ctx)
				})
				return e
			}
			e1, e2 := engine(), engine()
			must(t, write(t.Context(), e1, "f", "old"))
			fsys.armed.Store(true)
			first := make(chan error, 1)
			go func() { first <- write(t.Context(), e1, "f", "first") }()
			var released sync.Once
			release := func() { released.Do(func() { close(fsys.release) }) }
			t.Cleanup(release)
			select {
			case <-fsys.stalled:
			case <-time.After(10 * time.Second):
				t.Fatal("the first commit did not reach its rename within 10s")
			}
			h, err := e2.Open(t.Context(), "f", roomstore.OpenOptions{Overwrite: true})
			must(t, err)
			must(t, e2.Write(t.Context(), h, []byte("second")))
			const deadline = 100 * time.Millisecond
			if err := within(t, "Close behind the stalled commit", deadline, func(ctx context.Context) error { return e2.Close(ctx, h) }); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Close = %v, want context.DeadlineExceeded", err)
			}
			if err := within(t, "Delete behind the stalled commit", deadline, func(ctx context.Context) error { return e2.Delete(ctx, "f") }); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Delete = %v, want context.DeadlineExceeded", err)
			}
			release()
			select {
			case err := <-first:
				must(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("the released commit did not finish within 10s")
			}
			f, err := e2.Download(t.Context(), "f")
			if err != nil || string(f.Data) != "first" {
				t.Fatalf("f = %v, %v; want the first commit's content", f, err)
			}
		})
	}
}

func write(ctx context.Context, e *roomstore.Engine, p, data string) error {
	h, err := e.Open(ctx, p, roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		return err
	}
	if err := e.Write(ctx, h, []byte(data)); err != nil {
		return err
	}
	return e.Close(ctx, h)
}

// lowerFDLimit sets the process's soft descriptor limit to n for the rest
// of the test.
func lowerFDLimit(t *testing.T, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	lowered := old
	lowered.Cur = n
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered))
	t.Cleanup(func() { must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)) })
}

// TestTenThousandHandlesUnderADescriptorLimitOf1024 opens as many handles
// as the Engine allows by default on a file:// store while the process may
// hold only 1,024 descriptors, writes to each in a few calls, and commits
// them all at once: every file must hold exactly what was written.
func TestTenThousandHandlesUnderADescriptorLimitOf1024(t *testing.T) {
	lowerFDLimit(t, 1024)
	dir := t.TempDir()
	e, err := roomstore.OpenURL(t.Context(), "file://"+dir+"?fsync=false")
	must(t, err)
	defer e.Shutdown(context.Background())
	ctx := t.Context()
	content := func(i int) []byte {
		if i%50 == 0 { // some spill past what stays in memory
			return bytes.Repeat([]byte{byte('a' + i%26)}, 100<<10)
		}
		return fmt.Appendf(nil, "handle %d, part one;part two;part three", i)
	}
	const n = roomstore.DefaultMaxOpenHandles
	handles := make([]*roomstore.Handle, n)
	for i := range handles {
		h, err := e.Open(ctx, fmt.Sprintf("d%02d/f%05d", i%64, i), roomstore.OpenOptions{Exclusive: i%2 == 0})
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		c := content(i)
		for len(c) > 0 { // a few writes each
			k := min(len(c), max(len(c)/3, 1))
			if err := e.Write(ctx, h, c[:k]); err != nil {
				t.Fatalf("Write %d: %v", i, err)
			}
			c = c[k:]
		}
		handles[i] = h
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		errs = make(chan error, n)
	)
	for range 128 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := e.Close(ctx, handles[i]); err != nil {
					errs <- fmt.Errorf("Close %d: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range n {
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("d%02d", i%64), fmt.Sprintf("f%05d", i)))
		if err != nil || !bytes.Equal(got, content(i)) {
			t.Fatalf("file %d holds %d bytes (%v), want %d", i, len(got), err, len(content(i)))
		}
	}
}

// TestRunningOutOfDescriptorsIsAClearErrorThatLosesNothing uses up every
// descriptor the process may open, then writes: the write fails with
// ErrTooManyHandles, the old content stays, and once descriptors are free
// again the same write succeeds.
func TestRunningOutOfDescriptorsIsAClearErrorThatLosesNothing(t *testing.T) {
	dir := t.TempDir()
	e, err := roomstore.OpenURL(t.Context(), "file://"+dir+"?fsync=false")
	must(t, err)
	defer e.Shutdown(context.Background())
	ctx := t.Context()
	must(t, write(ctx, e, "f", "old"))
	lowerFDLimit(t, 256)
	var hog []*os.File
	defer func() {
		for _, f := range hog {
			f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		hog = append(hog, f)
	}
	for _, o := range []roomstore.OpenOptions{{}, {Overwrite: true}} {
		err := write(ctx, e, "f", "new")
		if !errors.Is(err, roomstore.ErrTooManyHandles) {
			t.Fatalf("write with no descriptor left (%+v) = %v, want ErrTooManyHandles", o, err)
		}
		if strings.Contains(err.Error(), dir) {
			t.Fatalf("error %q shows the store's directory", err)
		}
	}
	for _, f := range hog {
		f.Close()
	}
	hog = nil
	f, err := e.Download(ctx, "f")
	if err != nil || string(f.Data) != "old" {
		t.Fatalf("f = %v, %v; want the old content", f, err)
	}
	must(t, write(ctx, e, "f", "new"))
}

// TestNoOpenWaitsForAFIFO plants FIFOs where a file of the store, a
// temporary of this host or a liveness file would be, and checks that
// opening the store and every call on it return (a plain open of a FIFO
// waits for a writer forever).
func TestNoOpenWaitsForAFIFO(t *testing.T) {
	dir := t.TempDir()
	host, _ := os.Hostname()
	owner := hex.EncodeToString([]byte(host)) + fmt.Sprintf("-%d-00000000000000aa", os.Getpid())
	for _, p := range []string{
		"pipe", "d/pipe",
		roompath.ReservedPrefix + "/tmp/" + owner + "-0123456789abcdef01234567",
		roompath.ReservedPrefix + "/live/" + owner,
	} {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		must(t, syscall.Mkfifo(filepath.Join(dir, p), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, "d", "x"), []byte("x"), 0o644))
	var e *roomstore.Engine
	if err := within(t, "OpenURL", 10*time.Second, func(ctx context.Context) error {
		var err error
		e, err = roomstore.OpenURL(ctx, "file://"+dir)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	calls := []struct {
		what string
		call func(ctx context.Context) error
		want error
	}{
		{"Stat of a FIFO", func(ctx context.Context) error { _, err := e.Stat(ctx, "pipe"); return err }, fs.ErrNotExist},
		{"Download of a FIFO", func(ctx context.Context) error { _, err := e.Download(ctx, "d/pipe"); return err }, fs.ErrNotExist},
		{"Delete of a FIFO", func(ctx context.Context) error { return e.Delete(ctx, "pipe") }, fs.ErrNotExist},
		{"List of the root", func(ctx context.Context) error { _, err := e.List(ctx, ""); return err }, nil},
		{"List of a folder with a FIFO", func(ctx context.Context) error { _, err := e.List(ctx, "d"); return err }, nil},
		{"an append that replaces a FIFO", func(ctx context.Context) error {
			h, err := e.Open(ctx, "pipe", roomstore.OpenOptions{})
			if err == nil {
				err = e.Write(ctx, h, bytes.Repeat([]byte("x"), 100<<10))
			}
			if err == nil {
				err = e.Close(ctx, h)
			}
			return err
		}, nil},
		{"Delete beside a FIFO, pruning", func(ctx context.Context) error { return e.Delete(ctx, "d/x") }, nil},
		{"RemoveAll", func(ctx context.Context) error { return e.RemoveAll(ctx, "") }, nil},
	}
	for _, c := range calls {
		err := within(t, c.what, 10*time.Second, c.call)
		if (c.want == nil && err != nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Fatalf("%s = %v, want %v", c.what, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d", "pipe")); err != nil {
		t.Fatalf("the FIFO in d is gone: %v", err) // not a file of the store: left alone
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}

// TestOpeningAndShuttingDownRoomsLeaksNothing opens 1,000 rooms through
// OpenURL, writes to each (which takes a liveness lock on disk), and shuts
// them down: descriptors and goroutines must be back where they were, and
// a dropped mem:// name must start empty.
func TestOpeningAndShuttingDownRoomsLeaksNothing(t *testing.T) {
	base := t.TempDir()
	ctx := t.Context()
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	for i := range 1000 {
		for _, u := range []string{fmt.Sprintf("file://%s/room%d?fsync=false", base, i), fmt.Sprintf("mem://leak-test-%d", i)} {
			e, err := roomstore.OpenURL(ctx, u)
			must(t, err)
			must(t, write(ctx, e, "notes/f", "x"))
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = e.Shutdown(sctx)
			cancel()
			must(t, err)
		}
	}
	if now := openFDs(t); now > fds {
		t.Fatalf("%d descriptors open after 1,000 rooms came and went, %d before", now, fds)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after 1,000 rooms came and went, %d before", runtime.NumGoroutine(), goroutines)
		}
		time.Sleep(time.Millisecond) // goroutines end on their own after Shutdown returns
	}
	for i := range 1000 {
		name := fmt.Sprintf("leak-test-%d", i)
		if !backend_mem.Drop(name) {
			t.Fatalf("mem://%s was not there to drop", name)
		}
	}
	e, err := roomstore.OpenURL(ctx, "mem://leak-test-0")
	must(t, err)
	defer e.Shutdown(context.Background())
	if ok, err := e.Exists(ctx, "notes/f"); ok || err != nil {
		t.Fatalf("a dropped mem:// store still holds its files: %v, %v", ok, err)
	}
}
