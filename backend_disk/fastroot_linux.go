//go:build linux

package backend_disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/roomstore/roomstore/backend"
	"golang.org/x/sys/unix"
)

// fastRoot is the Linux fast path of an OS root: every path is resolved
// beneath the root's descriptor by one openat2(2) with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS, so the kernel refuses any symbolic link and any way
// out of the root in the same call that resolves the path, where os.Root
// walks it one element (and one system call) at a time. The temporaries'
// folder stays open, so that a temporary is created, and renamed from,
// with no lookup of the reserved folder.
//
// The descriptors it keeps are fdFiles, so a Close racing with a call can
// never make the call act on a reused descriptor number.
type fastRoot struct {
	root *fdFile // the root folder, O_RDONLY|O_DIRECTORY

	mu  sync.Mutex
	tmp *fdFile // aferoTmpDir, once opened; guarded by mu

	// checked records the stripes whose lock file was found a regular
	// file, so that later locks need no fstat.
	checked [lockStripes]atomic.Bool

	closed bool // guarded by mu
}

// resolveFlags are the openat2 resolution flags of every path: beneath the
// root, no symbolic link anywhere (nor a /proc magic link).
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// newFastRoot opens the fast path over dir, or returns nil where the kernel
// (older than 5.6) or a sandbox's seccomp filter refuses openat2, which
// leaves os.Root's slower path.
func newFastRoot(dir string) *fastRoot {
	fd, err := openat2(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0, 0)
	if err != nil {
		return nil
	}
	// Probe: resolve "." beneath it as every later call will.
	probe, err := openat2(fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0, resolveFlags)
	if err != nil {
		unix.Close(fd)
		return nil
	}
	unix.Close(probe)
	return &fastRoot{root: newFDFile(fd, ".")} // named for no host path
}

// openat2 opens path beneath dirfd with the resolution flags given,
// retrying an interrupted call (EINTR) and, a few times, a resolution that
// a concurrent rename made the kernel give up on (EAGAIN).
func openat2(dirfd int, path string, flags int, mode uint32, resolve uint64) (int, error) {
	if flags&(unix.O_CREAT|unix.O_TMPFILE) == 0 {
		mode = 0 // openat2 refuses a mode it would not use
	}
	how := unix.OpenHow{Flags: uint64(flags) | unix.O_CLOEXEC, Mode: uint64(mode), Resolve: resolve}
	for again := 0; ; {
		fd, err := unix.Openat2(dirfd, path, &how)
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN && again < 16:
			again++
		default:
			return fd, err
		}
	}
}

// Close closes every descriptor the fast path keeps.
func (r *fastRoot) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.tmp != nil {
		r.tmp.Close()
	}
	return r.root.Close()
}

// pathErr names a system call's failure on a path inside the root; the
// root's own path never appears.
func pathErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// beneath resolves path beneath the folder dir, refusing any symbolic
// link; a way out of the root (EXDEV, which only a link could offer) is
// reported as the refused link it is, ELOOP.
func beneath(dir int, path string, flags int, mode uint32) (int, error) {
	fd, err := openat2(dir, path, flags, mode, resolveFlags)
	if err == unix.EXDEV {
		err = unix.ELOOP
	}
	return fd, err
}

// open opens path beneath the root. It never makes a terminal the
// process's controlling one.
func (r *fastRoot) open(path string, flags int, mode uint32) (*fdFile, error) {
	var fd int
	err := r.root.use(func(dir int) (err error) {
		fd, err = beneath(dir, path, flags|unix.O_NOCTTY, mode)
		return err
	})
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	return newFDFile(fd, path), nil
}

