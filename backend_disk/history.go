package backend_disk

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"iter"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
	"github.com/spf13/afero"
)

// Kept versions.
//
// The version of path that a change replaces (see backend.Keep) is kept
// at .roomstore/versions/<path>/.roomstore.v/<id>. No element of a path
// starts with ".roomstore", so the folder of a path's versions never meets
// the versions of a path beneath it (a/.roomstore.v holds the versions of
// a, a/b/.roomstore.v those of a/b). The id, the file's name, carries
// what the file itself does not (see keptID); size, commit time and ETag
// are the kept file's own, so that a path's versions are one folder read
// and need no file beside them.
//
// A kept version costs a name, not a copy. Every commit of this store
// places a new file by rename, so the file a change replaces is never
// written again: the change links it into the versions folder (linkat(2)
// on Linux's fast path, os.Root.Link or link(2) elsewhere), under the
// path's lock, before it renames the new file over it. The link keeps the
// inode, so the kept version has the ETag it had while current (size,
// modification time and inode), and readers of path see the old file or
// the new one throughout. A removal renames the file into the versions
// folder, one step that removes and keeps at once. A move links the
// source under the source's versions, so that the kept version and the
// moved file share an inode (and their blocks, which a Quota counts
// twice); roomstore never writes a placed file again,
// but a program that rewrites a file of the store in place, behind
// roomstore's back, rewrites the kept versions that share its inode
// with it. Where the file system has no links (afero's MemMapFs, a base
// path over one, any other afero.Fs), or refuses one (a file at its link
// limit, a mount point inside the store), the kept version is a copy
// (cloned where the file system clones), made in a temporary and renamed
// into place, whose id records the ETag of the version it copies.
//
// A version is kept before the change is made, the change being
// conditional on the very version kept (path's lock holds it), so a crash
// between the two leaves a kept version with the ETag of path's current
// file, which the Engine hides and forgets (see backend.Keep). A change
// that fails forgets what it kept. With fsync, the kept version's folder
// entry is on stable storage before the change is made.

// Reserved layout of kept versions.
const (
	aferoVersionsDir = roompath.ReservedPrefix + "/versions"
	keptFolder       = roompath.ReservedPrefix + ".v"
)

// versionsDir returns the folder of path's kept versions.
func versionsDir(path string) string { return aferoVersionsDir + "/" + path + "/" + keptFolder }

// reasonLetters name a Reason in an id with one letter, so that an id
// with the longest participant stays within a file name's 255 bytes.
var reasonLetters = map[string]byte{
	backend.ReasonOverwritten: 'o',
	backend.ReasonAppended:    'a',
	backend.ReasonDeleted:     'd',
	backend.ReasonMoved:       'm',
}

func reasonOf(letter string) (string, bool) {
	for r, l := range reasonLetters {
		if letter == string(l) {
			return r, true
		}
	}
	return "", false
}

// keptID names a version replaced at now, for reason, by participant:
// <replaced>-<nonce>.<reason>.<participant>[.<etag>], the replacement
// time in nanoseconds as 16 hex digits (so that names sort by it), a
// random nonce of 8 hex digits, the reason's letter, the participant cut
// to backend.MaxKeptParticipant bytes in unpadded base64url (171 bytes at
// most), and, for a copy, the ETag of the version copied (50 bytes at
// most): 249 bytes at most, within the 255 of a file name and of an id,
// and made of the characters an id may hold.
func keptID(now time.Time, reason, participant, etag string) string {
	var n [4]byte
	_, _ = rand.Read(n[:])
	b := make([]byte, 0, 32+len(participant)*4/3+len(etag))
	b = appendHex(b, uint64(now.UnixNano()), 16)
	b = append(b, '-')
	b = appendHex(b, uint64(binary.BigEndian.Uint32(n[:])), 8)
	b = append(b, '.', reasonLetters[reason], '.')
	b = base64.RawURLEncoding.AppendEncode(b, []byte(backend.KeptParticipant(participant)))
	if etag != "" {
		b = append(b, '.')
		b = append(b, etag...)
	}
	return string(b)
}

