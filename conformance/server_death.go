package conformance

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
)

// MortalStore is a fresh, empty store on a server of its own, which a case
// kills and brings back, for the server-death cases.
type MortalStore struct {
	// Backend is a Backend over the store.
	Backend backend.Backend
	// Kill crashes the server now (SIGKILL for a server process): every
	// call in flight and every later call fails until Restart. It returns
	// once the server is gone.
	Kill func()
	// Restart brings the server back over the same data (what a crash of
	// the server loses, such as upload sessions, may be lost) and returns
	// once it answers, or an error.
	Restart func() error
}

// Bounds of the server-death cases. A call that meets the dead server
// gets deadCallTimeout: a store whose client retries until its context
// ends (GCS resumable uploads) fails by then. A call to the server once it
// is back gets liveCallTimeout, and blockedLimit catches a call that
// ignores its context.
const (
	deadCallTimeout = 3 * time.Second
	liveCallTimeout = 30 * time.Second
	blockedLimit    = liveCallTimeout + 10*time.Second
)

// runServerDeath runs the cases where the store's server dies while a
// writer has an upload in flight.
func runServerDeath(t *testing.T, h Harness) {
	t.Run("backend", func(t *testing.T) { cases(t, h, backendDeathCases(h)) })
	t.Run("engine", func(t *testing.T) { cases(t, h, engineDeathCases(h)) })
}

// notBlocked runs f and fails the test if it has not returned after
// blockedLimit, so that a call stuck on the dead server shows up as a
// failure rather than a hung test.
func notBlocked(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(blockedLimit):
		t.Fatalf("%s still blocked after %v", what, blockedLimit)
	}
}

