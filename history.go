package roomstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// The history an engine keeps unless WithHistory says otherwise: the ten
// latest past versions of every file, each for thirty days. Enough to
// undo a day of edits or a mistaken delete, and bounded: a file
// overwritten all day long costs at most ten times its size.
const (
	DefaultHistoryVersions = 10
	DefaultHistoryAge      = 30 * 24 * time.Hour
)

// historyGrace is how long a kept version that carries its path's current
// ETag (made for a change that then failed, or whose process died before
// the change) is left before Expire removes it: far longer than any
// commit in flight takes, so that Expire never removes the kept version
// of a change that is about to happen.
const historyGrace = time.Hour

// historyExpiry is how often an engine with a history expires versions
// in the background (see Expire).
const historyExpiry = time.Hour

// History is how long past versions are kept (see WithHistory).
type History struct {
	// Versions is how many past versions of each file are kept, the
	// latest; 0 keeps none: the engine keeps no history.
	Versions int
	// MaxAge, when positive, removes a past version once it has not been
	// current for that long.
	MaxAge time.Duration
}

// WithHistory sets what the engine keeps of the versions its changes
// replace (default: DefaultHistoryVersions versions, each for
// DefaultHistoryAge; History{} keeps none). Every overwrite, append,
// delete and move keeps the version it replaced, atomically with the
// change, under the store's reserved prefix: never listed, walked,
// served by FS nor told by an event, and counted by a Quota's bytes
// (Usage.Kept). Versions lists them, OpenVersion reads one, Restore makes
// one current again, Deleted and RestoreAll bring back the deleted files
// of a folder. A version past the count is removed by the change that
// makes it so; one past MaxAge by Expire, which the engine also runs in
// the background every hour. The engines of one store should share one
// History: each applies its own to the changes it makes. Negative
// values are refused.
func WithHistory(h History) Option {
	return func(c *config) error {
		if h.Versions < 0 || h.MaxAge < 0 {
			return badOption("history must not be negative, got %d versions and %v", h.Versions, h.MaxAge)
		}
		c.history = h
		return nil
	}
}

// WithHistoryClock sets the clock by which Expire and the retention of
// WithHistory judge a version's age (default time.Now): a test, or a
// store whose versions were kept by hosts with another clock, may shift
// it. A nil clock is refused.
func WithHistoryClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return badOption("WithHistoryClock(nil)")
		}
		c.historyClock = now
		return nil
	}
}

// Version is a past version of a file (see WithHistory).
type Version struct {
	// Path is the file's path.
	Path string
	// ID names the version among the path's: opaque (ASCII letters,
	// digits, '-', '_' and '.'), stable while the version is kept.
	ID string
	// ETag is the ETag the version had when it was current.
	ETag string
	// Size is its length in bytes.
	Size int64
	// ModTime is when it was committed.
	ModTime time.Time
	// Replaced is when it stopped being current.
	Replaced time.Time
	// ParticipantID is who replaced it ("" for a change made without a
	// participant, or one the store cannot tell).
	ParticipantID string
	// Reason is why: "overwritten", "appended", "deleted" or "moved".
	Reason string
}

// keep is what a change asks its backend to keep of the version it
// replaces: nil without a history.
func (e *Engine) keep(ctx context.Context, reason string) *backend.Keep {
	if e.cfg.history.Versions == 0 {
		return nil
	}
	k := &backend.Keep{Reason: reason, Participant: ParticipantFrom(ctx)}
	if e.selfTrims {
		k.Retain = e.cfg.history.Versions
	}
	return k
}

// selfTrims reports whether the engine leaves the count of its History
// to a store that applies it with each change (backend.Retainer): one
// without a Quota, whose usage must learn the size of every version
// forgotten.
func selfTrims(b backend.Backend, u *usage) bool {
	r, ok := b.(backend.Retainer)
	return ok && r.RetainsKept() && u == nil
}

// Versions lists the past versions of the file at path, newest first,
// whether a file is at path now or not (a deleted file's versions stay
// until they expire). A path with neither a file nor a kept version
// yields fs.ErrNotExist; a file with no past versions, an empty list. A
// path the Policy of ctx does not let be read yields an *AccessError,
// and fs.ErrInvalid a bad path.
func (e *Engine) Versions(ctx context.Context, p string) (_ []Version, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Versions, p)
	defer call.End(&err)
	clean, err := e.enter("versions", p, roompath.TargetFile)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := gateOf(ctx).check(Read, clean); err != nil {
		return nil, pathError("versions", p, err)
	}
	vs, exists, err := e.versions(ctx, clean)
	switch {
	case err != nil:
		return nil, pathError("versions", p, err)
	case len(vs) == 0 && !exists:
		return nil, pathError("versions", p, fs.ErrNotExist)
	}
	return vs, nil
}

