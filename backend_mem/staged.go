package backend_mem

import (
	"context"
	"io"
	"io/fs"
	"iter"
	"time"

	"github.com/roomstore/roomstore/backend"
)

// upload is a staged upload (backend.Staging): its record and its bytes,
// in chunks that its commit hands over as a writer's are.
type upload struct {
	// turn is held (a token in it) by the one AppendStaged or
	// CommitStaged of the upload at work.
	turn chan struct{}

	// Guarded by the store's mu.
	record []byte
	data   chunks
	mod    time.Time
	gone   bool // committed or removed
}

// lookup returns upload id, or fs.ErrNotExist.
func (b *Backend) lookup(id string) (*upload, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if u := b.uploads[id]; u != nil {
		return u, nil
	}
	return nil, errNoUpload
}

var errNoUpload = backend.Errorf(fs.ErrNotExist, nil, "no such upload")

// take waits for u's turn, as ctx allows; the caller gives it back with
// release, and finds the upload gone when it was committed or removed
// meanwhile.
func (u *upload) take(ctx context.Context) error {
	select {
	case u.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *upload) release() { <-u.turn }

// Stage implements backend.Staging.
func (b *Backend) Stage(ctx context.Context, id string, record []byte) error {
	if err := b.check(ctx, OpStaged); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.uploads[id] != nil {
		return fs.ErrExist
	}
	if b.uploads == nil {
		b.uploads = map[string]*upload{}
	}
	b.uploads[id] = &upload{turn: make(chan struct{}, 1), record: clone(record), mod: time.Now()}
	return nil
}

func clone(p []byte) []byte { return append([]byte{}, p...) }

// Staged implements backend.Staging.
func (b *Backend) Staged(ctx context.Context, id string) (backend.Staged, error) {
	if err := b.check(ctx, OpStaged); err != nil {
		return backend.Staged{}, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	u := b.uploads[id]
	if u == nil {
		return backend.Staged{}, errNoUpload
	}
	return u.staged(id), nil
}

// staged describes u; the caller holds b.mu.
func (u *upload) staged(id string) backend.Staged {
	return backend.Staged{ID: id, Record: clone(u.record), Size: u.data.size, Modified: u.mod}
}

// Restage implements backend.Staging.
func (b *Backend) Restage(ctx context.Context, id string, record []byte) error {
	if err := b.check(ctx, OpStaged); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.uploads[id]
	if u == nil {
		return errNoUpload
	}
	u.record, u.mod = clone(record), time.Now()
	return nil
}

// AppendStaged implements backend.Staging: each piece r yields is added
// to the upload as it arrives.
func (b *Backend) AppendStaged(ctx context.Context, id string, offset int64, r io.Reader) (int64, error) {
	if err := b.check(ctx, OpAppendStaged); err != nil {
		return 0, err
	}
	u, err := b.lookup(id)
	if err != nil {
		return 0, err
	}
	if err := u.take(ctx); err != nil {
		return 0, err
	}
	defer u.release()
	b.mu.RLock()
	gone, size := u.gone, u.data.size
	b.mu.RUnlock()
	switch {
	case gone:
		return 0, errNoUpload
	case size != offset:
		return 0, backend.Errorf(backend.ErrConflict, nil, "upload holds %d bytes, not %d", size, offset)
	}
	buf := make([]byte, 32<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			b.mu.Lock()
			if u.gone { // removed meanwhile: its bytes go with it
				b.mu.Unlock()
				return n, errNoUpload
			}
			u.data.write(buf[:m])
			u.mod = time.Now()
			b.mu.Unlock()
			n += int64(m)
		}
		switch {
		case rerr == io.EOF:
			return n, nil
		case rerr != nil:
			return n, rerr
		}
	}
}

// CommitStaged implements backend.Staging: the upload's chunks become the
// file, as a writer's do.
func (b *Backend) CommitStaged(ctx context.Context, id, path string, opts backend.WriteOptions) (backend.Info, error) {
	if err := b.check(ctx, OpCommitStaged); err != nil {
		return backend.Info{}, err
	}
	u, err := b.lookup(id)
	if err != nil {
		return backend.Info{}, err
	}
	if err := u.take(ctx); err != nil {
		return backend.Info{}, err
	}
	defer u.release()
	b.mu.Lock()
	defer b.mu.Unlock()
	if u.gone {
		return backend.Info{}, errNoUpload
	}
	info, err := b.commitLocked(path, u.data, opts.Exclusive, false, opts.Precondition, opts.Keep)
	if err != nil {
		return backend.Info{}, err
	}
	u.gone = true
	u.data = chunks{}
	delete(b.uploads, id)
	return info, nil
}

// RemoveStaged implements backend.Staging. An append in flight finds the
// upload gone at its next piece.
func (b *Backend) RemoveStaged(ctx context.Context, id string) error {
	if err := b.check(ctx, OpStaged); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.uploads[id]
	if u == nil {
		return errNoUpload
	}
	u.gone = true
	u.data = chunks{}
	delete(b.uploads, id)
	return nil
}

// ListStaged implements backend.Staging.
func (b *Backend) ListStaged(ctx context.Context) iter.Seq2[backend.Staged, error] {
	return func(yield func(backend.Staged, error) bool) {
		if err := b.check(ctx, OpStaged); err != nil {
			yield(backend.Staged{}, err)
			return
		}
		b.mu.RLock()
		out := make([]backend.Staged, 0, len(b.uploads))
		for id, u := range b.uploads {
			out = append(out, u.staged(id))
		}
		b.mu.RUnlock()
		for _, s := range out {
			if !yield(s, nil) {
				return
			}
		}
	}
}