// appendHex appends v as digits hex digits.
func appendHex(b []byte, v uint64, digits int) []byte {
	s := strconv.FormatUint(v, 16)
	for range digits - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// parseKeptID reads an id that keptID made into v (Replaced, Participant,
// Reason) and returns the ETag it records (a copy's), or false for any
// other name.
func parseKeptID(id string, v *backend.Version) (etag string, ok bool) {
	parts := strings.Split(id, ".")
	if len(parts) != 3 && len(parts) != 4 {
		return "", false
	}
	stamp := parts[0]
	if len(stamp) != 25 || stamp[16] != '-' {
		return "", false
	}
	ns, err := strconv.ParseUint(stamp[:16], 16, 64)
	if err != nil {
		return "", false
	}
	if _, err := strconv.ParseUint(stamp[17:], 16, 32); err != nil {
		return "", false
	}
	reason, ok := reasonOf(parts[1])
	if !ok {
		return "", false
	}
	participant, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", false
	}
	if len(parts) == 4 {
		if etag = parts[3]; etag == "" {
			return "", false
		}
	}
	v.ID = id
	v.Replaced = time.Unix(0, int64(ns))
	v.Reason = reason
	v.Participant = string(participant)
	return etag, true
}

// validID reports whether id can name a version: what backend.Version
// allows, so that it is a single file name in the versions folder.
func validID(id string) bool {
	if id == "" || len(id) > 255 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// describeKept describes the kept file fi, named id, of path, or returns
// false for anything that is not a version this store kept.
func describeKept(path, id string, fi os.FileInfo) (backend.Version, bool) {
	if !fi.Mode().IsRegular() {
		return backend.Version{}, false
	}
	v := backend.Version{Path: path}
	etag, ok := parseKeptID(id, &v)
	if !ok {
		return backend.Version{}, false
	}
	info := fileInfo(path, fi)
	v.Size, v.ModTime, v.ETag = info.Size, info.ModTime, info.ETag
	if etag != "" {
		v.ETag = etag // a copy: the version's own ETag, not the copy's
	}
	return v, true
}

// keptVersion is a version kept for a change, forgotten again when the
// change does not happen.
type keptVersion struct{ path, id string }

// keep keeps the file at path, which fi describes and which the change
// that the caller is making replaces, as a version of path replaced for
// reason by k's participant at now. The caller holds path's lock and has
// checked that fi is a regular file.
func (a *Afero) keep(ctx context.Context, path string, fi os.FileInfo, k *backend.Keep, reason string, now time.Time) (keptVersion, error) {
	dir := versionsDir(path)
	id := keptID(now, reason, k.Participant, "")
	err := a.intoVersions(ctx, dir, func() error { return a.paths.link(path, dir+"/"+id) })
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EMLINK) ||
		errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EOPNOTSUPP) {
		id = keptID(now, reason, k.Participant, fileInfo(path, fi).ETag)
		err = a.keepCopy(ctx, path, fi, dir, id)
	}
	if err != nil {
		return keptVersion{}, err
	}
	return keptVersion{path: path, id: id}, nil
}

// keepByRename keeps the file at path as a version removed at now by k's
// participant, moving it into the versions folder: the removal itself.
// The caller holds path's lock.
func (a *Afero) keepByRename(ctx context.Context, path string, k *backend.Keep, now time.Time) (keptVersion, error) {
	dir := versionsDir(path)
	id := keptID(now, backend.ReasonDeleted, k.Participant, "")
	if err := a.intoVersions(ctx, dir, func() error { return a.paths.rename(path, dir+"/"+id, false) }); err != nil {
		return keptVersion{}, err
	}
	return keptVersion{path: path, id: id}, nil
}

// keepCopy keeps a copy of the file at path, which fi describes, as
// version id in the folder dir: staged in a temporary (which the sweep
// removes if the process dies meanwhile), given the version's
// modification time, and renamed into place.
func (a *Afero) keepCopy(ctx context.Context, path string, fi os.FileInfo, dir, id string) error {
	out, tmp, err := a.tempFile()
	if err != nil {
		return err
	}
	err = a.paths.copyFrom(out, path)
	if err == nil && a.fsync {
		err = osError(out.Sync())
	}
	if cerr := out.Close(); err == nil {
		err = osError(cerr)
	}
	if err == nil {
		mt := fi.ModTime()
		_ = a.fs.Chtimes(tmp, mt, mt) // best effort: the id records the ETag anyway
		err = a.intoVersions(ctx, dir, func() error { return a.paths.rename(tmp, dir+"/"+id, false) })
	}
	if err != nil {
		_ = a.remove(tmp)
	}
	return err
}