// versions returns the past versions of the file at clean, newest first,
// and whether a file is there now. A kept version with the current
// file's ETag is no past version (see backend.Keep) and is left out.
func (e *Engine) versions(ctx context.Context, clean string) ([]Version, bool, error) {
	cur, err := e.b.Stat(ctx, clean)
	exists := err == nil && !cur.IsFolder
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	var kept []backend.Version
	for v, err := range e.b.Versions(ctx, clean) {
		if err != nil {
			return nil, false, err
		}
		if exists && v.ETag == cur.ETag {
			continue
		}
		kept = append(kept, v)
	}
	slices.SortFunc(kept, newestFirst)
	vs := make([]Version, len(kept))
	for i, v := range kept {
		vs[i] = version(v)
	}
	// A version kept twice (a change kept it and then did not happen, and
	// a later one kept it again) is one past version: the latest keeping,
	// which tells when it really stopped being current.
	seen := make(map[string]bool, len(vs))
	vs = slices.DeleteFunc(vs, func(v Version) bool {
		dup := seen[v.ETag]
		seen[v.ETag] = true
		return dup
	})
	return vs, exists, nil
}

// newestFirst orders kept versions newest first, ties by ID.
func newestFirst(a, b backend.Version) int {
	if c := b.Replaced.Compare(a.Replaced); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

func version(v backend.Version) Version {
	return Version{Path: v.Path, ID: v.ID, ETag: v.ETag, Size: v.Size, ModTime: v.ModTime, Replaced: v.Replaced, ParticipantID: v.Participant, Reason: v.Reason}
}

// OpenVersion streams the past version id of the file at path (see
// Versions). The Reader's Entry describes the version: its size, the
// ModTime and ETag it had when it was current. An unknown id yields
// fs.ErrNotExist, an id that is no version ID fs.ErrInvalid, and a path
// the Policy of ctx does not let be read an *AccessError. The call lasts
// until the Reader's Close, as OpenReader's does.
func (e *Engine) OpenVersion(ctx context.Context, p, id string) (_ *Reader, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.OpenVersion, p)
	defer call.End(&err)
	clean, err := e.enter("open_version", p, roompath.TargetFile)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := checkVersionID(id); err != nil {
		return nil, pathError("open_version", p, err)
	}
	if err := gateOf(ctx).check(Read, clean); err != nil {
		return nil, pathError("open_version", p, err)
	}
	rc, v, err := e.readVersion(ctx, clean, id)
	if err != nil {
		return nil, pathError("open_version", p, err)
	}
	call.Continue()
	en := Entry{Name: backend.Info{Path: clean}.Name(), Path: clean, Size: v.Size, ModTime: v.ModTime, ETag: v.ETag}
	return &Reader{rc: rc, entry: en, e: e, ctx: ctx, call: call}, nil
}

// readVersion opens the past version id of clean, refusing a kept
// version that is no past version (it has the current file's ETag).
func (e *Engine) readVersion(ctx context.Context, clean, id string) (io.ReadCloser, backend.Version, error) {
	rc, v, err := e.b.ReadVersion(ctx, clean, id, 0, -1)
	if err != nil {
		return nil, backend.Version{}, err
	}
	if cur, err := e.b.Stat(ctx, clean); err == nil && !cur.IsFolder && cur.ETag == v.ETag {
		rc.Close()
		return nil, backend.Version{}, fmt.Errorf("%w: no past version %q", fs.ErrNotExist, id)
	}
	return rc, v, nil
}

// checkVersionID refuses what no store makes a version ID of.
func checkVersionID(id string) error {
	if id == "" || len(id) > 255 || id[0] == '.' {
		return fmt.Errorf("%w: bad version id %q", fs.ErrInvalid, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: bad version id %q", fs.ErrInvalid, id)
		}
	}
	return nil
}

// Restore makes the past version id of the file at path current again,
// as an overwrite with its bytes would (the version it replaces, if any,
// is kept in turn, so a restore is undone by another), and publishes one
// EventFileUpdated. It returns the new Entry, whose ETag is new. Errors
// are those of OpenVersion and of an Upload with Overwrite (the path's
// Policy must let it be read and written; a Quota counts the bytes).
func (e *Engine) Restore(ctx context.Context, p, id string) (_ Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Restore, p)
	defer call.End(&err)
	clean, err := e.enter("restore", p, roompath.TargetFile)
	if err != nil {
		return Entry{}, err
	}
	defer e.inflight.Done()
	en, n, err := e.restore(ctx, clean, id)
	if err != nil {
		return Entry{}, reop("restore", err)
	}
	call.SetBytes(n)
	return en, nil
}

