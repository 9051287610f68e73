package backend_disk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"iter"
	"os"
	"sync"
	"time"

	"github.com/spf13/afero"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// Staged uploads (backend.Staging).
//
// Upload id lives in the folder .roomstore/uploads/<id>: its bytes in the
// file data, which every append extends and the commit renames into
// place (so a commit copies nothing, as a Writer's commit of its
// temporary), and its record in the file info, replaced whole by a
// rename. Stage makes the folder and data before info, and CommitStaged
// and RemoveStaged take data away before info, so an upload with both is
// whole, and one with one of them is half made or half removed, which
// ListStaged reports with no record.
//
// An append or a commit holds the upload's lock: in process a semaphore
// shared by the Afero values over one Fs, and on the OS an flock(2) of
// the data file, which excludes other processes. The holder then checks
// that data is still the file at its name: an append that waited for a
// commit finds the upload gone rather than adding to the committed file.
// A removal takes no lock: an append in flight writes on to an unlinked
// file, whose bytes go with it.

// aferoUploadsDir holds the staged uploads.
const aferoUploadsDir = roompath.ReservedPrefix + "/uploads"

// uploadDir is the folder of upload id.
func uploadDir(id string) string { return aferoUploadsDir + "/" + id }

var errNoUpload = backend.Errorf(fs.ErrNotExist, nil, "no such upload")

// Stage implements backend.Staging.
func (a *Afero) Stage(ctx context.Context, id string, record []byte) error {
	if err := a.usable(ctx); err != nil {
		return err
	}
	dir := uploadDir(id)
	for attempt := 0; ; attempt++ {
		err := a.fs.Mkdir(dir, 0o755)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		if attempt == 0 && errors.Is(err, fs.ErrNotExist) {
			if err = a.mkdirReserved(aferoUploadsDir); err == nil {
				continue
			}
		}
		return reservedError(err, aferoUploadsDir)
	}
	f, err := a.fs.OpenFile(dir+"/data", os.O_CREATE|os.O_EXCL|os.O_WRONLY|a.oflags, 0o644)
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = a.putRecord(dir, record)
	}
	if err != nil {
		a.removeUpload(dir)
		return osError(err)
	}
	if a.fsync {
		a.paths.syncDir(aferoUploadsDir)
	}
	return nil
}

// usable fails a call whose context has ended or whose backend is closed.
func (a *Afero) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.closed.Load() {
		return errClosedBackend
	}
	return nil
}

// putRecord writes record as the info of the upload folder dir: in a
// file of its own renamed over info, so that a reader sees one record
// whole.
func (a *Afero) putRecord(dir string, record []byte) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	tmp := dir + "/info-" + hex.EncodeToString(b[:])
	f, err := a.fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY|a.oflags, 0o644)
	if err != nil {
		return osError(err)
	}
	_, err = f.Write(record)
	if err == nil && a.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = a.fs.Rename(tmp, dir+"/info")
	}
	if err != nil {
		_ = a.fs.Remove(tmp)
		return osError(err)
	}
	if a.fsync {
		a.paths.syncDir(dir)
	}
	return nil
}

