package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// Reserved layout inside an afero root. Everything lives under one
// top-level folder so that staging a file never creates its parent folder
// before Commit (which would make the folder visible early).
const (
	aferoTmpDir  = ReservedPrefix + "/tmp"
	aferoLockDir = ReservedPrefix + "/lock"
)

// Afero is a Backend over any afero.Fs: afero.NewBasePathFs(afero.NewOsFs(),
// dir) for local disk, afero.NewMemMapFs() in memory.
//
// A commit writes a temporary file under the reserved folder and renames it
// into place, so readers see the old file or the new one. Appends copy the
// old content and the new bytes into the temporary under a lock; on an OS
// file system the lock is an flock(2) on a lock file inside the root, so
// appends from several processes (or several Afero values) on one directory
// lose nothing. Empty folders are pruned. Paths never follow symbolic
// links: a path that crosses one yields fs.ErrPermission, and List leaves
// symlinks out.
type Afero struct {
	fs       afero.Fs
	fsync    bool
	locks    *fsLocks
	readFlag int // flags for opening a file to read
}

// AferoOption configures NewAfero.
type AferoOption func(*Afero)

// WithFsync turns fsync at commit on or off (default on): with it, a
// committed file and its folder entry are on stable storage when Commit
// returns. Off trades that durability for speed; atomicity is kept either
// way.
func WithFsync(on bool) AferoOption { return func(a *Afero) { a.fsync = on } }

// NewAfero returns a Backend storing files in fsys. It sweeps the
// temporary files that crashed processes left behind (see Sweep).
func NewAfero(fsys afero.Fs, opts ...AferoOption) *Afero {
	a := &Afero{fs: fsys, fsync: true, readFlag: os.O_RDONLY}
	a.locks = locksFor(a, fsys)
	if d, err := fsys.Open("."); err == nil {
		if osFile(d) != nil {
			// Non-blocking, so that a FIFO swapped in after the checks
			// cannot hang an open; only for the OS, as some afero file
			// systems treat any flag but O_RDONLY as a write.
			a.readFlag |= openNonBlock
		}
		d.Close()
	}
	for _, o := range opts {
		o(a)
	}
	_, _ = a.Sweep(context.Background())
	return a
}

// Sweep removes the temporary files of uncommitted writes whose writer is
// gone: a crash (or kill -9) mid-write leaves its staged bytes under the
// reserved folder, invisible but taking space. A live writer holds an
// flock(2) on its temporary, so Sweep removes only temporaries of this host
// that it can lock and whose process has ended (or that are over a minute
// old, for writers in another pid namespace that shares the directory).
// Temporaries of other hosts sharing the directory, and every temporary on
// a file system that is not the OS's, are left alone. It returns how many
// files it removed. NewAfero calls it; long-running servers that share a
// directory with crashing peers may call it from time to time.
func (a *Afero) Sweep(ctx context.Context) (int, error) {
	d, err := a.fs.Open(aferoTmpDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, mapOSError("sweep", aferoTmpDir, err)
	}
	defer d.Close()
	if osFile(d) == nil {
		return 0, nil // not the OS's: no other process, no crash to clean up after
	}
	removed := 0
	for {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		names, err := d.Readdirnames(256)
		for _, n := range names {
			if a.sweepOne(aferoTmpDir + "/" + n) {
				removed++
			}
		}
		if err != nil || len(names) == 0 {
			return removed, nil
		}
	}
}

// sweepOne removes one stale temporary and reports whether it did.
func (a *Afero) sweepOne(name string) bool {
	rest, ok := strings.CutPrefix(name[len(aferoTmpDir)+1:], tempHost)
	if !ok {
		return false // another host's, or not ours to judge
	}
	pidText, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		return false
	}
	f, err := a.fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	osf := osFile(f)
	if osf == nil {
		return false
	}
	if locked, err := tryFlock(osf); !locked || err != nil {
		return false // its writer is alive
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	// The lock is free between a writer's create and its flock, so a
	// young file is stale only once its process is known to be gone.
	if (pid == os.Getpid() || !processGone(pid)) && time.Since(fi.ModTime()) < time.Minute {
		return false
	}
	return a.fs.Remove(name) == nil
}

// Stat implements Backend.
func (a *Afero) Stat(ctx context.Context, path string) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	if path == "" {
		return Info{IsFolder: true}, nil
	}
	fi, err := a.lstat(path)
	if err != nil {
		return Info{}, err
	}
	if fi.IsDir() {
		if !a.hasFiles(path) {
			return Info{}, notExist(path)
		}
		return Info{Path: path, IsFolder: true}, nil
	}
	if !fi.Mode().IsRegular() {
		return Info{}, notExist(path) // FIFOs, devices: never files of the store
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
		return &fs.PathError{Op: "read", Path: path, Err: ErrIsFolder}
	}
	return notExist(path)
}

