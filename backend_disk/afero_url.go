package backend_disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

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
// of any other form yields an error wrapping fs.ErrInvalid that names the
// two right ones: one without "//" after "file:" (file:/dir, file:dir,
// file:/./dir), one that names a host, or no directory, and an absolute
// one whose path is not clean (file:///./dir, file:///a/../b), which
// would name a directory other than the one its writer meant.
func FileDir(u *url.URL) (string, error) {
	const forms = "file:///abs/dir for an absolute directory, file://./rel/dir for one relative to the working directory"
	if u.Opaque != "" || u.OmitHost {
		return "", fmt.Errorf("backend: %w: a file URL needs // after file: (use %s)", fs.ErrInvalid, forms)
	}
	var dir string
	switch u.Host {
	case "", "localhost":
		dir = u.Path
		if clean := path.Clean(dir); dir != "" && clean != strings.TrimSuffix(dir, "/") && clean != dir {
			return "", fmt.Errorf("backend: %w: the path %s is not clean: it names %s (use %s)", fs.ErrInvalid, dir, clean, forms)
		}
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
// working directory) through NewOSRoot. It creates the store's directory
// if it does not exist, but never the directories above it: a missing
// parent (a mistyped path) fails with an error wrapping fs.ErrNotExist
// and creates nothing.
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
	if err := os.Mkdir(abs, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, backend.Errorf(nil, syscall.ENOENT, "the directory that would hold the store does not exist (only the store's own directory is created)")
		}
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