// describeUpload describes upload id as its files are: whole, or with no
// record when one of them is missing (half made or half removed).
// fs.ErrNotExist when its folder is missing.
func (a *Afero) describeUpload(id string) (backend.Staged, error) {
	dir := uploadDir(id)
	st := backend.Staged{ID: id}
	fi, err := a.lstatOne(dir)
	if err != nil {
		return st, err
	}
	st.Modified = fi.ModTime()
	data, derr := a.lstatOne(dir + "/data")
	if derr == nil {
		st.Size, st.Modified = data.Size(), later(st.Modified, data.ModTime())
	}
	f, err := a.fs.OpenFile(dir+"/info", os.O_RDONLY|a.oflags, 0)
	if err != nil {
		return st, nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		st.Modified = later(st.Modified, fi.ModTime())
	}
	rec, err := io.ReadAll(io.LimitReader(f, backend.MaxStagedRecord+1))
	if err == nil && derr == nil && len(rec) <= backend.MaxStagedRecord {
		st.Record = rec
	}
	return st, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Staged implements backend.Staging.
func (a *Afero) Staged(ctx context.Context, id string) (backend.Staged, error) {
	if err := a.usable(ctx); err != nil {
		return backend.Staged{}, err
	}
	st, err := a.describeUpload(id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return backend.Staged{}, errNoUpload
	case err != nil:
		return backend.Staged{}, err
	case st.Record == nil:
		return backend.Staged{}, errNoUpload
	}
	return st, nil
}

// Restage implements backend.Staging.
func (a *Afero) Restage(ctx context.Context, id string, record []byte) error {
	if err := a.usable(ctx); err != nil {
		return err
	}
	dir := uploadDir(id)
	if _, err := a.lstatOne(dir + "/data"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errNoUpload
		}
		return err
	}
	return a.putRecord(dir, record)
}

// openUpload opens the data of upload id for writing and takes its
// lock, in process and on the OS across processes, checking that it is
// still the upload's (not committed, not removed) once it holds it. The
// returned function closes the file, unless done (a commit placed it),
// and releases the locks.
func (a *Afero) openUpload(ctx context.Context, id string) (afero.File, func(), error) {
	unlock, err := a.locks.uploads.Lock(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	name := uploadDir(id) + "/data"
	f, err := a.fs.OpenFile(name, os.O_RDWR|os.O_APPEND|a.oflags, 0)
	if err != nil {
		unlock()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, errNoUpload
		}
		return nil, nil, osError(err)
	}
	// Other processes reach only OS files; in this process the lock,
	// taken before the open, orders it after any commit.
	if osf := osFile(f); osf != nil && flocks {
		if err := waitFlock(ctx, func() (bool, error) { return tryFlock(osf) }); err != nil {
			f.Close()
			unlock()
			return nil, nil, err
		}
		if !stillLinked(a, f, name) {
			f.Close()
			unlock()
			return nil, nil, errNoUpload
		}
	}
	return f, unlock, nil
}

