// Package backend_mem is an in-memory backend.Backend: fast, safe for
// concurrent use, and held to the same conformance suite as every other
// backend, so other projects can use it as the storage fake in their tests.
//
// Opening "mem://" through roomstore.OpenURL gives a fresh private store;
// "mem://name" gives the store of that name, shared by every OpenURL in the
// process, so two Engines can share one store as two processes would share
// a bucket. A named store lives until Drop forgets it, or until the last
// backend opened on it is closed while it holds no file.
//
// A file is held once: in the chunks its writer staged (up to 1 MiB each),
// which a commit hands over without copying; a read streams from them.
// An append shares the old version's chunks and copies only its own
// bytes (into the room left in the last chunk, then into chunks that
// grow), so it costs what it adds. 64 MiB written and read back peak at
// 1.03x that in heap (BENCHMARKS.md).
//
// Faults (Backend.Inject) make chosen operations fail or stall on cue, so
// that code built on roomstore can test its error paths: on a Backend
// given to roomstore.New, or on the named store an Engine opened by URL,
// which Named returns.
//
// # Errors
//
// The same as every backend (see package backend): fs.ErrNotExist,
// fs.ErrExist, fs.ErrInvalid, fs.ErrClosed (a finished writer),
// backend.ErrIsFolder, backend.ErrNotFolder, errors.ErrUnsupported from
// Presign, and whatever an injected Fault says. Errors name no path: the
// Engine adds the caller's.
package backend_mem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"iter"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

func init() {
	backend.Register("mem", open)
	backend.RegisterProber("mem", probe)
}

var (
	namedMu sync.Mutex
	named   = map[string]*Backend{}
)

// storeName is the name of the store a mem:// URL names, "" for a
// private one.
func storeName(u *url.URL) string {
	if u.Host == "" && u.Opaque == "" && strings.Trim(u.Path, "/") == "" {
		return ""
	}
	return u.Host + u.Opaque + u.Path
}

func open(_ context.Context, u *url.URL) (backend.Backend, error) {
	name := storeName(u)
	if name == "" {
		return New(), nil
	}
	namedMu.Lock()
	defer namedMu.Unlock()
	b := namedLocked(name)
	b.refs++
	return b, nil
}

// namedLocked returns the named store name, creating it if there is none.
// The caller holds namedMu.
func namedLocked(name string) *Backend {
	b, ok := named[name]
	if !ok {
		b = New()
		b.name = name
		named[name] = b
	}
	return b
}

// probe reports whether a named store exists; a private one never does
// before it is opened.
func probe(_ context.Context, u *url.URL) (bool, error) {
	name := storeName(u)
	namedMu.Lock()
	defer namedMu.Unlock()
	_, ok := named[name]
	return ok && name != "", nil
}

// Drop forgets the named store "mem://name", so that the next OpenURL of
// that name starts empty; Engines still open on it keep working on the old
// one. It reports whether the store existed. Tests that share a named
// store call it from t.Cleanup, so that cases do not leak state.
func Drop(name string) bool {
	namedMu.Lock()
	defer namedMu.Unlock()
	_, ok := named[name]
	delete(named, name)
	return ok
}

// Named returns the named store that roomstore.OpenURL("mem://"+name)
// opens, creating it if there is none, so that a test reaches the store
// of an Engine it opened by URL: to inject faults into it (Inject) or
// look at it. name is what follows "mem://" ("t1" for "mem://t1",
// "rooms/r1" for "mem://rooms/r1"). A store that Named returned lives
// until Drop(name), even while it holds no file. An empty name names no
// shared store (a bare "mem://" opens a private one each time): Named
// returns nil for it.
//
//	b := backend_mem.Named(t.Name())
//	t.Cleanup(func() { backend_mem.Drop(t.Name()) })
//	b.Inject(backend_mem.Fault{Op: backend_mem.OpCommit, Err: errDiskFull})
//	e, err := roomstore.OpenURL(ctx, "mem://"+t.Name()) // its commits fail
func Named(name string) *Backend {
	if strings.Trim(name, "/") == "" {
		return nil
	}
	namedMu.Lock()
	defer namedMu.Unlock()
	b := namedLocked(name)
	b.pinned = true
	return b
}