// restore is Restore, unrecorded, for RestoreAll.
func (e *Engine) restore(ctx context.Context, clean, id string) (Entry, int64, error) {
	if err := checkVersionID(id); err != nil {
		return Entry{}, 0, pathError("restore", clean, err)
	}
	g := gateOf(ctx)
	for _, r := range []Right{Read, Write} {
		if err := g.check(r, clean); err != nil {
			return Entry{}, 0, pathError("restore", clean, err)
		}
	}
	rc, v, err := e.readVersion(ctx, clean, id)
	if err != nil {
		return Entry{}, 0, pathError("restore", clean, err)
	}
	defer rc.Close()
	return e.upload(ctx, telemetry.Restore, clean, rc, OpenOptions{Overwrite: true, Size: v.Size})
}

// Deleted lists the files at or beneath dir ("" the whole store) that
// are gone but have past versions kept: for each, its newest version,
// ordered by path. Only the files the Policy of ctx lets be read are
// listed. fs.ErrInvalid reports a bad path.
func (e *Engine) Deleted(ctx context.Context, dir string) ([]Version, error) {
	return e.deletedCall(ctx, dir, 0)
}

// DeletedMax is Deleted that holds at most max paths in memory (max > 0),
// for a caller that serves others: beneath dir more than max paths with
// kept versions (gone or not) yield ErrTooManyEntries, and nothing else
// is read. Its other errors are Deleted's.
func (e *Engine) DeletedMax(ctx context.Context, dir string, max int) ([]Version, error) {
	if max <= 0 {
		return nil, pathError("deleted", dir, fmt.Errorf("%w: max %d, want at least 1", fs.ErrInvalid, max))
	}
	return e.deletedCall(ctx, dir, max)
}

// deletedCall is the call Deleted (max 0) and DeletedMax make.
func (e *Engine) deletedCall(ctx context.Context, dir string, max int) (_ []Version, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Deleted, dir)
	defer call.End(&err)
	clean, err := e.enter("deleted", dir, roompath.TargetAny)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	vs, err := e.deleted(ctx, gateOf(ctx), clean, max)
	if err != nil {
		return nil, pathError("deleted", dir, err)
	}
	return vs, nil
}

// deleted lists the gone files beneath clean that g lets be read; with
// max > 0, it refuses more than max paths with kept versions.
func (e *Engine) deleted(ctx context.Context, g gate, clean string, max int) ([]Version, error) {
	newest := map[string]backend.Version{}
	for v, err := range e.b.Kept(ctx, clean) {
		if err != nil {
			return nil, err
		}
		if _, ok := newest[v.Path]; !ok && max > 0 && len(newest) == max {
			return nil, fmt.Errorf("%w: more than %d paths with past versions", ErrTooManyEntries, max)
		}
		if n, ok := newest[v.Path]; !ok || newestFirst(v, n) < 0 {
			newest[v.Path] = v
		}
	}
	var out []Version
	for p, v := range newest {
		if g.check(Read, p) != nil {
			continue
		}
		switch _, err := e.b.Stat(ctx, p); {
		case err == nil:
			continue // a file or a folder is there
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
		// Kept() may leave out what Versions tells: the participant.
		for fv, ferr := range e.b.Versions(ctx, p) {
			if ferr == nil && fv.ID == v.ID {
				v = fv
			}
		}
		out = append(out, version(v))
	}
	slices.SortFunc(out, func(a, b Version) int { return cmp.Compare(a.Path, b.Path) })
	return out, nil
}

// RestoreAll restores every file Deleted lists for dir to its newest
// version, each as Restore does (one EventFileUpdated each), and returns
// the entries restored, ordered by path. It stops at the first failure,
// returning what it restored before it with the error.
func (e *Engine) RestoreAll(ctx context.Context, dir string) (_ []Entry, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.RestoreAll, dir)
	defer call.End(&err)
	clean, err := e.enter("restore_all", dir, roompath.TargetAny)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	gone, err := e.deleted(ctx, gateOf(ctx), clean, 0)
	if err != nil {
		return nil, pathError("restore_all", dir, err)
	}
	var out []Entry
	var total int64
	for _, v := range gone {
		en, n, err := e.restore(ctx, v.Path, v.ID)
		if err != nil {
			call.SetBytes(total)
			return out, reop("restore_all", err)
		}
		total += n
		out = append(out, en)
	}
	call.SetBytes(total)
	return out, nil
}

