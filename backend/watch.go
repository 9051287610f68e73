package backend

import "context"

// Change is what a Watcher saw: a path that may have changed, or that it
// lost track of the store.
type Change struct {
	// Path is the clean path of a file that may have been created,
	// written, renamed (either end) or removed, or of a folder whose
	// files may all have changed (Folder); "" with Lost.
	Path string
	// Folder reports that Path names a folder, created, removed or renamed
	// as a whole: every file beneath it may have changed.
	Folder bool
	// Lost reports that the watcher lost changes (a kernel queue overflow,
	// a broken subscription, a notification that could not be read): the
	// whole store may have changed and should be scanned again.
	Lost bool
}

// Watcher is implemented by stores with a native feed of changes, such as
// a disk store's inotify watch: changes made by anyone, the Engine's own
// included, which the Engine compares with what it knows (see
// roomstore.WithWatch). A feed may report a path more than once, or report
// one that did not change; it must never report a change as nothing, and
// reports Lost when it cannot tell.
type Watcher interface {
	// Watch calls changed for every change it sees until ctx is done, then
	// returns ctx's error; it returns earlier with an error (wrapping
	// errors.ErrUnsupported where the platform has no feed) when it cannot
	// watch at all. changed is called from one goroutine at a time and
	// must not block for long. Watch reports nothing that happened before
	// it was called; once it has begun to watch it calls ready, if not nil,
	// so that the caller's scan of the store from then on misses nothing.
	Watch(ctx context.Context, ready func(), changed func(Change)) error
}