// lstat resolves path one element at a time without following symbolic
// links, so nothing outside the root is ever reached.
func (a *Afero) lstat(path string) (os.FileInfo, error) {
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
			return nil, err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil, &fs.PathError{Op: "stat", Path: path[:end], Err: fmt.Errorf("%w: symbolic link", fs.ErrPermission)}
		}
		if end == len(path) {
			return fi, nil
		}
		if !fi.IsDir() {
			return nil, &fs.PathError{Op: "stat", Path: path, Err: fmt.Errorf("%w: %w", fs.ErrNotExist, ErrNotFolder)}
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
		return nil, mapOSError("stat", name, err)
	}
	return fi, nil
}

// hasFiles reports whether a file lies somewhere beneath dir. Pruning
// removes directories without files, but a crash between a removal and its
// pruning can leave some behind, and those are not folders.
func (a *Afero) hasFiles(dir string) bool {
	f, err := a.fs.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	for {
		batch, err := f.Readdir(16)
		for _, fi := range batch {
			switch {
			case IsReserved(fi.Name()):
			case fi.Mode().IsRegular():
				return true
			case fi.IsDir() && a.hasFiles(Join(dir, fi.Name())):
				return true
			}
		}
		if err != nil || len(batch) == 0 {
			return false
		}
	}
}

// Read implements Backend.
func (a *Afero) Read(ctx context.Context, path string, offset, length int64) (io.ReadCloser, Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, Info{}, err
	}
	fi, err := a.lstat(path)
	if err != nil {
		return nil, Info{}, err
	}
	if err := a.fileOnly(path, fi); err != nil {
		return nil, Info{}, err
	}
	f, err := a.fs.OpenFile(path, a.readFlag, 0) // the Stat below refuses a FIFO swapped in meanwhile
	if err != nil {
		return nil, Info{}, mapOSError("read", path, err)
	}
	// Stat the open file: a commit may have renamed a new version in since
	// the lstat, and the descriptor pins the version we will read.
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			return nil, Info{}, notExist(path)
		}
		return nil, Info{}, mapOSError("read", path, err)
	}
	info := fileInfo(path, fi)
	if offset < 0 || offset > info.Size {
		f.Close()
		return nil, Info{}, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: offset %d outside file of %d bytes", fs.ErrInvalid, offset, info.Size)}
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, Info{}, mapOSError("read", path, err)
		}
	}
	if length < 0 || offset+length > info.Size {
		length = info.Size - offset
	}
	return &limitedFile{r: io.LimitReader(f, length), f: f}, info, nil
}

type limitedFile struct {
	r io.Reader
	f afero.File
}

func (l *limitedFile) Read(p []byte) (int, error) { return l.r.Read(p) }
func (l *limitedFile) Close() error               { return l.f.Close() }

// Presign implements Backend: local files have no native URL signing.
func (a *Afero) Presign(context.Context, string, time.Duration) (string, error) {
	return "", errors.ErrUnsupported
}

// List implements Backend. Entries are read in batches, so memory holds one
// batch at a time.
func (a *Afero) List(ctx context.Context, dir string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(Info{}, err)
			return
		}
		if dir != "" {
			fi, err := a.lstat(dir)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					yield(Info{}, err)
				}
				return
			}
			if !fi.IsDir() {
				return
			}
		}
		f, err := a.fs.Open(dirName(dir))
		if err != nil {
			if err = mapOSError("list", dir, err); !errors.Is(err, fs.ErrNotExist) {
				yield(Info{}, err)
			}
			return
		}
		defer f.Close()
		for {
			if err := ctx.Err(); err != nil {
				yield(Info{}, err)
				return
			}
			batch, err := f.Readdir(1024)
			for _, fi := range batch {
				name := fi.Name()
				if IsReserved(name) || fi.Mode()&os.ModeSymlink != 0 {
					continue
				}
				p := Join(dir, name)
				var info Info
				switch {
				case fi.IsDir():
					if !a.hasFiles(p) {
						continue
					}
					info = Info{Path: p, IsFolder: true}
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
				yield(Info{}, mapOSError("list", dir, err))
				return
			}
		}
	}
}