// writeInPieces writes data through write in pieces of 64 KiB and returns
// the first error.
func writeInPieces(data []byte, write func([]byte) error) error {
	for len(data) > 0 {
		n := min(64<<10, len(data))
		if err := write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// deathScenario is one moment at which the server dies: after before
// bytes were written, with after more bytes to write (none: the failure
// comes from the commit).
type deathScenario struct {
	name          string
	append        bool
	old           int // size of the file before the write; -1: none
	before, after int
}

func deathScenarios(h Harness) []deathScenario {
	part := h.partSize()
	return []deathScenario{
		{name: "create of a new file: dies mid-write", old: -1, before: 2 * part, after: 2 * part},
		{name: "create over a file: dies mid-write", old: part + 5, before: 2 * part, after: 2 * part},
		{name: "create over a file: dies before commit", old: 100, before: 2*part + 17},
		{name: "append: dies mid-write", append: true, old: part + 5, before: 2 * part, after: 2 * part},
		{name: "append to a new file: dies mid-write", append: true, old: -1, before: 2 * part, after: 2 * part},
		{name: "append: dies before commit", append: true, old: 100, before: part + 7},
	}
}

// assertNothingPartial checks, once the server is back, that p holds old
// (or is missing when old is nil), that the root lists exactly want, and
// that the backend kept nothing of its own.
func assertNothingPartial(t *testing.T, h Harness, b backend.Backend, p string, old []byte, want []string) {
	t.Helper()
	if old == nil {
		_, err := b.Stat(t.Context(), p)
		wantIs(t, "Stat after the failed write", err, fs.ErrNotExist)
	} else if got, _ := read(t, b, p, 0, -1); !slices.Equal(got, old) {
		t.Fatalf("%q holds %s after the failed write, want the old %s", p, show(got), show(old))
	}
	if got := listNames(t, b, ""); !slices.Equal(sorted(got), want) {
		t.Fatalf("root lists %v after the failed write, want %v", got, want)
	}
	if h.Leftovers != nil {
		if left := h.Leftovers(t, b); len(left) > 0 {
			t.Fatalf("the failed write left %d things behind: %v", len(left), left)
		}
	}
}

// mortal returns the harness's store to kill, and restarts its server, if
// it is down, when the case ends.
func mortal(t *testing.T, h Harness) MortalStore {
	m := h.Mortal(t)
	var mu sync.Mutex
	down := false
	kill, restart := m.Kill, m.Restart
	m.Kill = func() { mu.Lock(); defer mu.Unlock(); kill(); down = true }
	m.Restart = func() error {
		mu.Lock()
		defer mu.Unlock()
		if err := restart(); err != nil {
			return err
		}
		down = false
		return nil
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if down {
			if err := restart(); err != nil {
				t.Errorf("restart the server at the end of the case: %v", err)
			}
		}
	})
	return m
}

func backendDeathCases(h Harness) []tcase {
	var cs []tcase
	for i, sc := range deathScenarios(h) {
		cs = append(cs, tcase{"a writer whose server dies fails, and abort keeps the old content: " + sc.name, func(t *testing.T, h Harness) {
			m := mortal(t, h)
			b := m.Backend
			var old []byte
			want := []string{}
			if sc.old >= 0 {
				old = pattern(sc.old, uint64(i))
				commit(t, b, "f", old, false)
				want = []string{"f"}
			}
			w := writer(t, b, "f", sc.append)
			data := pattern(sc.before+sc.after, uint64(100+i))
			noErr(t, "Write before the server died", writeInPieces(data[:sc.before], func(p []byte) error { return w.Write(t.Context(), p) }))

			m.Kill()
			ctx, cancel := context.WithTimeout(t.Context(), deadCallTimeout)
			defer cancel()
			var err error
			notBlocked(t, "the write to the dead server", func() {
				if sc.after > 0 {
					err = writeInPieces(data[sc.before:], func(p []byte) error { return w.Write(ctx, p) })
				} else {
					_, err = w.Commit(ctx)
				}
			})
			if err == nil {
				t.Fatal("the write to the dead server succeeded")
			}
			t.Logf("failure while the server is dead: %v", err)
			var pe *fs.PathError
			if errors.As(err, &pe) {
				t.Errorf("error %v names a path: backends leave that to the engine", err)
			}
			if err := w.Write(ctx, []byte("x")); err == nil {
				t.Error("Write after the failure succeeded")
			}

			noErr(t, "restart", m.Restart())
			ctx, cancel = context.WithTimeout(t.Context(), liveCallTimeout)
			defer cancel()
			notBlocked(t, "Abort", func() { err = w.Abort(ctx) })
			noErr(t, "Abort once the server is back", err)
			if _, err := w.Commit(ctx); err == nil {
				t.Error("Commit after Abort succeeded")
			}
			assertNothingPartial(t, h, b, "f", old, want)
		}})
	}
	return cs
}

// reviving is a store whose server comes back when the engine aborts a
// writer, once killed: the failed call's discard then runs against a live
// server, as after a short outage, and must leave nothing behind. aborted
// is closed once that Abort has returned (the engine may run it in the
// background, past the failed call).
type reviving struct {
	backend.Backend
	restart func() error
	aborted chan struct{}

	mu      sync.Mutex
	killed  bool
	revived bool
	err     error // of the restart, then of the Abort
}

func (r *reviving) Create(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	w, err := r.Backend.Create(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return revivingWriter{w, r}, nil
}

func (r *reviving) Append(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	w, err := r.Backend.Append(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return revivingWriter{w, r}, nil
}

func (r *reviving) kill(kill func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kill()
	r.killed = true
}

type revivingWriter struct {
	backend.Writer
	r *reviving
}

// Abort restarts the server first if it was killed and is not back yet;
// that first Abort closes aborted when it returns.
func (w revivingWriter) Abort(ctx context.Context) error {
	r := w.r
	r.mu.Lock()
	first := r.killed && !r.revived
	if first {
		r.revived = true
		r.err = r.restart()
	}
	r.mu.Unlock()
	err := w.Writer.Abort(ctx)
	if first {
		r.mu.Lock()
		r.err = errors.Join(r.err, err)
		r.mu.Unlock()
		close(r.aborted)
	}
	return err
}

func engineDeathCases(h Harness) []tcase {
	part := h.partSize()
	scenarios := []struct {
		name          string
		opts          roomstore.OpenOptions
		old           int // -1: no file before
		before, after int // after 0: the failure comes from Close
	}{
		{name: "overwrite: dies mid-write", opts: overwrite, old: part + 5, before: 2 * part, after: 2 * part},
		{name: "append: dies mid-write", old: part + 5, before: 2 * part, after: 2 * part},
		{name: "new file: dies before close", opts: overwrite, old: -1, before: 2*part + 17},
		{name: "append: dies before close", old: 100, before: part + 1},
	}
	var cs []tcase
	for i, sc := range scenarios {
		cs = append(cs, tcase{"a handle whose server dies fails and is discarded with the old content kept: " + sc.name, func(t *testing.T, h Harness) {
			m := mortal(t, h)
			r := &reviving{Backend: m.Backend, restart: m.Restart, aborted: make(chan struct{})}
			e := newEnv(t, r)
			var old []byte
			want := []string{}
			if sc.old >= 0 {
				old = pattern(sc.old, uint64(i))
				e.put(t, "f.bin", old, overwrite)
				want = []string{"f.bin"}
			}
			hd, err := e.Open(e.ctx, "f.bin", sc.opts)
			noErr(t, "Open", err)
			data := pattern(sc.before+sc.after, uint64(100+i))
			noErr(t, "Write before the server died", writeInPieces(data[:sc.before], func(p []byte) error { return e.Write(e.ctx, hd, p) }))

			r.kill(m.Kill)
			ctx, cancel := context.WithTimeout(e.ctx, deadCallTimeout)
			defer cancel()
			notBlocked(t, "the engine's write to the dead server", func() {
				if sc.after > 0 {
					err = writeInPieces(data[sc.before:], func(p []byte) error { return e.Write(ctx, hd, p) })
				} else {
					err = e.Close(ctx, hd)
				}
			})
			if err == nil {
				t.Fatal("the write to the dead server succeeded")
			}
			t.Logf("failure while the server is dead: %v", err)
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != "f.bin" {
				t.Errorf("error %v is not an *fs.PathError on f.bin", err)
			}
			select {
			case <-r.aborted:
			case <-time.After(blockedLimit):
				t.Fatalf("the engine did not abort the failed handle's writer within %v", blockedLimit)
			}
			r.mu.Lock()
			err = r.err
			r.mu.Unlock()
			noErr(t, "restart and Abort once the engine discarded the handle", err)

			ctx, cancel = context.WithTimeout(e.ctx, liveCallTimeout)
			defer cancel()
			wantErr(t, "Write after the failure", e.Write(ctx, hd, []byte("x")), fs.ErrClosed)
			wantErr(t, "Close after the failure", e.Close(ctx, hd), fs.ErrClosed)
			if old == nil {
				e.mustBeAbsent(t, "f.bin")
			} else {
				e.mustContain(t, "f.bin", old)
			}
			if got := e.names(t, ""); !slices.Equal(sorted(got), want) {
				t.Fatalf("engine lists %v, want %v", got, want)
			}
			assertNothingPartial(t, h, m.Backend, "f.bin", old, want)
		}})
	}
	return cs
}
