package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// Staged uploads on an object store (backend.Staging).
//
// Upload id is the objects under .roomstore/uploads/<id>/: its record in
// info, and its bytes in parts, each the object p/<offset>, named by
// where its bytes start (20 decimal digits, so that names sort by
// offset). An append puts what it reads in parts of at most PartSize
// bytes, each created only if no object has its name (S3 If-None-Match,
// GCS DoesNotExist): of two appends at one offset, in any processes,
// exactly one lands its first part and the other fails with
// ErrConflict. A part is one request, so it is stored whole or not at
// all, and a cut append keeps every part it put, the last one holding
// what arrived before the cut. The upload holds the parts that follow
// each other from offset 0.
//
// A commit and a removal take info away first, so that the upload is
// gone at once, then its parts; parts left by a process that died
// meanwhile, or by an append that lost a race with them, are an upload
// without a record, which ListStaged reports for the Engine to remove.

// StagedObjects is what Staging needs of an object store, on keys
// relative to the store's root (the backend adds its prefix).
type StagedObjects interface {
	// PutNew creates the object key holding data, or fails with
	// fs.ErrExist when one is there.
	PutNew(ctx context.Context, key string, data []byte) error
	// Put creates or replaces the object key.
	Put(ctx context.Context, key string, data []byte) error
	// Get reads the object key whole (fs.ErrNotExist when missing); it is
	// asked only of records, at most backend.MaxStagedRecord bytes.
	Get(ctx context.Context, key string) ([]byte, error)
	// List yields the objects whose keys start with prefix, in key order.
	List(ctx context.Context, prefix string) iter.Seq2[StagedObject, error]
	// Delete removes the object key; a missing one is no error.
	Delete(ctx context.Context, key string) error
}

// StagedObject is one object a StagedObjects listing yields.
type StagedObject struct {
	Key      string // relative to the store's root
	Size     int64
	Modified time.Time
}

// Staging implements backend.Staging but for CommitStaged on an object
// store (see above); a backend's CommitStaged reads the parts with
// Parts.
type Staging struct {
	Objects StagedObjects
	// PartSize is the most bytes one part holds, and so the memory an
	// append holds.
	PartSize int
}

// UploadsDir holds the staged uploads.
const UploadsDir = roompath.ReservedPrefix + "/uploads/"

func infoKey(id string) string  { return UploadsDir + id + "/info" }
func partsKey(id string) string { return UploadsDir + id + "/p/" }

// PartKey is the key of the part of upload id that starts at off.
func PartKey(id string, off int64) string { return partsKey(id) + fmt.Sprintf("%020d", off) }

var errNoUpload = backend.Errorf(fs.ErrNotExist, nil, "no such upload")

// Stage implements backend.Staging.
func (s Staging) Stage(ctx context.Context, id string, record []byte) error {
	return s.Objects.PutNew(ctx, infoKey(id), record)
}

// Part is a part of an upload: its key, where it starts and its size.
type Part struct {
	Key       string
	Off, Size int64
}

// Parts returns the parts of upload id that follow each other from
// offset 0, and when the upload last changed.
func (s Staging) Parts(ctx context.Context, id string) ([]Part, time.Time, error) {
	var parts []Part
	var mod time.Time
	var next int64
	for o, err := range s.Objects.List(ctx, partsKey(id)) {
		if err != nil {
			return nil, time.Time{}, err
		}
		off, err := strconv.ParseInt(strings.TrimPrefix(o.Key, partsKey(id)), 10, 64)
		if err != nil || off != next {
			continue // no part of the upload's run of bytes
		}
		parts = append(parts, Part{Key: o.Key, Off: off, Size: o.Size})
		next += o.Size
		if o.Modified.After(mod) {
			mod = o.Modified
		}
	}
	return parts, mod, nil
}

// size is the bytes that parts hold.
func size(parts []Part) int64 {
	if len(parts) == 0 {
		return 0
	}
	last := parts[len(parts)-1]
	return last.Off + last.Size
}

// Staged implements backend.Staging.
func (s Staging) Staged(ctx context.Context, id string) (backend.Staged, error) {
	rec, err := s.Objects.Get(ctx, infoKey(id))
	if errors.Is(err, fs.ErrNotExist) {
		return backend.Staged{}, errNoUpload
	}
	if err != nil {
		return backend.Staged{}, err
	}
	parts, mod, err := s.Parts(ctx, id)
	if err != nil {
		return backend.Staged{}, err
	}
	return backend.Staged{ID: id, Record: rec, Size: size(parts), Modified: mod}, nil
}

