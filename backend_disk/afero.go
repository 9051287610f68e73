package backend_disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
	"github.com/spf13/afero"
)

// Reserved layout inside an afero root. Everything lives under one
// top-level folder so that staging a file never creates its parent folder
// before Commit (which would make the folder visible early).
const (
	aferoTmpDir  = roompath.ReservedPrefix + "/tmp"
	aferoLockDir = roompath.ReservedPrefix + "/lock"
	aferoLiveDir = roompath.ReservedPrefix + "/live"
)

// Afero is a Backend over any afero.Fs: NewOSRoot(dir) (what file:// uses)
// or afero.NewBasePathFs(afero.NewOsFs(), dir) for local disk,
// afero.NewMemMapFs() in memory.
//
// A writer keeps its first 64 KiB in memory and stages the rest in a
// temporary file under the reserved folder; a commit writes what is staged
// to a temporary and renames it into place, so readers see the old file or
// the new one. An append makes a new temporary of the old content and the
// new bytes under a lock, and renames it into place: on NewOSRoot's Linux
// fast path over a file system that clones (FICLONE: XFS, btrfs) the old
// content is shared, not copied, so an append costs what it adds;
// elsewhere the old content is copied (in the kernel where it can),
// O(file size). On an OS file system the lock is an flock(2) on a lock
// file inside the root, so appends from several processes (or several
// Afero values) on one directory lose nothing. The same lock holds a file
// while a change checks its precondition (backend.Precondition, IfMatch)
// and keeps the version it replaces (backend.Keep): the replaced file is
// linked into the reserved folder before the new one is renamed over it,
// so a kept version costs a link, not a copy, except on a file system
// without links, such as MemMapFs, where it is a copy (see history.go).
// Empty folders are pruned (see afero_folders.go).
// Paths never follow symbolic links: a path that crosses one yields
// fs.ErrPermission, and List leaves symlinks out. No open ever waits for
// a FIFO or a device: such files are not files of the store.
//
// The descriptors that writes need come from a budget shared by the
// process and sized from its descriptor limit, so that thousands of open
// handles work under the common limit of 1,024; see ErrTooManyHandles.
type Afero struct {
	fs       afero.Fs
	fsync    bool
	osBacked bool // fs hands out *os.File: descriptors, flocks, other processes
	oflags   int  // flags of every open on the OS: openNonBlock|openNoFollow
	dirflag  int  // openDirectory on the OS
	// paths reaches the files beneath the root for the frequent calls
	// (path lookups, reads, temporaries, locks, renames, removals):
	// chosen once by NewAfero, see paths.go.
	paths paths

	locks *fsLocks
	owner *owner
	swept int // temporaries removed by NewAfero's sweep
	// defer_ holds the directories emptied whose pruning waits (see
	// afero_folders.go).
	defer_ deferred

	release   func() // gives back the shared locks and the liveness lock
	closer    io.Closer
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// StoreID implements Identifier: for an Afero over NewOSRoot (what a
// file:// URL opens) the directory's absolute path, symbolic links
// resolved when it was opened, as a file URL, so that two processes on one
// machine that open the same directory, by whatever path, agree; "" over any other afero.Fs, whose sharing it cannot tell.
// Hosts that share a directory (a network file system) must mount it at
// the same path, or name the store explicitly (roomstore.WithStoreID).
func (a *Afero) StoreID() string {
	if r, ok := a.fs.(*osRoot); ok {
		return r.id
	}
	return ""
}

// AferoOption configures NewAfero.
type AferoOption func(*Afero)

// WithFsync turns fsync at commit on or off (default on): with it, a
// committed file and its folder entry are on stable storage when Commit
// returns. Off trades that durability for speed; atomicity is kept either
// way.
func WithFsync(on bool) AferoOption { return func(a *Afero) { a.fsync = on } }

// NewAfero returns a Backend storing files in fsys. It sweeps the
// temporary files that crashed processes left behind (see Sweep). The
// caller keeps fsys: Close releases the backend's own descriptors but
// never closes fsys.
func NewAfero(fsys afero.Fs, opts ...AferoOption) *Afero {
	a := &Afero{fs: fsys, fsync: true, osBacked: true}
	if d, err := fsys.Open("."); err == nil {
		a.osBacked = osFile(d) != nil
		d.Close()
	} else if _, mem := fsys.(*afero.MemMapFs); mem {
		a.osBacked = false
	}
	a.paths = fsPaths{a}
	if p := fastPathsFor(a, fsys); p != nil {
		a.paths = p
	}
	if a.osBacked {
		// Only for the OS: some afero file systems treat any flag but
		// O_RDONLY as a write.
		a.oflags = openNonBlock | openNoFollow
		a.dirflag = openDirectory
		refreshFDBudget()
	}
	for _, o := range opts {
		o(a)
	}
	locks, dropLocks := locksFor(fsys)
	a.locks = locks
	a.owner = newOwner()
	owner := a.owner
	a.release = func() { owner.release(fsys); dropLocks() }
	// An Afero that is dropped without Close gives its locks back when
	// collected; release must not reach a itself.
	runtime.AddCleanup(a, func(release func()) { release() }, a.release)
	a.swept, _ = a.Sweep(context.Background())
	return a
}

// Swept returns how many stale temporaries the sweep that NewAfero made
// removed (see Sweep); later calls of Sweep report their own.
func (a *Afero) Swept() int { return a.swept }

// Close releases what the backend holds: its liveness lock (after which
// other processes may sweep the temporaries of writers still open here)
// and, for a backend that the file:// opener built, the os.Root it opened.
// Later calls may fail with fs.ErrClosed. It is idempotent.
func (a *Afero) Close() error {
	a.closeOnce.Do(func() {
		a.closeFolders()
		a.closed.Store(true)
		a.release()
		if a.closer != nil {
			a.closeErr = a.closer.Close()
		}
	})
	return a.closeErr
}

// Fs returns the file system the backend stores in.
func (a *Afero) Fs() afero.Fs { return a.fs }

// Stat implements Backend.
func (a *Afero) Stat(ctx context.Context, path string) (backend.Info, error) {
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	if path == "" {
		return backend.Info{IsFolder: true}, nil
	}
	if roompath.IsReserved(path) {
		return backend.Info{}, fs.ErrNotExist // the store's own: temporaries, locks, kept versions
	}
	fi, err := a.lstat(path)
	if err != nil {
		return backend.Info{}, err
	}
	if fi.IsDir() {
		if !a.hasFiles(path) {
			return backend.Info{}, fs.ErrNotExist
		}
		return backend.Info{Path: path, IsFolder: true}, nil
	}
	if !fi.Mode().IsRegular() {
		return backend.Info{}, fs.ErrNotExist // FIFOs, devices: never files of the store
	}
	return fileInfo(path, fi), nil
}

// fileOnly accepts a regular file; a folder is ErrIsFolder, and anything
// else (a directory without files, a FIFO, a device) does not exist for
// the store.
func (a *Afero) fileOnly(path string, fi os.FileInfo) error {
	switch {
	case fi.Mode().IsRegular():
		return nil
	case fi.IsDir() && a.hasFiles(path):
		return backend.ErrIsFolder
	}
	return fs.ErrNotExist
}

// lstat resolves path one element at a time without following symbolic
// links, so nothing outside the root is ever reached. A path with a
// missing element yields fs.ErrNotExist, one through a file errThroughFile
// (which is fs.ErrNotExist too), one through a symbolic link
// fs.ErrPermission.
func (a *Afero) lstat(path string) (os.FileInfo, error) { return a.lstatAs(path, true) }

// lstatAs is lstat; without report, a missing path is fs.ErrNotExist
// even when the store's directory is gone, which spares the fast path a
// call where the caller goes on to a step that reports it (place).
func (a *Afero) lstatAs(path string, report bool) (os.FileInfo, error) {
	return a.paths.lstat(path, report)
}

// lstat walks path through the afero.Fs, one element at a time.
func (p fsPaths) lstat(path string, _ bool) (os.FileInfo, error) {
	a := p.a
	var fi os.FileInfo
	for i := 0; ; {
		j := strings.IndexByte(path[i:], '/')
		end := len(path)
		if j >= 0 {
			end = i + j
		}
		var err error
		fi, err = a.lstatOne(path[:end])
		if err != nil {
			if i == 0 && errors.Is(err, fs.ErrNotExist) {
				return nil, a.missing(err)
			}
			if errors.Is(err, backend.ErrNotFolder) {
				return nil, errThroughFile
			}
			return nil, err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil, errSymlink
		}
		if end == len(path) {
			return fi, nil
		}
		if !fi.IsDir() {
			return nil, errThroughFile
		}
		i = end + 1
	}
}

func (a *Afero) lstatOne(name string) (os.FileInfo, error) {
	var (
		fi  os.FileInfo
		err error
	)
	if l, ok := a.fs.(afero.Lstater); ok {
		fi, _, err = l.LstatIfPossible(name)
	} else {
		fi, err = a.fs.Stat(name)
	}
	if err != nil {
		return nil, osError(err)
	}
	return fi, nil
}

// missing tells a top-level name that is not there from a store that is
// gone: the store's directory removed (or, held open by an os.Root,
// unlinked) makes every name missing.
func (a *Afero) missing(err error) error {
	if a.rootGone() {
		return &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "store directory missing"}
	}
	return err
}

