package backend_gcs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
	"google.golang.org/api/iterator"
)

// A kept version is a server-side copy of the version a change replaces,
// made before the change, which is then conditional on that very version
// (see keep and the package documentation). The copy of version id of
// path is the object
//
//	<prefix>/.roomstore/versions/<path>/<id>
//
// unless that name would pass Cloud Storage's limit of 1024 bytes; then
// it is
//
//	<prefix>/.roomstore/versions/<head>/.roomstore-h<hash>/<id>
//
// where hash is 40 hex digits of the SHA-256 of path and head the longest
// run of path's leading elements (possibly none) that keeps every such
// name within the limit. No path has an element starting with .roomstore,
// so the two forms never meet, and both put a path's versions beneath the
// name of each of its folders, so that Kept finds a folder's by prefix.
// A long path therefore never makes a change fail.
//
// The id is the time of the change in Unix nanoseconds (19 digits), the
// generation kept, and 8 random hex digits, joined by '-'; the copy's
// metadata tells the rest (the meta* keys). Listings carry metadata, so
// Kept tells everything Versions does.

const (
	versionsDir   = roompath.ReservedPrefix + "/versions"
	hashedMark    = roompath.ReservedPrefix + "-h"
	hashedElemLen = len(hashedMark) + 40
	maxObjectName = 1024
	maxVersionID  = 19 + 1 + 19 + 1 + 8
	maxIDLen      = 255 // of any ID the contract allows
)

// The metadata of a kept version.
const (
	metaPath        = "roomstore-path"
	metaETag        = "roomstore-etag"
	metaModTime     = "roomstore-modtime"
	metaReplaced    = "roomstore-replaced"
	metaReason      = "roomstore-reason"
	metaParticipant = "roomstore-participant"
)

// versionsBase is the name prefix of every kept version.
func (b *Backend) versionsBase() string { return b.key(versionsDir) + "/" }

// plainLimit is the longest path whose versions are named with the path
// itself.
func (b *Backend) plainLimit() int { return maxObjectName - len(b.versionsBase()) - 1 - maxVersionID }

// headLimit is the longest head of the hashed form.
func (b *Backend) headLimit() int { return b.plainLimit() - 1 - hashedElemLen }

// head returns the longest run of p's leading elements within n bytes,
// "" when even the first is longer.
func head(p string, n int) string {
	if len(p) <= n {
		return p
	}
	if n <= 0 {
		return ""
	}
	// p[n] == '/' means that p[:n] is whole.
	if i := strings.LastIndexByte(p[:n+1], '/'); i > 0 {
		return p[:i]
	}
	return ""
}

func hashedElem(path string) string {
	sum := sha256.Sum256([]byte(path))
	return hashedMark + hex.EncodeToString(sum[:20])
}

// versionsOf is the name prefix of the versions of path: each is this
// followed by its id.
func (b *Backend) versionsOf(path string) string {
	base := b.versionsBase()
	if len(path) <= b.plainLimit() {
		return base + path + "/"
	}
	h := head(path, b.headLimit())
	if h != "" {
		h += "/"
	}
	return base + h + hashedElem(path) + "/"
}

// keptPrefix is a name prefix beneath which lie the versions of every
// path at or beneath dir (and, when dir is long, of some others).
func (b *Backend) keptPrefix(dir string) string {
	h := head(dir, b.headLimit())
	if h == "" {
		return b.versionsBase()
	}
	return b.versionsBase() + h + "/"
}

// pathOf returns the path and id of the kept version named name, and
// false for a name that no kept version of a clean path has.
func (b *Backend) pathOf(name string, meta map[string]string) (path, id string, ok bool) {
	rest, ok := strings.CutPrefix(name, b.versionsBase())
	i := strings.LastIndexByte(rest, '/')
	if !ok || i <= 0 {
		return "", "", false
	}
	path, id = rest[:i], rest[i+1:]
	if strings.HasPrefix(path[strings.LastIndexByte(path, '/')+1:], hashedMark) {
		path = meta[metaPath]
	}
	if clean, err := roompath.Clean(path, roompath.TargetFile); err != nil || clean != path || b.versionsOf(path)+id != name {
		return "", "", false
	}
	return path, id, true
}

func newVersionID(replaced time.Time, gen int64) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%019d-%d-%s", replaced.UnixNano(), gen, hex.EncodeToString(r[:]))
}

