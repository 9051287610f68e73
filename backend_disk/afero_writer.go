package backend_disk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// Create implements Backend.
func (a *Afero) Create(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	mode := commitReplace
	if opts.Exclusive {
		mode = commitExclusive
	}
	return a.newWriter(ctx, path, mode)
}

// Append implements Backend.
func (a *Afero) Append(ctx context.Context, path string, _ backend.WriteOptions) (backend.Writer, error) {
	return a.newWriter(ctx, path, commitAppend)
}

type commitMode int

const (
	commitReplace commitMode = iota
	commitExclusive
	commitAppend
)

// newWriter returns a writer that stages in memory first, so it takes no
// descriptor and touches no disk until it has more than stageInMemory
// bytes or commits.
func (a *Afero) newWriter(ctx context.Context, path string, mode commitMode) (backend.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if a.closed.Load() {
		return nil, errClosedBackend
	}
	return &aferoWriter{a: a, path: path, mode: mode}, nil
}

// aferoWriter stages a file's bytes: in buf while they are few, then in a
// temporary file, kept open (f) while the process's descriptor budget has
// a held unit for it, else opened for each spill of at least
// stageInMemory bytes.
type aferoWriter struct {
	a    *Afero
	path string
	mode commitMode
	buf  []byte     // staged bytes not in the temporary yet
	tmp  string     // the temporary's name, once it exists
	f    stagedFile // the open temporary, while held
	hold fdUnits    // the held unit that f takes on the OS
	done bool       // committed, failed or aborted
}

func (w *aferoWriter) Write(ctx context.Context, p []byte) error {
	if w.done {
		return fs.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.f == nil && len(w.buf)+len(p) <= stageInMemory {
		w.buf = append(w.buf, p...)
		return nil
	}
	if err := w.spill(ctx, p); err != nil {
		w.done = true // the caller aborts, which removes the temporary
		return err
	}
	return nil
}

// spill moves the staged bytes and p to the temporary file.
func (w *aferoWriter) spill(ctx context.Context, p []byte) error {
	a := w.a
	if w.f == nil && a.osBacked {
		if u, ok := tryHold(); ok {
			w.hold = u
		} else {
			// No descriptor to keep: write through one taken for this
			// call, in pieces of at least stageInMemory bytes.
			units, err := acquire(ctx, 1)
			if err != nil {
				return err
			}
			defer units.release()
			f, err := w.openTemp()
			if err != nil {
				return err
			}
			err = w.writeStaged(f, p)
			if cerr := f.Close(); err == nil {
				err = osError(cerr)
			}
			return err
		}
	}
	if w.f == nil {
		f, err := w.openTemp()
		if err != nil {
			w.hold.release()
			return err
		}
		w.f = f
	}
	return w.writeStaged(w.f, p)
}

// writeStaged writes buf, then p, to the temporary f and empties buf.
func (w *aferoWriter) writeStaged(f stagedFile, p []byte) error {
	for _, b := range [][]byte{w.buf, p} {
		if len(b) == 0 {
			continue
		}
		if _, err := f.Write(b); err != nil {
			return osError(err)
		}
	}
	w.buf = nil
	return nil
}

// openTemp creates the writer's temporary, or opens it again to add to it.
func (w *aferoWriter) openTemp() (stagedFile, error) {
	if w.tmp != "" {
		if w.a.fast != nil {
			f, err := w.a.fast.reopenTemp(strings.TrimPrefix(w.tmp, aferoTmpDir+"/"))
			if err != nil {
				return nil, reservedError(err, aferoTmpDir)
			}
			return f, nil
		}
		f, err := w.a.fs.OpenFile(w.tmp, os.O_RDWR|os.O_APPEND|w.a.oflags, 0)
		if err != nil {
			return nil, reservedError(err, aferoTmpDir)
		}
		return f, nil
	}
	f, name, err := w.a.tempFile()
	if err != nil {
		return nil, err
	}
	w.tmp = name
	return f, nil
}

// tempFile creates a new file under the reserved folder, creating the
// folder on first use, named for this backend's owner (see Sweep).
func (a *Afero) tempFile() (stagedFile, string, error) {
	prefix, err := a.owner.ensure(a)
	if err != nil {
		return nil, "", err
	}
	for attempt := 0; ; attempt++ {
		var b [12]byte
		_, _ = rand.Read(b[:])
		base := prefix + hex.EncodeToString(b[:])
		name := aferoTmpDir + "/" + base
		if a.fast != nil {
			f, err := a.fast.createTempIn(func() error { return a.mkdirReserved(aferoTmpDir) }, base)
			if err != nil {
				return nil, "", reservedError(err, aferoTmpDir)
			}
			return f, name, nil
		}
		f, err := a.fs.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR|a.oflags, 0o644)
		if err == nil {
			return f, name, nil
		}
		if attempt == 0 && errors.Is(err, fs.ErrNotExist) {
			if err = a.mkdirReserved(aferoTmpDir); err == nil {
				continue
			}
		}
		return nil, "", reservedError(err, aferoTmpDir)
	}
}