// Expire removes the kept versions past the engine's History: those
// beyond its count for their path, those replaced longer than MaxAge
// ago, and those left by changes that never happened (they carry the
// current file's ETag) once they are an hour old. It returns how many it
// removed. It also removes the resumable uploads past their Expires, and
// their bytes (not counted in n). The engine runs it every hour (with no
// History, only for the uploads); a store shared by engines that come and
// go may run it from a command (roomstore sweep). It fails with the
// store's error (after removing what it could) and fs.ErrClosed after
// Shutdown.
func (e *Engine) Expire(ctx context.Context) (_ int, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.Expire, "")
	defer call.End(&err)
	if err := e.begin("expire", ""); err != nil {
		return 0, err
	}
	defer e.inflight.Done()
	now := e.cfg.historyClock()
	n, err := e.expire(ctx, "", now)
	_, uerr := e.expireResumables(ctx, now)
	if err = errors.Join(err, uerr); err != nil {
		return n, pathError("expire", "", err)
	}
	return n, nil
}

// expire is Expire below dir, as of now.
func (e *Engine) expire(ctx context.Context, dir string, now time.Time) (int, error) {
	// The stores list a path's versions together, so only one path's are
	// held at a time. A path listed in several runs is pruned run by run,
	// which is safe: a version past the count among some of its path's
	// versions is past it among all.
	removed := 0
	var errs []error
	var run []backend.Version
	flush := func() {
		if len(run) == 0 {
			return
		}
		n, err := e.prune(ctx, run[0].Path, run, now)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
		run = run[:0]
	}
	for v, err := range e.b.Kept(ctx, dir) {
		if err != nil {
			flush()
			return removed, errors.Join(append(errs, err)...)
		}
		if len(run) > 0 && run[0].Path != v.Path {
			flush()
		}
		run = append(run, v)
	}
	flush()
	return removed, errors.Join(errs...)
}

// trim applies the engine's History to the file at clean after a change
// that may have kept a version of it, on the change's context: a failure
// (or an ended context) leaves the surplus to the next change or Expire.
func (e *Engine) trim(ctx context.Context, clean string) {
	if e.cfg.history.Versions == 0 || e.selfTrims || ctx.Err() != nil {
		return
	}
	// Kept, not Versions: what the count needs is in a listing, and an
	// object store's Versions may read each version's metadata too.
	var vs []backend.Version
	for v, err := range e.b.Kept(ctx, clean) {
		if err != nil {
			return
		}
		if v.Path == clean { // not a file beneath a former folder of that name
			vs = append(vs, v)
		}
	}
	if len(vs) <= e.cfg.history.Versions {
		return
	}
	_, _ = e.prune(ctx, clean, vs, e.cfg.historyClock())
}

// prune removes, of the kept versions vs of path p, those past the
// History as of now, and returns how many it removed.
func (e *Engine) prune(ctx context.Context, p string, vs []backend.Version, now time.Time) (int, error) {
	h := e.cfg.history
	cur, err := e.b.Stat(ctx, p)
	exists := err == nil && !cur.IsFolder
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	slices.SortFunc(vs, newestFirst)
	removed, kept := 0, 0
	var errs []error
	seen := make(map[string]bool, len(vs))
	for _, v := range vs {
		var drop bool
		switch {
		case exists && v.ETag == cur.ETag:
			drop = now.Sub(v.Replaced) > historyGrace
		case seen[v.ETag]:
			drop = true // kept again later: the later keeping stays (see versions)
		case kept >= h.Versions:
			drop = true
		case h.MaxAge > 0 && now.Sub(v.Replaced) > h.MaxAge:
			drop = true
		default:
			kept++
		}
		seen[v.ETag] = true
		if !drop {
			continue
		}
		switch err := e.b.Forget(ctx, p, v.ID); {
		case err == nil:
			removed++
			if e.usage != nil {
				e.usage.forgot(v.Size)
			}
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// expireLater runs Expire every historyExpiry in the background until
// Shutdown, on a timer rather than a goroutine that waits; with no
// History, only for the resumable uploads.
func (e *Engine) expireLater() {
	e.expiry = time.AfterFunc(historyExpiry, func() {
		if err := e.begin("expire", ""); err != nil {
			return // shut down
		}
		ctx, cancel := context.WithTimeout(e.life, historyExpiry)
		now := e.cfg.historyClock()
		var err error
		if e.cfg.history.Versions > 0 {
			_, err = e.expire(ctx, "", now)
		}
		_, uerr := e.expireResumables(ctx, now)
		cancel()
		e.inflight.Done()
		if err = errors.Join(err, uerr); err != nil {
			e.cfg.logger.Warn("roomstore: expiring past versions and resumable uploads failed", "err", err)
		}
		e.mu.Lock()
		if !e.closed {
			e.expiry.Reset(historyExpiry)
		}
		e.mu.Unlock()
	})
}
