package roomstore_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/events"
)

// hub is an in-memory events.Transport and events.Coordinator for the
// engines of one process, with the faults these tests need: a link whose
// events stay unpublished, deliveries to a link held back, a coordinator
// out of reach, a LoadState that waits for the test.
type hub struct {
	mu       sync.Mutex
	links    map[string]*hubLink // by origin
	leases   map[string]hubLease // by store and name
	states   map[string][]byte   // by store and name
	saves    int
	down     map[string]bool // origins for which the coordinator fails
	allDown  bool
	loadGate chan struct{} // when not nil, LoadState waits until it is closed
}

type hubLease struct {
	origin  string
	expires time.Time
}

var errHubDown = errors.New("hub: out of reach")

func newHub() *hub {
	return &hub{links: map[string]*hubLink{}, leases: map[string]hubLease{}, states: map[string][]byte{}, down: map[string]bool{}}
}

func (h *hub) Attach(store, origin string, bus *events.Bus) (events.Link, error) {
	l := &hubLink{h: h, store: store, origin: origin, bus: bus, wake: make(chan struct{}, 1), done: make(chan struct{}), settled: make(chan struct{})}
	h.mu.Lock()
	h.links[origin] = l
	h.mu.Unlock()
	go l.deliver()
	return l, nil
}

func (h *hub) reachable(origin string) error {
	if h.allDown || h.down[origin] {
		return errHubDown
	}
	return nil
}

func (h *hub) Lease(_ context.Context, store, name, origin string, ttl time.Duration) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.reachable(origin); err != nil {
		return false, err
	}
	now := time.Now()
	k := store + "/" + name
	if l := h.leases[k]; l.origin != "" && l.origin != origin && now.Before(l.expires) {
		return false, nil
	}
	h.leases[k] = hubLease{origin, now.Add(ttl)}
	return true, nil
}

func (h *hub) Release(_ context.Context, store, name, origin string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.reachable(origin); err != nil {
		return err
	}
	if k := store + "/" + name; h.leases[k].origin == origin {
		delete(h.leases, k)
	}
	return nil
}

func (h *hub) SaveState(_ context.Context, store, name string, data []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.allDown {
		return errHubDown
	}
	h.states[store+"/"+name] = slices.Clone(data)
	h.saves++
	return nil
}

func (h *hub) LoadState(ctx context.Context, store, name string) ([]byte, error) {
	h.mu.Lock()
	gate := h.loadGate
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.allDown {
		return nil, errHubDown
	}
	data, ok := h.states[store+"/"+name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return slices.Clone(data), nil
}

// crash makes the engine origin's link lose what it has not published,
// and the coordinator unreachable for it, as for an engine that died.
func (h *hub) crash(origin string) {
	h.mu.Lock()
	h.down[origin] = true
	l := h.links[origin]
	h.mu.Unlock()
	l.mu.Lock()
	l.pending = nil
	l.lost = true
	l.settleLocked()
	l.mu.Unlock()
}

func (h *hub) saveCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.saves
}

// hubLink is one engine's link: what it publishes goes to the inboxes of
// the store's other links, each delivered in order by a goroutine.
type hubLink struct {
	h             *hub
	store, origin string
	bus           *events.Bus

	sendMu  sync.Mutex // one Publish at a time; taken before mu, and before other links' mu
	mu      sync.Mutex
	inbox   []events.Event
	hold    bool           // deliveries to this link wait
	stall   bool           // this link's events wait, unpublished
	lost    bool           // crashed: its events go nowhere
	pending []events.Event // stalled events
	settled chan struct{}  // closed (and replaced) when pending empties
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

func (l *hubLink) Publish(_ context.Context, e events.Event) {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	l.mu.Lock()
	send := !l.lost && !l.closed && !l.stall
	if l.stall && !l.lost && !l.closed {
		l.pending = append(l.pending, e)
	}
	l.mu.Unlock()
	if send {
		l.send(e)
	}
}

// send hands e to the other links of the store; l.sendMu is held, so
// that the link's events go in order.
func (l *hubLink) send(e events.Event) {
	l.h.mu.Lock()
	var to []*hubLink
	for _, o := range l.h.links {
		if o != l && o.store == l.store {
			to = append(to, o)
		}
	}
	l.h.mu.Unlock()
	for _, o := range to {
		o.mu.Lock()
		o.inbox = append(o.inbox, e)
		o.mu.Unlock()
		o.signal()
	}
}

func (l *hubLink) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// setStall stalls the link's publishing, or publishes what it stalled.
func (l *hubLink) setStall(stall bool) {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	l.mu.Lock()
	l.stall = stall
	var pending []events.Event
	if !stall {
		pending, l.pending = l.pending, nil
	}
	l.mu.Unlock()
	for _, e := range pending {
		l.send(e)
	}
	l.mu.Lock()
	l.settleLocked()
	l.mu.Unlock()
}

func (l *hubLink) settleLocked() {
	close(l.settled)
	l.settled = make(chan struct{})
}

// setHold holds back deliveries to the link, or lets them go.
func (l *hubLink) setHold(hold bool) {
	l.mu.Lock()
	l.hold = hold
	l.mu.Unlock()
	l.signal()
}

func (l *hubLink) deliver() {
	defer close(l.done)
	for range l.wake {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return
		}
		var batch []events.Event
		if !l.hold {
			batch, l.inbox = l.inbox, nil
		}
		l.mu.Unlock()
		for _, e := range batch {
			l.bus.Publish(e.Type, e)
		}
	}
}

