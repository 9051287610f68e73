package backend_disk

import (
	"context"
	"io"
	"os"
	"sync"
	"time"

	"github.com/roomstore/roomstore/roompath"
)

// Folders on disk.
//
// A folder of the store is implicit: it exists while a file lies beneath
// it. On disk a directory is removed once its last file goes (pruning),
// so a directory that exists holds files, but for three exceptions: a
// directory emptied a moment ago, whose removal is deferred (see below);
// one a crash left between a removal and its pruning; one another
// program made. hasFiles tells them apart without walking subtrees: a
// directory holds files when it has a regular file, or a subdirectory
// that has a regular file or a non-empty subdirectory of its own. Deeper
// is trusted, which holds for what roomstore leaves: a process defers
// only an empty leaf whose parent keeps something, and pruning removes
// chains whole, so that two processes deferring at once leave two empty
// levels at most, which this sees through. An empty chain of three levels
// or more, left by a crash or another program, shows as a folder until
// it is pruned (a tree walk at open would cost every open a walk of the
// store). A listing then costs at most three directory reads per entry,
// whatever the depth beneath it.
//
// Pruning at once would make a folder that empties and fills again on
// every write (an inbox, an upload folder) pay a rmdir and a mkdir per
// cycle, which on ext4 cost more than the write itself. A directory
// emptied whose parent keeps something else (or is the root) is left for
// pruneDelay instead; a write into it meanwhile keeps it. Readers never
// see it (it is empty), and Close prunes what is left.

// pruneDelay is how long an emptied directory waits before it is
// removed.
const pruneDelay = 2 * time.Second

// deferred is the set of directories emptied and left for pruneDelay.
type deferred struct {
	mu      sync.Mutex
	dirs    map[string]time.Time // by path: when to prune it
	timer   *time.Timer
	closed  bool
	pruning sync.WaitGroup // the timer's prunes under way, which Close waits for
}

// hasFiles reports whether a file lies beneath dir, as the package's
// layout above says: a regular file in it, or a subdirectory that is not
// empty.
func (a *Afero) hasFiles(dir string) bool {
	found := false
	a.eachEntry(dir, 16, func(name string, fi os.FileInfo) bool {
		switch {
		case fi.Mode().IsRegular():
			found = true
		case fi.IsDir() && a.hasEntry(roompath.Join(dir, name)):
			found = true
		}
		return !found
	})
	return found
}

// hasEntry reports whether dir holds a regular file, or a directory
// that holds anything.
func (a *Afero) hasEntry(dir string) bool {
	found := false
	a.eachEntry(dir, 8, func(name string, fi os.FileInfo) bool {
		switch {
		case fi.Mode().IsRegular():
			found = true
		case fi.IsDir():
			a.eachEntry(roompath.Join(dir, name), 1, func(string, os.FileInfo) bool {
				found = true
				return false
			})
		}
		return !found
	})
	return found
}

// eachEntry calls fn for the entries of the directory dir but reserved
// ones, read n at a time, until fn returns false. A directory that
// cannot be opened, or was removed while open, has none.
func (a *Afero) eachEntry(dir string, n int, fn func(string, os.FileInfo) bool) {
	f, fi, err := a.open(dirName(dir), true)
	if err != nil {
		return
	}
	defer f.Close()
	if linkCount(fi) == 0 {
		return // removed while open
	}
	next := a.batches(f, n)
	for {
		batch, err := next()
		for _, fi := range batch {
			if roompath.IsReserved(fi.Name()) {
				continue
			}
			if !fn(fi.Name(), fi) {
				return
			}
		}
		if err != nil || len(batch) == 0 {
			return
		}
	}
}

// emptied is called once a file has left dir (a removal or a move): an
// empty dir is pruned, at once or after pruneDelay (see above).
func (a *Afero) emptied(ctx context.Context, dir string) {
	if dir == "" {
		return // the root stays
	}
	if !a.osBacked {
		a.prune(ctx, dir)
		return
	}
	empty := true
	a.eachEntry(dir, 8, func(string, os.FileInfo) bool {
		empty = false
		return false
	})
	switch {
	case !empty && a.hasAny(dir, ""):
		return // something but empty directories
	case !empty:
		// Only empty directories: pruned with it, so that no empty
		// directory ever waits inside another.
		a.prune(ctx, dir)
	case roompath.Parent(dir) == "" || a.hasAny(roompath.Parent(dir), dir):
		a.deferPrune(dir)
	default:
		a.prune(ctx, dir)
	}
}

