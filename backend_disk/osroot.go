package backend_disk

import (
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/afero"
)

// NewOSRoot returns an afero.Fs over the directory dir that the kernel
// keeps confined to it: every call goes through an os.Root (or the fast
// path below), so no path, symbolic link or rename race inside the
// directory can reach a file outside it. The file:// URL scheme stores through it. The directory must
// exist. The Fs holds descriptors of the directory until it is closed
// (one, or on Linux three: os.Root's, the fast path's below, and the
// reserved folder of temporaries once a write needs it): it implements
// io.Closer (the file:// opener's backend closes it in Close).
//
// On Linux 5.6 and later, the Afero backend over it takes a faster path
// for its frequent calls: each path is resolved by one openat2(2) with
// RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS beneath the directory's
// descriptor (os.Root walks a path one element, and one system call, at a
// time), and the folder of temporaries stays open. The
// kernel refuses a symbolic link or a way out in the same call that
// resolves the path, so the guarantee is the same. Where openat2 is
// missing or refused (older kernels, some sandboxes), os.Root serves
// every call.
//
// Prefer it to afero.NewBasePathFs(afero.NewOsFs(), dir) when other
// programs can write inside dir: Afero refuses paths through symbolic
// links either way, but only os.Root closes the window between that check
// and the use of the path.
func NewOSRoot(dir string) (afero.Fs, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, osError(err)
	}
	abs := absDir(dir)
	o := &osRoot{r: r, dir: abs}
	if abs != "" {
		o.id = "file://" + filepath.ToSlash(abs)
	}
	if fast := newFastRoot(dir); fast != nil {
		// Both must be one directory, even if dir was renamed or replaced
		// between the two opens.
		if fi, err := r.Stat("."); err == nil && fast.isRoot(fi) {
			o.fast = fast
		} else {
			fast.Close()
		}
	}
	return o, nil
}

type osRoot struct {
	r   *os.Root
	id  string // see Afero.StoreID
	dir string // the directory, absolute with links resolved; "" if unknown
	// fast is the platform's faster path to the same directory (Linux:
	// openat2), which the Afero backend uses for its frequent calls; nil
	// where there is none.
	fast *fastRoot
}

// file turns an *os.File result into an afero.File without a typed nil.
func file(f *os.File, err error) (afero.File, error) {
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Close closes the directory's descriptors; later calls fail with
// fs.ErrClosed.
func (o *osRoot) Close() error {
	if o.fast != nil {
		o.fast.Close()
	}
	return o.r.Close()
}

func (o *osRoot) Create(name string) (afero.File, error) { return file(o.r.Create(name)) }
func (o *osRoot) Mkdir(name string, perm os.FileMode) error {
	return o.r.Mkdir(name, perm)
}
func (o *osRoot) MkdirAll(name string, perm os.FileMode) error {
	return o.r.MkdirAll(name, perm)
}
func (o *osRoot) Open(name string) (afero.File, error) { return file(o.r.Open(name)) }
func (o *osRoot) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	return file(o.r.OpenFile(name, flag, perm))
}
func (o *osRoot) Remove(name string) error                  { return o.r.Remove(name) }
func (o *osRoot) RemoveAll(name string) error               { return o.r.RemoveAll(name) }
func (o *osRoot) Rename(oldname, newname string) error      { return o.r.Rename(oldname, newname) }
func (o *osRoot) Stat(name string) (os.FileInfo, error)     { return o.r.Stat(name) }
func (o *osRoot) Name() string                              { return "OSRoot(" + o.r.Name() + ")" }
func (o *osRoot) Chmod(name string, mode os.FileMode) error { return o.r.Chmod(name, mode) }
func (o *osRoot) Chown(name string, uid, gid int) error     { return o.r.Chown(name, uid, gid) }
func (o *osRoot) Chtimes(name string, a, m time.Time) error { return o.r.Chtimes(name, a, m) }
func (o *osRoot) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	fi, err := o.r.Lstat(name)
	return fi, true, err
}

// absDir returns dir's absolute path with every symbolic link resolved,
// as it is when the root is opened, so that any path to one directory
// gives one name (the store's id is its file URL); "" if that path cannot
// be had.
func absDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return ""
	}
	return abs
}
