package roomstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

// resumeEngine is an engine on a fresh memory store, shut down when t
// ends.
func resumeEngine(t *testing.T, opts ...roomstore.Option) *roomstore.Engine {
	t.Helper()
	e, err := roomstore.New(backend_mem.New(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e
}

// upload writes path through the engine: one file.updated.
func upload(t *testing.T, e *roomstore.Engine, path string) {
	t.Helper()
	if _, err := e.Upload(t.Context(), path, strings.NewReader(path), roomstore.OpenOptions{Overwrite: true}); err != nil {
		t.Fatalf("Upload %s: %v", path, err)
	}
}

// stream is what a subscription gets, each event as its type and path.
type stream chan roomstore.Event

// next returns the next event, within 10s.
func (s stream) next(t *testing.T) roomstore.Event {
	t.Helper()
	select {
	case ev := <-s:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for an event")
		return roomstore.Event{}
	}
}

// take returns the next n events as "type path" lines, within 10s each.
func (s stream) take(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	for range n {
		select {
		case ev := <-s:
			got = append(got, ev.Type+" "+ev.Path)
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out after %v", got)
		}
	}
	return got
}

func TestSubscribeAfterDeliversWhatTheSubscriberMissedThenTheLiveEvents(t *testing.T) {
	e := resumeEngine(t)
	start := e.EventPosition()
	first := make(stream, 16)
	sub := e.Subscribe(func(ev roomstore.Event) { first <- ev })
	upload(t, e, "a")
	upload(t, e, "b")
	seen := first.next(t) // the subscriber handled a, and goes away
	sub.Unsubscribe()
	if err := e.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	upload(t, e, "c")

	again := make(stream, 16)
	if _, err := e.SubscribeAfter(seen.Position, func(ev roomstore.Event) { again <- ev }); err != nil {
		t.Fatal(err)
	}
	deleted := make(stream, 16)
	if _, err := e.SubscribeAfter(start, func(ev roomstore.Event) { deleted <- ev }, roomstore.EventFileDeleted); err != nil {
		t.Fatal(err)
	}
	upload(t, e, "d")
	if got, want := fmt.Sprint(again.take(t, 4)), "[file.updated b file.deleted a file.updated c file.updated d]"; got != want {
		t.Fatalf("resumed after a: %s, want %s", got, want)
	}
	if got := fmt.Sprint(deleted.take(t, 1)); got != "[file.deleted a]" {
		t.Fatalf("a subscriber of deletions from the start: %s", got)
	}
	evs, err := e.EventsAfter(seen.Position, roomstore.EventFileUpdated)
	if err != nil || len(evs) != 3 || evs[0].Path != "b" || evs[2].Path != "d" {
		t.Fatalf("EventsAfter a, of updates: %+v, %v; want b, c and d", evs, err)
	}
}

func TestSubscribeAfterAnotherEnginesPositionStartsWithOneOverflow(t *testing.T) {
	e := resumeEngine(t)
	other := resumeEngine(t)
	upload(t, e, "a")
	upload(t, other, "b")
	got := make(stream, 16)
	live := e.EventPosition()
	if _, err := e.SubscribeAfter(other.EventPosition(), func(ev roomstore.Event) { got <- ev }); err != nil {
		t.Fatal(err)
	}
	upload(t, e, "c")
	o := got.next(t)
	if o.Type != roomstore.EventOverflow || o.Dropped != 0 || o.Position != live {
		t.Fatalf("first event %+v, want an overflow with Dropped 0 at %q", o, live)
	}
	if g := fmt.Sprint(got.take(t, 1)); g != "[file.updated c]" {
		t.Fatalf("then %s, want the live event", g)
	}
}

func TestSubscribeAfterAPositionTheHistoryNoLongerHoldsCountsWhatWasMissed(t *testing.T) {
	e := resumeEngine(t, roomstore.WithEventHistory(2))
	start := e.EventPosition()
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		upload(t, e, p)
	}
	got := make(stream, 16)
	if _, err := e.SubscribeAfter(start, func(ev roomstore.Event) { got <- ev }); err != nil {
		t.Fatal(err)
	}
	if o := got.next(t); o.Type != roomstore.EventOverflow || o.Dropped != 5 {
		t.Fatalf("first event %+v, want an overflow with Dropped 5", o)
	}
	if _, err := roomstore.New(backend_mem.New(), roomstore.WithEventHistory(-1)); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("WithEventHistory(-1): %v, want fs.ErrInvalid", err)
	}
}

func TestSubscribeAfterRefusesWhatItCannotDo(t *testing.T) {
	e := resumeEngine(t)
	h := func(roomstore.Event) {}
	for _, c := range []struct {
		name     string
		position string
		handler  func(roomstore.Event)
		topics   []string
	}{
		{"a malformed position", "not a position", h, nil},
		{"an unknown topic", e.EventPosition(), h, []string{"file.created"}},
		{"the overflow as a topic", "", h, []string{roomstore.EventOverflow}},
		{"a nil handler", "", nil, nil},
	} {
		if sub, err := e.SubscribeAfter(c.position, c.handler, c.topics...); !errors.Is(err, fs.ErrInvalid) || sub != nil {
			t.Errorf("SubscribeAfter with %s: %v, %v; want fs.ErrInvalid", c.name, sub, err)
		}
		if c.handler == nil {
			continue
		}
		if evs, err := e.EventsAfter(c.position, c.topics...); !errors.Is(err, fs.ErrInvalid) || evs != nil {
			t.Errorf("EventsAfter with %s: %v, %v; want fs.ErrInvalid", c.name, evs, err)
		}
	}
	pos := e.EventPosition()
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SubscribeAfter(pos, h); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("SubscribeAfter after Shutdown: %v, want fs.ErrClosed", err)
	}
	if _, err := e.EventsAfter(pos); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("EventsAfter after Shutdown: %v, want fs.ErrClosed", err)
	}
	if p := e.EventPosition(); p != pos {
		t.Errorf("EventPosition after Shutdown: %q, want the last one %q", p, pos)
	}
}
