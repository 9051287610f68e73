package roomstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/events"
)

// recorder collects the events a subscriber gets.
type recorder struct {
	mu     sync.Mutex
	got    []events.Event
	notify chan struct{}
}

func record(t *testing.T, eng *roomstore.Engine) *recorder {
	t.Helper()
	r := &recorder{notify: make(chan struct{}, 1)}
	sub := eng.Subscribe(func(ev events.Event) {
		r.mu.Lock()
		r.got = append(r.got, ev)
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
	})
	t.Cleanup(sub.Unsubscribe)
	return r
}

func (r *recorder) events() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.got...)
}

// waitFor waits until ok holds for the events so far, failing t after d.
func (r *recorder) waitFor(t *testing.T, d time.Duration, what string, ok func([]events.Event) bool) []events.Event {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		got := r.events()
		if ok(got) {
			return got
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("%s: not within %v; events: %s", what, d, describe(got))
		}
	}
}

func describe(evs []events.Event) string {
	var b strings.Builder
	if len(evs) > 20 {
		fmt.Fprintf(&b, "%d events, the last 20:", len(evs))
		evs = evs[len(evs)-20:]
	}
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n  %s %s", ev.Type, ev.Path)
		if ev.SourcePath != "" {
			fmt.Fprintf(&b, " from %s", ev.SourcePath)
		}
		if ev.ParticipantID != "" {
			fmt.Fprintf(&b, " by %s", ev.ParticipantID)
		}
	}
	return b.String()
}

func openWatched(t *testing.T, dir string, w roomstore.Watch) *roomstore.Engine {
	t.Helper()
	eng, err := roomstore.OpenURL(t.Context(), "file://"+dir, roomstore.WithWatch(w))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := eng.WaitWatching(ctx); err != nil {
		t.Fatal(err)
	}
	return eng
}

