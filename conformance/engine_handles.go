package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
)

var handleCases = []tcase{
	{"write and close after close fail with closed", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		hd := e.open(t, "f", overwrite)
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("x")))
		noErr(t, "Close", e.Close(e.ctx, hd))
		wantErr(t, "Write after Close", e.Write(e.ctx, hd, []byte("y")), fs.ErrClosed)
		wantErr(t, "second Close", e.Close(e.ctx, hd), fs.ErrClosed)
		wantErr(t, "Abort after Close", e.Abort(e.ctx, hd), fs.ErrClosed)
		e.mustContain(t, "f", []byte("x"))
		if n := len(e.await(t, roomstore.EventFileUpdated, "f", 1)); n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
	}},
	{"write and close after abort fail with closed", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		hd := e.open(t, "f", overwrite)
		noErr(t, "Abort", e.Abort(e.ctx, hd))
		wantErr(t, "Write after Abort", e.Write(e.ctx, hd, []byte("y")), fs.ErrClosed)
		wantErr(t, "Close after Abort", e.Close(e.ctx, hd), fs.ErrClosed)
		e.mustBeAbsent(t, "f")
	}},
	{"another participant cannot use a handle and leaves it intact", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		hd := e.open(t, "f", overwrite)
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("alice ")))
		mallory := roomstore.WithParticipant(t.Context(), "mallory")
		anonymous := t.Context()
		for _, ctx := range []context.Context{mallory, anonymous} {
			wantErr(t, "foreign Write", e.Write(ctx, hd, []byte("evil")), fs.ErrPermission)
			wantErr(t, "foreign Close", e.Close(ctx, hd), fs.ErrPermission)
			wantErr(t, "foreign Abort", e.Abort(ctx, hd), fs.ErrPermission)
			_, err := e.Handle(ctx, hd.ID())
			wantErr(t, "foreign Handle lookup", err, fs.ErrPermission)
		}
		e.mustBeAbsent(t, "f")
		noErr(t, "owner Write", e.Write(e.ctx, hd, []byte("wrote")))
		noErr(t, "owner Close", e.Close(e.ctx, hd))
		e.mustContain(t, "f", []byte("alice wrote"))
		evs := e.await(t, roomstore.EventFileUpdated, "f", 1)
		if len(evs) != 1 || evs[0].ParticipantID != "alice" {
			t.Fatalf("events %+v, want one by alice", evs)
		}
	}},
	{"a handle of another engine or a nil handle is invalid", func(t *testing.T, h Harness) {
		e1 := fresh(t, h)
		e2 := newEnv(t, h.Reopen(t, e1.b))
		hd, err := e1.Open(e1.ctx, "f", overwrite)
		noErr(t, "Open", err)
		wantErr(t, "Write on another engine", e2.Write(e2.ctx, hd, []byte("x")), fs.ErrInvalid)
		wantErr(t, "Close on another engine", e2.Close(e2.ctx, hd), fs.ErrInvalid)
		wantErr(t, "Write nil", e1.Write(e1.ctx, nil, []byte("x")), fs.ErrInvalid)
		wantErr(t, "Close nil", e1.Close(e1.ctx, nil), fs.ErrInvalid)
		noErr(t, "Close", e1.Close(e1.ctx, hd))
		e1.mustContain(t, "f", nil)
	}},
	{"a handle is found by its id and works as an io.WriteCloser", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		hd := e.open(t, "w.txt", overwrite)
		if len(hd.ID()) < 32 || hd.Path() != "w.txt" || hd.Participant() != "alice" {
			t.Fatalf("handle id %q path %q participant %q", hd.ID(), hd.Path(), hd.Participant())
		}
		same, err := e.Handle(e.ctx, hd.ID())
		if err != nil || same != hd {
			t.Fatalf("Handle(id) = %v, %v", same, err)
		}
		fmt.Fprintf(hd, "written %d", 42)
		noErr(t, "Close", hd.Close())
		e.mustContain(t, "w.txt", []byte("written 42"))
		_, err = e.Handle(e.ctx, hd.ID())
		wantErr(t, "Handle of a closed handle", err, fs.ErrNotExist)
		_, err = e.Handle(e.ctx, strings.Repeat("ab", 16))
		wantErr(t, "Handle of an ID never handed out", err, fs.ErrNotExist)
		for _, bad := range []string{"", "garbage", strings.Repeat("g", 32), strings.Repeat("A", 32), hd.ID() + "0"} {
			_, err = e.Handle(e.ctx, bad)
			wantErr(t, fmt.Sprintf("Handle(%q)", bad), err, fs.ErrInvalid)
		}
		evs := e.await(t, roomstore.EventFileUpdated, "w.txt", 1)
		if evs[0].ParticipantID != "alice" {
			t.Fatalf("io.WriteCloser close published participant %q", evs[0].ParticipantID)
		}
	}},
	// When the timeout fires is the engine's own affair, checked to the
	// nanosecond on a fake clock by the engine's tests; what a backend must
	// get right is the discard itself: its writer aborted from the timer,
	// the old content kept, nothing of the write left behind.
	{"an idle handle is discarded and the old content kept", func(t *testing.T, h Harness) {
		e := fresh(t, h, roomstore.WithIdleTimeout(50*time.Millisecond))
		e.put(t, "f", []byte("old"), overwrite)
		idle, err := e.Open(e.ctx, "f", overwrite)
		noErr(t, "Open", err)
		noErr(t, "Write", e.Write(e.ctx, idle, []byte("new")))
		// Handle looks the idle handle up without touching its timer.
		eventually(t, "the idle handle's discard", func() bool {
			_, err := e.Handle(e.ctx, idle.ID())
			if err != nil {
				wantErr(t, "Handle of the idle handle", err, fs.ErrNotExist)
			}
			return err != nil
		})
		wantErr(t, "Write on the idle handle", e.Write(e.ctx, idle, []byte("x")), fs.ErrClosed)
		wantErr(t, "Close on the idle handle", e.Close(e.ctx, idle), fs.ErrClosed)
		e.mustContain(t, "f", []byte("old"))
		newEnv(t, h.Reopen(t, e.b)).mustContain(t, "f", []byte("old"))
	}},
	{"opening past the handle limit fails until one closes", func(t *testing.T, h Harness) {
		e := fresh(t, h, roomstore.WithMaxOpenHandles(2))
		a, err := e.Open(e.ctx, "a", overwrite)
		noErr(t, "Open a", err)
		b, err := e.Open(e.ctx, "b", overwrite)
		noErr(t, "Open b", err)
		_, err = e.Open(e.ctx, "c", overwrite)
		wantErr(t, "Open c", err, roomstore.ErrTooManyHandles)
		noErr(t, "Close a", e.Close(e.ctx, a))
		c, err := e.Open(e.ctx, "c", overwrite)
		noErr(t, "Open c after a closed", err)
		noErr(t, "Abort b", e.Abort(e.ctx, b))
		noErr(t, "Close c", e.Close(e.ctx, c))
	}},
}

