package backend_disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/roomstore/roomstore/backend"
)

func init() {
	backend.Register("file", openFile)
	backend.RegisterProber("file", probeFile)
}

// probeFile reports whether the directory of a file:// URL exists.
func probeFile(_ context.Context, u *url.URL) (bool, error) {
	dir, err := FileDir(u)
	if err != nil {
		return false, err
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("backend: the store directory of %q: %w", u.Redacted(), osError(err))
	}
	return fi.IsDir(), nil
}

// FileDir returns the directory that a file:// URL names, as the file://
// opener reads it: file:///abs/dir, or file://./rel/dir relative to the
// working directory (then a relative path), in the platform's form. A URL
// that names a host, or no directory, yields an error wrapping
// fs.ErrInvalid.
func FileDir(u *url.URL) (string, error) {
	var dir string
	switch u.Host {
	case "", "localhost":
		dir = u.Path
	case ".":
		dir = "." + u.Path
	default:
		return "", fmt.Errorf("backend: %w: file URL %q names host %q; use file:///abs/dir or file://./rel/dir", fs.ErrInvalid, u.Redacted(), u.Host)
	}
	if dir == "" || dir == "." {
		return "", fmt.Errorf("backend: %w: file URL %q names no directory", fs.ErrInvalid, u.Redacted())
	}
	return filepath.FromSlash(dir), nil
}

// openFile serves "file:///abs/dir" and "file://./rel/dir" (relative to the
// working directory), creating the directory if needed, through NewOSRoot.
// "?fsync=false" turns fsync at commit off; any other parameter is refused
// with fs.ErrInvalid, as a misspelt option must not pass silently. The
// backend owns its os.Root: Close closes it.
func openFile(_ context.Context, u *url.URL) (backend.Backend, error) {
	dir, err := FileDir(u)
	if err != nil {
		return nil, err
	}
	var opts []AferoOption
	for name, values := range u.Query() {
		if name != "fsync" {
			return nil, fmt.Errorf("backend: %w: unknown parameter %q in file URL (known: fsync)", fs.ErrInvalid, name)
		}
		if len(values) != 1 {
			return nil, fmt.Errorf("backend: %w: parameter %q given %d times", fs.ErrInvalid, name, len(values))
		}
		on, err := strconv.ParseBool(values[0])
		if err != nil {
			return nil, fmt.Errorf("backend: %w: fsync=%q is not a boolean", fs.ErrInvalid, values[0])
		}
		opts = append(opts, WithFsync(on))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("backend: %w: file URL %q: %w", fs.ErrInvalid, u.Redacted(), err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("backend: create the store directory of %q: %w", u.Redacted(), osError(err))
	}
	root, err := NewOSRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("backend: open the store directory of %q: %w", u.Redacted(), err)
	}
	a := NewAfero(root, opts...)
	a.closer = root.(io.Closer)
	return a, nil
}
