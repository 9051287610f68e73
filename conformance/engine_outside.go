package conformance

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
)

// watched is a fresh env whose engine has WithWatch with no periodic scan
// and no native feed, so that only its Scan calls look at the store.
func watched(t *testing.T, h Harness) *env {
	t.Helper()
	e := fresh(t, h, roomstore.WithWatch(roomstore.Watch{Scan: -1, NoNative: true}))
	noErr(t, "WaitWatching", e.WaitWatching(t.Context()))
	return e
}

// rawPut commits content at p through b, as another program would.
func rawPut(t *testing.T, b backend.Backend, p, content string) {
	t.Helper()
	w, err := b.Create(t.Context(), p, backend.WriteOptions{})
	noErr(t, "Create", err)
	noErr(t, "Write", w.Write(t.Context(), []byte(content)))
	if _, err := w.Commit(t.Context()); err != nil {
		_ = w.Abort(context.Background())
		t.Fatalf("Commit %q: %v", p, err)
	}
}

// fileEvents returns the events other than the barrier's, as "type path
// by participant", sorted.
func fileEvents(e *env) []string {
	var out []string
	for _, ev := range e.rec.snapshot() {
		s := ev.Type + " " + ev.Path
		if ev.SourcePath != "" {
			s += " from " + ev.SourcePath
		}
		out = append(out, s+" by "+ev.ParticipantID)
	}
	slices.Sort(out)
	return out
}

var outsideCases = []tcase{
	{"a scan tells each change made behind the engine's back once, without a participant", func(t *testing.T, h Harness) {
		b := h.New(t)
		rawPut(t, b, "kept.txt", "k")
		rawPut(t, b, "changed.txt", "1")
		rawPut(t, b, "dir/removed.txt", "r")
		e := newEnv(t, b, roomstore.WithWatch(roomstore.Watch{Scan: -1, NoNative: true}))
		noErr(t, "WaitWatching", e.WaitWatching(t.Context()))
		other := h.Reopen(t, b)
		rawPut(t, other, "new/file.txt", "n")
		rawPut(t, other, "changed.txt", "two")
		noErr(t, "Remove", other.Remove(t.Context(), "dir/removed.txt", backend.RemoveOptions{}))
		// Another engine that never publishes to this one, as if it died
		// between its commit and its publish.
		dead, err := roomstore.New(other)
		noErr(t, "New", err)
		defer dead.Shutdown(context.Background())
		_, err = dead.Upload(roomstore.WithParticipant(t.Context(), "bob"), "dead.txt", strings.NewReader("d"), roomstore.OpenOptions{})
		noErr(t, "Upload", err)
		e.none(t, "before the scan")
		noErr(t, "Scan", e.Scan(t.Context()))
		e.barrier(t)
		want := []string{"file.deleted dir/removed.txt by ", "file.updated changed.txt by ", "file.updated dead.txt by ", "file.updated new/file.txt by "}
		if got := fileEvents(e); !slices.Equal(got, want) {
			t.Fatalf("events %q, want %q", got, want)
		}
		for _, ev := range e.rec.snapshot() {
			if ev.Type != roomstore.EventFileUpdated {
				continue
			}
			info, err := e.Stat(t.Context(), ev.Path)
			noErr(t, "Stat", err)
			if ev.Size != info.Size || ev.ETag == "" || ev.ETag != info.ETag {
				t.Errorf("%s: event size %d etag %q, Stat says %d %q", ev.Path, ev.Size, ev.ETag, info.Size, info.ETag)
			}
		}
		noErr(t, "Scan", e.Scan(t.Context()))
		e.barrier(t)
		if got := fileEvents(e); len(got) != len(want) {
			t.Fatalf("a second scan told again: %q", got)
		}
	}},
	{"a scan never tells the engine's own changes again", func(t *testing.T, h Harness) {
		e := watched(t, h)
		e.put(t, "a.txt", []byte("a"), overwrite)
		e.put(t, "b.txt", []byte("b"), overwrite)
		e.put(t, "a.txt", []byte("aa"), roomstore.OpenOptions{})
		noErr(t, "Move", e.Move(e.ctx, "b.txt", "d/c.txt", roomstore.MoveOptions{}))
		noErr(t, "Delete", e.Delete(e.ctx, "a.txt"))
		e.barrier(t)
		before := fileEvents(e)
		want := []string{"file.deleted a.txt by alice", "file.moved d/c.txt from b.txt by alice", "file.updated a.txt by alice", "file.updated a.txt by alice", "file.updated b.txt by alice"}
		if !slices.Equal(before, want) {
			t.Fatalf("own events %q, want %q", before, want)
		}
		noErr(t, "Scan", e.Scan(t.Context()))
		e.barrier(t)
		if got := fileEvents(e); !slices.Equal(got, want) {
			t.Fatalf("after a scan: %q, want %q", got, want)
		}
	}},
	{"a scanner's tags are those of Stat", func(t *testing.T, h Harness) {
		b := h.New(t)
		rawPut(t, b, "a.txt", "a")
		rawPut(t, b, "d/e/f.txt", "ff")
		s, ok := b.(backend.Scanner)
		if !ok {
			// The engine's scan walks List, whose ETags must be Stat's.
			for info, err := range b.List(t.Context(), "") {
				noErr(t, "List", err)
				if info.IsFolder {
					continue
				}
				st, err := b.Stat(t.Context(), info.Path)
				noErr(t, "Stat", err)
				if info.ETag == "" || info.ETag != st.ETag {
					t.Errorf("%s: listed ETag %q, Stat's %q", info.Path, info.ETag, st.ETag)
				}
			}
			return
		}
		got := map[string]backend.Info{}
		for info, err := range s.Scan(t.Context(), "") {
			noErr(t, "Scan", err)
			got[info.Path] = info
		}
		if len(got) != 2 {
			t.Fatalf("Scan yielded %v, want a.txt and d/e/f.txt", got)
		}
		for p, info := range got {
			st, err := b.Stat(t.Context(), p)
			noErr(t, "Stat", err)
			if info.Size != st.Size || info.ETag != s.ScanTag(st.ETag) || info.ETag == "" {
				t.Errorf("%s: scanned %+v, Stat %+v (tag %q)", p, info, st, s.ScanTag(st.ETag))
			}
		}
		n := 0
		for info, err := range s.Scan(t.Context(), "d") {
			noErr(t, "Scan d", err)
			if info.Path != "d/e/f.txt" {
				t.Errorf("Scan of d yielded %q", info.Path)
			}
			n++
		}
		if n != 1 {
			t.Errorf("Scan of d yielded %d files, want 1", n)
		}
	}},
}