// intoVersions runs put, which gives a file a name in the versions folder
// dir, making the folder where it is missing: a folder that another
// process prunes meanwhile (see Forget; this process's pruning waits on
// the tree lock) is made again. With fsync, the new name, and the folders
// made for it, are durable when it returns.
func (a *Afero) intoVersions(ctx context.Context, dir string, put func() error) error {
	unlock, err := a.locks.shareTree(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	var made []string
	for attempt := 0; ; attempt++ {
		err := put()
		if err == nil {
			break
		}
		if errors.Is(err, errors.ErrUnsupported) {
			return err
		}
		err = osError(err)
		if !errors.Is(err, fs.ErrNotExist) || attempt == 10 {
			return err
		}
		n := len(made)
		if made, err = a.makeReserved(dir, made); err != nil {
			return err
		}
		if len(made) == n && attempt > 0 {
			// The folder is there: what is missing is the file.
			return fs.ErrNotExist
		}
	}
	if a.fsync {
		// Each folder made is an entry of its parent; the deepest is
		// synced last, with the new name in it.
		for i := len(made) - 1; i >= 0; i-- {
			a.paths.syncDir(roompath.Parent(made[i]))
		}
		a.paths.syncDir(dir)
	}
	return nil
}

// makeReserved makes the reserved folder dir and its missing ancestors,
// appending those it made to made, outermost first.
func (a *Afero) makeReserved(dir string, made []string) ([]string, error) {
	fi, err := a.lstat(dir)
	switch {
	case err == nil && fi.IsDir():
		return made, nil
	case err == nil, err == errThroughFile:
		return made, &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "reserved folder " + aferoVersionsDir + " unusable"}
	case !errors.Is(err, fs.ErrNotExist):
		return made, err
	}
	if parent := roompath.Parent(dir); parent != "" {
		if made, err = a.makeReserved(parent, made); err != nil {
			return made, err
		}
	} else if a.rootGone() {
		return made, &backend.Error{Kind: backend.ErrStoreUnavailable, Detail: "store directory missing"}
	}
	if err := a.fs.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return made, nil
		}
		return made, reservedError(err, aferoVersionsDir)
	}
	return append(made, dir), nil
}

// RetainsKept implements backend.Retainer: a change that kept a version
// trims its path's versions to Keep.Retain under the path's lock, by
// their names alone.
func (a *Afero) RetainsKept() bool { return true }

// retain forgets, once the change that kept k has been made, the oldest
// versions of k's path beyond n (n <= 0: none). The caller still holds
// the path's lock, so no other change of the path has a version kept
// and not yet made. Ids start with the time replaced, so their order is
// the versions' age; a failure leaves the surplus to the Engine's Expire.
func (a *Afero) retain(ctx context.Context, k keptVersion, n int) {
	if k.id == "" || n <= 0 {
		return
	}
	dir := versionsDir(k.path)
	var ids []string
	if err := a.eachName(ctx, dir, func(name string) {
		if validID(name) {
			ids = append(ids, name)
		}
	}); err != nil || len(ids) <= n {
		return
	}
	slices.Sort(ids)
	for _, id := range ids[:len(ids)-n] {
		_ = a.remove(dir + "/" + id)
	}
}

// unkeep forgets the versions kept for a change that did not happen, as
// far as it can: one left behind has the ETag of its path's current file,
// which the Engine hides.
func (a *Afero) unkeep(kept ...keptVersion) {
	for _, k := range kept {
		if k.id != "" {
			_ = a.forget(context.Background(), k.path, k.id)
		}
	}
}

// Versions implements backend.History: one read of the folder of path's
// versions.
func (a *Afero) Versions(ctx context.Context, path string) iter.Seq2[backend.Version, error] {
	return func(yield func(backend.Version, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(backend.Version{}, err)
			return
		}
		f, err := a.paths.openDir(versionsDir(path))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, backend.ErrNotFolder) {
				yield(backend.Version{}, err)
			}
			return
		}
		defer f.Close()
		a.yieldKept(ctx, f, path, yield)
	}
}

// yieldKept yields the versions of path in its open versions folder f,
// a batch at a time, and reports whether to go on.
func (a *Afero) yieldKept(ctx context.Context, f afero.File, path string, yield func(backend.Version, error) bool) bool {
	next := a.batches(f, 256)
	for {
		if err := ctx.Err(); err != nil {
			yield(backend.Version{}, err)
			return false
		}
		batch, err := next()
		for _, fi := range batch {
			if v, ok := describeKept(path, fi.Name(), fi); ok && !yield(v, nil) {
				return false
			}
		}
		if err == io.EOF || len(batch) == 0 {
			return true
		}
		if err != nil {
			yield(backend.Version{}, osError(err))
			return false
		}
	}
}