// validID reports whether id is one the contract allows, so that no id
// can reach beyond the versions of its path.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id[0] == '.' {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// versionOf describes the kept version id of path whose object is a, and
// reports false for an object that is no kept version of path.
func versionOf(path, id string, a *storage.ObjectAttrs) (backend.Version, bool) {
	m := a.Metadata
	mod, err1 := time.Parse(time.RFC3339Nano, m[metaModTime])
	replaced, err2 := time.Parse(time.RFC3339Nano, m[metaReplaced])
	if m[metaPath] != path || m[metaETag] == "" || err1 != nil || err2 != nil {
		return backend.Version{}, false
	}
	return backend.Version{
		Path: path, ID: id, ETag: m[metaETag], Size: a.Size, ModTime: mod,
		Replaced: replaced, Participant: m[metaParticipant], Reason: m[metaReason],
	}, true
}

// kept is a version that a change has kept, which the change forgets when
// it does not happen.
type kept struct {
	obj *storage.ObjectHandle
	gen int64
}

// errVersionGone reports that the version a change meant to keep is no
// longer the file's, so the change, conditional on it, cannot happen; the
// change turns it into its own error.
var errVersionGone = errors.New("the version to keep is no longer the file's")

// keep copies, on the server, the version of the file at path that a
// describes (nil: none, and nothing is kept) to a kept version of path
// with reason, when k asks for one. The copy pins a's generation, so it
// holds that version or fails with errVersionGone; the caller
// then makes its change conditional on that generation, so that a change
// that happens has kept what it replaced. A copy that fails otherwise may
// have landed; it is left, as its ETag is that of a version the change
// has not replaced.
func (b *Backend) keep(ctx context.Context, path string, a *storage.ObjectAttrs, k *backend.Keep, reason string) (*kept, error) {
	if k == nil || a == nil {
		return nil, nil
	}
	now := time.Now()
	name := b.versionsOf(path) + newVersionID(now, a.Generation)
	// Nobody else knows the name, so sending the copy again writes the
	// same object again. A handle of its own (see retryable).
	c := retryable(b.bucket.Object(name), storage.WithPolicy(storage.RetryAlways)).
		CopierFrom(b.bucket.Object(b.key(path)).Generation(a.Generation))
	c.ContentType = a.ContentType
	c.Metadata = map[string]string{
		metaPath:        path,
		metaETag:        etagOf(a),
		metaModTime:     a.Updated.UTC().Format(time.RFC3339Nano),
		metaReplaced:    now.UTC().Format(time.RFC3339Nano),
		metaReason:      reason,
		metaParticipant: backend.KeptParticipant(k.Participant),
	}
	res, err := c.Run(ctx)
	switch {
	case isNotExist(err):
		return nil, errVersionGone
	case err != nil:
		return nil, classify(err)
	}
	return &kept{obj: b.bucket.Object(name), gen: res.Generation}, nil
}

// forget removes the kept version k (nil: none) that a change made and
// that did not happen, as best it can within the cleanup budget; one it
// cannot remove carries the ETag of the file's current version, which
// the Engine never shows.
func (b *Backend) forget(ctx context.Context, k *kept) {
	if k == nil {
		return
	}
	cctx, cancel := cleanup.Once(ctx)
	defer cancel()
	_ = k.obj.Generation(k.gen).Delete(cctx)
}

// versionObjects yields the objects whose names start with pfx (with
// delim "/", only those without a further '/'), one page at a time, with
// what versionOf needs.
func (b *Backend) versionObjects(ctx context.Context, pfx, delim string) iter.Seq2[*storage.ObjectAttrs, error] {
	return func(yield func(*storage.ObjectAttrs, error) bool) {
		q := &storage.Query{Prefix: pfx, Delimiter: delim}
		if err := q.SetAttrSelection([]string{"Name", "Size", "Metadata"}); err != nil {
			yield(nil, classify(err))
			return
		}
		it := b.bucket.Objects(ctx, q)
		for {
			a, err := it.Next()
			switch {
			case errors.Is(err, iterator.Done):
				return
			case err != nil:
				yield(nil, listError(err))
				return
			case a.Prefix != "":
				continue
			}
			if !yield(a, nil) {
				return
			}
		}
	}
}

