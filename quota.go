package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/telemetry"
)

// ErrQuotaExceeded reports a commit (Close, Upload) that would take the
// store past its Quota, or an Open or Write whose bytes would (alone, or
// with those staged in the other open handles). Nothing was changed: the
// file keeps its old content. Free room (delete files) or raise the
// quota. The room protocol's code for it is 507. A Move never adds to
// the store, and is never refused for its quota.
var ErrQuotaExceeded = errors.New("quota exceeded")

// Quota bounds what one store holds: Bytes the sizes of its files
// together, Files their number; 0 leaves either unbounded.
//
// The engine knows the store's usage from a scan of the store, made at
// the first call that needs it (the first Open, Upload or Usage), and
// keeps it from then on through every change it sees: its own commits,
// deletes and moves, and, with WithEventTransport, those of the other
// engines of the store. A commit is refused with ErrQuotaExceeded when
// the usage it knows, plus the commits in flight on this engine, plus
// its own change would pass the quota. An Open (and an Upload) whose
// announced size (OpenOptions.Size) the quota cannot hold is refused
// before the first byte, and so is a Write once a handle's bytes alone
// could not fit, or once the bytes staged in all open handles together
// would pass the byte quota: staging never takes more than the quota. A
// commit whose outcome is unknown (its context ended while the store had
// it) is settled by a Stat of its path at the next need.
//
// Across engines the bound is as exact as their events are timely: a
// commit on one engine is known to the others once its event reaches
// them (with events_nats, within tens of milliseconds). Commits in flight
// on several engines at once each see only the usage the others had
// committed before, so the store may pass its quota by at most what the
// commits of the other engines, in flight at that moment, add: with n
// engines, less than n-1 such commits. Changes made behind the engines'
// backs are known only at the next scan, which follows an overflow of
// the engine's events (a transport that lost some).
type Quota struct {
	Bytes int64
	Files int64
}

// WithQuota bounds what the engine's store may hold (see Quota). A
// negative bound is refused.
func WithQuota(q Quota) Option {
	return func(c *config) error {
		if q.Bytes < 0 || q.Files < 0 {
			return badOption("quota bounds must not be negative, got %d bytes and %d files", q.Bytes, q.Files)
		}
		c.quota = q
		return nil
	}
}

// Usage is what a store holds, as an engine knows it.
type Usage struct {
	Bytes int64 // the sizes of its files together
	Files int64 // the number of its files
	// Kept is the sizes of the past versions kept (see WithHistory)
	// together: a Quota's Bytes bounds Bytes+Kept. The engine counts the
	// versions its changes and the other engines' keep, and those its own
	// retention removes; versions removed by another engine, or replaced
	// behind the engines' backs, are counted exactly at the next scan.
	Kept int64
	// Pending is the sizes of the unfinished resumable uploads together
	// (see CreateResumable), which a Quota's Bytes bounds with Bytes and
	// Kept until they are committed, aborted or expired. With a Quota,
	// the engine counts its own uploads and learns the others' engines'
	// at each CreateResumable and scan.
	Pending int64
	// Quota is the engine's Quota (zero: unbounded).
	Quota Quota
}

// Usage returns what the store holds. With a Quota it is the usage the
// engine keeps (scanned at the first need, then kept up to date);
// without one it scans the store each time. It fails as Walk does, and
// with fs.ErrClosed after Shutdown.
func (e *Engine) Usage(ctx context.Context) (Usage, error) {
	if err := e.begin("usage", ""); err != nil {
		return Usage{}, err
	}
	defer e.inflight.Done()
	if e.usage == nil {
		u := &usage{history: e.cfg.history.Versions > 0}
		if err := u.scan(ctx, e); err != nil {
			return Usage{}, pathError("usage", "", err)
		}
		return Usage{Bytes: u.bytes, Files: u.files, Kept: u.kept, Pending: u.pendBytes}, nil // a scan of its own
	}
	if err := e.usage.ready(ctx, e); err != nil {
		return Usage{}, pathError("usage", "", err)
	}
	e.usage.mu.Lock()
	defer e.usage.mu.Unlock()
	return Usage{Bytes: e.usage.bytes, Files: e.usage.files, Kept: e.usage.kept, Pending: e.usage.pendBytes, Quota: e.usage.q}, nil
}

