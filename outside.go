package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/events"
)

// DefaultScanInterval is how often an engine with WithWatch compares the
// whole store with what it knows when Watch.Scan is 0. make bench
// measures what a scan costs (BENCHMARKS.md, section 16): on a disk store
// of 100,000 files about 0.6 s of one core, as much as a bare walk of the
// directory with an lstat per file; on S3 one listing per 1,000 objects,
// about a second of wall time for 10,000. Every five minutes that is
// 0.2% of a core, and it bounds the delay of an outside change that no
// feed reported.
const DefaultScanInterval = 5 * time.Minute

// DefaultSettle is how long a change that a feed reported waits before
// the engine looks at the path when Watch.Settle is 0, for an engine
// without an event transport.
const DefaultSettle = 200 * time.Millisecond

// DefaultTransportSettle is the default Settle of an engine with an event
// transport (WithEventTransport): long enough for another engine's event
// of its own commit to arrive first even on a loaded machine, so that the
// event carries its participant rather than none.
const DefaultTransportSettle = 2 * time.Second

// maxPending bounds the paths waiting to be looked at; past it the engine
// forgets them and scans the whole store instead, so that a burst of
// outside changes costs memory no larger than this.
const maxPending = 1 << 16

// Watch configures WithWatch: how an engine finds the changes that others
// made to its store (other programs, other engines whose events never came)
// and reports them as events.
type Watch struct {
	// Scan is the interval of the reconciling scan: the engine lists the
	// whole store and compares each file's version (its ETag, or the
	// listing's tag, see backend.Scanner) with what it knows. 0 means
	// DefaultScanInterval; a negative Scan turns the periodic scan off
	// (the first scan, and those a feed asks for after losing track, still
	// run), and with it the sharing of the scan between engines (see
	// WithWatch).
	Scan time.Duration
	// Settle is how long a path that a feed reported waits before the
	// engine looks at it (0 means DefaultSettle, or DefaultTransportSettle
	// with an event transport): the changes of that time
	// are looked at once, and an event of another engine that made the
	// change has that long to arrive (then the change is its, with its
	// participant, rather than an outside one).
	Settle time.Duration
	// Feeds are native feeds of changes besides the store's own, such as
	// S3 bucket notifications (events_nats.NewS3Feed).
	Feeds []backend.Watcher
	// NoNative turns off the store's own feed (a backend that is a
	// backend.Watcher, such as a file:// store's inotify watch), leaving
	// the scan and Feeds.
	NoNative bool
}