// mkdirReserved creates the reserved folder dir, unless the store's own
// directory is gone: MkdirAll through afero.NewBasePathFs would make that
// again, and with it a store that somebody removed.
func (a *Afero) mkdirReserved(dir string) error {
	if a.rootGone() {
		return &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "store directory missing"}
	}
	return a.fs.MkdirAll(dir, 0o755)
}

func (a *Afero) rootGone() bool {
	fi, err := a.fs.Stat(".")
	return err != nil || linkCount(fi) == 0
}

// open opens name for reading, without ever waiting (a FIFO or device
// cannot hang it) or following a symbolic link in its last element, and
// fstats it: dir asks for a folder (anything else yields ErrNotFolder),
// otherwise a regular file (anything else yields fs.ErrNotExist). Errors
// are classified.
func (a *Afero) open(name string, dir bool) (afero.File, os.FileInfo, error) {
	flag := os.O_RDONLY | a.oflags
	if dir {
		flag |= a.dirflag
	}
	f, err := a.fs.OpenFile(name, flag, 0)
	if err != nil {
		return nil, nil, osError(err)
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, nil, osError(err)
	case dir && !fi.IsDir():
		f.Close()
		return nil, nil, backend.ErrNotFolder
	case !dir && !fi.Mode().IsRegular():
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, fi, nil
}

// Read implements Backend.
func (a *Afero) Read(ctx context.Context, path string, offset, length int64) (io.ReadCloser, backend.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, backend.Info{}, err
	}
	if roompath.IsReserved(path) {
		return nil, backend.Info{}, fs.ErrNotExist // the store's own (see Stat)
	}
	f, fi, err := a.paths.openFile(path)
	if err != nil {
		return nil, backend.Info{}, err
	}
	info := fileInfo(path, fi)
	if offset < 0 || offset > info.Size {
		f.Close()
		return nil, backend.Info{}, backend.Errorf(fs.ErrInvalid, nil, "offset %d outside file of %d bytes", offset, info.Size)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, backend.Info{}, osError(err)
		}
	}
	if length < 0 || offset+length > info.Size {
		length = info.Size - offset
	}
	return &limitedFile{r: io.LimitReader(f, length), f: f}, info, nil
}