// usage is the record of what a store with a quota holds: the size of
// every file, from a scan and then from every event the engine's bus
// sees. Applying an event sets a file's state, so that applying one twice,
// or one the scan had already seen, changes nothing.
type usage struct {
	q       Quota
	history bool // changes keep the versions they replace

	mu      sync.Mutex
	known   bool             // scanned, and kept since
	sizes   map[string]int64 // by clean path, while known
	pending []events.Event   // seen during a scan, applied after it
	bytes   int64
	files   int64
	kept    int64 // the bytes of the kept versions
	// What the commits in flight on this engine may add.
	inBytes, inFiles int64
	// staged is the bytes the open handles hold: together they stay
	// within the byte quota, so that staging never takes more disk than
	// that.
	staged int64
	// pendBytes is the sizes of the unfinished resumable uploads together,
	// pends each one's by id, and finished the ids this engine committed
	// (or is committing), aborted or expired, which a listing of the store
	// may still show (see pend).
	pendBytes int64
	pends     map[string]int64
	finished  map[string]bool

	// unsettled holds the paths of commits whose outcome is unknown (their
	// context ended while the store had them), which the next need learns
	// with a Stat each before it counts on the usage.
	unsettled map[string]struct{}

	scanMu sync.Mutex // one scan at a time
	gen    uint64     // bumped by each overflow: a scan older than it is stale
}

// ready makes sure the usage is known, scanning the store if it is not,
// and settling the commits of unknown outcome.
func (u *usage) ready(ctx context.Context, e *Engine) error {
	u.mu.Lock()
	known, settled := u.known, len(u.unsettled) == 0
	u.mu.Unlock()
	if !known {
		if err := u.know(ctx, e); err != nil {
			return err
		}
	}
	if settled {
		return nil
	}
	return u.settle(ctx, e)
}

// unsettle records a commit at p whose outcome is unknown; it costs the
// caller, whose context has ended, no request.
func (u *usage) unsettle(p string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.unsettled == nil {
		u.unsettled = map[string]struct{}{}
	}
	u.unsettled[p] = struct{}{}
}

// settle learns what each commit of unknown outcome left at its path
// (the file there now, or none), on the context of the need; one the
// store cannot say fails the need and stays to be learned.
func (u *usage) settle(ctx context.Context, e *Engine) error {
	u.mu.Lock()
	paths := make([]string, 0, len(u.unsettled))
	for p := range u.unsettled {
		paths = append(paths, p)
	}
	u.mu.Unlock()
	for _, p := range paths {
		info, err := e.b.Stat(ctx, p)
		switch {
		case err == nil && !info.IsFolder:
			u.Published("", events.Event{Type: EventFileUpdated, Path: p, Size: info.Size})
		case err == nil || errors.Is(err, fs.ErrNotExist):
			u.Published("", events.Event{Type: EventFileDeleted, Path: p})
		default:
			return err
		}
		u.mu.Lock()
		delete(u.unsettled, p)
		u.mu.Unlock()
	}
	return nil
}

// know scans the store until a scan no overflow made stale completes.
func (u *usage) know(ctx context.Context, e *Engine) error {
	u.scanMu.Lock()
	defer u.scanMu.Unlock()
	for {
		u.mu.Lock()
		if u.known {
			u.mu.Unlock()
			return nil
		}
		gen := u.gen
		u.pending = []events.Event{}
		u.mu.Unlock()
		if err := u.scan(ctx, e); err != nil {
			u.mu.Lock()
			u.pending = nil
			u.mu.Unlock()
			return err
		}
		u.mu.Lock()
		if u.gen == gen { // no overflow meanwhile: what the scan missed is pending
			for _, ev := range u.pending {
				u.applyLocked(ev)
			}
			u.pending, u.known = nil, true
			u.mu.Unlock()
			return nil
		}
		u.mu.Unlock()
	}
}