// WithWatch makes the engine report changes made to its store by anyone
// else: files written, replaced, renamed or removed by other programs, and
// those of other engines whose events never came (one that died between
// its commit and its publish). Each becomes an event with no participant
// id (Event.ParticipantID ""), once, as the engine sees it: the engine
// keeps every file's version as it last knew it (from its first scan, its
// own changes, the events of other engines and what it saw since) and
// reports what differs. A change the engine itself made, or that another
// engine's event told, is never reported a second time, whoever saw it
// first.
//
// How soon an outside change becomes an event depends on the store: on a
// file:// store on Linux the store's inotify feed reports it within
// Settle (the feed's own delay is well under a millisecond; a kernel queue
// overflow costs a scan); with S3 bucket notifications (Watch.Feeds)
// within the notification's delivery plus Settle; everywhere else, and for
// what a feed missed, within one Scan interval plus the scan's duration
// (up to three intervals when the engines share the scan and the one
// that scans dies, see below). Meanwhile subscribers see the store as it was, and Stat and List see
// it as it is.
//
// The engine takes its first view of the store with a scan when New
// returns (see WaitWatching): changes made before that scan ends are part
// of the starting point, not events, unless the engine starts from a
// saved state (below). It keeps the path and version of every file of the
// store, about 100 bytes a file. New fails with fs.ErrInvalid for a nil
// feed or a negative Settle.
//
// # Engines that share the scan
//
// When the event transport (WithEventTransport) also coordinates the
// engines of a store (an events.Coordinator, as events_nats's is) and Scan
// is positive, the engines of the store share the periodic scan and what
// it compares against:
//
//   - Who scans: one engine at a time, the holder of the store's scan
//     lease. It takes the lease once its first scan ends, if no engine
//     holds it, and at each Scan interval renews it for 2 × Scan; every
//     other engine tries at each of its intervals and scans only once it
//     holds the lease. An engine that cannot reach the coordinator scans
//     at every interval meanwhile: the outside events it tells again are
//     refused by the engines that told them, so a second scanner costs
//     work, never a duplicate. The first scan, those that a feed asks for
//     after losing track, and Engine.Scan run on every engine regardless.
//   - When the holder goes: at Shutdown it gives the lease up, and another
//     engine takes it at its next interval; a holder that dies holds it
//     until it expires, at most 2 × Scan after its last renewal, so
//     another engine scans within 3 × Scan of its death. An outside
//     change that no feed reports becomes an event within 3 × Scan plus a
//     scan's duration, and within one Scan plus that while the holder
//     lives. Expiry is judged by each host's clock: hosts whose clocks
//     differ by more than Scan may both scan for a while.
//   - What survives restarts: after each scan of the whole store it ends
//     as the holder, and at its Shutdown if it holds the lease or no
//     engine does, the engine saves the path and version of every file it
//     knows with the coordinator (compressed: some 20 bytes a file), once
//     the transport has published every event the engine made until then.
//     An engine that starts loads that state (within five seconds;
//     without one, or on any error, its first scan only learns the
//     store): its first scan then compares the store with it, and reports
//     what changed since it was saved, such as changes made while no
//     engine of the store ran and commits of an engine that died before
//     its transport published their events. Events of other engines that
//     arrive meanwhile count as ever: each change is reported once on each
//     engine. An engine that starts while others run may also report
//     changes that those others made since the state was saved (about a
//     Scan interval before) to its own subscribers, who had not seen them;
//     the others refuse them.
//
// Stats.Watch counts scans, those left to the holder, outside events and
// saves.
func WithWatch(w Watch) Option {
	return func(c *config) error {
		for i, f := range w.Feeds {
			if f == nil {
				return badOption("WithWatch: feed %d is nil", i)
			}
		}
		if w.Scan == 0 {
			w.Scan = DefaultScanInterval
		}
		if w.Settle < 0 {
			return badOption("WithWatch: negative Settle %v", w.Settle)
		}
		c.watch = &w
		return nil
	}
}

// unknownTag stands for a version the engine made but was not told the
// tag of: the next look at the path takes what it finds without an event.
const unknownTag = "\x00"

// watcher is an engine's view of its store for WithWatch: the version of
// every file as the engine last knew it, the paths that feeds reported and
// wait to be looked at, and the loop that looks at them and scans.
type watcher struct {
	e   *Engine
	cfg Watch
	tag func(etag string) string // the scan tag of an ETag (backend.Scanner)

	// coord is the engine's transport where it coordinates the engines
	// of the store and the periodic scan runs (see WithWatch); else nil.
	coord events.Coordinator

	mu       sync.Mutex
	known    map[string]string    // path -> scan tag
	baseline bool                 // until the first view of the store is taken: known is not yet whole
	touched  map[string]struct{}  // paths changed while baseline
	pending  map[string]time.Time // path -> when to look at it
	dirs     map[string]time.Time // folder -> when to scan it
	rescan   bool                 // scan the whole store
	wake     chan struct{}        // 1-buffered: something is pending
	// inherited holds the paths whose version in known came from the
	// state that engines before this one saved, and of which no event has
	// been published or delivered here since: another engine's event of
	// that version is news to this engine's subscribers all the same.
	inherited map[string]struct{}
	// unpublished counts the looks that recorded a version in known whose
	// event is not yet handed to the transport: known is not saved
	// meanwhile.
	unpublished int

	started  chan struct{} // closed when the first scan has ended
	firstErr error         // its error, read once started is closed

	cancel context.CancelFunc
	wg     sync.WaitGroup

	holder, restored atomic.Bool // see WatchStats
	saving           atomic.Bool // a save runs
	whole            atomic.Bool // a scan of the whole store has ended well: known is whole
	leaseFailing     bool        // the loop's: the last Lease failed

	scans, left, outside, lost, saved atomic.Uint64
}

