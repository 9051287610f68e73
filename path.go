package roomstore

import (
	"context"
	"errors"
	"io/fs"
	"strings"

	"github.com/roomstore/roomstore/roompath"
)

// enter validates the path and admits the operation.
func (e *Engine) enter(op, p string, t roompath.Target) (string, error) {
	clean, err := roompath.Clean(p, t)
	if err != nil {
		return "", &fs.PathError{Op: op, Path: p, Err: err}
	}
	if err := e.begin(op, p); err != nil {
		return "", err
	}
	return clean, nil
}

// folderMeant reports a path written with a trailing slash, which names a
// folder and so never a file.
func folderMeant(p, clean string) bool { return clean != "" && strings.HasSuffix(p, "/") }

// checkParents fails with ErrNotFolder when an ancestor of p is a file. It
// walks up from the parent and stops at the first folder, since a folder's
// own ancestors are folders.
func (e *Engine) checkParents(ctx context.Context, p string) error {
	for dir := roompath.Parent(p); dir != ""; dir = roompath.Parent(dir) {
		info, err := e.b.Stat(ctx, dir)
		switch {
		case err == nil && info.IsFolder:
			return nil
		case err == nil:
			return ErrNotFolder
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	return nil
}
