package backend_disk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// Create implements Backend.
func (a *Afero) Create(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	mode := commitReplace
	if opts.Exclusive {
		mode = commitExclusive
	}
	return a.newWriter(ctx, path, mode, opts)
}

// Append implements Backend.
func (a *Afero) Append(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	return a.newWriter(ctx, path, commitAppend, opts)
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
func (a *Afero) newWriter(ctx context.Context, path string, mode commitMode, opts backend.WriteOptions) (backend.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if a.closed.Load() {
		return nil, errClosedBackend
	}
	return &aferoWriter{a: a, path: path, mode: mode, pre: opts.Precondition, keep: opts.Keep}, nil
}

// aferoWriter stages a file's bytes: in buf while they are few, then in a
// temporary file, kept open (f) while the process's descriptor budget has
// a held unit for it, else opened for each spill of at least
// stageInMemory bytes.
type aferoWriter struct {
	a    *Afero
	path string
	mode commitMode
	pre  backend.Precondition
	keep *backend.Keep
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
		return w.a.paths.reopenTemp(w.tmp)
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
	var b [12]byte
	_, _ = rand.Read(b[:])
	base := prefix + hex.EncodeToString(b[:])
	f, err := a.paths.createTemp(base)
	if err != nil {
		return nil, "", err
	}
	return f, aferoTmpDir + "/" + base, nil
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

// commit stages every byte in the open temporary, takes path's lock, and
// places the temporary as the writer's mode says (replace, create or
// append).
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
	f, err := w.stageAll()
	if err != nil {
		return backend.Info{}, err
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
	switch w.mode {
	case commitReplace:
		err = w.replace(ctx)
	case commitExclusive:
		err = w.create(ctx)
	case commitAppend:
		src, srcFile, err = w.append(ctx, f)
	}
	if err != nil {
		return backend.Info{}, err
	}
	return w.placed(src, srcFile)
}

// stageAll writes every staged byte to the writer's temporary, which stays
// open until it is in place (its descriptor describes the placed file),
// and syncs it when the backend fsyncs.
func (w *aferoWriter) stageAll() (stagedFile, error) {
	f := w.f
	if f == nil {
		var err error
		if f, err = w.openTemp(); err != nil {
			return nil, err
		}
		w.f = f
	}
	if err := w.writeStaged(f, nil); err != nil {
		return nil, err
	}
	if w.a.fsync {
		if err := f.Sync(); err != nil {
			return nil, osError(err)
		}
	}
	return f, nil
}

// replace places the temporary at path, whatever file is there. Where
// renames can refuse to replace (the fast path, RENAME_NOREPLACE), a name
// with nothing at it (the common case: a new file) takes the temporary at
// once, which needs no look at it and keeps nothing, and where nothing is
// there every precondition but IfMatch holds; only when something is
// there, or IfMatch asks for a file, is it looked at first.
func (w *aferoWriter) replace(ctx context.Context) error {
	a := w.a
	if a.paths.renamesFresh() && w.pre.IfMatch == "" {
		switch err := a.place(ctx, w.tmp, w.path, true); {
		case err == nil:
			return nil
		case !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.EINVAL):
			return err
		}
	}
	old, err := w.target(ctx)
	if err != nil {
		return err
	}
	kept, err := w.prepare(ctx, old, backend.ReasonOverwritten)
	if err != nil {
		return err
	}
	if err := a.place(ctx, w.tmp, w.path, false); err != nil {
		a.unkeep(kept)
		return err
	}
	w.retain(ctx, kept)
	return nil
}

// retain applies the writer's Keep.Retain once its commit, which kept k,
// is in place.
func (w *aferoWriter) retain(ctx context.Context, k keptVersion) {
	if w.keep != nil {
		w.a.retain(ctx, k, w.keep.Retain)
	}
}

// create places the temporary at path unless a file is there
// (fs.ErrExist, after the precondition).
func (w *aferoWriter) create(ctx context.Context) error {
	old, err := w.target(ctx)
	if err != nil {
		return err
	}
	if err := w.check(old); err != nil {
		return err
	}
	if old != nil {
		return fs.ErrExist
	}
	return w.a.place(ctx, w.tmp, w.path, false)
}

// append places at path the file's content followed by the staged bytes
// (a new temporary, see concat), or the temporary alone where no file is,
// and returns the name and open file of what it placed.
func (w *aferoWriter) append(ctx context.Context, staged stagedFile) (string, stagedFile, error) {
	a := w.a
	old, err := w.target(ctx)
	if err != nil {
		return "", nil, err
	}
	kept, err := w.prepare(ctx, old, backend.ReasonAppended)
	if err != nil {
		return "", nil, err
	}
	if old == nil {
		return w.tmp, staged, a.place(ctx, w.tmp, w.path, false)
	}
	joined, out, err := a.concat(w.path, staged)
	if err != nil {
		a.unkeep(kept)
		return "", nil, err
	}
	if err := a.place(ctx, joined, w.path, false); err != nil {
		out.Close()
		_ = a.remove(joined)
		a.unkeep(kept)
		return "", nil, err
	}
	w.retain(ctx, kept)
	return joined, out, nil
}

// check checks the writer's precondition on old, the file at its path
// (nil: none). The caller holds path's lock, so the file stays that
// version until the commit is done.
func (w *aferoWriter) check(old os.FileInfo) error {
	etag := ""
	if old != nil {
		etag = fileInfo(w.path, old).ETag
	}
	return w.pre.Check(old != nil, etag)
}

// prepare checks the writer's precondition on old, the file at its path
// (nil: none), and keeps old as the writer's Keep asks, before the commit
// replaces it for reason.
func (w *aferoWriter) prepare(ctx context.Context, old os.FileInfo, reason string) (keptVersion, error) {
	if err := w.check(old); err != nil {
		return keptVersion{}, err
	}
	if w.keep == nil || old == nil {
		return keptVersion{}, nil
	}
	return w.a.keep(ctx, w.path, old, w.keep, reason, time.Now())
}

// target looks at what is at the writer's path before a commit places a
// file there and returns its description if it is a regular file, else
// nil. A folder is ErrIsFolder, and an empty directory tree (left by a
// crash; no folder in the API's eyes) is removed; a path through a file
// is ErrNotFolder.
func (w *aferoWriter) target(ctx context.Context) (os.FileInfo, error) {
	fi, err := w.a.lstatAs(w.path, false)
	switch {
	case err == nil && fi.IsDir() && w.a.hasFiles(w.path):
		return nil, backend.ErrIsFolder
	case err == nil && fi.IsDir():
		return nil, w.a.removeEmptyTree(ctx, w.path)
	case err == errThroughFile:
		return nil, backend.ErrNotFolder
	case err == nil && fi.Mode().IsRegular():
		return fi, nil
	case err == nil:
		return nil, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return nil, nil
}

// placed finishes a commit whose file src (open as srcFile) is in place:
// it closes the temporaries and describes the placed file, from its
// descriptor where that describes it exactly (see paths.describe), else
// by its path, path's lock keeping other commits out meanwhile.
func (w *aferoWriter) placed(src string, srcFile stagedFile) (backend.Info, error) {
	a := w.a
	fi := a.paths.describe(srcFile)
	if srcFile != w.f {
		srcFile.Close()
	}
	w.closeTemp()
	if src != w.tmp {
		_ = a.remove(w.tmp)
	}
	w.tmp = ""
	if fi == nil {
		var err error
		if fi, err = a.fs.Stat(w.path); err != nil {
			return backend.Info{}, osError(err)
		}
	}
	return fileInfo(w.path, fi), nil
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
		if err := a.paths.copyFrom(out, path); err != nil {
			return err
		}
		if _, err := staged.Seek(0, io.SeekStart); err != nil {
			return osError(err)
		}
		if _, err := a.paths.copy(out, staged); err != nil {
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

// place renames the finished temporary src onto path, creating the parent
// folders. Another process may prune a parent between the two steps (this
// process's own pruning waits on the tree lock), so a vanished parent is
// made again.
//
// With fresh (only where paths.renamesFresh), the rename fails with fs.ErrExist,
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
			err = osError(a.paths.rename(src, path, fresh))
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
	if a.fsync {
		a.paths.syncDir(parent)
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
