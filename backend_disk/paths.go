package backend_disk

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/roomstore/roomstore/backend"
	"github.com/spf13/afero"
)

// paths is how an Afero reaches the files beneath its root for its
// frequent calls. NewAfero chooses one implementation, once, the way io/fs
// uses a file system's StatFS when it has one and a generic walk
// otherwise: the fast path of an OS root on Linux (fastPaths, one openat2
// beneath the root's descriptor per call), else the afero.Fs it was given
// (fsPaths, one call per path element). Errors are classified (osError)
// unless a method says otherwise.
type paths interface {
	// lstat resolves path without following symbolic links: a missing
	// element yields fs.ErrNotExist (or ErrStoreUnavailable when the
	// store's directory is gone, unless !report), one through a file
	// errThroughFile, one through a symbolic link errSymlink.
	lstat(path string, report bool) (os.FileInfo, error)
	// openFile opens the regular file at path for reading, never waiting
	// (a FIFO or device cannot hang it), and describes the version it
	// opened; a folder yields ErrIsFolder, anything else not a file
	// fs.ErrNotExist.
	openFile(path string) (stagedFile, os.FileInfo, error)
	// createTemp creates the new temporary base in aferoTmpDir, making
	// that folder when it is missing.
	createTemp(base string) (stagedFile, error)
	// reopenTemp opens the temporary name (aferoTmpDir/base) again to add
	// to it.
	reopenTemp(name string) (stagedFile, error)
	// copyFrom makes the empty temporary out a copy of the file at path
	// (sharing its blocks where the file system clones).
	copyFrom(out stagedFile, path string) error
	// copy copies in to out, both files of this paths; the error is not
	// classified.
	copy(out, in stagedFile) (int64, error)
	// describe describes a placed file from its open descriptor, or
	// returns nil. On the OS the descriptor describes the file exactly (a
	// rename keeps size, times and inode), which spares a walk of the
	// path; other file systems (MemMapFs) stamp the time at close.
	describe(f stagedFile) os.FileInfo
	// renamesFresh reports whether rename honours fresh.
	renamesFresh() bool
	// rename renames src onto path. With fresh it fails with fs.ErrExist,
	// changing nothing, when anything is at path, or with syscall.EINVAL
	// where the file system cannot make that check. The error is not
	// classified, except a path through a symbolic link (errSymlink).
	rename(src, path string, fresh bool) error
	// syncDir makes the entries of the folder dir durable, as far as the
	// file system can: best effort.
	syncDir(dir string)
	// remove removes the file at path; the error is not classified.
	remove(path string) error
	// rmdir removes dir if it is an empty directory, and nothing else.
	rmdir(dir string) error
	// link gives the file at src the new name dst as well (a hard link:
	// the same inode, so the same ETag), or fails with
	// errors.ErrUnsupported where the file system has no links. The error
	// is not classified, except a path through a symbolic link
	// (errSymlink).
	link(src, dst string) error
	// openDir opens the folder dir for reading its entries, each described
	// by an lstat (Readdir); anything else than a folder yields
	// ErrNotFolder.
	openDir(dir string) (afero.File, error)
	// lock takes the flock of stripe n's lock file, where the store has
	// flocks, waiting as ctx allows; closing the result releases it (a nil
	// closer: nothing to release).
	lock(ctx context.Context, n uint32) (io.Closer, error)
}

// fsPaths reaches files through the afero.Fs of an Afero.
type fsPaths struct{ a *Afero }

func (p fsPaths) openFile(path string) (stagedFile, os.FileInfo, error) {
	a := p.a
	lfi, err := a.lstat(path)
	if err != nil {
		return nil, nil, err
	}
	if err := a.fileOnly(path, lfi); err != nil {
		return nil, nil, err
	}
	// The descriptor pins the version to read: a commit may have renamed
	// a new one in since the lstat, and open's fstat describes this one.
	f, fi, err := a.open(path, false)
	if err != nil {
		return nil, nil, err
	}
	return f, fi, nil
}

func (p fsPaths) createTemp(base string) (stagedFile, error) {
	a := p.a
	name := aferoTmpDir + "/" + base
	for attempt := 0; ; attempt++ {
		f, err := a.fs.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR|a.oflags, 0o644)
		if err == nil {
			return f, nil
		}
		if attempt == 0 && errors.Is(err, fs.ErrNotExist) {
			if err = a.mkdirReserved(aferoTmpDir); err == nil {
				continue
			}
		}
		return nil, reservedError(err, aferoTmpDir)
	}
}

func (p fsPaths) reopenTemp(name string) (stagedFile, error) {
	f, err := p.a.fs.OpenFile(name, os.O_RDWR|os.O_APPEND|p.a.oflags, 0)
	if err != nil {
		return nil, reservedError(err, aferoTmpDir)
	}
	return f, nil
}

func (p fsPaths) copyFrom(out stagedFile, path string) error {
	in, _, err := p.a.open(path, false)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = p.copy(out, in)
	return osError(err)
}

func (fsPaths) copy(out, in stagedFile) (int64, error) {
	if o, i := osFile(out), osFile(in); o != nil && i != nil {
		return io.Copy(o, i) // through the kernel (copy_file_range) where it can
	}
	return io.Copy(struct{ io.Writer }{out}, struct{ io.Reader }{in})
}

func (fsPaths) describe(f stagedFile) os.FileInfo {
	if osFile(f) == nil {
		return nil
	}
	fi, _ := f.Stat()
	return fi
}

func (fsPaths) renamesFresh() bool { return false }

func (p fsPaths) rename(src, path string, fresh bool) error {
	if fresh {
		return syscall.EINVAL // never asked: renamesFresh is false
	}
	return p.a.fs.Rename(src, path)
}

func (p fsPaths) syncDir(dir string) {
	if d, _, err := p.a.open(dirName(dir), true); err == nil {
		_ = d.Sync() // best effort: not every file system syncs directories
		d.Close()
	}
}

func (p fsPaths) remove(path string) error { return p.a.fs.Remove(path) }

func (p fsPaths) rmdir(dir string) error {
	a := p.a
	// Remove also removes files, and on some file systems (MemMapFs) a
	// directory with children: checked first. On the OS a directory that
	// fills meanwhile is refused anyway.
	fi, err := a.lstat(dir)
	switch {
	case err != nil:
		return err
	case !fi.IsDir():
		return backend.ErrNotFolder
	}
	// Every name counts, reserved ones too (the folders of kept versions
	// hold nothing else).
	d, _, err := a.open(dir, true)
	if err != nil {
		return err
	}
	names, _ := d.Readdirnames(1)
	d.Close()
	if len(names) > 0 {
		return fs.ErrExist
	}
	return a.fs.Remove(dir)
}

func (p fsPaths) link(src, dst string) error {
	a := p.a
	switch fsys := a.fs.(type) {
	case *osRoot:
		return fsys.r.Link(src, dst)
	case *afero.OsFs, afero.OsFs:
		return os.Link(src, dst)
	case *afero.BasePathFs:
		if !a.osBacked {
			break // a base path over a file system of memory
		}
		from, err := fsys.RealPath(src)
		if err != nil {
			return err
		}
		to, err := fsys.RealPath(dst)
		if err != nil {
			return err
		}
		return os.Link(from, to)
	}
	return errors.ErrUnsupported
}

func (p fsPaths) openDir(dir string) (afero.File, error) {
	f, _, err := p.a.open(dirName(dir), true)
	return f, err
}

func (p fsPaths) lock(ctx context.Context, n uint32) (io.Closer, error) {
	return p.a.locks.lockFile(ctx, p.a, n)
}