// scan counts the files of the store.
func (u *usage) scan(ctx context.Context, e *Engine) error {
	sizes := map[string]int64{}
	var bytes int64
	for en, err := range e.walkClean(ctx, "") {
		if err != nil {
			return err
		}
		if !en.IsFolder {
			sizes[en.Path] = en.Size
			bytes += en.Size
		}
	}
	pends := map[string]int64{}
	now := e.cfg.historyClock()
	for st, err := range e.b.ListStaged(ctx) {
		if err != nil {
			return err
		}
		if rec, ok := decodeRecord(st.Record); ok && !now.After(rec.Expires) {
			pends[st.ID] = rec.Size
		}
	}
	var kept int64
	if u.history {
		for v, err := range e.b.Kept(ctx, "") {
			if err != nil {
				return err
			}
			kept += v.Size
		}
	}
	u.mu.Lock()
	u.sizes, u.bytes, u.files, u.kept = sizes, bytes, int64(len(sizes)), kept
	u.setPendsLocked(pends)
	u.mu.Unlock()
	return nil
}

// setPendsLocked takes pends, the unfinished uploads a listing of the
// store found, as the pending ones, but for those this engine finished
// since (their ids leave finished once no listing shows them).
func (u *usage) setPendsLocked(pends map[string]int64) {
	for id := range u.finished {
		if _, ok := pends[id]; ok {
			delete(pends, id)
		} else {
			delete(u.finished, id)
		}
	}
	u.pends, u.pendBytes = pends, 0
	for _, n := range pends {
		u.pendBytes += n
	}
}

// pend checks, at CreateResumable, that the quota can hold an upload of
// size bytes to p (replacing the file there with replace) beside the
// unfinished uploads listed (pends, by id), and counts the new upload id
// as pending until unpend.
func (u *usage) pend(ctx context.Context, e *Engine, id, p string, size int64, replace bool, pends map[string]int64) error {
	if err := u.ready(ctx, e); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.setPendsLocked(pends)
	if err := u.fitsLocked(p, size, replace); err != nil {
		return err
	}
	u.pends[id] = size
	u.pendBytes += size
	return nil
}

// unpend stops counting upload id as pending: committed, aborted or
// expired.
func (u *usage) unpend(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.finished == nil {
		u.finished = map[string]bool{}
	}
	u.finished[id] = true
	if n, ok := u.pends[id]; ok {
		u.pendBytes -= n
		delete(u.pends, id)
	}
}

// repend counts upload id of size bytes as pending again, after a commit
// of it that failed.
func (u *usage) repend(id string, size int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.finished, id)
	if u.pends == nil {
		u.pends = map[string]int64{}
	}
	if _, ok := u.pends[id]; !ok {
		u.pends[id] = size
		u.pendBytes += size
	}
}

// reservePending is reserve for the commit of upload id: its pending
// bytes become those of a commit in flight.
func (u *usage) reservePending(ctx context.Context, e *Engine, id, p string, size int64, replace bool) (func(), error) {
	u.unpend(id)
	release, err := u.reserve(ctx, e, p, size, replace)
	if err != nil {
		u.repend(id, size)
	}
	return release, err
}

// forgot counts a kept version of size bytes removed.
func (u *usage) forgot(size int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.known {
		u.kept = max(u.kept-size, 0)
	}
}

// Published applies an event of the engine's bus, its own or another
// engine's: what it says a file now is.
func (u *usage) Published(_ string, ev events.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.pending != nil:
		u.pending = append(u.pending, ev)
	case u.known:
		u.applyLocked(ev)
	}
}

// Gap forgets the usage after events were lost: the next need scans.
func (u *usage) Gap(uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gen++
	u.known, u.sizes, u.pending = false, nil, nil
}

func (u *usage) applyLocked(ev events.Event) {
	// With a history, what a change replaces is kept.
	keep := func(size int64) {
		if u.history {
			u.kept += size
		}
	}
	set := func(p string, size int64) {
		old, ok := u.sizes[p]
		if !ok {
			u.files++
		}
		keep(old)
		u.bytes += size - old
		u.sizes[p] = size
	}
	drop := func(p string) (int64, bool) {
		old, ok := u.sizes[p]
		if ok {
			u.files--
			u.bytes -= old
			keep(old)
			delete(u.sizes, p)
		}
		return old, ok
	}
	switch ev.Type {
	case EventFileUpdated:
		set(ev.Path, ev.Size)
	case EventFileDeleted:
		drop(ev.Path)
	case EventFileMoved:
		size, ok := drop(ev.SourcePath)
		if !ok {
			size = ev.Size
		}
		set(ev.Path, size)
	}
}