type limitedFile struct {
	r io.Reader
	f io.Closer
}

func (l *limitedFile) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		err = osError(err)
	}
	return n, err
}

func (l *limitedFile) Close() error { return osError(l.f.Close()) }

// Presign implements Backend: local files have no native URL signing.
func (a *Afero) Presign(context.Context, string, backend.PresignOptions) (string, error) {
	return "", errors.ErrUnsupported
}

// List implements Backend. Entries are read in batches, so memory holds one
// batch at a time.
func (a *Afero) List(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	return func(yield func(backend.Info, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(backend.Info{}, err)
			return
		}
		if roompath.IsReserved(dir) {
			return // the store's own (see Stat)
		}
		if dir != "" {
			fi, err := a.lstat(dir)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					yield(backend.Info{}, err)
				}
				return
			}
			if !fi.IsDir() {
				return
			}
		}
		f, fi, err := a.open(dirName(dir), true)
		switch {
		case err == nil && dir == "" && linkCount(fi) == 0:
			f.Close()
			err = &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "store directory removed"}
		case err != nil && dir == "" && errors.Is(err, fs.ErrNotExist):
			err = &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "store directory missing"}
		}
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, backend.ErrNotFolder) {
				yield(backend.Info{}, err)
			}
			return
		}
		defer f.Close()
		next := a.batches(f, 1024)
		for {
			if err := ctx.Err(); err != nil {
				yield(backend.Info{}, err)
				return
			}
			batch, err := next()
			for _, fi := range batch {
				name := fi.Name()
				if roompath.IsReserved(name) || fi.Mode()&os.ModeSymlink != 0 {
					continue
				}
				p := roompath.Join(dir, name)
				var info backend.Info
				switch {
				case fi.IsDir():
					if !a.hasFiles(p) {
						continue
					}
					info = backend.Info{Path: p, IsFolder: true}
				case fi.Mode().IsRegular():
					info = fileInfo(p, fi)
				default:
					continue
				}
				if !yield(info, nil) {
					return
				}
			}
			if err == io.EOF || len(batch) == 0 {
				return
			}
			if err != nil {
				yield(backend.Info{}, osError(err))
				return
			}
		}
	}
}