// Kept implements backend.History: a walk of the versions folders at and
// beneath dir's, holding one open folder per level and a batch of its
// entries.
func (a *Afero) Kept(ctx context.Context, dir string) iter.Seq2[backend.Version, error] {
	return func(yield func(backend.Version, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(backend.Version{}, err)
			return
		}
		top := aferoVersionsDir
		if dir != "" {
			top += "/" + dir
		}
		a.walkKept(ctx, top, dir, true, yield)
	}
}

// walkKept yields the versions kept in the folder name, which holds those
// of path (in its keptFolder) and of the paths beneath it (in folders
// named for their elements), and reports whether to go on. A folder gone
// meanwhile (forgotten by another process) has none; the top one's
// other errors are reported.
func (a *Afero) walkKept(ctx context.Context, name, path string, top bool, yield func(backend.Version, error) bool) bool {
	if err := ctx.Err(); err != nil {
		yield(backend.Version{}, err)
		return false
	}
	f, err := a.paths.openDir(name)
	if err != nil {
		if top && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, backend.ErrNotFolder) {
			yield(backend.Version{}, err)
			return false
		}
		return true
	}
	defer f.Close()
	next := a.batches(f, 256)
	for {
		batch, err := next()
		for _, fi := range batch {
			n := fi.Name()
			switch {
			case !fi.IsDir():
			case n == keptFolder && path != "":
				k, err := a.paths.openDir(name + "/" + n)
				if err != nil {
					continue // forgotten meanwhile
				}
				more := a.yieldKept(ctx, k, path, yield)
				k.Close()
				if !more {
					return false
				}
			case roompath.IsReserved(n):
			default:
				if !a.walkKept(ctx, name+"/"+n, roompath.Join(path, n), false, yield) {
					return false
				}
			}
		}
		if err == io.EOF || len(batch) == 0 {
			return true
		}
		if err != nil {
			yield(backend.Version{}, osError(err))
			return false
		}
	}
}

// ReadVersion implements backend.History.
func (a *Afero) ReadVersion(ctx context.Context, path, id string, offset, length int64) (io.ReadCloser, backend.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, backend.Version{}, err
	}
	if !validID(id) {
		return nil, backend.Version{}, backend.Errorf(fs.ErrNotExist, nil, "no kept version %q", id)
	}
	f, fi, err := a.paths.openFile(versionsDir(path) + "/" + id)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, backend.ErrIsFolder):
		return nil, backend.Version{}, backend.Errorf(fs.ErrNotExist, nil, "no kept version %q", id)
	case err != nil:
		return nil, backend.Version{}, err
	}
	v, ok := describeKept(path, id, fi)
	if !ok {
		f.Close()
		return nil, backend.Version{}, backend.Errorf(fs.ErrNotExist, nil, "no kept version %q", id)
	}
	if offset < 0 || offset > v.Size {
		f.Close()
		return nil, backend.Version{}, backend.Errorf(fs.ErrInvalid, nil, "offset %d outside version of %d bytes", offset, v.Size)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, backend.Version{}, osError(err)
		}
	}
	if length < 0 || offset+length > v.Size {
		length = v.Size - offset
	}
	return &limitedFile{r: io.LimitReader(f, length), f: f}, v, nil
}

// Forget implements backend.History. The folders that it leaves empty
// are removed, up to the versions folder.
func (a *Afero) Forget(ctx context.Context, path, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.closed.Load() {
		return errClosedBackend
	}
	if !validID(id) {
		return backend.Errorf(fs.ErrNotExist, nil, "no kept version %q", id)
	}
	return a.forget(ctx, path, id)
}

func (a *Afero) forget(ctx context.Context, path, id string) error {
	if err := a.remove(versionsDir(path) + "/" + id); err != nil {
		err = osError(err)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, backend.ErrNotFolder) {
			return backend.Errorf(fs.ErrNotExist, nil, "no kept version %q", id)
		}
		return err
	}
	// A context that ends first leaves empty folders, which hold no
	// version and are removed by a later Forget of their last.
	unlock, err := a.locks.ownTree(ctx)
	if err != nil {
		return nil
	}
	defer unlock()
	for dir := versionsDir(path); dir != aferoVersionsDir; dir = roompath.Parent(dir) {
		if a.rmdir(dir) != nil {
			break
		}
	}
	return nil
}
