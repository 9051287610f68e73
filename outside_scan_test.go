package roomstore_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/events"
)

func putRaw(t *testing.T, b backend.Backend, p, content string) {
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

func names(evs []events.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Type+" "+ev.Path+" by "+ev.ParticipantID)
	}
	return strings.Join(s, ",")
}

// TestTheScanFindsOutsideChangesWithinItsInterval changes a store that
// has no feed behind the engine's back, and by another engine that never
// publishes (as if it died after its commit), and checks that the scan
// tells each change once, no sooner than its interval and no later, and
// the engine's own changes never again.
func TestTheScanFindsOutsideChangesWithinItsInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := backend_mem.New()
		putRaw(t, store, "kept.txt", "k")
		putRaw(t, store, "changed.txt", "1")
		putRaw(t, store, "removed.txt", "r")
		eng, err := roomstore.New(store, roomstore.WithWatch(roomstore.Watch{Scan: time.Minute}))
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Shutdown(context.Background())
		if err := eng.WaitWatching(t.Context()); err != nil {
			t.Fatal(err)
		}
		rec := record(t, eng)
		other, err := roomstore.New(store) // another engine, whose events never reach eng
		if err != nil {
			t.Fatal(err)
		}
		defer other.Shutdown(context.Background())

		start := time.Now()
		putRaw(t, store, "new.txt", "n")
		putRaw(t, store, "changed.txt", "22")
		if err := store.Remove(t.Context(), "removed.txt", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Upload(roomstore.WithParticipant(t.Context(), "bob"), "dead/replica.txt", strings.NewReader("x"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute - time.Since(start) - time.Millisecond)
		synctest.Wait()
		if got := rec.events(); len(got) != 0 {
			t.Fatalf("before the first interval: %s", names(got))
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got := rec.events()
		want := "file.deleted removed.txt by ,file.updated changed.txt by ,file.updated dead/replica.txt by ,file.updated new.txt by "
		if g := names(slices.SortedFunc(slices.Values(got), func(a, b events.Event) int { return strings.Compare(a.Type+a.Path, b.Type+b.Path) })); g != want {
			t.Fatalf("after the first interval: %s, want %s", g, want)
		}
		for _, ev := range got {
			if ev.Type == roomstore.EventFileUpdated && (ev.ETag == "" || ev.Size == 0) {
				t.Errorf("%s: no ETag or size: %+v", ev.Path, ev)
			}
		}
		seen := len(got)

		// The engine's own changes are told once, by the engine.
		ctx := roomstore.WithParticipant(t.Context(), "alice")
		if _, err := eng.Upload(ctx, "own.txt", strings.NewReader("o"), roomstore.OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := eng.Move(ctx, "kept.txt", "moved.txt", roomstore.MoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := eng.Delete(ctx, "new.txt"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		want = "file.updated own.txt by alice,file.moved moved.txt by alice,file.deleted new.txt by alice"
		if g := names(rec.events()[seen:]); g != want {
			t.Fatalf("own changes and three scans: %s, want %s", g, want)
		}
	})
}