// batches returns the function that reads the open folder f: n entries
// per call on the OS, so that memory holds one batch; other file systems
// hold the folder in memory anyway and are read whole at the first call
// (afero's MemMapFs panics on a second batch when the folder has shrunk
// since the first). At the end it returns io.EOF.
func (a *Afero) batches(f afero.File, n int) func() ([]os.FileInfo, error) {
	if a.osBacked {
		return func() ([]os.FileInfo, error) { return f.Readdir(n) }
	}
	done := false
	return func() ([]os.FileInfo, error) {
		if done {
			return nil, io.EOF
		}
		done = true
		all, err := f.Readdir(-1)
		if err == nil {
			err = io.EOF
		}
		return all, err
	}
}

func dirName(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// Remove implements Backend. With opts.Keep the file is renamed into
// the folder of its path's versions (see history.go): removed and kept
// in one step.
func (a *Afero) Remove(ctx context.Context, path string, opts backend.RemoveOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.osBacked {
		units, err := acquire(ctx, 3) // the lock, and two folders renamed between or pruned
		if err != nil {
			return err
		}
		defer units.release()
	}
	unlock, err := a.locks.lock(ctx, a, path)
	if err != nil {
		return err
	}
	defer unlock()
	fi, err := a.lstat(path)
	if err != nil {
		return err
	}
	if err := a.fileOnly(path, fi); err != nil {
		return err
	}
	if err := (backend.Precondition{IfMatch: opts.IfMatch}).Check(true, fileInfo(path, fi).ETag); err != nil {
		return err
	}
	if opts.Keep != nil {
		kept, err := a.keepByRename(ctx, path, opts.Keep, time.Now())
		if err != nil {
			return err
		}
		a.retain(ctx, kept, opts.Keep.Retain)
	} else if err := a.remove(path); err != nil {
		return osError(err)
	}
	a.emptied(ctx, roompath.Parent(path))
	return nil
}

// Move implements Backend with one rename, under the locks of both paths
// (held across processes on the OS), so a commit to either path lands
// wholly before or after it and readers see the file at src or at dst.
// The file keeps its inode, so its ETag and ModTime. With opts.Keep, the
// file replaced at dst and the one moved are linked into their paths'
// versions first (see history.go).
func (a *Afero) Move(ctx context.Context, src, dst string, opts backend.MoveOptions) (backend.Info, error) {
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	if a.osBacked {
		units, err := acquire(ctx, 4) // two locks, and two folders renamed in or pruned
		if err != nil {
			return backend.Info{}, err
		}
		defer units.release()
	}
	unlock, err := a.locks.lockPair(ctx, a, src, dst)
	if err != nil {
		return backend.Info{}, err
	}
	defer unlock()
	fi, err := a.lstat(src)
	if err != nil {
		return backend.Info{}, err
	}
	if err := a.fileOnly(src, fi); err != nil {
		return backend.Info{}, err
	}
	if err := (backend.Precondition{IfMatch: opts.IfMatch}).Check(true, fileInfo(src, fi).ETag); err != nil {
		return backend.Info{}, err
	}
	to, err := a.lstatAs(dst, false)
	replaced := err == nil && to.Mode().IsRegular() // and Overwrite, past the switch
	switch {
	case err == nil && to.IsDir() && a.hasFiles(dst):
		return backend.Info{}, backend.ErrIsFolder
	case err == nil && to.IsDir():
		// left by a crash; no folder in the API's eyes
		if err := a.removeEmptyTree(ctx, dst); err != nil {
			return backend.Info{}, err
		}
	case err == errThroughFile:
		return backend.Info{}, backend.ErrNotFolder
	case err == nil && to.Mode().IsRegular() && !opts.Overwrite:
		// Anything else at dst (a FIFO, a device) is no file of the store
		// and is replaced, as a commit replaces it.
		return backend.Info{}, fs.ErrExist
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return backend.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	var kept [2]keptVersion
	if opts.Keep != nil {
		now := time.Now()
		if replaced {
			if kept[0], err = a.keep(ctx, dst, to, opts.Keep, backend.ReasonOverwritten, now); err != nil {
				return backend.Info{}, err
			}
		}
		if kept[1], err = a.keep(ctx, src, fi, opts.Keep, backend.ReasonMoved, now); err != nil {
			a.unkeep(kept[0])
			return backend.Info{}, err
		}
	}
	if err := a.place(ctx, src, dst, false); err != nil {
		a.unkeep(kept[:]...)
		return backend.Info{}, err
	}
	if opts.Keep != nil {
		a.retain(ctx, kept[0], opts.Keep.Retain)
		a.retain(ctx, kept[1], opts.Keep.Retain)
	}
	a.emptied(ctx, roompath.Parent(src))
	// A rename keeps the inode, so src's description is dst's; on file
	// systems that do not keep inodes (MemMapFs) it is the same object.
	return fileInfo(dst, fi), nil
}

// removeEmptyTree removes the directories at and below dir bottom-up; an
// OS file system refuses any that a file has meanwhile appeared in.
func (a *Afero) removeEmptyTree(ctx context.Context, dir string) error {
	unlock, err := a.locks.ownTree(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	var walk func(string)
	walk = func(d string) {
		if f, _, err := a.open(d, true); err == nil {
			infos, _ := f.Readdir(-1)
			f.Close()
			for _, fi := range infos {
				if fi.IsDir() {
					walk(roompath.Join(d, fi.Name()))
				}
			}
		}
		if !a.hasFiles(d) {
			_ = a.fs.Remove(d)
		}
	}
	walk(dir)
	return nil
}

// remove removes the file at path.
func (a *Afero) remove(path string) error { return a.paths.remove(path) }

// stagedFile is what a writer stages in and a reader reads: an afero.File,
// or a bare descriptor on the fast path.
type stagedFile interface {
	io.ReadWriteSeeker
	io.Closer
	Sync() error
	Stat() (os.FileInfo, error)
}

// osFile unwraps the *os.File under an afero file, or returns nil.
func osFile(f any) *os.File {
	for {
		switch v := f.(type) {
		case *os.File:
			return v
		case *afero.BasePathFile:
			f = v.File
		default:
			return nil
		}
	}
}

func fileInfo(path string, fi os.FileInfo) backend.Info {
	mt := fi.ModTime()
	// Built with strconv rather than fmt: List makes one per file, and
	// two Sprintf calls and a concatenation allocated four times per file.
	var buf [3*16 + 3]byte
	etag := strconv.AppendInt(buf[:0], fi.Size(), 16)
	etag = append(etag, '-')
	etag = strconv.AppendInt(etag, mt.UnixNano(), 16)
	// Every commit renames a new file into place, so the inode tells two
	// versions apart even when size and coarse timestamps agree.
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		etag = append(etag, '-')
		etag = strconv.AppendUint(etag, st.Ino, 16)
	}
	return backend.Info{Path: path, Size: fi.Size(), ModTime: mt, ETag: string(etag)}
}

// errClosedBackend is the answer of a write on a closed backend.
var errClosedBackend = fmt.Errorf("%w: backend closed", fs.ErrClosed)
