package backend

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"sync"
	"time"

	"github.com/spf13/afero"
)

// lockStripes is how many locks guard commits. Paths hash onto stripes, so
// unrelated paths rarely wait for each other and the lock files stay few.
const lockStripes = 64

// fsLocks serialises commits, removals and pruning on one afero.Fs. Afero
// values over the same Fs share one fsLocks, so two Engines in one process
// over one MemMapFs exclude each other; on an OS file system the stripe is
// also held with flock(2), which excludes other processes and other Fs
// values over the same directory.
type fsLocks struct {
	// tree is held shared while a commit creates parents and renames, and
	// exclusively while pruning, so a folder is never removed between the
	// two steps of a commit in this process.
	tree    sync.RWMutex
	stripes [lockStripes]sync.Mutex
	// osPaths holds the OS path of each stripe's lock file once it is
	// known to be an OS file; each is guarded by its stripe's mutex.
	osPaths [lockStripes]string
}

// lockRegistry shares one fsLocks among the Afero values over one Fs,
// counting them so that an entry goes when its last Afero does.
var lockRegistry = struct {
	sync.Mutex
	m map[afero.Fs]*sharedLocks
}{m: map[afero.Fs]*sharedLocks{}}

type sharedLocks struct {
	locks fsLocks
	refs  int
}

// locksFor returns the locks of fsys for a, released when a is collected.
func locksFor(a *Afero, fsys afero.Fs) *fsLocks {
	if t := reflect.TypeOf(fsys); t == nil || !t.Comparable() {
		return new(fsLocks)
	}
	lockRegistry.Lock()
	defer lockRegistry.Unlock()
	s := lockRegistry.m[fsys]
	if s == nil {
		s = new(sharedLocks)
		lockRegistry.m[fsys] = s
	}
	s.refs++
	runtime.AddCleanup(a, releaseLocks, fsys)
	return &s.locks
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
// OS, across processes. It returns the function that releases both.
func (l *fsLocks) lock(ctx context.Context, fsys afero.Fs, path string) (func(), error) {
	h := fnv.New32a()
	h.Write([]byte(path))
	n := h.Sum32() % lockStripes
	mu := &l.stripes[n]
	mu.Lock()
	f, err := l.lockFile(ctx, fsys, n)
	if err != nil {
		mu.Unlock()
		return nil, err
	}
	return func() {
		if f != nil {
			f.Close() // closing the descriptor releases the flock
		}
		mu.Unlock()
	}, nil
}

// lockFile opens the stripe's lock file and flocks it when the Fs hands
// out OS files; other file systems live in this process only and need no
// more than the mutex. The caller holds the stripe's mutex.
//
// Once the stripe's lock file is known to be an OS file, later locks open
// it by its OS path with plain system calls: os.OpenFile would also try to
// register the descriptor with the network poller (four fcntl calls and a
// failing epoll_ctl on a regular file): five of a lock's eight calls.
func (l *fsLocks) lockFile(ctx context.Context, fsys afero.Fs, n uint32) (io.Closer, error) {
	name := fmt.Sprintf("%s/%02d", aferoLockDir, n)
	if p := l.osPaths[n]; p != "" {
		c, err := flockPath(ctx, p)
		if !errors.Is(err, fs.ErrNotExist) {
			if err != nil && ctx.Err() == nil {
				err = mapOSError("lock", name, err)
			}
			return c, err
		}
		l.osPaths[n] = "" // the lock folder was removed: make it again
	}
	f, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err = fsys.MkdirAll(aferoLockDir, 0o755); err == nil {
			f, err = fsys.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
		}
	}
	if err != nil {
		return nil, mapOSError("lock", name, err)
	}
	osf := osFile(f)
	if osf == nil {
		f.Close()
		return nil, nil
	}
	l.osPaths[n] = osf.Name()
	if err := waitFlock(ctx, func() (bool, error) { return tryFlock(osf) }); err != nil {
		f.Close()
		if ctx.Err() == nil {
			err = mapOSError("lock", name, err)
		}
		return nil, err
	}
	return f, nil
}

// waitFlock calls try until it takes the lock, fails, or ctx ends, backing
// off from 1 ms to 20 ms between attempts.
func waitFlock(ctx context.Context, try func() (bool, error)) error {
	wait := time.Millisecond
	for {
		ok, err := try()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}