func (w *aferoWriter) Commit(ctx context.Context) (backend.Info, error) {
	if w.done {
		return backend.Info{}, fs.ErrClosed
	}
	info, err := w.commit(ctx)
	w.done = true
	if err != nil {
		_ = w.Abort(ctx)
	}
	return info, err
}

func (w *aferoWriter) commit(ctx context.Context) (backend.Info, error) {
	a := w.a
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	if a.osBacked {
		units, err := acquire(ctx, commitFDs)
		if err != nil {
			return backend.Info{}, err
		}
		defer units.release()
	}
	// All the staged bytes go to an open temporary, which stays open until
	// it is in place: its descriptor describes the placed file.
	f := w.f
	if f == nil {
		var err error
		if f, err = w.openTemp(); err != nil {
			return backend.Info{}, err
		}
		w.f = f
	}
	if err := w.writeStaged(f, nil); err != nil {
		return backend.Info{}, err
	}
	if a.fsync {
		if err := f.Sync(); err != nil {
			return backend.Info{}, osError(err)
		}
	}
	unlock, err := a.locks.lock(ctx, a, w.path)
	if err != nil {
		return backend.Info{}, err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}

	src, srcFile := w.tmp, f
	// On the fast path a replacing commit to a name with nothing at it
	// (the common case: a new file) renames at once, with
	// RENAME_NOREPLACE; only when something is there is it looked at
	// first, as on every other path.
	done := false
	if a.fast != nil && w.mode == commitReplace {
		switch err := a.place(ctx, src, w.path, true); {
		case err == nil:
			done = true
		case !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.EINVAL):
			return backend.Info{}, err
		}
	}
	if !done {
		fi, err := a.lstatAs(w.path, false)
		switch {
		case err == nil && fi.IsDir() && a.hasFiles(w.path):
			return backend.Info{}, backend.ErrIsFolder
		case err == nil && fi.IsDir():
			// left by a crash; no folder in the API's eyes
			if err := a.removeEmptyTree(ctx, w.path); err != nil {
				return backend.Info{}, err
			}
		case err == errThroughFile:
			return backend.Info{}, backend.ErrNotFolder
		case err == nil && fi.Mode().IsRegular() && w.mode == commitExclusive:
			return backend.Info{}, fs.ErrExist
		case err == nil && fi.Mode().IsRegular() && w.mode == commitAppend:
			joined, out, err := a.concat(w.path, f)
			if err != nil {
				return backend.Info{}, err
			}
			defer a.remove(joined) // a no-op once renamed into place
			defer out.Close()      // a no-op once closed below
			src, srcFile = joined, out
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return backend.Info{}, err
		}
		if err := a.place(ctx, src, w.path, false); err != nil {
			return backend.Info{}, err
		}
	}
	// On the OS the open descriptor describes the placed file exactly (a
	// rename keeps size, times and inode), which spares a walk of the path.
	// Other file systems (MemMapFs) stamp the time at close, so they are
	// asked after it; path's lock keeps other commits out meanwhile.
	var placed os.FileInfo
	if _, fd := srcFile.(*fdFile); fd || osFile(srcFile) != nil {
		placed, _ = srcFile.Stat()
	}
	if srcFile != w.f {
		srcFile.Close()
	}
	w.closeTemp()
	if src != w.tmp {
		_ = a.remove(w.tmp)
	}
	w.tmp = ""
	if placed == nil {
		if placed, err = a.fs.Stat(w.path); err != nil {
			return backend.Info{}, osError(err)
		}
	}
	return fileInfo(w.path, placed), nil
}

// closeTemp closes the open temporary, if any, and gives its unit back.
func (w *aferoWriter) closeTemp() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.hold.release()
}