func newWatcher(e *Engine, cfg Watch) *watcher {
	w := &watcher{
		e:         e,
		cfg:       cfg,
		tag:       func(etag string) string { return etag },
		known:     map[string]string{},
		touched:   map[string]struct{}{},
		pending:   map[string]time.Time{},
		dirs:      map[string]time.Time{},
		inherited: map[string]struct{}{},
		wake:      make(chan struct{}, 1),
		started:   make(chan struct{}),
		// Until the first view of the store is taken, known is not whole:
		// no event of another engine may be refused for what it lacks.
		baseline: true,
	}
	if s, ok := e.b.(backend.Scanner); ok {
		w.tag = s.ScanTag
	}
	if c, ok := e.cfg.transport.(events.Coordinator); ok && cfg.Scan > 0 {
		w.coord = c
	}
	if w.cfg.Settle == 0 {
		w.cfg.Settle = DefaultSettle
		if e.cfg.transport != nil {
			w.cfg.Settle = DefaultTransportSettle
		}
	}
	return w
}

// start runs the feeds and the loop until stop.
func (w *watcher) start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	feeds := w.cfg.Feeds
	native := make(chan struct{})
	if nw, ok := w.e.b.(backend.Watcher); ok && !w.cfg.NoNative {
		w.wg.Go(func() { w.run(ctx, nw, "store", native) })
	} else {
		close(native)
	}
	for i, f := range feeds {
		w.wg.Go(func() { w.run(ctx, f, fmt.Sprintf("feed %d", i), nil) })
	}
	w.wg.Go(func() { w.loop(ctx, native) })
}

// stop ends the feeds and the loop and waits for them.
func (w *watcher) stop() {
	w.cancel()
	w.wg.Wait()
}

