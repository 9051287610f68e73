package backend_disk

import "github.com/spf13/afero"

// UsesFastPath reports whether fsys is an OS root with the Linux fast path
// (openat2) open.
func UsesFastPath(fsys afero.Fs) bool {
	r, ok := fsys.(*osRoot)
	return ok && r.fast != nil
}

// NewPortableOSRoot opens dir as the file:// opener does, but without the
// fast path, as platforms without openat2 get it: every call through
// os.Root. The backend closes the root when it is closed.
func NewPortableOSRoot(dir string, opts ...AferoOption) (*Afero, error) {
	fsys, err := NewOSRoot(dir)
	if err != nil {
		return nil, err
	}
	r := fsys.(*osRoot)
	if r.fast != nil {
		r.fast.Close()
		r.fast = nil
	}
	a := NewAfero(fsys, opts...)
	a.closer = r
	return a, nil
}
