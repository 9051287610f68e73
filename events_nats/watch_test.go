package events_nats_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/natstest"
)

// scanEvery is the scan interval of these tests: short, for real NATS
// round trips, yet long against a loaded machine's hiccups, since the
// lease lasts two of them.
const scanEvery = 500 * time.Millisecond

// gatedStore holds the first scan of an engine over a store until open is
// closed, by way of a native feed that becomes ready only then, so that a
// test subscribes before anything is reported.
type gatedStore struct {
	*backend_mem.Backend
	open chan struct{}
}

func (g gatedStore) Watch(ctx context.Context, ready func(), _ func(backend.Change)) error {
	select {
	case <-g.open:
		ready()
	case <-ctx.Done():
	}
	<-ctx.Done()
	return ctx.Err()
}

// newWatchedSide is an engine over store with WithWatch (a scan every
// scanEvery) and its own connection and transport to natsURL, with a
// subscriber from New on. It is shut down when the test ends.
func newWatchedSide(t testing.TB, store backend.Backend, natsURL string) *side {
	t.Helper()
	nc, err := nats.Connect(natsURL, events_nats.ConnOptions()...)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	tr, err := events_nats.New(nc, events_nats.WithLogger(quiet))
	if err != nil {
		t.Fatalf("events_nats.New: %v", err)
	}
	eng, err := roomstore.New(store, roomstore.WithWatch(roomstore.Watch{Scan: scanEvery}), roomstore.WithEventTransport(tr), roomstore.WithLogger(quiet))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s := &side{eng: eng, nc: nc, tr: tr, rec: newRecorder()}
	eng.Subscribe(s.rec.handle)
	t.Cleanup(func() { s.shutdown(t) })
	return s
}

func (s *side) watching(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := s.eng.WaitWatching(ctx); err != nil {
		t.Fatal(err)
	}
}

func (s *side) watch() roomstore.WatchStats { return s.eng.Stats().Watch }

func putRaw(t testing.TB, b backend.Backend, p, content string) {
	t.Helper()
	w, err := b.Create(t.Context(), p, backend.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), []byte(content)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// namedStore is a mem:// store of the test's, dropped when it ends.
func namedStore(t testing.TB) *backend_mem.Backend {
	name := strings.TrimPrefix(memStore(), "mem://")
	t.Cleanup(func() { backend_mem.Drop(name) })
	return backend_mem.Named(name)
}

// told returns "TYPE PATH by PARTICIPANT" for each file event, sorted.
func told(evs []events.Event) string {
	var s []string
	for _, ev := range fileEvents(evs) {
		s = append(s, ev.Type+" "+ev.Path+" by "+ev.ParticipantID)
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// TestEnginesOfAStoreTakeTurnsAtTheScan: two engines of one store over
// one NATS server; one holds the scan lease and runs every periodic scan
// while the other leaves each to it; an outside change is one event on
// each. When the holder shuts down, the other takes the lease over at its
// next interval; when the holder dies (its connection gone, it can no
// longer renew), the other takes it over once it expires, within three
// intervals; either way the other then scans and tells what changed.
func TestEnginesOfAStoreTakeTurnsAtTheScan(t *testing.T) {
	for _, end := range []string{"shutdown", "death"} {
		t.Run(end, func(t *testing.T) {
			srv := natstest.Start(t)
			store := namedStore(t)
			a := newWatchedSide(t, store, srv.URL())
			a.watching(t)
			waitFor(t, "a to hold the lease after its first scan", func() bool { return a.watch().Holder })
			b := newWatchedSide(t, store, srv.URL())
			b.watching(t)
			waitFor(t, "b to leave four scans to a", func() bool { return b.watch().Left >= 4 })
			if sa, sb := a.watch(), b.watch(); !sa.Holder || sb.Holder || sb.Scans != 1 || sa.Left != 0 {
				t.Fatalf("a %+v, b %+v: want a holding and scanning, b leaving each scan to it", sa, sb)
			}

			putRaw(t, store, "outside.txt", "x")
			const want = "file.updated outside.txt by "
			for _, s := range []*side{a, b} {
				s.rec.waitUntil(t, "the outside change", func(evs []events.Event) bool { return len(fileEvents(evs)) > 0 })
			}
			scans := a.watch().Scans
			waitFor(t, "two more scans of a", func() bool { return a.watch().Scans >= scans+2 })
			for name, s := range map[string]*side{"a": a, "b": b} {
				if got := told(s.rec.snapshot()); got != want {
					t.Errorf("%s was told %q, want %q", name, got, want)
				}
			}
			if sb := b.watch(); sb.Scans != 1 {
				t.Errorf("b scanned while a held the lease: %+v", sb)
			}

			gone := time.Now()
			if end == "shutdown" {
				a.shutdown(t)
			} else {
				a.nc.Close()
			}
			waitFor(t, "b to take the lease over", func() bool { return b.watch().Holder })
			if took, bound := time.Since(gone), 3*scanEvery; took > bound+2*time.Second {
				t.Errorf("b took the lease %v after a's %s; the bound is %v", took, end, bound)
			}
			waitFor(t, "b to scan", func() bool { return b.watch().Scans >= 2 })
			putRaw(t, store, "later.txt", "y")
			b.rec.waitUntil(t, "the later change", func(evs []events.Event) bool { return len(fileEvents(evs)) > 1 })
			scans = b.watch().Scans
			waitFor(t, "another scan of b", func() bool { return b.watch().Scans > scans })
			if got := told(b.rec.snapshot()); got != "file.updated later.txt by , "+want {
				t.Errorf("b was told %q", got)
			}
		})
	}
}

// TestAnEngineReportsWhatChangedWhileNoEngineOfItsStoreRan: an engine
// saves what it knows, through NATS, and shuts down; the store changes;
// the next engine loads that state and its first scan reports each change
// once, and its later scans nothing more.
func TestAnEngineReportsWhatChangedWhileNoEngineOfItsStoreRan(t *testing.T) {
	srv := natstest.Start(t)
	store := namedStore(t)
	for _, p := range []string{"kept.txt", "changed.txt", "removed.txt"} {
		putRaw(t, store, p, "1")
	}
	a := newWatchedSide(t, store, srv.URL())
	a.watching(t)
	a.write(t, "alice", "own.txt", "o")
	waitFor(t, "a to save what it knows", func() bool { return a.watch().Saved >= 1 })
	a.shutdown(t)

	putRaw(t, store, "changed.txt", "22")
	putRaw(t, store, "new.txt", "n")
	if err := store.Remove(t.Context(), "removed.txt", backend.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	gated := gatedStore{Backend: store, open: make(chan struct{})}
	b := newWatchedSide(t, gated, srv.URL())
	close(gated.open)
	b.watching(t)
	const want = "file.deleted removed.txt by , file.updated changed.txt by , file.updated new.txt by "
	b.rec.waitUntil(t, "three outside changes", func(evs []events.Event) bool { return len(fileEvents(evs)) >= 3 })
	scans := b.watch().Scans
	waitFor(t, "two more scans of b", func() bool { return b.watch().Scans >= scans+2 })
	// a's own event may reach b too: b's transport delivers from a second
	// before b attached. It is a's, never one of b's outside events.
	outside := slices.DeleteFunc(b.rec.snapshot(), func(ev events.Event) bool { return ev.ParticipantID != "" })
	if got := told(outside); got != want {
		t.Fatalf("b told %q, want %q", got, want)
	}
	if sb := b.watch(); !sb.Restored || sb.Outside != 3 {
		t.Errorf("b %+v: want it restored, with three outside events", sb)
	}
}