func (l *hubLink) Flush(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.lost {
			l.mu.Unlock()
			return errHubDown
		}
		if len(l.pending) == 0 || l.closed {
			l.mu.Unlock()
			return nil
		}
		settled := l.settled
		l.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *hubLink) Stats() events.TransportStats { return events.TransportStats{} }

func (l *hubLink) Close(context.Context) error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.settleLocked()
	}
	l.mu.Unlock()
	l.signal()
	<-l.done
	l.h.mu.Lock()
	delete(l.h.links, l.origin)
	l.h.mu.Unlock()
	return nil
}

func (h *hub) link(eng *roomstore.Engine) *hubLink {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.links[eng.ID()]
}

// openShared opens an engine on store with WithWatch (scanning every
// interval) and h as its transport, and records what its subscriber gets
// from New on. It does not wait for the first scan.
func openShared(t *testing.T, store backend.Backend, h *hub, interval time.Duration) (*roomstore.Engine, *recorder) {
	t.Helper()
	eng, err := roomstore.New(store, roomstore.WithWatch(roomstore.Watch{Scan: interval}), roomstore.WithEventTransport(h), roomstore.WithStoreID("shared"),
		roomstore.WithLogger(slog.New(slog.DiscardHandler))) // the faults are the tests'
	if err != nil {
		t.Fatal(err)
	}
	rec := record(t, eng)
	t.Cleanup(func() { shutdown(t, eng) })
	return eng, rec
}

func shutdown(t *testing.T, eng *roomstore.Engine) {
	t.Helper()
	if err := eng.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func waitWatching(t *testing.T, eng *roomstore.Engine) {
	t.Helper()
	if err := eng.WaitWatching(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// told returns "TYPE PATH by PARTICIPANT" for each event, sorted.
func told(evs []events.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Type+" "+ev.Path+" by "+ev.ParticipantID)
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// TestOneEngineScansAtATimeAndAnotherTakesOverWhenItGoes runs two engines
// of one store that share a coordinator: the first to end its first scan
// holds the scan lease and runs every periodic scan, the other leaves
// them; an outside change is one event on each; when the holder shuts
// down the other scans from its next interval, and when the holder dies
// (it can no longer renew) the other takes over once the lease expires,
// within three intervals.
func TestOneEngineScansAtATimeAndAnotherTakesOverWhenItGoes(t *testing.T) {
	for _, end := range []string{"shutdown", "death"} {
		t.Run(end, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, store := newHub(), backend_mem.New()
				a, recA := openShared(t, store, h, time.Minute)
				waitWatching(t, a)
				synctest.Wait()
				b, recB := openShared(t, store, h, time.Minute)
				waitWatching(t, b)
				synctest.Wait()
				if !a.Stats().Watch.Holder || b.Stats().Watch.Holder {
					t.Fatalf("holders after the first scans: a %v, b %v", a.Stats().Watch.Holder, b.Stats().Watch.Holder)
				}

				time.Sleep(3*time.Minute + time.Second)
				putRaw(t, store, "outside.txt", "x")
				time.Sleep(time.Minute)
				synctest.Wait()
				sa, sb := a.Stats().Watch, b.Stats().Watch
				if sa.Scans != 5 || sa.Left != 0 || sb.Scans != 1 || sb.Left != 4 {
					t.Fatalf("after four intervals: a %+v, b %+v; want a scanning at each, b leaving each", sa, sb)
				}
				for name, rec := range map[string]*recorder{"a": recA, "b": recB} {
					if got := told(rec.events()); got != "file.updated outside.txt by " {
						t.Errorf("%s was told %q, want the outside change once", name, got)
					}
				}
				if h.saveCount() < 5 {
					t.Errorf("%d saves; want one after each of the holder's scans", h.saveCount())
				}

				gone := time.Now()
				if end == "shutdown" {
					shutdown(t, a)
				} else {
					h.crash(a.ID())
				}
				for !b.Stats().Watch.Holder {
					if time.Since(gone) > 3*time.Minute {
						t.Fatalf("b took no lease within three intervals of a's %s", end)
					}
					time.Sleep(time.Second)
					synctest.Wait()
				}
				took := time.Since(gone)
				scans := b.Stats().Watch.Scans
				if scans != 2 {
					t.Errorf("b ran %d scans by the time it took the lease, want its first and one", scans)
				}
				if end == "shutdown" && took > time.Minute {
					t.Errorf("b took the lease %v after a's shutdown, want its next interval", took)
				}
				if end == "death" && took < time.Minute {
					t.Errorf("b took the lease %v after a's death: before it expired", took)
				}
				putRaw(t, store, "later.txt", "y")
				time.Sleep(time.Minute)
				synctest.Wait()
				if got := told(recB.events()); got != "file.updated later.txt by , file.updated outside.txt by " {
					t.Errorf("b was told %q", got)
				}
			})
		})
	}
}

