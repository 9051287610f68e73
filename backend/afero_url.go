package backend

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
)

func init() { Register("file", openFile) }

// openFile serves "file:///abs/dir" and "file://./rel/dir" (relative to the
// working directory), creating the directory if needed, through NewOSRoot.
// "?fsync=false" turns fsync at commit off.
func openFile(_ context.Context, u *url.URL) (Backend, error) {
	var dir string
	switch u.Host {
	case "", "localhost":
		dir = u.Path
	case ".":
		dir = "." + u.Path
	default:
		return nil, fmt.Errorf("backend: %w: file URL %q names host %q; use file:///abs/dir or file://./rel/dir", fs.ErrInvalid, u.Redacted(), u.Host)
	}
	if dir == "" || dir == "." {
		return nil, fmt.Errorf("backend: %w: file URL %q names no directory", fs.ErrInvalid, u.Redacted())
	}
	var opts []AferoOption
	if v := u.Query().Get("fsync"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("backend: %w: fsync=%q is not a boolean", fs.ErrInvalid, v)
		}
		opts = append(opts, WithFsync(on))
	}
	abs, err := filepath.Abs(filepath.FromSlash(dir))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	root, err := NewOSRoot(abs)
	if err != nil {
		return nil, err
	}
	return NewAfero(root, opts...), nil
}
