// Package objstore holds the logic that every object-store backend
// (backend_s3, backend_gcs) needs in the same form, so that each backend
// keeps only what is specific to its provider's API: folders emulated from
// key prefixes (Stat, Missing, List), the checks a Move makes on its
// destination (CheckMoveTarget), and the budget of the cleanup that
// follows a failed or aborted write (Cleanup).
//
// An object store has no folders: a folder is any key prefix ending in "/"
// with an object beneath it. A backend answers two questions through
// Store, and the functions here turn the answers into the backend
// contract's.
//
// Errors are those of the Store, passed on as they are (a Store returns
// them classified, see backend.Classify), plus backend.ErrIsFolder and an
// fs.ErrExist of this package's own, as each function says.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"strings"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// Store is what the folder logic needs from an object store's API.
type Store interface {
	// StatFile describes the object named by the clean path, which the
	// caller guarantees is not the root. No object there yields an
	// error matching fs.ErrNotExist; any other failure is returned
	// classified.
	StatFile(ctx context.Context, path string) (backend.Info, error)
	// HasChildren reports whether any object lies beneath the folder
	// path (its key prefix followed by "/"), reading at most one listing
	// entry. A missing bucket yields backend.ErrStoreUnavailable.
	HasChildren(ctx context.Context, path string) (bool, error)
}

// Stat describes the file at path or, when no object has that name, the
// implicit folder path with at least one object beneath it; the root is
// always a folder. Neither yields an error matching fs.ErrNotExist, which
// Stat then returns as StatFile gave it.
func Stat(ctx context.Context, s Store, path string) (backend.Info, error) {
	if path == "" {
		return backend.Info{IsFolder: true}, nil
	}
	info, err := s.StatFile(ctx, path)
	if err == nil {
		return info, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return backend.Info{}, err
	}
	if err := Missing(ctx, s, path, err); !errors.Is(err, backend.ErrIsFolder) {
		return backend.Info{}, err
	}
	return backend.Info{Path: path, IsFolder: true}, nil
}

// Missing tells what an object's absence at path means to a call that
// wanted a file there: backend.ErrIsFolder when objects lie beneath path,
// the listing's error when it failed (backend.ErrStoreUnavailable for a
// missing bucket, which an object's 404 cannot tell), else notFound.
func Missing(ctx context.Context, s Store, path string, notFound error) error {
	folder, err := s.HasChildren(ctx, path)
	switch {
	case err != nil:
		return err
	case folder:
		return backend.ErrIsFolder
	}
	return notFound
}

// CheckMoveTarget refuses the destination of a Move before anything is
// copied: backend.ErrIsFolder when dst is a folder, fs.ErrExist when a
// file is there and overwrite is false. The create-only copy that follows
// (where the store enforces it) still guards against a file that appears
// after the check.
func CheckMoveTarget(ctx context.Context, s Store, dst string, overwrite bool) error {
	_, err := s.StatFile(ctx, dst)
	switch {
	case err == nil && !overwrite:
		return backend.Errorf(fs.ErrExist, nil, "a file is at the destination")
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := Missing(ctx, s, dst, err); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Entry is one item of a delimiter ("/") listing of a folder's key
// prefix: an object, or a common prefix (Prefix set, Key ending in "/").
type Entry struct {
	Key     string
	Prefix  bool
	Size    int64
	ModTime time.Time
	// ETag is the Info.ETag of the object's version, "" when the listing
	// cannot tell it.
	ETag string
}

// List turns a delimiter listing of the keys under pfx, the key prefix of
// the folder dir, into the folder's children, skipping what no roomstore
// path can name: a folder marker (the key pfx itself, made by consoles and
// other tools), an empty name ("a//b"), and reserved names. It stops at
// the listing's first error, which it yields as it is.
func List(dir, pfx string, entries iter.Seq2[Entry, error]) iter.Seq2[backend.Info, error] {
	return func(yield func(backend.Info, error) bool) {
		for e, err := range entries {
			if err != nil {
				yield(backend.Info{}, err)
				return
			}
			name := strings.TrimPrefix(e.Key, pfx)
			if e.Prefix {
				name = strings.TrimSuffix(name, "/")
			}
			if name == "" || strings.Contains(name, "/") || roompath.IsReserved(name) {
				continue
			}
			info := backend.Info{Path: roompath.Join(dir, name), IsFolder: true}
			if !e.Prefix {
				info = backend.Info{Path: info.Path, Size: e.Size, ModTime: e.ModTime, ETag: e.ETag}
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Location checks what every object store's constructor is given: a
// client (hasClient), a bucket name and a prefix, which it returns clean
// (see roompath.CleanPrefix: "" for the whole bucket, else without leading
// or trailing slashes). A missing client or bucket name, or a prefix that
// is not a valid roomstore folder path, yields an error wrapping
// fs.ErrInvalid that starts with pkg, the constructor's package.
func Location(pkg string, hasClient bool, bucket, prefix string) (string, error) {
	switch {
	case !hasClient:
		return "", fmt.Errorf("%s: %w: nil client", pkg, fs.ErrInvalid)
	case bucket == "":
		return "", fmt.Errorf("%s: %w: empty bucket name", pkg, fs.ErrInvalid)
	}
	prefix, err := roompath.CleanPrefix(prefix)
	if err != nil {
		return "", fmt.Errorf("%s: %w", pkg, err)
	}
	return prefix, nil
}

// FilePath returns the roomstore path of the object key under the store's
// key prefix pfx ("" or ending in "/"), and false for a key no roomstore
// path names: outside pfx, a folder marker, an empty or reserved element.
func FilePath(pfx, key string) (string, bool) {
	name, ok := strings.CutPrefix(key, pfx)
	if !ok || name == "" || strings.HasSuffix(name, "/") {
		return "", false
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == "" || roompath.IsReserved(elem) {
			return "", false
		}
	}
	clean, err := roompath.Clean(name, roompath.TargetFile)
	if err != nil || clean != name {
		return "", false
	}
	return name, true
}