// TestOutsideWritesToADiskStoreBecomeEventsOnce changes a file:// store
// with plain system calls, and through the engine, and checks that each
// change is one event: the outside ones without a participant, the
// engine's own once, with its participant.
func TestOutsideWritesToADiskStoreBecomeEventsOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "before.txt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng := openWatched(t, dir, roomstore.Watch{Settle: 20 * time.Millisecond, Scan: -1})
	rec := record(t, eng)
	host := func(p string) string { return filepath.Join(dir, filepath.FromSlash(p)) }
	type step struct {
		what string
		do   func() error
		want []string // "type path" of the events it causes, in order
	}
	steps := []step{
		{"create", func() error { return os.WriteFile(host("a.txt"), []byte("one"), 0o644) }, []string{"file.updated a.txt"}},
		{"overwrite", func() error { return os.WriteFile(host("a.txt"), []byte("two!"), 0o644) }, []string{"file.updated a.txt"}},
		{"rename", func() error { return os.Rename(host("a.txt"), host("b.txt")) }, []string{"file.deleted a.txt", "file.updated b.txt"}},
		{"remove", func() error { return os.Remove(host("b.txt")) }, []string{"file.deleted b.txt"}},
		{"folder", func() error {
			if err := os.MkdirAll(host("d/e"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(host("d/e/f.txt"), []byte("deep"), 0o644)
		}, []string{"file.updated d/e/f.txt"}},
		{"folder rename", func() error { return os.Rename(host("d"), host("g")) }, []string{"file.deleted d/e/f.txt", "file.updated g/e/f.txt"}},
		{"folder removal", func() error { return os.RemoveAll(host("g")) }, []string{"file.deleted g/e/f.txt"}},
		{"write in the moved folder", func() error { return os.WriteFile(host("before.txt"), []byte("new"), 0o644) }, []string{"file.updated before.txt"}},
	}
	seen := 0
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		got := rec.waitFor(t, 10*time.Second, s.what, func(evs []events.Event) bool { return len(evs) >= seen+len(s.want) })
		var names []string
		for _, ev := range got[seen:] {
			if ev.ParticipantID != "" {
				t.Errorf("%s: outside event %s %s has participant %q", s.what, ev.Type, ev.Path, ev.ParticipantID)
			}
			names = append(names, ev.Type+" "+ev.Path)
		}
		if strings.Join(slices.Sorted(slices.Values(names)), ",") != strings.Join(slices.Sorted(slices.Values(s.want)), ",") {
			t.Fatalf("%s: events %v, want %v", s.what, names, s.want)
		}
		seen = len(got)
	}
	// The engine's own change is told once, with its participant, though
	// the watch sees its rename into place too.
	ctx := roomstore.WithParticipant(t.Context(), "alice")
	if _, err := eng.Upload(ctx, "own.txt", strings.NewReader("mine"), roomstore.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := eng.Delete(ctx, "before.txt"); err != nil {
		t.Fatal(err)
	}
	// A marker written after them: once its event has come, any second
	// event of the engine's own changes would have come before it.
	if err := os.WriteFile(host("marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := rec.waitFor(t, 10*time.Second, "marker", func(evs []events.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Path == "marker"
	})
	want := []string{"file.updated own.txt by alice", "file.deleted before.txt by alice", "file.updated marker by "}
	var names []string
	for _, ev := range got[seen:] {
		names = append(names, ev.Type+" "+ev.Path+" by "+ev.ParticipantID)
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("events %q, want %q", names, want)
	}
}

// gatedFeed passes on what its store's own watch reports, but only once
// open is closed: until then the watch's reader stalls, as a busy engine's
// would, and the kernel's queue fills.
type gatedFeed struct {
	inner backend.Watcher
	ready chan struct{}
	open  chan struct{}
	lost  atomic.Int64
}

func (g *gatedFeed) Watch(ctx context.Context, ready func(), changed func(backend.Change)) error {
	return g.inner.Watch(ctx, func() { ready(); close(g.ready) }, func(c backend.Change) {
		select {
		case <-g.open:
		case <-ctx.Done():
			return
		}
		if c.Lost {
			g.lost.Add(1)
		}
		changed(c)
	})
}

// TestAnInotifyOverflowEndsInARescanThatMissesNothing makes more changes
// than the kernel's inotify queue holds while the watch is not read, and
// checks that every file still becomes exactly one event.
func TestAnInotifyOverflowEndsInARescanThatMissesNothing(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Fatalf("this test needs Linux's inotify: %v", err)
	}
	queue, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	n := queue + backend_disk.WatchBuffer + 1000 // past the kernel's queue and fsnotify's
	dir := t.TempDir()
	store, err := backend.Open(t.Context(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	feed := &gatedFeed{inner: store.(backend.Watcher), ready: make(chan struct{}), open: make(chan struct{})}
	eng, err := roomstore.New(store, roomstore.WithEventBuffer(2*n), roomstore.WithWatch(roomstore.Watch{Settle: 10 * time.Millisecond, Scan: -1, NoNative: true, Feeds: []backend.Watcher{feed}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := eng.WaitWatching(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-feed.ready:
	case <-ctx.Done():
		t.Fatal("the feed never began to watch")
	}
	rec := record(t, eng)
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%05d", i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	close(feed.open)
	got := rec.waitFor(t, 2*time.Minute, "an event per file", func(evs []events.Event) bool { return len(evs) >= n })
	if feed.lost.Load() == 0 {
		t.Fatalf("the burst of %d changes did not overflow the kernel's queue of %d", n, queue)
	}
	once := map[string]int{}
	for _, ev := range got {
		if ev.Type != roomstore.EventFileUpdated {
			t.Fatalf("unexpected %s %s", ev.Type, ev.Path)
		}
		once[ev.Path]++
	}
	for i := range n {
		if c := once[fmt.Sprintf("f%05d", i)]; c != 1 {
			t.Fatalf("f%05d: %d events, want 1", i, c)
		}
	}
	// Nothing more comes: a marker's event is the next one.
	if err := os.WriteFile(filepath.Join(dir, "marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got = rec.waitFor(t, 30*time.Second, "the marker", func(evs []events.Event) bool { return len(evs) > n })
	if len(got) != n+1 || got[n].Path != "marker" {
		t.Fatalf("after the burst: %s", describe(got[n:]))
	}
}
