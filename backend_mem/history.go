package backend_mem

import (
	"context"
	"io"
	"io/fs"
	"iter"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roomstore/roomstore/backend"
)

// kept is a past version: the object that was current, which never
// changes, shared with whatever else still holds it.
type kept struct {
	o           *object
	id          string
	replaced    time.Time
	participant string
	reason      string
}

// keepLocked keeps o, the version at path that a change replaces, as k
// asks; the caller holds b.mu for writing, so the change and its kept
// version are one step.
func (b *Backend) keepLocked(path string, o *object, k *backend.Keep, reason string, now time.Time) {
	if k == nil || o == nil {
		return
	}
	if b.kept == nil {
		b.kept = map[string][]*kept{}
	}
	b.keptSeq++
	id := strconv.FormatInt(now.UnixNano(), 36) + "-" + strconv.FormatUint(b.keptSeq, 36)
	ks := append(b.kept[path], &kept{o: o, id: id, replaced: now, participant: backend.KeptParticipant(k.Participant), reason: reason})
	if k.Retain > 0 && len(ks) > k.Retain {
		ks = slices.Delete(ks, 0, len(ks)-k.Retain) // kept in the order they were kept: oldest first
	}
	b.kept[path] = ks
}

// RetainsKept implements backend.Retainer: a change keeps and trims in
// one step under the store's lock.
func (b *Backend) RetainsKept() bool { return true }

func (k *kept) version(path string) backend.Version {
	return backend.Version{
		Path: path, ID: k.id, ETag: strconv.FormatUint(k.o.gen, 10), Size: k.o.size, ModTime: k.o.mod,
		Replaced: k.replaced, Participant: k.participant, Reason: k.reason,
	}
}

// Versions implements backend.History.
func (b *Backend) Versions(ctx context.Context, path string) iter.Seq2[backend.Version, error] {
	return func(yield func(backend.Version, error) bool) {
		if err := b.check(ctx, OpHistory); err != nil {
			yield(backend.Version{}, err)
			return
		}
		b.mu.RLock()
		out := make([]backend.Version, 0, len(b.kept[path]))
		for _, k := range b.kept[path] {
			out = append(out, k.version(path))
		}
		b.mu.RUnlock()
		for _, v := range out {
			if !yield(v, nil) {
				return
			}
		}
	}
}

// Kept implements backend.History.
func (b *Backend) Kept(ctx context.Context, dir string) iter.Seq2[backend.Version, error] {
	return func(yield func(backend.Version, error) bool) {
		if err := b.check(ctx, OpHistory); err != nil {
			yield(backend.Version{}, err)
			return
		}
		b.mu.RLock()
		var out []backend.Version
		for p, ks := range b.kept {
			if dir != "" && p != dir && !strings.HasPrefix(p, dir+"/") {
				continue
			}
			for _, k := range ks {
				out = append(out, k.version(p))
			}
		}
		b.mu.RUnlock()
		sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
		for _, v := range out {
			if !yield(v, nil) {
				return
			}
		}
	}
}

// ReadVersion implements backend.History.
func (b *Backend) ReadVersion(ctx context.Context, path, id string, offset, length int64) (io.ReadCloser, backend.Version, error) {
	if err := b.check(ctx, OpHistory); err != nil {
		return nil, backend.Version{}, err
	}
	b.mu.RLock()
	var k *kept
	for _, c := range b.kept[path] {
		if c.id == id {
			k = c
		}
	}
	b.mu.RUnlock()
	if k == nil {
		return nil, backend.Version{}, backend.Errorf(fs.ErrNotExist, nil, "no kept version %q", id)
	}
	o := k.o
	if offset < 0 || offset > o.size {
		return nil, backend.Version{}, backend.Errorf(fs.ErrInvalid, nil, "offset %d outside file of %d bytes", offset, o.size)
	}
	end := o.size
	if length >= 0 && offset+length < o.size {
		end = offset + length
	}
	return newChunkReader(o.chunks, offset, end), k.version(path), nil
}

// Forget implements backend.History.
func (b *Backend) Forget(ctx context.Context, path, id string) error {
	if err := b.check(ctx, OpHistory); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ks := b.kept[path]
	for i, k := range ks {
		if k.id == id {
			ks = append(ks[:i:i], ks[i+1:]...)
			if len(ks) == 0 {
				delete(b.kept, path)
			} else {
				b.kept[path] = ks
			}
			return nil
		}
	}
	return backend.Errorf(fs.ErrNotExist, nil, "no kept version %q", id)
}
