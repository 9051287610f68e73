package backend_disk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/roomstore/roomstore/backend"
	"github.com/spf13/afero"
)

// Temporary files are named <host>-<pid>-<nonce>-<random>: the host (hex,
// so that no name is ambiguous) and pid say whose they are, and <host>-
// <pid>-<nonce> names the owner, one Afero value. Before its first
// temporary, an owner creates the liveness file .roomstore/live/<owner>
// and holds an flock(2) on it until Close (or until its process dies, when
// the kernel drops the lock). So a temporary is stale exactly when its
// owner's liveness file is missing or can be locked: one descriptor per
// store tells every other process which temporaries are in use, however
// many writers are open.
var tempHost = func() string { h, _ := os.Hostname(); return hex.EncodeToString([]byte(h)) + "-" }()

// owner is an Afero value's identity in temporary names and its liveness
// lock.
type owner struct {
	mu     sync.Mutex
	prefix string     // "<host>-<pid>-<nonce>-" once live
	live   afero.File // the flocked liveness file; nil until the first temporary
	name   string     // its name
	done   bool       // released: no more temporaries
}

func newOwner() *owner { return &owner{} }

// ensure returns the prefix for a's temporaries, taking the liveness lock
// first on an OS file system. Other file systems live in one process,
// which Sweep never touches, and get a prefix without a lock.
func (o *owner) ensure(a *Afero) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.done:
		return "", errClosedBackend
	case o.prefix != "":
		return o.prefix, nil
	case !a.osBacked || !flocks:
		o.prefix = tempHost + strconv.Itoa(os.Getpid()) + "-" + nonce() + "-"
		return o.prefix, nil
	}
	for attempt := 0; ; attempt++ {
		id := tempHost + strconv.Itoa(os.Getpid()) + "-" + nonce()
		name := aferoLiveDir + "/" + id
		f, err := a.fs.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR|a.oflags, 0o644)
		if errors.Is(err, fs.ErrNotExist) && attempt == 0 {
			if err = a.mkdirReserved(aferoLiveDir); err == nil {
				continue
			}
		}
		if err != nil {
			return "", reservedError(err, aferoLiveDir)
		}
		osf := osFile(f)
		if osf == nil { // not the OS after all: nothing to lock
			f.Close()
			o.prefix = id + "-"
			return o.prefix, nil
		}
		locked, err := tryFlock(osf)
		// A sweeper that took the lock in the moment before ours may have
		// removed the file: it must still be there, and be this one.
		if err == nil && locked && stillLinked(a, f, name) {
			o.live, o.name, o.prefix = f, name, id+"-"
			return o.prefix, nil
		}
		f.Close()
		if err != nil {
			return "", reservedError(err, aferoLiveDir)
		}
		if attempt > 10 {
			return "", &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "cannot take a liveness lock in " + aferoLiveDir}
		}
	}
}

// stillLinked reports whether the open file f is still the one at name.
func stillLinked(a *Afero, f afero.File, name string) bool {
	held, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := a.lstatOne(name)
	return err == nil && os.SameFile(held, now)
}

// release removes the liveness file and drops the lock, so that the
// temporaries this owner leaves behind become sweepable.
func (o *owner) release(fsys afero.Fs) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	if o.live != nil {
		_ = fsys.Remove(o.name) // while still locked: no sweeper is in the way
		o.live.Close()
		o.live = nil
	}
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Sweep removes the temporary files of uncommitted writes whose writer is
// gone: a crash (or kill -9) mid-write leaves its staged bytes under the
// reserved folder, invisible but taking space. Sweep removes the
// temporaries of this host whose owner's liveness file is missing or no
// longer locked (see the package's layout), and the liveness files of
// owners that are gone. Temporaries of other hosts sharing the directory,
// and every temporary on a file system that is not the OS's, are left
// alone, and so are kept versions (see history.go), which are no
// temporaries. It returns how many temporaries it removed. NewAfero calls it;
// long-running servers that share a directory with crashing peers may
// call it from time to time.
func (a *Afero) Sweep(ctx context.Context) (int, error) {
	if !a.osBacked || !flocks {
		return 0, nil // no other process, or no way to tell it is alive
	}
	dead := map[string]afero.File{} // owners found gone, their liveness files locked by us
	defer func() {
		for _, f := range dead {
			if f != nil {
				f.Close()
			}
		}
	}()
	alive := func(id string) bool {
		if _, seen := dead[id]; seen {
			return false
		}
		f, _, err := a.openLive(id)
		if errors.Is(err, fs.ErrNotExist) {
			dead[id] = nil
			return false
		}
		if err != nil {
			return true // cannot tell: leave it
		}
		osf := osFile(f)
		if osf == nil {
			f.Close()
			return true
		}
		if locked, err := tryFlock(osf); err != nil || !locked {
			f.Close()
			return true
		}
		dead[id] = f
		return false
	}
	// Liveness files of owners that are gone, with or without temporaries.
	if err := a.eachName(ctx, aferoLiveDir, func(name string) {
		if strings.HasPrefix(name, tempHost) && name+"-" != a.owner.prefixNow() {
			alive(name)
		}
	}); err != nil {
		return 0, err
	}
	removed := 0
	err := a.eachName(ctx, aferoTmpDir, func(name string) {
		id, ok := tempOwner(name)
		if !ok || id+"-" == a.owner.prefixNow() || alive(id) {
			return
		}
		if a.fs.Remove(aferoTmpDir+"/"+name) == nil {
			removed++
		}
	})
	for id, f := range dead {
		if f != nil {
			_ = a.fs.Remove(aferoLiveDir + "/" + id) // still locked by us
		}
	}
	return removed, err
}

// prefixNow returns the owner's prefix, "" before its first temporary.
func (o *owner) prefixNow() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.prefix
}

// openLive opens the liveness file of the owner id.
func (a *Afero) openLive(id string) (afero.File, os.FileInfo, error) {
	return a.open(aferoLiveDir+"/"+id, false)
}

// tempOwner returns the owner part of a temporary's name of this host.
func tempOwner(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, tempHost)
	if !ok {
		return "", false // another host's, or not ours to judge
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 {
		return "", false
	}
	if _, err := strconv.Atoi(parts[0]); err != nil {
		return "", false
	}
	return tempHost + parts[0] + "-" + parts[1], true
}

// eachName calls fn with each name in the reserved folder dir, a batch at
// a time. A missing folder has no names.
func (a *Afero) eachName(ctx context.Context, dir string, fn func(string)) error {
	d, _, err := a.open(dir, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return reservedError(err, dir)
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := d.Readdirnames(256)
		for _, n := range names {
			fn(n)
		}
		if err != nil || len(names) == 0 {
			return nil
		}
	}
}