// concat writes the current content of path followed by the staged bytes
// into a new temporary and returns its name and open file. The caller
// holds path's lock and closes the file once it is in place.
func (a *Afero) concat(path string, staged stagedFile) (string, stagedFile, error) {
	out, name, err := a.tempFile()
	if err != nil {
		return "", nil, err
	}
	err = func() error {
		if a.fast != nil {
			if err := a.cloneInto(out, path); err != nil {
				return err
			}
		} else {
			in, _, err := a.open(path, false)
			if err != nil {
				return err
			}
			_, err = copyFile(out, in)
			in.Close()
			if err != nil {
				return osError(err)
			}
		}
		if _, err := staged.Seek(0, io.SeekStart); err != nil {
			return osError(err)
		}
		if _, err := copyFile(out, staged); err != nil {
			return osError(err)
		}
		if a.fsync {
			return osError(out.Sync())
		}
		return nil
	}()
	if err != nil {
		out.Close()
		_ = a.remove(name)
		return "", nil, err
	}
	return name, out, nil
}

// cloneInto makes the empty temporary out a copy of the file at path,
// sharing its blocks where the file system clones (see clone): an append
// then writes only what it adds.
func (a *Afero) cloneInto(out stagedFile, path string) error {
	in, err := a.fast.open(path, os.O_RDONLY|openNonBlock, 0)
	if err != nil {
		return a.fastError(err)
	}
	defer in.Close()
	fi, err := in.Stat()
	switch {
	case err != nil:
		return osError(err)
	case !fi.Mode().IsRegular():
		return fs.ErrNotExist // replaced by something else since the lstat
	}
	return osError(clone(out.(*fdFile), in, fi.Size()))
}

// copyFile copies in to out, through the kernel (copy_file_range) when both
// are OS files.
func copyFile(out, in stagedFile) (int64, error) {
	o, ook := out.(*fdFile)
	if i, iok := in.(*fdFile); ook && iok {
		return copyFD(o, i)
	}
	if o, i := osFile(out), osFile(in); o != nil && i != nil {
		return io.Copy(o, i)
	}
	return io.Copy(struct{ io.Writer }{out}, struct{ io.Reader }{in})
}

// place renames the finished temporary src onto path, creating the parent
// folders. Another process may prune a parent between the two steps (this
// process's own pruning waits on the tree lock), so a vanished parent is
// made again.
//
// With fresh (the fast path only), the rename fails with fs.ErrExist,
// changing nothing, when anything is at path already; syscall.EINVAL
// where the file system cannot make that check.
func (a *Afero) place(ctx context.Context, src, path string, fresh bool) error {
	unlock, err := a.locks.shareTree(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	parent := roompath.Parent(path)
	a.kept(parent) // a deferred pruning of it, or of an ancestor, is off
	for attempt := 0; ; attempt++ {
		err := a.mkdirs(parent)
		if err == nil {
			if a.fast != nil {
				err = a.fast.rename(src, path, fresh)
				if errors.Is(err, syscall.ELOOP) {
					err = errSymlink // a parent swapped for a link since mkdirs
				}
			} else {
				err = a.fs.Rename(src, path)
			}
			err = osError(err)
		}
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrNotExist) && a.rootGone() {
			return &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "store directory missing"}
		}
		if attempt < 10 && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return err
	}
	if a.fsync && a.fast != nil {
		_ = a.fast.syncDir(parent) // best effort, as below
	} else if a.fsync {
		if d, _, err := a.open(dirName(parent), true); err == nil {
			_ = d.Sync() // best effort: not every file system syncs directories
			d.Close()
		}
	}
	return nil
}

// mkdirs creates dir and its missing ancestors, refusing to go through a
// file (ErrNotFolder) or a symbolic link (fs.ErrPermission).
func (a *Afero) mkdirs(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := a.lstat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil, err == errThroughFile:
		return backend.ErrNotFolder
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := a.mkdirs(roompath.Parent(dir)); err != nil {
		return err
	}
	if err := a.fs.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return osError(err)
	}
	return nil
}

func (w *aferoWriter) Abort(context.Context) error {
	w.done = true
	w.buf = nil
	w.closeTemp()
	if w.tmp != "" {
		err := w.a.remove(w.tmp)
		w.tmp = ""
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return osError(err)
		}
	}
	return nil
}