// hasAny reports whether dir holds anything but reserved names, except
// a directory at but (a path) and empty directories (deferred by this
// process or another, or left by a crash).
func (a *Afero) hasAny(dir, but string) bool {
	found := false
	a.eachEntry(dir, 8, func(name string, fi os.FileInfo) bool {
		p := roompath.Join(dir, name)
		switch {
		case p == but:
		case fi.IsDir():
			found = !a.emptyDir(p)
		default:
			found = true
		}
		return !found
	})
	return found
}

func (a *Afero) deferPrune(dir string) {
	d := &a.defer_
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.dirs == nil {
		d.dirs = map[string]time.Time{}
	}
	d.dirs[dir] = time.Now().Add(pruneDelay)
	if d.timer == nil {
		d.timer = time.AfterFunc(pruneDelay, a.pruneDue)
	}
}

// kept takes dir, and every ancestor, out of the deferred set: a write
// lands beneath it.
func (a *Afero) kept(dir string) {
	d := &a.defer_
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dirs) == 0 {
		return
	}
	for ; dir != ""; dir = roompath.Parent(dir) {
		delete(d.dirs, dir)
	}
}

// pruneDue prunes the deferred directories whose time has come, and
// waits for the others.
func (a *Afero) pruneDue() {
	d := &a.defer_
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.pruning.Add(1) // under mu, before closed is set: Close's Wait sees it
	defer d.pruning.Done()
	now := time.Now()
	var due []string
	next := time.Time{}
	for dir, at := range d.dirs {
		if !at.After(now) {
			due = append(due, dir)
			delete(d.dirs, dir)
		} else if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if next.IsZero() {
		d.timer = nil
	} else {
		d.timer.Reset(next.Sub(now))
	}
	d.mu.Unlock()
	a.pruneAll(due)
}

// pruneAll prunes dirs, within a bound of its own.
func (a *Afero) pruneAll(dirs []string) {
	if len(dirs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dir := range dirs {
		a.prune(ctx, dir)
	}
}

// closeFolders prunes every deferred directory now; none is deferred
// after.
func (a *Afero) closeFolders() {
	d := &a.defer_
	d.mu.Lock()
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	dirs := make([]string, 0, len(d.dirs))
	for dir := range d.dirs {
		dirs = append(dirs, dir)
	}
	d.dirs = nil
	d.mu.Unlock()
	d.pruning.Wait() // the timer's prunes under way finish before the root closes
	a.pruneAll(dirs)
}

// prune removes dir and its ancestors while they are empty, deferred
// directories in them included. A context that ends first leaves them,
// which is harmless: a directory without files is no folder of the store.
func (a *Afero) prune(ctx context.Context, dir string) {
	unlock, err := a.locks.ownTree(ctx)
	if err != nil {
		return
	}
	defer unlock()
	for ; dir != ""; dir = roompath.Parent(dir) {
		f, _, err := a.open(dir, true)
		if err != nil {
			return
		}
		names, rerr := f.Readdirnames(8)
		f.Close()
		if rerr != nil && rerr != io.EOF {
			return
		}
		left := len(names) == 8 // more than were read: not empty
		for _, n := range names {
			// An empty directory in it, deferred by this process or
			// another, or left by a crash, goes with it: rmdir refuses
			// one that is not empty.
			p := roompath.Join(dir, n)
			if !roompath.IsReserved(n) && a.rmdir(p) == nil {
				a.kept(p)
				continue
			}
			left = true
		}
		// Checked first because some afero file systems (MemMapFs) remove
		// a directory that still has children; an OS file system refuses
		// anyway, which covers other processes.
		if left || a.rmdir(dir) != nil {
			return
		}
		a.kept(dir)
	}
}

// rmdir removes dir if it is an empty directory, and nothing else: a
// file or a directory with anything in it stays.
func (a *Afero) rmdir(dir string) error { return a.paths.rmdir(dir) }

// emptyDir reports whether the directory dir has no entry (one read of
// one entry at most).
func (a *Afero) emptyDir(dir string) bool {
	empty := true
	a.eachEntry(dir, 1, func(string, os.FileInfo) bool {
		empty = false
		return false
	})
	return empty
}