// TestEveryEngineScansWhileTheCoordinatorIsOutOfReach: when the lease
// cannot be taken, each engine scans at every interval, and still tells
// each outside change once.
func TestEveryEngineScansWhileTheCoordinatorIsOutOfReach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, store := newHub(), backend_mem.New()
		h.allDown = true
		a, recA := openShared(t, store, h, time.Minute)
		b, recB := openShared(t, store, h, time.Minute)
		waitWatching(t, a)
		waitWatching(t, b)
		putRaw(t, store, "outside.txt", "x")
		time.Sleep(2*time.Minute + time.Second)
		synctest.Wait()
		for name, eng := range map[string]*roomstore.Engine{"a": a, "b": b} {
			if s := eng.Stats().Watch; s.Scans != 3 || s.Left != 0 || s.Holder || s.Saved != 0 {
				t.Errorf("%s: %+v, want a scan at each interval and no lease", name, s)
			}
		}
		for name, rec := range map[string]*recorder{"a": recA, "b": recB} {
			if got := told(rec.events()); got != "file.updated outside.txt by " {
				t.Errorf("%s was told %q, want the outside change once", name, got)
			}
		}
	})
}

// TestAnEngineReportsWhatChangedWhileNoEngineRan: an engine saves what it
// knows at Shutdown; the store changes while no engine runs; the next
// engine's first scan reports each of those changes once, and nothing of
// what did not change.
func TestAnEngineReportsWhatChangedWhileNoEngineRan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, store := newHub(), backend_mem.New()
		for _, p := range []string{"kept.txt", "changed.txt", "removed.txt", "dir/deep.txt"} {
			putRaw(t, store, p, "1")
		}
		a, _ := openShared(t, store, h, time.Minute)
		waitWatching(t, a)
		if _, err := a.Upload(roomstore.WithParticipant(t.Context(), "alice"), "own.txt", strings.NewReader("o"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		shutdown(t, a)

		putRaw(t, store, "changed.txt", "22")
		putRaw(t, store, "dir/new.txt", "n")
		if err := store.Remove(t.Context(), "removed.txt", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		h.loadGate = make(chan struct{}) // until b's subscriber is there
		b, recB := openShared(t, store, h, time.Minute)
		close(h.loadGate)
		waitWatching(t, b)
		synctest.Wait()
		want := "file.deleted removed.txt by , file.updated changed.txt by , file.updated dir/new.txt by "
		if got := told(recB.events()); got != want {
			t.Fatalf("b's first scan told %q, want %q", got, want)
		}
		if !b.Stats().Watch.Restored {
			t.Errorf("b did not start from the saved state: %+v", b.Stats().Watch)
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if got := told(recB.events()); got != want {
			t.Fatalf("after three intervals b was told %q, want %q", got, want)
		}
	})
}

// TestACommitWhoseEventWasNeverPublishedIsToldAfterARestart: the holder
// commits while its transport cannot publish, so that the save after its
// next scan waits for the event and gives up; the holder then dies with
// the event unpublished. The next engine reports that commit, as an
// outside change, because the saved state never held it.
func TestACommitWhoseEventWasNeverPublishedIsToldAfterARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, store := newHub(), backend_mem.New()
		putRaw(t, store, "old.txt", "1")
		a, _ := openShared(t, store, h, time.Minute)
		waitWatching(t, a)
		synctest.Wait()
		if a.Stats().Watch.Saved != 1 {
			t.Fatalf("a did not save after its first scan: %+v", a.Stats().Watch)
		}
		h.link(a).setStall(true)
		if _, err := a.Upload(roomstore.WithParticipant(t.Context(), "alice"), "lost.txt", strings.NewReader("l"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if s := a.Stats().Watch; s.Saved != 1 || s.Scans != 3 || !s.Holder {
			t.Fatalf("a saved with its event unpublished: %+v", s)
		}
		h.crash(a.ID())
		shutdown(t, a)

		h.loadGate = make(chan struct{})
		b, recB := openShared(t, store, h, time.Minute)
		close(h.loadGate)
		waitWatching(t, b)
		synctest.Wait()
		if got, want := told(recB.events()), "file.updated lost.txt by "; got != want {
			t.Fatalf("b's first scan told %q, want %q; b %+v, %d saves", got, want, b.Stats().Watch, h.saveCount())
		}
	})
}

