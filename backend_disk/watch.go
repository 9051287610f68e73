package backend_disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// WatchBuffer is how many events fsnotify holds between its reader and
// Watch's loop, on top of the kernel's own queue
// (/proc/sys/fs/inotify/max_queued_events, 16384 by default).
const WatchBuffer = 4096

// Watch implements backend.Watcher for a store over NewOSRoot (what a
// file:// URL opens), with the platform's native feed through
// github.com/fsnotify/fsnotify (inotify on Linux). inotify does not watch
// a tree, so Watch adds a watch for every folder, at start and as folders
// appear; it reports a folder created, removed or renamed as a whole with
// Change.Folder, since the files within it were never seen one by one.
// It never reports anything under the reserved prefix (the store's own
// temporaries, locks and kept versions, which it does not watch), nor a
// name no roomstore path can have. A kernel
// queue overflow (more changes than the queue holds before they are read)
// is reported as Change.Lost: the caller scans again.
//
// Each Watch holds one inotify instance and a watch per folder, which the
// kernel bounds per user (/proc/sys/fs/inotify/max_user_instances, 128 by
// default, and max_user_watches): a store watched beyond them finds the
// changes of others by the engine's scan alone; raise them for a server of
// many open rooms.
//
// Over any other afero.Fs, Watch fails at once with an error wrapping
// errors.ErrUnsupported. It fails too, after releasing what it holds, when
// a folder cannot be watched (such as when the user's inotify watches,
// /proc/sys/fs/inotify/max_user_watches, run out): the error says why and
// names no host path.
func (a *Afero) Watch(ctx context.Context, ready func(), changed func(backend.Change)) error {
	r, ok := a.fs.(*osRoot)
	if !ok || r.dir == "" {
		return fmt.Errorf("backend_disk: watch: only a store over NewOSRoot can be watched: %w", errors.ErrUnsupported)
	}
	w, err := fsnotify.NewBufferedWatcher(WatchBuffer)
	if err != nil {
		return fmt.Errorf("backend_disk: watch: %w", osError(err))
	}
	t := &tree{w: w, root: r.dir, dirs: map[string]struct{}{}}
	defer w.Close()
	if err := t.add(""); err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err, ok := <-w.Errors:
			if !ok {
				return ctx.Err()
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				changed(backend.Change{Lost: true})
				continue
			}
			return fmt.Errorf("backend_disk: watch: %w", osError(err))
		case ev, ok := <-w.Events:
			if !ok {
				return ctx.Err()
			}
			c, err := t.event(ev)
			if err != nil {
				return err
			}
			if c != nil {
				changed(*c)
			}
		}
	}
}

// tree is the set of folders Watch watches, by store path ("" the root).
type tree struct {
	w    *fsnotify.Watcher
	root string
	dirs map[string]struct{}
}

// rel returns the store path of the host path name, and false for one no
// roomstore path names (reserved, invalid, outside the root).
func (t *tree) rel(name string) (string, bool) {
	if name == t.root {
		return "", true
	}
	p, ok := strings.CutPrefix(name, t.root+string(filepath.Separator))
	if !ok {
		return "", false
	}
	p = filepath.ToSlash(p)
	for elem := range strings.SplitSeq(p, "/") {
		if roompath.IsReserved(elem) {
			return "", false
		}
	}
	clean, err := roompath.Clean(p, roompath.TargetFile)
	return p, err == nil && clean == p
}

// add watches the folder p and every folder beneath it. A folder that
// vanishes meanwhile is skipped: its removal is an event of its parent.
func (t *tree) add(p string) error {
	host := filepath.Join(t.root, filepath.FromSlash(p))
	err := filepath.WalkDir(host, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, ok := t.rel(name)
		if !ok {
			return filepath.SkipDir
		}
		if err := t.w.Add(name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		t.dirs[rel] = struct{}{}
		return nil
	})
	if err != nil {
		return fmt.Errorf("backend_disk: watch: %w", osError(err))
	}
	return nil
}

// forget drops the watches of the folder p and those beneath it, gone or
// renamed (a watch follows a renamed folder's inode, under its old name).
func (t *tree) forget(p string) {
	for d := range t.dirs {
		if d == p || strings.HasPrefix(d, p+"/") {
			_ = t.w.Remove(filepath.Join(t.root, filepath.FromSlash(d)))
			delete(t.dirs, d)
		}
	}
}

// event turns one fsnotify event into the change to report (nil for none).
func (t *tree) event(ev fsnotify.Event) (*backend.Change, error) {
	p, ok := t.rel(ev.Name)
	if !ok || p == "" {
		return nil, nil
	}
	switch {
	case ev.Has(fsnotify.Create):
		fi, err := os.Lstat(ev.Name)
		if err == nil && fi.IsDir() {
			if err := t.add(p); err != nil {
				return nil, err
			}
			return &backend.Change{Path: p, Folder: true}, nil
		}
		return &backend.Change{Path: p}, nil
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		if _, ok := t.dirs[p]; ok {
			t.forget(p)
			return &backend.Change{Path: p, Folder: true}, nil
		}
		return &backend.Change{Path: p}, nil
	case ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
		if _, ok := t.dirs[p]; ok {
			return nil, nil // a folder's own attributes
		}
		return &backend.Change{Path: p}, nil
	}
	return nil, nil
}