// Versions yields the kept versions of the file at path from one
// delimiter listing (paged), whether or not a file is at path now. A
// missing bucket yields backend.ErrStoreUnavailable.
func (b *Backend) Versions(ctx context.Context, path string) iter.Seq2[backend.Version, error] {
	pfx := b.versionsOf(path)
	return func(yield func(backend.Version, error) bool) {
		for a, err := range b.versionObjects(ctx, pfx, "/") {
			if err != nil {
				yield(backend.Version{}, err)
				return
			}
			v, ok := versionOf(path, strings.TrimPrefix(a.Name, pfx), a)
			if ok && !yield(v, nil) {
				return
			}
		}
	}
}

// Kept yields the kept versions of every path at or beneath dir ("": the
// whole store) from one listing of the name prefix they share, paged,
// every field set. A failed page yields its error (a missing bucket
// backend.ErrStoreUnavailable) and ends the sequence.
func (b *Backend) Kept(ctx context.Context, dir string) iter.Seq2[backend.Version, error] {
	pfx := b.keptPrefix(dir)
	return func(yield func(backend.Version, error) bool) {
		for a, err := range b.versionObjects(ctx, pfx, "") {
			if err != nil {
				yield(backend.Version{}, err)
				return
			}
			path, id, ok := b.pathOf(a.Name, a.Metadata)
			if !ok || dir != "" && path != dir && !strings.HasPrefix(path, dir+"/") {
				continue
			}
			v, ok := versionOf(path, id, a)
			if ok && !yield(v, nil) {
				return
			}
		}
	}
}

// version returns the object of the kept version id of path, and false
// for an id no kept version can have.
func (b *Backend) version(path, id string) (*storage.ObjectHandle, bool) {
	name := b.versionsOf(path) + id
	if !validID(id) || len(name) > maxObjectName {
		return nil, false
	}
	return b.bucket.Object(name), true
}

// noVersion tells what a kept version's 404 means: fs.ErrNotExist, or
// backend.ErrStoreUnavailable when the bucket is gone (which only a
// listing tells).
func (b *Backend) noVersion(ctx context.Context, notFound error) error {
	if _, err := (objects{b}).HasChildren(ctx, versionsDir); err != nil {
		return err
	}
	return withKind(fs.ErrNotExist, notFound, "no such kept version")
}

// ReadVersion streams length bytes (length < 0: to the end; past the end:
// cut) of the kept version id of path from offset, with its description.
// An unknown id yields fs.ErrNotExist, and an offset past the end
// fs.ErrInvalid.
func (b *Backend) ReadVersion(ctx context.Context, path, id string, offset, length int64) (io.ReadCloser, backend.Version, error) {
	obj, ok := b.version(path, id)
	if !ok {
		return nil, backend.Version{}, withKind(fs.ErrNotExist, nil, "no such kept version")
	}
	a, err := obj.Attrs(ctx)
	if isNotExist(err) {
		return nil, backend.Version{}, b.noVersion(ctx, err)
	}
	if err != nil {
		return nil, backend.Version{}, classify(err)
	}
	v, ok := versionOf(path, id, a)
	if !ok {
		return nil, backend.Version{}, withKind(fs.ErrNotExist, nil, "no such kept version")
	}
	if offset > a.Size {
		return nil, backend.Version{}, backend.Errorf(fs.ErrInvalid, nil, "offset %d past the end (%d bytes)", offset, a.Size)
	}
	n := a.Size - offset
	if length >= 0 && length < n {
		n = length
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), v, nil
	}
	r, err := obj.Generation(a.Generation).NewRangeReader(ctx, offset, n)
	if isNotExist(err) { // forgotten in between
		return nil, backend.Version{}, withKind(fs.ErrNotExist, err, "no such kept version")
	}
	if err != nil {
		return nil, backend.Version{}, classify(err)
	}
	return r, v, nil
}

// Forget removes the kept version id of path; an unknown one yields
// fs.ErrNotExist. A reader of it already open goes on reading what the
// server had begun to send.
func (b *Backend) Forget(ctx context.Context, path, id string) error {
	obj, ok := b.version(path, id)
	if !ok {
		return withKind(fs.ErrNotExist, nil, "no such kept version")
	}
	err := obj.Delete(ctx)
	if isNotExist(err) {
		return b.noVersion(ctx, err)
	}
	return classify(err)
}