// Backend stores files in memory. The zero value is not usable; call New.
type Backend struct {
	name   string // of a named store; guarded by namedMu with refs and pinned
	refs   int    // the OpenURLs of a named store not yet closed
	pinned bool   // returned by Named: kept until Drop

	mu     sync.RWMutex
	root   *folder
	gen    uint64
	faults faults
	id     string

	kept    map[string][]*kept // past versions by path (see Keep)
	keptSeq uint64

	uploads map[string]*upload // staged uploads by id (see staged.go)
}

type folder struct {
	files   map[string]*object
	folders map[string]*folder
}

// object is one committed version: its bytes are the chunks in order (a
// commit hands a writer's chunks over). Its fields and the bytes it holds
// never change after commit, so readers stream from them without a lock;
// an append shares its chunks with the version it extends and may write
// only past their lengths (see chunks.onto).
type object struct {
	chunks [][]byte
	size   int64
	mod    time.Time
	gen    uint64
}

func newFolder() *folder {
	return &folder{files: map[string]*object{}, folders: map[string]*folder{}}
}

// New returns an empty store.
func New() *Backend { return &Backend{root: newFolder(), id: newStoreID()} }

// processID tells this process's memory stores from other processes':
// a mem:// store is never shared beyond its process.
var processID = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

var storeSeq atomic.Uint64

func newStoreID() string {
	return "mem://" + processID + "/" + strconv.FormatUint(storeSeq.Add(1), 10)
}

// StoreID implements backend.Identifier: a name unique to this Backend
// value (shared by every OpenURL of one mem:// name in the process) and
// never equal to any other process's.
func (b *Backend) StoreID() string { return b.id }

// find walks to the folder that holds path's last element. It reports
// ErrNotFolder when an ancestor is a file and returns nil when an ancestor
// is missing. The caller holds b.mu.
func (b *Backend) find(path string) (*folder, string, error) { return b.walk(path, false) }

// mkdirs returns the folder that is to hold path's last element, creating
// missing folders. The caller holds b.mu for writing.
func (b *Backend) mkdirs(path string) (*folder, string, error) { return b.walk(path, true) }

