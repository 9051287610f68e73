package backend_disk

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/roomstore/roomstore/backend"
	"github.com/spf13/afero"
)

// fastPathsFor returns the fast path of fsys when it is an OS root whose
// directory openat2 can reach (NewOSRoot on Linux 5.6 and later), else
// nil.
func fastPathsFor(a *Afero, fsys afero.Fs) paths {
	if r, ok := fsys.(*osRoot); ok && r.fast != nil {
		return fastPaths{a: a, r: r.fast}
	}
	return nil
}

// fastPaths reaches files through the openat2 fast path of an OS root:
// one resolution beneath the root's descriptor per call, which refuses
// symbolic links and ways out. Its staged files are bare descriptors
// (*fdFile).
type fastPaths struct {
	a *Afero
	r *fastRoot
}

func (p fastPaths) lstat(path string, report bool) (os.FileInfo, error) {
	fi, err := p.r.lstat(path)
	if err != nil && !report && errors.Is(err, syscall.ENOENT) {
		return nil, osError(err)
	}
	if err != nil {
		return nil, p.resolveError(err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return nil, errSymlink
	}
	return fi, nil
}

// resolveError classifies an error of the fast path's resolution as lstat
// does: a missing element fs.ErrNotExist (or the store unavailable, when
// its directory is gone), a file on the way errThroughFile, a symbolic
// link (or a way out of the root, which only a link could offer, and
// which the fast path reports as one) errSymlink.
func (p fastPaths) resolveError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return p.a.missing(osError(err))
	case errors.Is(err, syscall.ENOTDIR):
		return errThroughFile
	case errors.Is(err, syscall.ELOOP):
		return errSymlink
	}
	return osError(err)
}

func (p fastPaths) openFile(path string) (stagedFile, os.FileInfo, error) {
	// One resolution refuses links and ways out; the fstat says what was
	// opened (open never waits, even for a FIFO).
	f, err := p.r.open(path, os.O_RDONLY|openNonBlock, 0)
	if err != nil {
		return nil, nil, p.resolveError(err)
	}
	fi, err := f.Stat()
	if err != nil {
		err = osError(err)
	} else {
		err = p.a.fileOnly(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

func (p fastPaths) createTemp(base string) (stagedFile, error) {
	f, err := p.r.createTempIn(func() error { return p.a.mkdirReserved(aferoTmpDir) }, base)
	if err != nil {
		return nil, reservedError(err, aferoTmpDir)
	}
	return f, nil
}

func (p fastPaths) reopenTemp(name string) (stagedFile, error) {
	f, err := p.r.reopenTemp(strings.TrimPrefix(name, aferoTmpDir+"/"))
	if err != nil {
		return nil, reservedError(err, aferoTmpDir)
	}
	return f, nil
}

// copyFrom clones (see clone): an append then writes only what it adds.
func (p fastPaths) copyFrom(out stagedFile, path string) error {
	in, err := p.r.open(path, os.O_RDONLY|openNonBlock, 0)
	if err != nil {
		return p.resolveError(err)
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

func (fastPaths) copy(out, in stagedFile) (int64, error) {
	return copyFD(out.(*fdFile), in.(*fdFile))
}

func (fastPaths) describe(f stagedFile) os.FileInfo {
	fi, _ := f.Stat()
	return fi
}

func (fastPaths) renamesFresh() bool { return true }

func (p fastPaths) rename(src, path string, fresh bool) error {
	err := p.r.rename(src, path, fresh)
	if errors.Is(err, syscall.ELOOP) {
		err = errSymlink // a parent swapped for a link since mkdirs
	}
	return err
}

func (p fastPaths) syncDir(dir string) { _ = p.r.syncDir(dir) }

func (p fastPaths) remove(path string) error { return p.r.remove(path) }

// rmdir is unlinkat(AT_REMOVEDIR): empty directories only.
func (p fastPaths) rmdir(dir string) error { return p.r.rmdir(dir) }

// link is one linkat(2) between the two parents, each opened beneath the
// root.
func (p fastPaths) link(src, dst string) error {
	err := p.r.link(src, dst)
	if errors.Is(err, syscall.ELOOP) {
		err = errSymlink
	}
	return err
}

func (p fastPaths) openDir(dir string) (afero.File, error) {
	f, err := p.r.openDir(dir)
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		return nil, backend.ErrNotFolder
	case err != nil:
		return nil, p.resolveError(err)
	}
	return f, nil
}

// lock opens the lock file beneath the root with one openat2(2) for each
// lock (so that a lock file removed or renamed meanwhile is never the one
// locked), flocks it, and closes it to unlock.
func (p fastPaths) lock(ctx context.Context, n uint32) (io.Closer, error) {
	c, err := p.r.lock(ctx, n, lockNames[n], func() error { return p.a.mkdirReserved(aferoLockDir) })
	if err != nil && ctx.Err() == nil {
		err = reservedError(err, aferoLockDir)
	}
	return c, err
}