func dirName(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// Remove implements Backend.
func (a *Afero) Remove(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := a.locks.lock(ctx, a.fs, path)
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
	if err := a.fs.Remove(path); err != nil {
		return mapOSError("remove", path, err)
	}
	a.prune(Parent(path))
	return nil
}

// prune removes dir and its ancestors while they are empty.
func (a *Afero) prune(dir string) {
	a.locks.tree.Lock()
	defer a.locks.tree.Unlock()
	for ; dir != ""; dir = Parent(dir) {
		f, err := a.fs.Open(dir)
		if err != nil {
			return
		}
		names, _ := f.Readdirnames(1)
		f.Close()
		// Checked first because some afero file systems (MemMapFs) remove
		// a directory that still has children; an OS file system refuses
		// anyway, which covers other processes.
		if len(names) > 0 || a.fs.Remove(dir) != nil {
			return
		}
	}
}

// Create implements Backend.
func (a *Afero) Create(ctx context.Context, path string, opts WriteOptions) (Writer, error) {
	return a.newWriter(ctx, path, commitOverwrite(opts.Exclusive))
}

// Append implements Backend.
func (a *Afero) Append(ctx context.Context, path string, _ WriteOptions) (Writer, error) {
	return a.newWriter(ctx, path, commitAppend)
}

type commitMode int

const (
	commitReplace commitMode = iota
	commitExclusive
	commitAppend
)

func commitOverwrite(exclusive bool) commitMode {
	if exclusive {
		return commitExclusive
	}
	return commitReplace
}

func (a *Afero) newWriter(ctx context.Context, path string, mode commitMode) (*aferoWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, tmp, err := a.tempFile()
	if err != nil {
		return nil, mapOSError("create", path, err)
	}
	return &aferoWriter{a: a, path: path, mode: mode, f: f, tmp: tmp}, nil
}

// tempHost and tempOwner prefix this process's temporary files: the host
// (hex, so no name is ambiguous) and the pid tell Sweep whose they are.
var (
	tempHost  = func() string { h, _ := os.Hostname(); return hex.EncodeToString([]byte(h)) + "-" }()
	tempOwner = tempHost + strconv.Itoa(os.Getpid()) + "-"
)

// tempFile creates a new file under the reserved folder (creating the
// folder on first use) and, on an OS file system, flocks it for as long as
// it is open, which tells Sweep that its writer is alive.
func (a *Afero) tempFile() (afero.File, string, error) {
	for attempt := 0; ; attempt++ {
		var b [12]byte
		_, _ = rand.Read(b[:])
		name := aferoTmpDir + "/" + tempOwner + hex.EncodeToString(b[:])
		f, err := a.fs.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if err == nil {
			if osf := osFile(f); osf != nil {
				_, _ = tryFlock(osf)
			}
			return f, name, nil
		}
		if attempt > 0 || !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
		if err := a.fs.MkdirAll(aferoTmpDir, 0o755); err != nil {
			return nil, "", err
		}
	}
}

type aferoWriter struct {
	a    *Afero
	path string
	mode commitMode
	f    afero.File // nil once closed
	tmp  string     // "" once committed or aborted
}

func (w *aferoWriter) Write(ctx context.Context, p []byte) error {
	if w.f == nil {
		return &fs.PathError{Op: "write", Path: w.path, Err: fs.ErrClosed}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := w.f.Write(p); err != nil {
		return mapOSError("write", w.path, err)
	}
	return nil
}

func (w *aferoWriter) Commit(ctx context.Context) (Info, error) {
	if w.tmp == "" {
		return Info{}, &fs.PathError{Op: "commit", Path: w.path, Err: fs.ErrClosed}
	}
	info, err := w.commit(ctx)
	if err != nil {
		_ = w.Abort(ctx)
	}
	return info, err
}

func (w *aferoWriter) commit(ctx context.Context) (Info, error) {
	a := w.a
	// The staged file stays open (and flocked) until it is in place, so
	// that no Sweep takes it for a dead writer's.
	if a.fsync {
		if err := w.f.Sync(); err != nil {
			return Info{}, mapOSError("commit", w.path, err)
		}
	}
	unlock, err := a.locks.lock(ctx, a.fs, w.path)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}

	src, srcFile := w.tmp, w.f
	fi, err := a.lstat(w.path)
	switch {
	case err == nil && fi.IsDir() && a.hasFiles(w.path):
		return Info{}, &fs.PathError{Op: "commit", Path: w.path, Err: ErrIsFolder}
	case err == nil && fi.IsDir():
		a.removeEmptyTree(w.path) // left by a crash; no folder in the API's eyes
	case err == nil && fi.Mode().IsRegular() && w.mode == commitExclusive:
		return Info{}, &fs.PathError{Op: "commit", Path: w.path, Err: fs.ErrExist}
	case err == nil && fi.Mode().IsRegular() && w.mode == commitAppend:
		joined, out, err := a.concat(w.path, w.f)
		if err != nil {
			return Info{}, err
		}
		defer a.fs.Remove(joined) // a no-op once renamed into place
		defer out.Close()         // a no-op once closed below
		src, srcFile = joined, out
	case err != nil && errors.Is(err, ErrNotFolder):
		return Info{}, &fs.PathError{Op: "commit", Path: w.path, Err: ErrNotFolder}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return Info{}, err
	}
	if err := a.place(src, w.path); err != nil {
		return Info{}, err
	}
	// On the OS the open descriptor describes the placed file exactly (a
	// rename keeps size, times and inode), which spares a walk of the path.
	// Other file systems (MemMapFs) stamp the time at close, so they are
	// asked after it; path's lock keeps other commits out meanwhile.
	var placed os.FileInfo
	if osFile(srcFile) != nil {
		placed, _ = srcFile.Stat()
	}
	srcFile.Close()
	w.f.Close()
	w.f = nil
	if src != w.tmp {
		_ = a.fs.Remove(w.tmp)
	}
	w.tmp = ""
	if placed == nil {
		if placed, err = a.fs.Stat(w.path); err != nil {
			return Info{}, mapOSError("commit", w.path, err)
		}
	}
	return fileInfo(w.path, placed), nil
}

// removeEmptyTree removes the directories at and below dir bottom-up; an
// OS file system refuses any that a file has meanwhile appeared in.
func (a *Afero) removeEmptyTree(dir string) {
	a.locks.tree.Lock()
	defer a.locks.tree.Unlock()
	var walk func(string)
	walk = func(d string) {
		if f, err := a.fs.Open(d); err == nil {
			infos, _ := f.Readdir(-1)
			f.Close()
			for _, fi := range infos {
				if fi.IsDir() {
					walk(Join(d, fi.Name()))
				}
			}
		}
		if !a.hasFiles(d) {
			_ = a.fs.Remove(d)
		}
	}
	walk(dir)
}

// concat writes the current content of path followed by the staged bytes
// into a new temporary and returns its name and open file. The caller
// holds path's lock and closes the file once it is in place.
func (a *Afero) concat(path string, staged afero.File) (string, afero.File, error) {
	out, name, err := a.tempFile()
	if err != nil {
		return "", nil, mapOSError("commit", path, err)
	}
	err = func() error {
		in, err := a.fs.Open(path)
		if err != nil {
			return err
		}
		_, err = copyFile(out, in)
		in.Close()
		if err != nil {
			return err
		}
		if _, err := staged.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := copyFile(out, staged); err != nil {
			return err
		}
		if a.fsync {
			return out.Sync()
		}
		return nil
	}()
	if err != nil {
		out.Close()
		_ = a.fs.Remove(name)
		return "", nil, mapOSError("commit", path, err)
	}
	return name, out, nil
}

// copyFile copies in to out, through the kernel (copy_file_range) when both
// are OS files.
func copyFile(out, in afero.File) (int64, error) {
	if o, i := osFile(out), osFile(in); o != nil && i != nil {
		return io.Copy(o, i)
	}
	return io.Copy(struct{ io.Writer }{out}, struct{ io.Reader }{in})
}

// osFile unwraps the *os.File under an afero file, or returns nil.
func osFile(f afero.File) *os.File {
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

// place renames the finished temporary src onto path, creating the parent
// folders. Another process may prune a parent between the two steps (this
// process's own pruning waits on the tree lock), so a vanished parent is
// made again.
func (a *Afero) place(src, path string) error {
	a.locks.tree.RLock()
	defer a.locks.tree.RUnlock()
	parent := Parent(path)
	for attempt := 0; ; attempt++ {
		err := a.mkdirs(parent)
		if err == nil {
			if err = a.fs.Rename(src, path); err != nil {
				err = mapOSError("commit", path, err)
			}
		}
		if err == nil {
			break
		}
		if attempt < 10 && errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrNotFolder) {
			continue
		}
		return err
	}
	if a.fsync {
		if d, err := a.fs.Open(dirName(parent)); err == nil {
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
	case err == nil, errors.Is(err, ErrNotFolder):
		return &fs.PathError{Op: "commit", Path: dir, Err: ErrNotFolder}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := a.mkdirs(Parent(dir)); err != nil {
		return err
	}
	if err := a.fs.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return mapOSError("commit", dir, err)
	}
	return nil
}

func (w *aferoWriter) Abort(context.Context) error {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.tmp != "" {
		err := w.a.fs.Remove(w.tmp)
		w.tmp = ""
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return mapOSError("abort", w.path, err)
		}
	}
	return nil
}

func fileInfo(path string, fi os.FileInfo) Info {
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
	return Info{Path: path, Size: fi.Size(), ModTime: mt, ETag: string(etag)}
}

func notExist(path string) error {
	return &fs.PathError{Op: "stat", Path: path, Err: fs.ErrNotExist}
}

// mapOSError turns afero/OS errors into the package's sentinels, keeping
// the original in the chain.
func mapOSError(op, path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		err = fmt.Errorf("%w: %w: %w", fs.ErrNotExist, ErrNotFolder, err)
	case errors.Is(err, syscall.EISDIR):
		err = fmt.Errorf("%w: %w", ErrIsFolder, err)
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// Fs returns the file system the backend stores in.
func (a *Afero) Fs() afero.Fs { return a.fs }