// AppendStaged implements backend.Staging: r's bytes go straight to the
// upload's data file, which is synced before it returns when the backend
// fsyncs.
func (a *Afero) AppendStaged(ctx context.Context, id string, offset int64, r io.Reader) (int64, error) {
	if err := a.usable(ctx); err != nil {
		return 0, err
	}
	if a.osBacked {
		units, err := acquire(ctx, 2) // the data file, and a folder or info file
		if err != nil {
			return 0, err
		}
		defer units.release()
	}
	f, unlock, err := a.openUpload(ctx, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return 0, osError(err)
	case fi.Size() != offset:
		return 0, backend.Errorf(backend.ErrConflict, nil, "upload holds %d bytes, not %d", fi.Size(), offset)
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var n int64
	var werr error
	for {
		if werr = ctx.Err(); werr != nil {
			break
		}
		m, rerr := r.Read(buf)
		if m < 0 || m > len(buf) {
			m, rerr = 0, backend.Errorf(fs.ErrInvalid, nil, "the reader returned %d bytes into a buffer of %d", m, len(buf))
		}
		if m > 0 {
			w, err := f.Write(buf[:m])
			n += int64(w)
			if err != nil {
				werr = osError(err)
				break
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			werr = rerr
			break
		}
	}
	if n > 0 && a.fsync {
		if err := f.Sync(); err != nil && werr == nil {
			werr = osError(err)
		}
	}
	return n, werr
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// CommitStaged implements backend.Staging: the upload's data file is
// renamed into place under the path's lock, as a Writer's temporary is
// (see afero_writer.go), so the commit copies no byte.
func (a *Afero) CommitStaged(ctx context.Context, id, path string, opts backend.WriteOptions) (backend.Info, error) {
	if err := a.usable(ctx); err != nil {
		return backend.Info{}, err
	}
	if a.osBacked {
		units, err := acquire(ctx, commitFDs+1)
		if err != nil {
			return backend.Info{}, err
		}
		defer units.release()
	}
	f, unlock, err := a.openUpload(ctx, id)
	if err != nil {
		return backend.Info{}, err
	}
	defer unlock()
	mode := commitReplace
	if opts.Exclusive {
		mode = commitExclusive
	}
	w := &aferoWriter{a: a, path: path, mode: mode, pre: opts.Precondition, keep: opts.Keep, tmp: uploadDir(id) + "/data", f: f}
	info, err := func() (backend.Info, error) {
		unlockPath, err := a.locks.lock(ctx, a, path)
		if err != nil {
			return backend.Info{}, err
		}
		defer unlockPath()
		if err := ctx.Err(); err != nil {
			return backend.Info{}, err
		}
		if mode == commitReplace {
			err = w.replace(ctx)
		} else {
			err = w.create(ctx)
		}
		if err != nil {
			return backend.Info{}, err
		}
		return w.placed(w.tmp, f)
	}()
	if err != nil {
		if w.f != nil {
			w.f.Close()
		}
		return backend.Info{}, err
	}
	a.removeUpload(uploadDir(id))
	return info, nil
}

// removeUpload removes the upload folder dir and what it holds, data
// first (see the layout above).
func (a *Afero) removeUpload(dir string) {
	_ = a.fs.Remove(dir + "/data")
	if d, err := a.fs.Open(dir); err == nil {
		names, _ := d.Readdirnames(-1)
		d.Close()
		for _, n := range names {
			_ = a.fs.Remove(dir + "/" + n)
		}
	}
	_ = a.fs.Remove(dir)
	if a.fsync {
		a.paths.syncDir(aferoUploadsDir)
	}
}

// RemoveStaged implements backend.Staging.
func (a *Afero) RemoveStaged(ctx context.Context, id string) error {
	if err := a.usable(ctx); err != nil {
		return err
	}
	dir := uploadDir(id)
	if _, err := a.lstatOne(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errNoUpload
		}
		return err
	}
	// A record being put meanwhile (by a write of another process) may
	// refill the folder: removed again.
	for attempt := 0; ; attempt++ {
		a.removeUpload(dir)
		_, err := a.lstatOne(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case attempt == 2:
			return backend.Errorf(backend.ErrStoreUnavailable, err, "cannot remove an upload's folder")
		}
	}
}

// ListStaged implements backend.Staging: one read of the uploads' folder,
// in batches.
func (a *Afero) ListStaged(ctx context.Context) iter.Seq2[backend.Staged, error] {
	return func(yield func(backend.Staged, error) bool) {
		if err := a.usable(ctx); err != nil {
			yield(backend.Staged{}, err)
			return
		}
		d, err := a.fs.Open(aferoUploadsDir)
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err != nil {
			yield(backend.Staged{}, osError(err))
			return
		}
		defer d.Close()
		batch := 1024
		if !a.osBacked {
			batch = -1 // see batches: read whole, once
		}
		for {
			if err := ctx.Err(); err != nil {
				yield(backend.Staged{}, err)
				return
			}
			names, err := d.Readdirnames(batch)
			if batch < 0 && err == nil {
				err = io.EOF
			}
			for _, id := range names {
				if !backend.ValidStagedID(id) {
					continue
				}
				st, err := a.describeUpload(id)
				if errors.Is(err, fs.ErrNotExist) {
					continue // removed meanwhile
				}
				if !yield(st, err) || err != nil {
					return
				}
			}
			if err == io.EOF || len(names) == 0 {
				return
			}
			if err != nil {
				yield(backend.Staged{}, osError(err))
				return
			}
		}
	}
}