// admit checks, at Open, that the quota can hold size more bytes (0:
// unknown) at p, replacing the file or appended to it; it reserves
// nothing.
func (u *usage) admit(ctx context.Context, e *Engine, p string, size int64, replace bool) error {
	if err := u.ready(ctx, e); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.fitsLocked(p, max(size, 0), replace)
}

// fitsLocked reports ErrQuotaExceeded when a file of size bytes at p (a
// new one counted when it is not there) would pass the quota, counting
// the commits in flight; with replace, the file's present size is
// freed.
func (u *usage) fitsLocked(p string, size int64, replace bool) error {
	old, exists := u.sizes[p]
	if !replace {
		size += old // an append adds to what is there
	}
	bytes := u.bytes + u.kept + u.pendBytes + u.inBytes - old + size
	if u.history {
		bytes += old // kept, not freed
	}
	files := u.files + u.inFiles
	if !exists {
		files++
	}
	switch {
	case u.q.Bytes > 0 && bytes > u.q.Bytes:
		return fmt.Errorf("%w: %d bytes would pass the quota of %d", ErrQuotaExceeded, bytes, u.q.Bytes)
	case u.q.Files > 0 && files > u.q.Files:
		return fmt.Errorf("%w: %d files would pass the quota of %d", ErrQuotaExceeded, files, u.q.Files)
	}
	return nil
}

// stage counts n more bytes staged by a handle for p, which holds size
// already, refusing them when the handle's bytes alone could not fit, or
// when the bytes staged in all handles together would pass the byte
// quota.
func (u *usage) stage(p string, size, n int64) error {
	if u.q.Bytes == 0 {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.staged+n > u.q.Bytes {
		return fmt.Errorf("%w: %d bytes staged in the open handles would pass the quota of %d", ErrQuotaExceeded, u.staged+n, u.q.Bytes)
	}
	if u.known {
		if err := u.fitsLocked(p, size+n, true); err != nil {
			return err
		}
	}
	u.staged += n
	return nil
}

// unstage gives back what a finished handle staged.
func (u *usage) unstage(n int64) {
	if u.q.Bytes == 0 || n == 0 {
		return
	}
	u.mu.Lock()
	u.staged -= n
	u.mu.Unlock()
}

// reserve checks and reserves a commit of size bytes at p (an append of
// size bytes unless replace) until the returned release, which the
// caller calls once the commit's event has been applied, or it failed.
func (u *usage) reserve(ctx context.Context, e *Engine, p string, size int64, replace bool) (func(), error) {
	if err := u.ready(ctx, e); err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.fitsLocked(p, size, replace); err != nil {
		return nil, err
	}
	old, exists := u.sizes[p]
	add := size
	switch {
	case u.history && !replace:
		add = size + old // the new file holds old again, and old is kept
	case replace && !u.history: // with a history, old is kept, not freed
		add = max(size-old, 0)
	}
	var files int64
	if !exists {
		files = 1
	}
	u.inBytes += add
	u.inFiles += files
	return func() {
		u.mu.Lock()
		u.inBytes -= add
		u.inFiles -= files
		u.mu.Unlock()
	}, nil
}

// snapshot returns the usage, and false while it is not known.
func (u *usage) snapshot() (bytes, files, kept int64, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bytes, u.files, u.kept, u.known
}

// observer is the engine bus's observer: its telemetry, and its usage
// when it has a quota.
type observer struct {
	*telemetry.Recorder
	u *usage
}

// Published implements events.Observer.
func (o observer) Published(topic string, ev events.Event) {
	o.Recorder.Published(topic, ev)
	o.u.Published(topic, ev)
}

// Gap implements events.GapObserver.
func (o observer) Gap(n uint64) { o.u.Gap(n) }