// walk is find, and with create mkdirs.
func (b *Backend) walk(path string, create bool) (*folder, string, error) {
	f := b.root
	for {
		i := strings.IndexByte(path, '/')
		if i < 0 {
			return f, path, nil
		}
		elem := path[:i]
		if _, ok := f.files[elem]; ok {
			return nil, "", backend.ErrNotFolder
		}
		next := f.folders[elem]
		if next == nil {
			if !create {
				return nil, "", nil
			}
			next = newFolder()
			f.folders[elem] = next
		}
		f, path = next, path[i+1:]
	}
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, path string) (backend.Info, error) {
	if err := b.check(ctx, OpStat); err != nil {
		return backend.Info{}, err
	}
	if path == "" {
		return backend.Info{IsFolder: true}, nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	f, name, err := b.find(path)
	if err != nil {
		return backend.Info{}, errThroughFile
	}
	if f != nil {
		if o := f.files[name]; o != nil {
			return info(path, o), nil
		}
		if f.folders[name] != nil {
			return backend.Info{Path: path, IsFolder: true}, nil
		}
	}
	return backend.Info{}, fs.ErrNotExist
}

func info(path string, o *object) backend.Info {
	return backend.Info{Path: path, Size: o.size, ModTime: o.mod, ETag: strconv.FormatUint(o.gen, 10)}
}

// Read implements backend.Backend.
func (b *Backend) Read(ctx context.Context, path string, offset, length int64) (io.ReadCloser, backend.Info, error) {
	if err := b.check(ctx, OpRead); err != nil {
		return nil, backend.Info{}, err
	}
	b.mu.RLock()
	f, name, err := b.find(path)
	var o *object
	isFolder := false
	if f != nil {
		o = f.files[name]
		isFolder = f.folders[name] != nil
	}
	b.mu.RUnlock()
	switch {
	case err != nil:
		return nil, backend.Info{}, errThroughFile
	case isFolder:
		return nil, backend.Info{}, backend.ErrIsFolder
	case o == nil:
		return nil, backend.Info{}, fs.ErrNotExist
	}
	if offset < 0 || offset > o.size {
		return nil, backend.Info{}, backend.Errorf(fs.ErrInvalid, nil, "offset %d outside file of %d bytes", offset, o.size)
	}
	end := o.size
	if length >= 0 && offset+length < o.size {
		end = offset + length
	}
	return newChunkReader(o.chunks, offset, end), info(path, o), nil
}

// Presign implements backend.Backend: memory has no URLs of its own.
func (b *Backend) Presign(ctx context.Context, _ string, _ backend.PresignOptions) (string, error) {
	if err := b.check(ctx, OpPresign); err != nil {
		return "", err
	}
	return "", errors.ErrUnsupported
}

// List implements backend.Backend. It copies the folder's entries under the
// lock and yields them after releasing it, so a consumer may call back into
// the store.
func (b *Backend) List(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	return func(yield func(backend.Info, error) bool) {
		if err := b.check(ctx, OpList); err != nil {
			yield(backend.Info{}, err)
			return
		}
		b.mu.RLock()
		f := b.root
		if dir != "" {
			parent, name, _ := b.find(dir)
			f = nil
			if parent != nil {
				f = parent.folders[name]
			}
		}
		var out []backend.Info
		if f != nil {
			out = make([]backend.Info, 0, len(f.files)+len(f.folders))
			for name, o := range f.files {
				out = append(out, info(roompath.Join(dir, name), o))
			}
			for name := range f.folders {
				out = append(out, backend.Info{Path: roompath.Join(dir, name), IsFolder: true})
			}
		}
		b.mu.RUnlock()
		for _, i := range out {
			if !yield(i, nil) {
				return
			}
		}
	}
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, path string, opts backend.RemoveOptions) error {
	if err := b.check(ctx, OpRemove); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f, name, err := b.find(path)
	switch {
	case err != nil:
		return errThroughFile
	case f == nil:
		return fs.ErrNotExist
	case f.folders[name] != nil:
		return backend.ErrIsFolder
	case f.files[name] == nil:
		return fs.ErrNotExist
	}
	o := f.files[name]
	if err := (backend.Precondition{IfMatch: opts.IfMatch}).Check(true, info(path, o).ETag); err != nil {
		return err
	}
	b.keepLocked(path, o, opts.Keep, backend.ReasonDeleted, time.Now())
	delete(f.files, name)
	b.prune(path)
	return nil
}

// Move implements backend.Backend: one step under the store's lock, so
// readers see the file at src or at dst and a commit to src lands wholly
// before or after it. The moved file keeps its version (ETag, ModTime).
func (b *Backend) Move(ctx context.Context, src, dst string, opts backend.MoveOptions) (backend.Info, error) {
	if err := b.check(ctx, OpMove); err != nil {
		return backend.Info{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	from, name, err := b.find(src)
	switch {
	case err != nil:
		return backend.Info{}, errThroughFile
	case from == nil:
		return backend.Info{}, fs.ErrNotExist
	case from.folders[name] != nil:
		return backend.Info{}, backend.ErrIsFolder
	}
	o := from.files[name]
	if o == nil {
		return backend.Info{}, fs.ErrNotExist
	}
	if err := (backend.Precondition{IfMatch: opts.IfMatch}).Check(true, info(src, o).ETag); err != nil {
		return backend.Info{}, err
	}
	to, toName, err := b.mkdirs(dst)
	if err != nil {
		return backend.Info{}, err
	}
	switch {
	case to.folders[toName] != nil:
		err = backend.ErrIsFolder
	case to.files[toName] != nil && !opts.Overwrite:
		err = fs.ErrExist
	}
	if err != nil {
		b.prune(dst)
		return backend.Info{}, err
	}
	now := time.Now()
	b.keepLocked(dst, to.files[toName], opts.Keep, backend.ReasonOverwritten, now)
	b.keepLocked(src, o, opts.Keep, backend.ReasonMoved, now)
	to.files[toName] = o
	delete(from.files, name)
	b.prune(src)
	return info(dst, o), nil
}

// prune drops the folders above path that no longer hold anything. The
// caller holds b.mu.
func (b *Backend) prune(path string) {
	for dir := roompath.Parent(path); dir != ""; dir = roompath.Parent(dir) {
		parent, name, _ := b.find(dir)
		if parent == nil {
			return
		}
		f := parent.folders[name]
		if f == nil || len(f.files)+len(f.folders) > 0 {
			return
		}
		delete(parent.folders, name)
	}
}

// Create implements backend.Backend.
func (b *Backend) Create(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	if err := b.check(ctx, OpCreate); err != nil {
		return nil, err
	}
	return &writer{b: b, path: path, exclusive: opts.Exclusive, pre: opts.Precondition, keep: opts.Keep}, nil
}

// Append implements backend.Backend.
func (b *Backend) Append(ctx context.Context, path string, opts backend.WriteOptions) (backend.Writer, error) {
	if err := b.check(ctx, OpAppend); err != nil {
		return nil, err
	}
	return &writer{b: b, path: path, append: true, pre: opts.Precondition, keep: opts.Keep}, nil
}

type writer struct {
	b         *Backend
	path      string
	exclusive bool
	append    bool
	pre       backend.Precondition
	keep      *backend.Keep
	staged    chunks
	done      bool
}

func (w *writer) Write(ctx context.Context, p []byte) error {
	if w.done {
		return fs.ErrClosed
	}
	if err := w.b.check(ctx, OpWrite); err != nil {
		return err
	}
	w.staged.write(p)
	return nil
}

func (w *writer) Commit(ctx context.Context) (backend.Info, error) {
	if w.done {
		return backend.Info{}, fs.ErrClosed
	}
	if err := w.b.check(ctx, OpCommit); err != nil {
		if !errors.Is(err, backend.ErrConflict) { // a conflict keeps the bytes for a retry
			w.Abort(ctx)
		}
		return backend.Info{}, err
	}
	w.done = true
	b := w.b
	b.mu.Lock()
	defer b.mu.Unlock()
	staged := w.staged
	w.staged = chunks{}
	return b.commitLocked(w.path, staged, w.exclusive, w.append, w.pre, w.keep)
}

// commitLocked makes staged the file at path (appended to the file there
// with app; refused where one is with exclusive), under pre, keeping the
// version replaced as keep asks. The caller holds b.mu for writing.
func (b *Backend) commitLocked(path string, staged chunks, exclusive, app bool, pre backend.Precondition, keep *backend.Keep) (backend.Info, error) {
	f, name, err := b.mkdirs(path)
	if err != nil {
		return backend.Info{}, err
	}
	if f.folders[name] != nil {
		return backend.Info{}, backend.ErrIsFolder
	}
	old := f.files[name]
	etag := ""
	if old != nil {
		etag = info(path, old).ETag
	}
	if err := pre.Check(old != nil, etag); err != nil {
		b.prune(path)
		return backend.Info{}, err
	}
	if old != nil {
		switch {
		case exclusive:
			b.prune(path)
			return backend.Info{}, fs.ErrExist
		case app:
			staged = staged.onto(old)
		}
	}
	b.gen++
	o := &object{chunks: staged.list, size: staged.size, mod: time.Now(), gen: b.gen}
	reason := backend.ReasonOverwritten
	if app {
		reason = backend.ReasonAppended
	}
	b.keepLocked(path, old, keep, reason, o.mod)
	f.files[name] = o
	return info(path, o), nil
}

func (w *writer) Abort(context.Context) error {
	w.done = true
	w.staged = chunks{}
	return nil
}

// check fails a call whose context is done or that an armed Fault hits.
func (b *Backend) check(ctx context.Context, op Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.fault(ctx, op)
}

// errThroughFile is the answer for a path that runs through a file.
var errThroughFile = backend.Errorf(fs.ErrNotExist, nil, "path runs through a file")

// Close implements backend.Backend. A store in memory holds nothing that
// needs releasing: it goes when the last reference does, and it keeps
// working after Close. A named store is forgotten (as by Drop) when the
// last backend opened on it through OpenURL is closed while it holds no
// file, so that names opened once and never written cost nothing.
func (b *Backend) Close() error {
	namedMu.Lock()
	defer namedMu.Unlock()
	if b.name == "" || b.refs == 0 {
		return nil
	}
	b.refs--
	if b.refs == 0 && !b.pinned && named[b.name] == b && b.empty() {
		delete(named, b.name)
	}
	return nil
}

// empty reports whether the store holds no file.
func (b *Backend) empty() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.root.files) == 0 && len(b.root.folders) == 0 && len(b.kept) == 0 && len(b.uploads) == 0
}