// TestChangesDuringTheFirstScanOfARestoredEngineAreToldOnce: while a new
// engine loads the saved state, it changes files itself and another engine
// changes others; it then reports what changed before it started, and
// every change is one event on each engine, with its participant where
// an engine made it.
func TestChangesDuringTheFirstScanOfARestoredEngineAreToldOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, store := newHub(), backend_mem.New()
		putRaw(t, store, "kept.txt", "1")
		putRaw(t, store, "theirs.txt", "1")
		a, recA := openShared(t, store, h, time.Minute)
		waitWatching(t, a)
		synctest.Wait()

		h.loadGate = make(chan struct{})
		putRaw(t, store, "outside.txt", "o") // before b starts, not yet scanned by a
		b, recB := openShared(t, store, h, time.Minute)
		alice := roomstore.WithParticipant(t.Context(), "alice")
		bob := roomstore.WithParticipant(t.Context(), "bob")
		if _, err := b.Upload(alice, "mine.txt", strings.NewReader("m"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(alice, "kept.txt"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Upload(bob, "theirs.txt", strings.NewReader("22"), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		close(h.loadGate)
		waitWatching(t, b)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		want := "file.deleted kept.txt by alice, file.updated mine.txt by alice, file.updated outside.txt by , file.updated theirs.txt by bob"
		for name, rec := range map[string]*recorder{"a": recA, "b": recB} {
			if got := told(rec.events()); got != want {
				t.Errorf("%s was told %q, want %q", name, got, want)
			}
		}
	})
}

// TestAnEventOfAVersionTheSavedStateHoldsIsStillDelivered: another engine's
// event arrives after the new engine started from a state that already
// holds that event's version; the new engine's subscribers get the event
// all the same, once, and its first scan does not report the change.
func TestAnEventOfAVersionTheSavedStateHoldsIsStillDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, store := newHub(), backend_mem.New()
		a, _ := openShared(t, store, h, 2*time.Second)
		waitWatching(t, a)
		synctest.Wait()

		h.loadGate = make(chan struct{})
		b, recB := openShared(t, store, h, 2*time.Second)
		h.link(b).setHold(true)
		if _, err := a.Upload(roomstore.WithParticipant(t.Context(), "bob"), "late.txt", strings.NewReader("l"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		saves := h.saveCount()
		time.Sleep(2*time.Second + time.Millisecond) // a scans and saves
		synctest.Wait()
		if h.saveCount() == saves {
			t.Fatal("a did not save after its scan")
		}
		close(h.loadGate)
		waitWatching(t, b)
		synctest.Wait()
		if got := told(recB.events()); got != "" {
			t.Fatalf("b's first scan told %q, want nothing", got)
		}
		h.link(b).setHold(false)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got, want := told(recB.events()), "file.updated late.txt by bob"; got != want {
			t.Fatalf("b was told %q, want %q", got, want)
		}
	})
}

// TestADamagedStateIsIgnored: a state that does not decode leaves the
// first scan to learn the store, silently.
func TestADamagedStateIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, store := newHub(), backend_mem.New()
		putRaw(t, store, "a.txt", "1")
		h.states["shared/known"] = []byte("not a state")
		b, recB := openShared(t, store, h, time.Minute)
		waitWatching(t, b)
		synctest.Wait()
		if s := b.Stats().Watch; s.Restored {
			t.Errorf("restored from a damaged state: %+v", s)
		}
		if got := told(recB.events()); got != "" {
			t.Errorf("b was told %q", got)
		}
	})
}
