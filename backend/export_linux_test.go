package backend

import "github.com/spf13/afero"

// UsesFastPath reports whether fsys is an OS root with the Linux fast path
// (openat2) open.
func UsesFastPath(fsys afero.Fs) bool {
	r, ok := fsys.(*osRoot)
	return ok && r.fast != nil
}
