package backend_disk

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/sync/semaphore"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/keylock"
)

// lockStripes is how many locks guard commits. Paths hash onto stripes, so
// unrelated paths rarely wait for each other and the lock files stay few.
const lockStripes = 64

// treeReaders is the weight of the tree lock: commits take one unit, a
// pruning takes them all.
const treeReaders = 1 << 30

// fsLocks serialises commits, removals and pruning on one afero.Fs. Afero
// values over the same Fs share one fsLocks, so two Engines in one process
// over one MemMapFs exclude each other; on an OS file system the stripe is
// also held with flock(2), which excludes other processes and other Fs
// values over the same directory. Every wait honours the caller's context.
type fsLocks struct {
	// tree is held shared while a commit creates parents and renames, and
	// exclusively while pruning, so a folder is never removed between the
	// two steps of a commit in this process.
	tree    *semaphore.Weighted
	stripes [lockStripes]*semaphore.Weighted
	// osPaths holds the OS path of each stripe's lock file once it is
	// known to be an OS file; each is guarded by its stripe.
	osPaths [lockStripes]string
	// uploads are the locks of staged uploads (see staged.go).
	uploads keylock.Locks
}

func newFSLocks() *fsLocks {
	l := &fsLocks{tree: semaphore.NewWeighted(treeReaders)}
	for i := range l.stripes {
		l.stripes[i] = semaphore.NewWeighted(1)
	}
	return l
}

// lockRegistry shares one fsLocks among the Afero values over one Fs,
// counting them so that an entry goes when its last Afero is closed (or
// collected).
var lockRegistry = struct {
	sync.Mutex
	m map[afero.Fs]*sharedLocks
}{m: map[afero.Fs]*sharedLocks{}}

type sharedLocks struct {
	locks *fsLocks
	refs  int
}

// locksFor returns the locks of fsys and the function that gives them back,
// to be called once.
func locksFor(fsys afero.Fs) (*fsLocks, func()) {
	if t := reflect.TypeOf(fsys); t == nil || !t.Comparable() {
		return newFSLocks(), func() {}
	}
	lockRegistry.Lock()
	defer lockRegistry.Unlock()
	s := lockRegistry.m[fsys]
	if s == nil {
		s = &sharedLocks{locks: newFSLocks()}
		lockRegistry.m[fsys] = s
	}
	s.refs++
	var once sync.Once
	return s.locks, func() { once.Do(func() { releaseLocks(fsys) }) }
}

func releaseLocks(fsys afero.Fs) {
	lockRegistry.Lock()
	defer lockRegistry.Unlock()
	if s := lockRegistry.m[fsys]; s != nil {
		if s.refs--; s.refs == 0 {
			delete(lockRegistry.m, fsys)
		}
	}
}

// lock takes path's stripe, in process and, where the Fs is backed by the
// OS, across processes, waiting as ctx allows. It returns the function that
// releases both.
func (l *fsLocks) lock(ctx context.Context, a *Afero, path string) (func(), error) {
	return l.lockStripe(ctx, a, stripeOf(path))
}

// lockPair takes the stripes of two paths, in stripe order so that two
// pairs never wait for each other crosswise, and the shared one once.
func (l *fsLocks) lockPair(ctx context.Context, a *Afero, p, q string) (func(), error) {
	m, n := stripeOf(p), stripeOf(q)
	if m == n {
		return l.lockStripe(ctx, a, m)
	}
	if m > n {
		m, n = n, m
	}
	first, err := l.lockStripe(ctx, a, m)
	if err != nil {
		return nil, err
	}
	second, err := l.lockStripe(ctx, a, n)
	if err != nil {
		first()
		return nil, err
	}
	return func() { second(); first() }, nil
}

// lockNames are the stripes' lock files.
var lockNames = func() (names [lockStripes]string) {
	for i := range names {
		names[i] = fmt.Sprintf("%s/%02d", aferoLockDir, i)
	}
	return names
}()

func stripeOf(path string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(path))
	return h.Sum32() % lockStripes
}

func (l *fsLocks) lockStripe(ctx context.Context, a *Afero, n uint32) (func(), error) {
	sem := l.stripes[n]
	if err := sem.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	f, err := a.paths.lock(ctx, n)
	if err != nil {
		sem.Release(1)
		return nil, err
	}
	return func() {
		if f != nil {
			f.Close() // closing the descriptor releases the flock
		}
		sem.Release(1)
	}, nil
}

// shareTree holds the tree lock shared, as ctx allows.
func (l *fsLocks) shareTree(ctx context.Context) (func(), error) {
	if err := l.tree.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	return func() { l.tree.Release(1) }, nil
}

// ownTree holds the tree lock exclusively, as ctx allows.
func (l *fsLocks) ownTree(ctx context.Context) (func(), error) {
	if err := l.tree.Acquire(ctx, treeReaders); err != nil {
		return nil, err
	}
	return func() { l.tree.Release(treeReaders) }, nil
}

// lockFile opens the stripe's lock file and flocks it when the Fs hands
// out OS files; other file systems live in this process only and need no
// more than the stripe. The caller holds the stripe.
//
// Once the stripe's lock file is known to be an OS file, later locks open
// it by its OS path with plain system calls: os.OpenFile would also try to
// register the descriptor with the network poller (four fcntl calls and a
// failing epoll_ctl on a regular file): five of a lock's eight calls.
// It is the afero.Fs's way (fsPaths.lock); the fast path has its own.
func (l *fsLocks) lockFile(ctx context.Context, a *Afero, n uint32) (io.Closer, error) {
	fsys := a.fs
	name := lockNames[n]
	if p := l.osPaths[n]; p != "" {
		c, err := flockPath(ctx, p)
		if !errors.Is(err, fs.ErrNotExist) {
			if err != nil && ctx.Err() == nil {
				err = reservedError(err, aferoLockDir)
			}
			return c, err
		}
		l.osPaths[n] = "" // the lock folder was removed: make it again
	}
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR|a.oflags, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err = a.mkdirReserved(aferoLockDir); err == nil {
			f, err = fsys.OpenFile(name, os.O_CREATE|os.O_RDWR|a.oflags, 0o644)
		}
	}
	if err != nil {
		return nil, reservedError(err, aferoLockDir)
	}
	osf := osFile(f)
	if osf == nil {
		f.Close()
		return nil, nil
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "lock file " + name + " is not a regular file"}
	}
	l.osPaths[n] = osf.Name()
	if err := waitFlock(ctx, func() (bool, error) { return tryFlock(osf) }); err != nil {
		f.Close()
		if ctx.Err() == nil {
			err = reservedError(err, aferoLockDir)
		}
		return nil, err
	}
	return f, nil
}

// waitFlock calls try until it takes the lock, fails, or ctx ends, backing
// off from 1 ms to 20 ms between attempts.
func waitFlock(ctx context.Context, try func() (bool, error)) error {
	ok, err := try()
	if ok || err != nil {
		return err
	}
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if ok, err := try(); ok || err != nil {
			return err
		}
		wait = min(2*wait, 20*time.Millisecond)
		t.Reset(wait)
	}
}