var concurrencyCases = []tcase{
	{"racing exclusive creators across two engines: exactly one wins", func(t *testing.T, h Harness) {
		e1 := fresh(t, h)
		e2 := newEnv(t, h.Reopen(t, e1.b))
		const n = 8
		var wins atomic.Int32
		var winner atomic.Value
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				e := []*env{e1, e2}[i%2]
				<-start
				id := fmt.Sprintf("creator-%d", i)
				err := e.write(e.ctx, "lock", []byte(id), roomstore.OpenOptions{Exclusive: true})
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(id)
				case !errors.Is(err, fs.ErrExist):
					t.Errorf("creator %d: %v, want success or fs.ErrExist", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d exclusive creators won, want exactly 1", wins.Load())
		}
		e1.mustContain(t, "lock", []byte(winner.Load().(string)))
		e1.barrier(t)
		e2.barrier(t)
		evs := len(e1.rec.matching(roomstore.EventFileUpdated, "lock")) + len(e2.rec.matching(roomstore.EventFileUpdated, "lock"))
		if evs != 1 {
			t.Fatalf("%d file.updated events across both engines, want 1", evs)
		}
	}},
	{"concurrent appends from two engines lose nothing", func(t *testing.T, h Harness) {
		e1 := fresh(t, h)
		e2 := newEnv(t, h.Reopen(t, e1.b))
		const perEngine = 32
		var wg sync.WaitGroup
		for i := range 2 * perEngine {
			wg.Go(func() {
				e := []*env{e1, e2}[i%2]
				rec := fmt.Sprintf("record-%02d;", i)
				if err := e.write(e.ctx, "shared.log", []byte(rec), roomstore.OpenOptions{}); err != nil {
					t.Errorf("append %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		got := strings.Split(strings.TrimSuffix(string(e1.get(t, "shared.log")), ";"), ";")
		slices.Sort(got)
		var want []string
		for i := range 2 * perEngine {
			want = append(want, fmt.Sprintf("record-%02d", i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("log holds %d records %v\nwant %d records, each once", len(got), got, len(want))
		}
		n1 := len(e1.await(t, roomstore.EventFileUpdated, "shared.log", perEngine))
		n2 := len(e2.await(t, roomstore.EventFileUpdated, "shared.log", perEngine))
		if n1 != perEngine || n2 != perEngine {
			t.Fatalf("%d and %d file.updated events, want %d from each engine", n1, n2, perEngine)
		}
	}},
	{"concurrent overwrites leave one whole version", func(t *testing.T, h Harness) {
		e1 := fresh(t, h)
		e2 := newEnv(t, h.Reopen(t, e1.b))
		versions := map[string]bool{}
		for i := range 8 {
			versions[strings.Repeat(string(rune('a'+i)), 1000+i)] = true
		}
		var wg sync.WaitGroup
		i := 0
		for v := range versions {
			e := []*env{e1, e2}[i%2]
			i++
			wg.Go(func() {
				if err := e.write(e.ctx, "f", []byte(v), overwrite); err != nil {
					t.Errorf("overwrite: %v", err)
				}
			})
		}
		wg.Wait()
		if got := string(e1.get(t, "f")); !versions[got] {
			t.Fatalf("file holds a mix of %d bytes", len(got))
		}
	}},
	{"readers never see a partial commit", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		a, b := []byte(strings.Repeat("A", 300_000)), []byte(strings.Repeat("B", 200_000))
		e.put(t, "f", a, overwrite)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if err := e.write(e.ctx, "f", [][]byte{a, b}[i%2], overwrite); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
		for range 40 {
			got := e.get(t, "f")
			if !slices.Equal(got, a) && !slices.Equal(got, b) {
				cancel()
				wg.Wait()
				t.Fatalf("reader saw %d bytes that are neither version", len(got))
			}
		}
		cancel()
		wg.Wait()
	}},
}

var shutdownCases = []tcase{
	{"shutdown under load leaves every file whole and delivers every event", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		const writers = 6
		version := func(w, n int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("<%d:%d>", w, n)), 2000+n) }
		for w := range writers {
			e.put(t, fmt.Sprintf("f%d", w), version(w, 0), overwrite)
		}
		e.await(t, roomstore.EventFileUpdated, "f0", 1)
		var closes atomic.Int32
		// Each writer reports its first commit, so that Shutdown meets
		// every writer mid-stream rather than, on a slow store, none.
		committed := make(chan int, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for n := 1; ; n++ {
					hd, err := e.Open(e.ctx, fmt.Sprintf("f%d", w), overwrite)
					if err != nil {
						if !errors.Is(err, fs.ErrClosed) {
							t.Errorf("Open during Shutdown: %v, want fs.ErrClosed", err)
						}
						return
					}
					data := version(w, n)
					for len(data) > 0 && err == nil {
						k := min(len(data), 4096)
						err, data = e.Write(e.ctx, hd, data[:k]), data[k:]
					}
					if err == nil {
						err = e.Close(e.ctx, hd)
					}
					if err != nil {
						if !errors.Is(err, fs.ErrClosed) && !errors.Is(err, context.Canceled) {
							t.Errorf("writer %d: %v, want fs.ErrClosed once shut down", w, err)
						}
						return
					}
					if closes.Add(1); n == 1 {
						committed <- w
					}
				}
			})
		}
		deadline := time.After(time.Minute)
		for i := range writers {
			select {
			case <-committed:
			case <-deadline:
				t.Fatalf("only %d of %d writers committed within a minute", i, writers)
			}
		}
		noErr(t, "Shutdown", e.Shutdown(t.Context()))
		wg.Wait()
		if got, want := len(e.rec.snapshot()), writers+int(closes.Load()); got != want {
			t.Fatalf("%d events delivered by Shutdown, want %d (one per successful Close)", got, want)
		}
		other := newEnv(t, h.Reopen(t, e.b))
		for w := range writers {
			data := other.get(t, fmt.Sprintf("f%d", w))
			var n int
			if _, err := fmt.Sscanf(string(data), "<%d:%d>", new(int), &n); err != nil || !bytes.Equal(data, version(w, n)) {
				t.Fatalf("f%d is torn after Shutdown: %s", w, show(data))
			}
		}
		if n := closes.Load(); n < writers {
			t.Fatalf("%d commits before Shutdown, want at least one per writer (%d)", n, writers)
		}
		t.Logf("%d commits before Shutdown", closes.Load())
	}},
	{"shutdown discards open handles, delivers queued events and closes every call", func(t *testing.T, h Harness) {
		e := fresh(t, h)
		e.put(t, "f", []byte("old"), overwrite)
		var got atomic.Int32
		e.Subscribe(func(roomstore.Event) { time.Sleep(20 * time.Millisecond); got.Add(1) })
		for range 5 {
			e.put(t, "g", []byte("x"), roomstore.OpenOptions{})
		}
		hd := e.open(t, "f", overwrite)
		noErr(t, "Write", e.Write(e.ctx, hd, []byte("new")))
		noErr(t, "Shutdown", e.Shutdown(t.Context()))
		if got.Load() != 5 {
			t.Fatalf("slow subscriber got %d of 5 queued events by Shutdown's return", got.Load())
		}
		wantErr(t, "Write after Shutdown", e.Write(e.ctx, hd, []byte("x")), fs.ErrClosed)
		wantErr(t, "Close after Shutdown", e.Close(e.ctx, hd), fs.ErrClosed)
		_, err := e.Open(e.ctx, "h", overwrite)
		wantErr(t, "Open after Shutdown", err, fs.ErrClosed)
		_, err = e.Download(e.ctx, "f")
		wantErr(t, "Download after Shutdown", err, fs.ErrClosed)
		_, err = e.Exists(e.ctx, "f")
		wantErr(t, "Exists after Shutdown", err, fs.ErrClosed)
		noErr(t, "second Shutdown", e.Shutdown(t.Context()))
		other := newEnv(t, h.Reopen(t, e.b))
		other.mustContain(t, "f", []byte("old"))
	}},
}