// run runs one feed while ctx lasts, starting it again (after a rescan)
// when it fails. ready, if not nil, is closed once the feed watches or has
// failed for good.
func (w *watcher) run(ctx context.Context, f backend.Watcher, name string, ready chan struct{}) {
	var once sync.Once
	signal := func() {
		if ready != nil {
			once.Do(func() { close(ready) })
		}
	}
	defer signal()
	log := w.e.cfg.logger
	for attempt := 0; ; attempt++ {
		began := false
		err := f.Watch(ctx, func() {
			began = true
			signal()
			if attempt > 0 {
				w.changed(backend.Change{Lost: true}) // blind while it was down
			}
		}, w.changed)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errors.ErrUnsupported) {
			log.Info("roomstore: no native feed of changes; the scan finds them", "feed", name, "reason", err)
			return
		}
		if began {
			attempt = 0
		}
		if attempt == 0 {
			// Once per streak of failures: a store that cannot be watched
			// (out of inotify instances or watches) fails at every try.
			log.Warn("roomstore: feed of changes failed; the scan finds changes until it is back", "feed", name, "err", err)
		} else {
			log.Debug("roomstore: feed of changes failed again", "feed", name, "err", err)
		}
		signal()
		t := time.NewTimer(min(100*time.Millisecond<<min(attempt, 9), 30*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// changed records what a feed reported, to be looked at after Settle.
func (w *watcher) changed(c backend.Change) {
	w.mu.Lock()
	switch {
	case c.Lost:
		w.lost.Add(1)
		w.rescan = true
	case c.Folder:
		if _, ok := w.dirs[c.Path]; !ok {
			w.dirs[c.Path] = time.Now().Add(w.cfg.Settle)
		}
	default:
		if _, ok := w.pending[c.Path]; !ok {
			w.pending[c.Path] = time.Now().Add(w.cfg.Settle)
		}
	}
	if len(w.pending)+len(w.dirs) > maxPending {
		w.rescan = true
		clear(w.pending)
		clear(w.dirs)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// loop takes the first view of the store once the native feed watches,
// then looks at what feeds report and scans at the interval.
func (w *watcher) loop(ctx context.Context, native <-chan struct{}) {
	select {
	case <-native:
	case <-ctx.Done():
		w.firstErr = ctx.Err()
		close(w.started)
		return
	}
	var err error
	if w.restore(ctx) {
		err = w.scan(ctx, "", false) // reports what changed since the state was saved
	} else {
		err = w.scan(ctx, "", true)
		w.mu.Lock()
		w.baseline = false
		clear(w.touched)
		w.mu.Unlock()
	}
	w.firstErr = err
	close(w.started)
	if err != nil && ctx.Err() == nil {
		w.e.cfg.logger.Warn("roomstore: first scan of the store failed; scanning again", "err", err)
		w.changed(backend.Change{Lost: true})
	}
	if held, _ := w.lease(ctx); held && err == nil {
		w.save(ctx)
	}
	var tick <-chan time.Time
	if w.cfg.Scan > 0 {
		t := time.NewTicker(w.cfg.Scan)
		defer t.Stop()
		tick = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := w.due(ctx)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		case <-tick:
			if w.periodic(ctx) {
				w.mu.Lock()
				w.rescan = true // due, next, scans
				w.mu.Unlock()
			}
		}
	}
}

// due looks at every pending path whose time has come, and scans what
// needs it; it returns when to come back.
func (w *watcher) due(ctx context.Context) time.Time {
	now := time.Now()
	next := now.Add(time.Hour)
	var paths, dirs []string
	w.mu.Lock()
	full := w.rescan
	w.rescan = false
	if full {
		clear(w.pending)
		clear(w.dirs)
	}
	var due []pendingPath
	for p, at := range w.pending {
		if at.After(now) {
			next = earlier(next, at)
			continue
		}
		due = append(due, pendingPath{p, at})
		delete(w.pending, p)
	}
	// In the order the feed told them, so that the events of outside
	// changes come in the order of the changes.
	slices.SortFunc(due, func(a, b pendingPath) int { return a.at.Compare(b.at) })
	for _, d := range due {
		paths = append(paths, d.path)
	}
	for d, at := range w.dirs {
		if at.After(now) {
			next = earlier(next, at)
			continue
		}
		dirs = append(dirs, d)
		delete(w.dirs, d)
	}
	w.mu.Unlock()
	report := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			w.e.cfg.logger.Warn("roomstore: looking for outside changes failed; scanning again", "what", what, "err", err)
			w.changed(backend.Change{Lost: true})
		}
	}
	if full {
		err := w.scan(ctx, "", false)
		report("scan", err)
		if err == nil && w.holder.Load() {
			w.save(ctx)
		}
		return next
	}
	for _, d := range dirs {
		report("folder", w.scan(ctx, d, false))
	}
	for _, p := range paths {
		report("file", w.look(ctx, p))
	}
	return next
}

type pendingPath struct {
	path string
	at   time.Time
}

// look compares the file at p with what the engine knows of it, under p's
// stripe, so that no commit of this engine runs meanwhile, and publishes
// an outside event for a difference.
func (w *watcher) look(ctx context.Context, p string) error {
	e := w.e
	i := e.stripeIndex(p)
	if err := e.lockStripe(ctx, i); err != nil {
		return err
	}
	defer e.stripes[i].unlock()
	info, err := e.b.Stat(ctx, p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	exists := err == nil && !info.IsFolder
	w.mu.Lock()
	known, had := w.known[p]
	var ev events.Event
	switch {
	case exists:
		tag := w.tag(info.ETag)
		if had && known == tag {
			w.mu.Unlock()
			return nil
		}
		w.known[p] = tag
		if had && known == unknownTag {
			w.mu.Unlock() // its own commit, whose version it now knows
			return nil
		}
		ev = events.Event{Type: EventFileUpdated, Path: p, Size: info.Size, ETag: info.ETag}
	case had:
		delete(w.known, p)
		ev = events.Event{Type: EventFileDeleted, Path: p}
	default:
		w.mu.Unlock()
		return nil
	}
	w.unpublished++
	w.mu.Unlock()
	w.outside.Add(1)
	e.publishEvent(context.WithoutCancel(ctx), ev)
	w.mu.Lock()
	w.unpublished--
	w.mu.Unlock()
	return nil
}

// scan lists the files at and beneath dir and looks at every one whose
// version differs from what the engine knows, and at every file it knows
// there that the listing lacks. The first scan (baseline) only learns.
func (w *watcher) scan(ctx context.Context, dir string, baseline bool) error {
	if dir == "" {
		w.scans.Add(1)
	}
	seen := map[string]struct{}{}
	var differ []string
	for info, err := range w.files(ctx, dir) {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			return err
		}
		seen[info.Path] = struct{}{}
		w.mu.Lock()
		known, had := w.known[info.Path]
		if baseline {
			if _, t := w.touched[info.Path]; !had && !t {
				w.known[info.Path] = info.ETag
			}
		} else if !had || known != info.ETag {
			differ = append(differ, info.Path)
		}
		w.mu.Unlock()
	}
	if baseline {
		w.whole.Store(true)
		return nil
	}
	w.mu.Lock()
	for p := range w.known {
		if _, ok := seen[p]; !ok && within(p, dir) {
			differ = append(differ, p)
		}
	}
	w.mu.Unlock()
	for _, p := range differ {
		if err := w.look(ctx, p); err != nil {
			return err
		}
	}
	if dir == "" {
		w.whole.Store(true)
	}
	return nil
}

// within reports whether p is dir or beneath it ("" is the whole store).
func within(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// files yields every file at and beneath dir with its scan tag: the
// backend's Scan where it has one, else a walk of List.
func (w *watcher) files(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	if s, ok := w.e.b.(backend.Scanner); ok {
		return s.Scan(ctx, dir)
	}
	return func(yield func(backend.Info, error) bool) {
		if dir != "" {
			info, err := w.e.b.Stat(ctx, dir)
			if err != nil {
				yield(backend.Info{}, err)
				return
			}
			if !info.IsFolder {
				yield(info, nil)
				return
			}
		}
		var walk func(d string) bool
		walk = func(d string) bool {
			for info, err := range w.e.b.List(ctx, d) {
				if err != nil {
					return yield(backend.Info{}, err)
				}
				if info.IsFolder {
					if !walk(info.Path) {
						return false
					}
				} else if !yield(info, nil) {
					return false
				}
			}
			return true
		}
		walk(dir)
	}
}

// own records a change of the engine's own, or one an event of another
// engine told (remote), and says whether its event is news: a remote
// event that reports a version the engine knows already (it saw it
// itself first) is not.
func (w *watcher) own(ev events.Event, remote bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	tag := unknownTag
	if ev.ETag != "" {
		tag = w.tag(ev.ETag)
	}
	if w.baseline {
		w.touched[ev.Path] = struct{}{}
		if ev.SourcePath != "" {
			w.touched[ev.SourcePath] = struct{}{}
		}
	}
	news := !remote || w.baseline
	for _, p := range []string{ev.Path, ev.SourcePath} {
		if _, ok := w.inherited[p]; ok && p != "" {
			news = true
			delete(w.inherited, p)
		}
	}
	switch ev.Type {
	case EventFileUpdated:
		if known, ok := w.known[ev.Path]; !ok || known != tag || tag == unknownTag {
			news = true
		}
		w.known[ev.Path] = tag
	case EventFileDeleted:
		if _, ok := w.known[ev.Path]; ok {
			news = true
		}
		delete(w.known, ev.Path)
	case EventFileMoved:
		if _, ok := w.known[ev.SourcePath]; ok {
			news = true
		}
		if known, ok := w.known[ev.Path]; !ok || known != tag || tag == unknownTag {
			news = true
		}
		delete(w.known, ev.SourcePath)
		w.known[ev.Path] = tag
	}
	return news
}

// admit is the bus's WithAdmit: another engine's event goes through unless
// it tells of a version this engine has reported already.
func (e *Engine) admit(ev events.Event) bool {
	if ev.Origin == e.id {
		return true
	}
	return e.watch.own(ev, true)
}

// WaitWatching waits until an engine with WithWatch has taken its first
// view of the store (see WithWatch; when it starts from a saved state,
// once its first scan has reported what changed since), and returns the
// error of that first scan, if it failed (the engine then scans again),
// or ctx's error if it ends first. Without WithWatch it fails with
// fs.ErrInvalid.
func (e *Engine) WaitWatching(ctx context.Context) error {
	if e.watch == nil {
		return &fs.PathError{Op: "wait watching", Path: "", Err: fmt.Errorf("%w: the engine has no WithWatch", fs.ErrInvalid)}
	}
	select {
	case <-e.watch.started:
		if err := e.watch.firstErr; err != nil {
			return &fs.PathError{Op: "wait watching", Path: "", Err: err}
		}
		return nil
	case <-ctx.Done():
		return &fs.PathError{Op: "wait watching", Path: "", Err: ctx.Err()}
	}
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Scan compares the whole store with what an engine with WithWatch knows
// of it now, as its periodic scan does, and returns once every difference
// has been published as an event (see WithWatch): for an operator who
// knows the store changed behind the engine's back (a restored backup),
// and for tests. It waits for the first scan (WaitWatching) first. It
// fails with fs.ErrInvalid without WithWatch, with fs.ErrClosed after
// Shutdown, and with the store's error or ctx's.
func (e *Engine) Scan(ctx context.Context) (err error) {
	if err := e.WaitWatching(ctx); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Op = "scan"
		}
		return err
	}
	if err := e.begin("scan", ""); err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := e.watch.scan(ctx, "", false); err != nil {
		return &fs.PathError{Op: "scan", Path: "", Err: err}
	}
	return nil
}