// Restage implements backend.Staging.
func (s Staging) Restage(ctx context.Context, id string, record []byte) error {
	if _, err := s.Objects.Get(ctx, infoKey(id)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errNoUpload
		}
		return err
	}
	return s.Objects.Put(ctx, infoKey(id), record)
}

// AppendStaged implements backend.Staging: r's bytes in parts of at most
// PartSize, each put once full, the last when r ends or fails.
func (s Staging) AppendStaged(ctx context.Context, id string, offset int64, r io.Reader) (int64, error) {
	st, err := s.Staged(ctx, id)
	if err != nil {
		return 0, err
	}
	if st.Size != offset {
		return 0, backend.Errorf(backend.ErrConflict, nil, "upload holds %d bytes, not %d", st.Size, offset)
	}
	buf := make([]byte, 0, min(s.PartSize, 64<<10))
	var n int64
	put := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := s.Objects.PutNew(ctx, PartKey(id, offset+n), buf)
		if errors.Is(err, fs.ErrExist) {
			return backend.Errorf(backend.ErrConflict, nil, "another append to the upload landed first")
		}
		if err != nil {
			return err
		}
		n += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf) == s.PartSize {
				if err := put(); err != nil {
					return n, err
				}
			} else {
				grown := make([]byte, len(buf), min(2*cap(buf), s.PartSize))
				copy(grown, buf)
				buf = grown
			}
		}
		if err := ctx.Err(); err != nil {
			// What arrived is kept, on a context that outlives the call's.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCleanupTimeout)
			ctx = pctx
			perr := put()
			cancel()
			return n, errors.Join(err, perr)
		}
		m, rerr := r.Read(buf[len(buf):cap(buf)])
		if m < 0 || m > cap(buf)-len(buf) {
			m, rerr = 0, backend.Errorf(fs.ErrInvalid, nil, "the reader returned %d bytes into a buffer of %d", m, cap(buf)-len(buf))
		}
		buf = buf[:len(buf)+m]
		if rerr == io.EOF {
			return n, put()
		}
		if rerr != nil {
			if err := put(); err != nil {
				return n, errors.Join(rerr, err)
			}
			return n, rerr
		}
	}
}

// Forget removes what upload id holds: info first, then its parts.
func (s Staging) Forget(ctx context.Context, id string) error {
	if err := s.Objects.Delete(ctx, infoKey(id)); err != nil {
		return err
	}
	var errs []error
	for o, err := range s.Objects.List(ctx, UploadsDir+id+"/") {
		if err != nil {
			return err
		}
		if err := s.Objects.Delete(ctx, o.Key); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveStaged implements backend.Staging.
func (s Staging) RemoveStaged(ctx context.Context, id string) error {
	found := false
	for _, err := range s.Objects.List(ctx, UploadsDir+id+"/") {
		if err != nil {
			return err
		}
		found = true
		break
	}
	if !found {
		return errNoUpload
	}
	return s.Forget(ctx, id)
}

// ListStaged implements backend.Staging: one listing of the uploads'
// objects, and a read of each upload's record.
func (s Staging) ListStaged(ctx context.Context) iter.Seq2[backend.Staged, error] {
	return func(yield func(backend.Staged, error) bool) {
		var cur backend.Staged
		hasInfo := false
		var next int64
		flush := func() bool {
			if cur.ID == "" {
				return true
			}
			if hasInfo {
				rec, err := s.Objects.Get(ctx, infoKey(cur.ID))
				switch {
				case errors.Is(err, fs.ErrNotExist):
				case err != nil:
					yield(backend.Staged{}, err)
					return false
				default:
					cur.Record = rec
				}
			}
			return yield(cur, nil)
		}
		for o, err := range s.Objects.List(ctx, UploadsDir) {
			if err != nil {
				yield(backend.Staged{}, err)
				return
			}
			rest := strings.TrimPrefix(o.Key, UploadsDir)
			id, name, ok := strings.Cut(rest, "/")
			if !ok || !backend.ValidStagedID(id) {
				continue
			}
			if id != cur.ID {
				if !flush() {
					return
				}
				cur, hasInfo, next = backend.Staged{ID: id}, false, 0
			}
			if o.Modified.After(cur.Modified) {
				cur.Modified = o.Modified
			}
			if name == "info" {
				hasInfo = true
				continue
			}
			if off, err := strconv.ParseInt(strings.TrimPrefix(name, "p/"), 10, 64); err == nil && off == next && strings.HasPrefix(name, "p/") {
				next += o.Size
				cur.Size = next
			}
		}
		flush()
	}
}
