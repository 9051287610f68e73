package conformance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

// offCalls counts calls of offHandler by path: Off is exact only for
// top-level functions, so the case that checks it needs one.
var offCalls sync.Map // path -> *atomic.Int32

func offHandler(path string) {
	if c, ok := offCalls.Load(path); ok {
		c.(*atomic.Int32).Add(1)
	}
}

var eventCases = []tcase{
	{"close publishes one file.updated with the participant and size", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		before := time.Now()
		e.put(t, "a/f.txt", []byte("12345"), overwrite)
		evs := e.await(t, roomstore.EventFileUpdated, "a/f.txt", 1)
		if len(evs) != 1 {
			t.Fatalf("%d events, want 1", len(evs))
		}
		ev := evs[0]
		if ev.Type != roomstore.EventFileUpdated || ev.ParticipantID != "alice" || ev.Size != 5 || ev.Time.Before(before.Add(-time.Second)) {
			t.Fatalf("event %+v", ev)
		}
	}},
	{"delete publishes one file.deleted with the participant", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("x"), overwrite)
		noErr(t, "Delete", e.Delete(roomstore.WithParticipant(t.Context(), "bob"), "f"))
		evs := e.await(t, roomstore.EventFileDeleted, "f", 1)
		if len(evs) != 1 || evs[0].ParticipantID != "bob" {
			t.Fatalf("events %+v, want one by bob", evs)
		}
	}},
	{"on accepts the three handler shapes", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		var mu sync.Mutex
		got := map[string]string{}
		record := func(k, v string) { mu.Lock(); got[k] = v; mu.Unlock() }
		type namedShape func(string)
		for _, handler := range []any{
			func(path, who string) { record("pair", path+"|"+who) },
			func(path string) { record("path", path) },
			func(ev roomstore.Event) { record("event", ev.Path+"|"+ev.ParticipantID) },
			namedShape(func(path string) { record("named", path) }),
		} {
			_, err := e.On(roomstore.EventFileUpdated, handler)
			noErr(t, fmt.Sprintf("On(%T)", handler), err)
		}
		e.put(t, "x", []byte("1"), overwrite)
		eventually(t, "all four handlers", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 4 })
		want := map[string]string{"pair": "x|alice", "path": "x", "event": "x|alice", "named": "x"}
		mu.Lock()
		defer mu.Unlock()
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("handler %s got %q, want %q (all: %v)", k, got[k], v, got)
			}
		}
	}},
	{"on refuses other handler shapes and unknown events", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		for _, bad := range []any{nil, "handler", 42, func() {}, func(int) {}, func(string) error { return nil }, func(string, string, string) {}, (func(string))(nil)} {
			if _, err := e.On(roomstore.EventFileUpdated, bad); err == nil {
				t.Fatalf("On accepted %T", bad)
			}
		}
		if _, err := e.On("file.created", func(string) {}); err == nil {
			t.Fatal("On accepted an unknown event")
		}
		e.put(t, "x", []byte("1"), overwrite) // nothing bad was subscribed, so publishing cannot panic
		e.await(t, roomstore.EventFileUpdated, "x", 1)
	}},
	{"off removes a top-level handler", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		p := fmt.Sprintf("off-%x", rand.Uint64())
		calls := new(atomic.Int32)
		offCalls.Store(p, calls)
		defer offCalls.Delete(p)
		_, err := e.On(roomstore.EventFileUpdated, offHandler)
		noErr(t, "On", err)
		e.put(t, p, []byte("1"), roomstore.OpenOptions{})
		eventually(t, "the handler's first call", func() bool { return calls.Load() == 1 })
		noErr(t, "Off", e.Off(roomstore.EventFileUpdated, offHandler))
		if err := e.Off(roomstore.EventFileUpdated, offHandler); err == nil {
			t.Fatal("a second Off found the handler again")
		}
		e.put(t, p, []byte("2"), roomstore.OpenOptions{})
		e.await(t, roomstore.EventFileUpdated, p, 2)
		if n := calls.Load(); n != 1 {
			t.Fatalf("handler ran %d times, want 1 (before Off only)", n)
		}
	}},
	{"unsubscribe stops delivery, is idempotent and works inside the handler", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		var outside, inside atomic.Int32
		subOut, err := e.On(roomstore.EventFileUpdated, func(string) { outside.Add(1) })
		noErr(t, "On", err)
		var subIn *roomstore.Subscription
		ready := make(chan struct{})
		subIn, err = e.On(roomstore.EventFileUpdated, func(string) {
			<-ready
			inside.Add(1)
			subIn.Unsubscribe()
			subIn.Unsubscribe()
		})
		close(ready)
		noErr(t, "On", err)
		e.put(t, "f", []byte("1"), roomstore.OpenOptions{})
		eventually(t, "both handlers' first call", func() bool { return outside.Load() == 1 && inside.Load() == 1 })
		subOut.Unsubscribe()
		subOut.Unsubscribe()
		e.put(t, "f", []byte("2"), roomstore.OpenOptions{})
		e.await(t, roomstore.EventFileUpdated, "f", 2)
		if outside.Load() != 1 || inside.Load() != 1 {
			t.Fatalf("handlers ran %d and %d times, want 1 and 1", outside.Load(), inside.Load())
		}
	}},
	{"a handler may call the engine, even delete the file it was told about", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		errs := make(chan error, 1)
		_, err := e.On(roomstore.EventFileUpdated, func(path, who string) {
			if path != "temp.txt" {
				return
			}
			ctx := roomstore.WithParticipant(context.Background(), "janitor")
			if _, err := e.List(ctx, ""); err != nil {
				errs <- err
				return
			}
			errs <- e.Delete(ctx, path)
		})
		noErr(t, "On", err)
		e.put(t, "temp.txt", []byte("x"), overwrite)
		select {
		case err := <-errs:
			noErr(t, "Delete inside the handler", err)
		case <-time.After(10 * time.Second):
			t.Fatal("handler calling the engine deadlocked")
		}
		evs := e.await(t, roomstore.EventFileDeleted, "temp.txt", 1)
		if len(evs) != 1 || evs[0].ParticipantID != "janitor" {
			t.Fatalf("deleted events %+v", evs)
		}
		e.mustBeAbsent(t, "temp.txt")
	}},
	{"a panicking handler stops neither other handlers nor the writer", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		var panics atomic.Int32
		_, err := e.On(roomstore.EventFileUpdated, func(p string) {
			if p == "f" {
				panics.Add(1)
			}
			panic("handler bug")
		})
		noErr(t, "On", err)
		for i := range 3 {
			e.put(t, "f", []byte{byte(i)}, roomstore.OpenOptions{})
		}
		e.await(t, roomstore.EventFileUpdated, "f", 3)
		deadline := time.Now().Add(5 * time.Second)
		for panics.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if panics.Load() != 3 {
			t.Fatalf("panicking handler ran %d times, want 3 (it keeps its subscription)", panics.Load())
		}
		e.mustContain(t, "f", []byte{0, 1, 2})
	}},
	{"events arrive in commit order", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		const n = 30
		for i := range n {
			e.put(t, "seq", []byte{byte(i)}, roomstore.OpenOptions{})
		}
		evs := e.await(t, roomstore.EventFileUpdated, "seq", n)
		for i, ev := range evs {
			if ev.Size != int64(i+1) {
				t.Fatalf("event %d has size %d, want %d: out of order", i, ev.Size, i+1)
			}
		}
	}},
	{"a slow subscriber loses events but never blocks writers", func(t *testing.T, h Harness) {
		e := fresh(t, h, roomstore.WithEventBuffer(2))
		release := make(chan struct{})
		var got, told atomic.Int32
		sub := e.Subscribe(func(ev roomstore.Event) {
			<-release
			if ev.Type == roomstore.EventOverflow {
				told.Add(int32(ev.Dropped))
				return
			}
			got.Add(1)
		}, roomstore.EventFileUpdated)
		const n = 12
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range n {
				if err := e.write(e.ctx, "f", []byte{byte(i)}, roomstore.OpenOptions{}); err != nil {
					t.Errorf("write: %v", err)
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("writers blocked behind a slow subscriber")
		}
		close(release)
		deadline := time.Now().Add(5 * time.Second)
		for uint64(got.Load()+told.Load()) < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if sub.Dropped() == 0 || uint64(got.Load())+sub.Dropped() != n || uint64(told.Load()) != sub.Dropped() {
			t.Fatalf("slow subscriber got %d, dropped %d of %d, and was told of %d", got.Load(), sub.Dropped(), n, told.Load())
		}
	}},
	{"a subscriber that lost events is told where and how many", func(t *testing.T, h Harness) {
		const buffer, lost = 4, 5
		e := fresh(t, h, roomstore.WithEventBuffer(buffer))
		entered, release := make(chan struct{}, 1), make(chan struct{})
		var mu sync.Mutex
		var seq []string
		var pathOnly []string
		e.Subscribe(func(ev roomstore.Event) {
			if ev.Path == "f0" {
				entered <- struct{}{}
				<-release
			}
			mu.Lock()
			defer mu.Unlock()
			if ev.Type == roomstore.EventOverflow {
				seq = append(seq, fmt.Sprintf("overflow(%d)", ev.Dropped))
			} else {
				seq = append(seq, ev.Path)
			}
		})
		_, err := e.On(roomstore.EventFileUpdated, func(p string) {
			mu.Lock()
			defer mu.Unlock()
			pathOnly = append(pathOnly, p)
		})
		noErr(t, "On", err)
		e.put(t, "f0", nil, overwrite)
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the first event did not reach the subscriber within 10s")
		}
		for i := 1; i <= buffer+lost; i++ {
			e.put(t, fmt.Sprintf("f%d", i), nil, overwrite)
		}
		close(release)
		eventually(t, "the subscriber to drain its queue", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seq) == buffer+2
		})
		e.put(t, "after", nil, overwrite)
		eventually(t, "the event after the gap", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(seq, "after")
		})
		want := []string{"f0", "f1", "f2", "f3", "f4", fmt.Sprintf("overflow(%d)", lost), "after"}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(seq, want) {
			t.Fatalf("subscriber saw %v, want %v", seq, want)
		}
		for _, p := range pathOnly {
			if p == "" {
				t.Fatalf("a path handler got an overflow event: %v", pathOnly)
			}
		}
	}},
}