// inParent runs fn with the descriptor of path's parent folder and path's
// last element: the root itself for a top-level name, else the parent
// opened beneath it (a read descriptor, so that it can be fsynced).
func (r *fastRoot) inParent(path string, fn func(dir int, base string) error) error {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return r.root.use(func(dir int) error { return fn(dir, path) })
	}
	var pfd int
	err := r.root.use(func(dir int) (err error) {
		pfd, err = beneath(dir, path[:i], unix.O_RDONLY|unix.O_DIRECTORY, 0)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return fn(pfd, path[i+1:])
}

// lstat describes path without following a symbolic link in its last
// element; one in a parent yields ELOOP, a parent that is a file ENOTDIR.
func (r *fastRoot) lstat(path string) (os.FileInfo, error) {
	st := new(syscall.Stat_t)
	err := r.inParent(path, func(dir int, base string) error {
		return fstatat(dir, base, st, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		return nil, pathErr("lstat", path, err)
	}
	return newStatInfo(path, st), nil
}

// remove unlinks the file at path.
func (r *fastRoot) remove(path string) error {
	err := r.inParent(path, func(dir int, base string) error { return unix.Unlinkat(dir, base, 0) })
	return pathErr("remove", path, err)
}

// rmdir removes the empty directory at path.
func (r *fastRoot) rmdir(path string) error {
	err := r.inParent(path, func(dir int, base string) error { return unix.Unlinkat(dir, base, unix.AT_REMOVEDIR) })
	return pathErr("rmdir", path, err)
}

// syncDir fsyncs the folder dir ("" the root), so that a rename in it is
// durable.
func (r *fastRoot) syncDir(dir string) error {
	if dir == "" {
		return r.root.use(unix.Fsync)
	}
	f, err := r.open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// tmpDir returns the temporaries' folder, opening it on first use; mkdir
// makes it when it is missing. Drop it with dropTmp when it turns out to
// be gone.
func (r *fastRoot) tmpDir(mkdir func() error) (*fdFile, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fs.ErrClosed
	}
	if r.tmp != nil {
		return r.tmp, nil
	}
	for attempt := 0; ; attempt++ {
		var fd int
		err := r.root.use(func(dir int) (err error) {
			fd, err = beneath(dir, aferoTmpDir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			return err
		})
		if err == unix.ENOENT && attempt == 0 {
			if err = mkdir(); err == nil {
				continue
			}
		}
		if err != nil {
			return nil, pathErr("open", aferoTmpDir, err)
		}
		r.tmp = newFDFile(fd, aferoTmpDir)
		return r.tmp, nil
	}
}

// dropTmp forgets the temporaries' folder t (removed under the process),
// so that the next tmpDir opens or makes it again.
func (r *fastRoot) dropTmp(t *fdFile) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tmp == t {
		r.tmp.Close()
		r.tmp = nil
	}
}

// reopenTemp opens the temporary base, in the temporaries' folder, again
// to add to it.
func (r *fastRoot) reopenTemp(base string) (*fdFile, error) {
	t, err := r.tmpDir(func() error { return fs.ErrNotExist })
	if err != nil {
		return nil, pathErr("open", aferoTmpDir+"/"+base, err)
	}
	var fd int
	err = t.use(func(dir int) (err error) {
		fd, err = beneath(dir, base, unix.O_RDWR|unix.O_APPEND|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		return err
	})
	if err != nil {
		return nil, pathErr("open", aferoTmpDir+"/"+base, err)
	}
	return newFDFile(fd, aferoTmpDir+"/"+base), nil
}

// createTemp creates the new file base in the temporaries' folder t.
func (r *fastRoot) createTemp(t *fdFile, base string) (*fdFile, error) {
	var fd int
	err := t.use(func(dir int) (err error) {
		fd, err = beneath(dir, base, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR, 0o644)
		return err
	})
	if err != nil {
		return nil, pathErr("open", aferoTmpDir+"/"+base, err)
	}
	return newFDFile(fd, aferoTmpDir+"/"+base), nil
}

// rename moves src onto path; a temporary (a path under aferoTmpDir) is
// taken from the folder kept open. With noReplace it fails with EEXIST
// when anything is at path (or EINVAL where the file system cannot tell).
func (r *fastRoot) rename(src, path string, noReplace bool) error {
	var flags uint
	if noReplace {
		flags = unix.RENAME_NOREPLACE
	}
	move := func(from int, base string) error {
		return r.inParent(path, func(to int, name string) error {
			return unix.Renameat2(from, base, to, name, flags)
		})
	}
	var err error
	if base, ok := strings.CutPrefix(src, aferoTmpDir+"/"); ok && !strings.Contains(base, "/") {
		var t *fdFile
		if t, err = r.tmpDir(func() error { return fs.ErrNotExist }); err == nil {
			err = t.use(func(from int) error { return move(from, base) })
		}
	} else {
		err = r.inParent(src, move)
	}
	return pathErr("rename", path, err)
}

// link gives the file at src the new name dst too, with one linkat(2)
// that follows no symbolic link.
func (r *fastRoot) link(src, dst string) error {
	err := r.inParent(src, func(from int, base string) error {
		return r.inParent(dst, func(to int, name string) error {
			for {
				err := unix.Linkat(from, base, to, name, 0)
				if err != unix.EINTR {
					return err
				}
			}
		})
	})
	return pathErr("link", dst, err)
}

// openDir opens the folder dir beneath the root as an *os.File, for its
// Readdir (which describes each entry with an fstatat on the folder's
// descriptor). The descriptor is blocking, so os.NewFile leaves the
// runtime's poller out.
func (r *fastRoot) openDir(dir string) (*os.File, error) {
	var fd int
	err := r.root.use(func(root int) (err error) {
		fd, err = beneath(root, dirName(dir), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		return err
	})
	if err != nil {
		return nil, pathErr("open", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// clone makes out's content a copy of in's, sharing in's blocks where the
// file system can (FICLONE: btrfs, XFS, bcachefs), so that an append does
// not copy what the file already holds; elsewhere it copies in the kernel
// (copy_file_range), or through a buffer. out must be empty; after clone
// its offset is at its end. It fails unless out then holds size bytes,
// in's size.
func clone(out, in *fdFile, size int64) error {
	err := out.use(func(o int) error {
		return in.use(func(i int) error { return unix.IoctlFileClone(o, i) })
	})
	if err == nil {
		var end int64
		if end, err = out.Seek(0, io.SeekEnd); err == nil && end != size {
			err = fmt.Errorf("cloned %d bytes of %d", end, size)
		}
		return err
	}
	n, err := copyFD(out, in)
	if err == nil && n != size {
		err = fmt.Errorf("copied %d bytes of %d", n, size)
	}
	return err
}

// copyFD copies in from its offset to its end onto out at its offset,
// with copy_file_range where the kernel can, else through a buffer: where
// a file system or a sandbox refuses it, and where a kernel (before 5.19)
// reports nothing copied at the start, as io.Copy between two *os.File
// values does.
func copyFD(out, in *fdFile) (int64, error) {
	var total int64
	for {
		var n int
		err := out.use(func(o int) error {
			return in.use(func(i int) (err error) {
				for {
					n, err = unix.CopyFileRange(i, nil, o, nil, 1<<30, 0)
					if err != unix.EINTR {
						return err
					}
				}
			})
		})
		switch {
		case err == nil && n > 0:
			total += int64(n)
			continue
		case err == nil && total > 0:
			return total, nil
		case err == nil, errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL),
			errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPERM), errors.Is(err, unix.EIO):
			if total > 0 {
				return total, err
			}
			return io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 256<<10))
		default:
			return total, err
		}
	}
}

// fstatat is fstatat(2) into a syscall.Stat_t, which the rest of the
// package (fileInfo, linkCount) reads; unix.Stat_t has its layout on
// Linux.
func fstatat(dir int, name string, st *syscall.Stat_t, flags int) error {
	for {
		err := unix.Fstatat(dir, name, (*unix.Stat_t)(unsafe.Pointer(st)), flags)
		if err != unix.EINTR {
			return err
		}
	}
}

// The conversion in fstatat needs both types to be one layout.
var _ = [1]struct{}{}[unsafe.Sizeof(unix.Stat_t{})-unsafe.Sizeof(syscall.Stat_t{})]

// statInfo is an os.FileInfo over a stat result, as os.Lstat makes one.
type statInfo struct {
	name string
	st   *syscall.Stat_t
}

// newStatInfo describes st, the stat of path (named by its last element).
func newStatInfo(path string, st *syscall.Stat_t) *statInfo {
	return &statInfo{name: path[strings.LastIndexByte(path, '/')+1:], st: st}
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (s *statInfo) Sys() any           { return s.st }
func (s *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	return m
}

// fdFile is a bare descriptor as a file: what the fast path reads, stages
// and commits through, without the runtime poller's registration that
// os.NewFile attempts (one fcntl and a failing epoll_ctl per file). A
// Close while a call runs waits for nothing and never lets the call reach
// a reused descriptor: the descriptor is closed when the last call on it
// ends.
type fdFile struct {
	name string // inside the root, for errors

	mu      sync.Mutex
	fd      int
	users   int  // calls running on fd
	closing bool // Close was called
}

// newFDFile takes over the open descriptor fd, of name inside the root.
func newFDFile(fd int, name string) *fdFile { return &fdFile{fd: fd, name: name} }

// use runs fn on the descriptor unless the file is closed.
func (f *fdFile) use(fn func(fd int) error) error {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		return fs.ErrClosed
	}
	f.users++
	fd := f.fd
	f.mu.Unlock()
	err := fn(fd)
	f.mu.Lock()
	if f.users--; f.users == 0 && f.closing {
		unix.Close(fd)
	}
	f.mu.Unlock()
	return err
}

func (f *fdFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return pathErr("close", f.name, fs.ErrClosed)
	}
	f.closing = true
	if f.users == 0 {
		return pathErr("close", f.name, unix.Close(f.fd))
	}
	return nil
}

func (f *fdFile) Read(p []byte) (int, error) {
	var n int
	err := f.use(func(fd int) (err error) {
		for {
			n, err = unix.Read(fd, p)
			if err != unix.EINTR {
				return err
			}
		}
	})
	switch {
	case err != nil:
		return 0, pathErr("read", f.name, err)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (f *fdFile) Write(p []byte) (int, error) {
	var total int
	err := f.use(func(fd int) error {
		for total < len(p) {
			n, err := unix.Write(fd, p[total:])
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				return err
			case n == 0:
				return io.ErrShortWrite
			}
			total += n
		}
		return nil
	})
	return total, pathErr("write", f.name, err)
}

func (f *fdFile) Seek(offset int64, whence int) (int64, error) {
	var off int64
	err := f.use(func(fd int) (err error) {
		off, err = unix.Seek(fd, offset, whence)
		return err
	})
	return off, pathErr("seek", f.name, err)
}

func (f *fdFile) Sync() error {
	return pathErr("sync", f.name, f.use(unix.Fsync))
}

func (f *fdFile) Stat() (os.FileInfo, error) {
	st := new(syscall.Stat_t)
	if err := f.use(func(fd int) error { return syscall.Fstat(fd, st) }); err != nil {
		return nil, pathErr("stat", f.name, err)
	}
	return newStatInfo(f.name, st), nil
}

// createTempIn creates the new file base in the temporaries' folder,
// opening the folder on first use and making it with mkdir when it is
// missing, or made again after somebody removed it.
func (r *fastRoot) createTempIn(mkdir func() error, base string) (*fdFile, error) {
	for attempt := 0; ; attempt++ {
		t, err := r.tmpDir(mkdir)
		if err != nil {
			return nil, err
		}
		f, err := r.createTemp(t, base)
		if err != nil && attempt == 0 && errors.Is(err, fs.ErrNotExist) {
			r.dropTmp(t) // removed while open
			continue
		}
		return f, err
	}
}

// lock takes stripe n's flock on the lock file name, opened beneath the
// root for this lock (so that a lock file removed or renamed meanwhile is
// never the one locked), waiting as ctx allows; mkdir makes the lock
// folder when it is missing. Closing the result releases the flock.
func (r *fastRoot) lock(ctx context.Context, n uint32, name string, mkdir func() error) (io.Closer, error) {
	flags := unix.O_RDWR | unix.O_NONBLOCK | unix.O_NOCTTY
	var fd int
	for attempt := 0; ; attempt++ {
		err := r.root.use(func(dir int) (err error) {
			fd, err = beneath(dir, name, flags, 0o644)
			return err
		})
		if err == unix.ENOENT && attempt < 2 {
			// The file, or its folder too, is missing: make them.
			if flags&unix.O_CREAT != 0 {
				if err = mkdir(); err != nil {
					return nil, err
				}
			}
			flags |= unix.O_CREAT
			continue
		}
		if err != nil {
			return nil, pathErr("open", name, err)
		}
		break
	}
	l := newFDFile(fd, name)
	if !r.checked[n].Load() {
		if fi, err := l.Stat(); err != nil || !fi.Mode().IsRegular() {
			l.Close()
			return nil, &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "lock file " + name + " is not a regular file"}
		}
		r.checked[n].Store(true)
	}
	err := waitFlock(ctx, func() (bool, error) {
		var locked bool
		err := l.use(func(fd int) error {
			err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
			locked = err == nil
			if err == syscall.EWOULDBLOCK {
				err = nil
			}
			return err
		})
		return locked, err
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil // closing the descriptor releases the flock
}

// isRoot reports whether fi describes the folder the fast path holds.
func (r *fastRoot) isRoot(fi os.FileInfo) bool {
	held, err := r.root.Stat()
	if err != nil {
		return false
	}
	a, aok := held.Sys().(*syscall.Stat_t)
	b, bok := fi.Sys().(*syscall.Stat_t)
	return aok && bok && a.Dev == b.Dev && a.Ino == b.Ino
}
