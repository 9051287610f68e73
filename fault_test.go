package roomstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
)

var errInjected = errors.New("injected failure")

// counter counts the events an engine publishes, except those of the
// barrier files, which settle waits for.
type counter struct {
	n        atomic.Int32
	mu       sync.Mutex
	barriers map[string]chan struct{}
}

const barrierDir = "zz-barrier/"

func (c *counter) handle(ev roomstore.Event) {
	if !strings.HasPrefix(ev.Path, barrierDir) {
		c.n.Add(1)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.barriers[ev.Path]; ch != nil {
		close(ch)
		delete(c.barriers, ev.Path)
	}
}

// settle returns once every event e published before the call has been
// counted: it writes a file of its own (with b's faults cleared) and
// waits for that file's event, which comes after all earlier ones.
func (c *counter) settle(t *testing.T, e *roomstore.Engine, b *backend_mem.Backend) int32 {
	t.Helper()
	b.ClearFaults()
	p := fmt.Sprintf("%s%d", barrierDir, time.Now().UnixNano())
	ch := make(chan struct{})
	c.mu.Lock()
	c.barriers[p] = ch
	c.mu.Unlock()
	put(t, e, p, "")
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the barrier event did not arrive within 10s")
	}
	return c.n.Load()
}

// faulty returns an engine over a memory store holding f = "old", and a
// counter of the events it publishes from then on.
func faulty(t *testing.T, opts ...roomstore.Option) (*roomstore.Engine, *backend_mem.Backend, *counter) {
	t.Helper()
	b := backend_mem.New()
	e, err := roomstore.New(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	put(t, e, "f", "old")
	c := &counter{barriers: map[string]chan struct{}{}}
	e.Subscribe(c.handle)
	return e, b, c
}

// unchanged checks that f still holds "old" and that no event came.
func unchanged(t *testing.T, e *roomstore.Engine, b *backend_mem.Backend, events *counter) {
	t.Helper()
	f, err := e.Download(t.Context(), "f")
	if err != nil || string(f.Data) != "old" {
		t.Fatalf("f = %v, %v; want old", f, err)
	}
	if n := events.settle(t, e, b); n != 0 {
		t.Fatalf("%d events published after a failure", n)
	}
}

// notMoved checks that what, a move of f to g that failed, left no g and
// changed nothing.
func notMoved(t *testing.T, e *roomstore.Engine, b *backend_mem.Backend, events *counter, what string) {
	t.Helper()
	if ok, _ := e.Exists(t.Context(), "g"); ok {
		t.Fatal(what + " left its destination")
	}
	unchanged(t, e, b, events)
}

// stallNotice returns a channel that is closed when a Fault first hits,
// and the Notify function that closes it.
func stallNotice() (chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	return ch, func() { once.Do(func() { close(ch) }) }
}

// awaitStall waits for a stall notice.
func awaitStall(t *testing.T, ch chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach its stall within 10s")
	}
}

func TestFailuresKeepOldContentPublishNothingAndFreeTheHandle(t *testing.T) {
	for _, op := range []backend_mem.Op{backend_mem.OpCreate, backend_mem.OpAppend, backend_mem.OpWrite, backend_mem.OpCommit} {
		for _, o := range []roomstore.OpenOptions{{}, {Overwrite: true}} {
			t.Run(fmt.Sprintf("%s overwrite=%v", op, o.Overwrite), func(t *testing.T) {
				e, b, events := faulty(t, roomstore.WithMaxOpenHandles(1))
				b.Inject(backend_mem.Fault{Op: op, Err: errInjected, Times: 1})
				err := func() error {
					h, err := e.Open(t.Context(), "f", o)
					if err != nil {
						return err
					}
					if err := e.Write(t.Context(), h, []byte("new")); err != nil {
						if cerr := e.Close(t.Context(), h); !errors.Is(cerr, fs.ErrClosed) {
							t.Fatalf("Close after a failed Write: %v, want fs.ErrClosed", cerr)
						}
						return err
					}
					return e.Close(t.Context(), h)
				}()
				wantCreateFault := (op == backend_mem.OpCreate) == o.Overwrite || (op != backend_mem.OpCreate && op != backend_mem.OpAppend)
				if !wantCreateFault {
					if err != nil {
						t.Fatalf("a fault on %s hit an open that does not use it: %v", op, err)
					}
					return
				}
				if !errors.Is(err, errInjected) {
					t.Fatalf("got %v, want the injected error", err)
				}
				var pe *fs.PathError
				if !errors.As(err, &pe) || pe.Path != "f" {
					t.Fatalf("error %v is not a PathError for f", err)
				}
				unchanged(t, e, b, events)
				h, err := e.Open(t.Context(), "g", o) // the failed handle's slot is free again
				if err != nil {
					t.Fatalf("Open after the failure: %v", err)
				}
				if err := e.Abort(t.Context(), h); err != nil {
					t.Fatalf("Abort: %v", err)
				}
			})
		}
	}
}

func TestLostAppendRacesAreRetried(t *testing.T) {
	e, b, events := faulty(t)
	b.Inject(backend_mem.Fault{Op: backend_mem.OpCommit, Err: backend.ErrConflict, Times: 3})
	h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := e.Write(t.Context(), h, []byte("+new")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := e.Close(t.Context(), h); err != nil {
		t.Fatalf("Close after 3 lost races: %v", err)
	}
	f, err := e.Download(t.Context(), "f")
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if string(f.Data) != "old+new" {
		t.Fatalf("f = %q", f.Data)
	}
	if n := events.settle(t, e, b); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestAnAppendThatKeepsLosingFailsWithConflict(t *testing.T) {
	e, b, events := faulty(t, roomstore.WithCommitAttempts(3))
	b.Inject(backend_mem.Fault{Op: backend_mem.OpCommit, Err: backend.ErrConflict})
	h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := e.Write(t.Context(), h, []byte("+new")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := e.Close(t.Context(), h); !errors.Is(err, roomstore.ErrConflict) {
		t.Fatalf("Close: %v, want ErrConflict", err)
	}
	unchanged(t, e, b, events)
}

func TestAFailedRemoveKeepsTheFileAndPublishesNothing(t *testing.T) {
	e, b, events := faulty(t)
	b.Inject(backend_mem.Fault{Op: backend_mem.OpRemove, Err: errInjected})
	if err := e.Delete(t.Context(), "f"); !errors.Is(err, errInjected) {
		t.Fatalf("Delete: %v", err)
	}
	if err := e.RemoveAll(t.Context(), ""); !errors.Is(err, errInjected) {
		t.Fatalf("RemoveAll: %v", err)
	}
	unchanged(t, e, b, events)
}

func TestAStalledCommitEndsWithItsContext(t *testing.T) {
	e, b, events := faulty(t)
	b.Inject(backend_mem.Fault{Op: backend_mem.OpCommit, Stall: true})
	h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := e.Write(t.Context(), h, []byte("new")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := e.Close(ctx, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the deadline", err)
	}
	unchanged(t, e, b, events)
}

func TestAbortAndShutdownInterruptAStalledWrite(t *testing.T) {
	e, b, events := faulty(t)
	stalled, notify := stallNotice()
	b.Inject(backend_mem.Fault{Op: backend_mem.OpWrite, Stall: true, Notify: notify})
	h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Write(t.Context(), h, []byte("new")) }()
	awaitStall(t, stalled)
	if err := e.Abort(t.Context(), h); err != nil {
		t.Fatalf("Abort of a stalled handle: %v", err)
	}
	if err := awaitResult(t, done); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("stalled Write returned %v, want fs.ErrClosed", err)
	}
	unchanged(t, e, b, events)

	stalled, notify = stallNotice()
	b.Inject(backend_mem.Fault{Op: backend_mem.OpWrite, Stall: true, Notify: notify})
	h, err = e.Open(t.Context(), "f", roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	go func() { done <- e.Write(t.Context(), h, []byte("new")) }()
	awaitStall(t, stalled)
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown with a stalled write: %v", err)
	}
	if err := awaitResult(t, done); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("stalled Write returned %v, want fs.ErrClosed", err)
	}
	got, _, err := b.Read(t.Context(), "f", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
}

// awaitResult waits for a call's result.
func awaitResult(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return within 10s")
		return nil
	}
}

func TestAMoveThatLosesRacesIsRetriedThenFailsWithConflict(t *testing.T) {
	e, b, events := faulty(t, roomstore.WithCommitAttempts(3))
	b.Inject(backend_mem.Fault{Op: backend_mem.OpMove, Err: backend.ErrConflict, Times: 2})
	if err := e.Move(t.Context(), "f", "g", roomstore.MoveOptions{}); err != nil {
		t.Fatalf("Move after 2 lost races: %v", err)
	}
	if n := events.settle(t, e, b); n != 1 {
		t.Fatalf("%d events, want one file.moved", n)
	}
	if err := e.Move(t.Context(), "g", "f", roomstore.MoveOptions{}); err != nil {
		t.Fatalf("Move back: %v", err)
	}
	events.settle(t, e, b)
	events.n.Store(0)
	b.Inject(backend_mem.Fault{Op: backend_mem.OpMove, Err: backend.ErrConflict})
	if err := e.Move(t.Context(), "f", "g", roomstore.MoveOptions{}); !errors.Is(err, roomstore.ErrConflict) {
		t.Fatalf("Move that always loses: %v, want ErrConflict", err)
	}
	notMoved(t, e, b, events, "a failed move")
}

func TestAStalledMoveEndsWithItsContextAndChangesNothing(t *testing.T) {
	e, b, events := faulty(t)
	stalled, notify := stallNotice()
	b.Inject(backend_mem.Fault{Op: backend_mem.OpMove, Stall: true, Notify: notify})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Move(ctx, "f", "g", roomstore.MoveOptions{}) }()
	awaitStall(t, stalled)
	cancel()
	if err := awaitResult(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Move: %v, want context.Canceled", err)
	}
	notMoved(t, e, b, events, "a cancelled move")
}

func TestAFolderMoveThatFailsMidwayLeavesEachFileWholeOnOneSide(t *testing.T) {
	e, b, events := faulty(t)
	for _, p := range []string{"d/1", "d/2", "d/3"} {
		put(t, e, p, p)
	}
	events.settle(t, e, b)
	events.n.Store(0)
	b.Inject(backend_mem.Fault{Op: backend_mem.OpMove, After: 1, Err: errInjected})
	if err := e.Move(t.Context(), "d", "e", roomstore.MoveOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("Move: %v, want the injected error", err)
	}
	moved := 0
	for _, p := range []string{"1", "2", "3"} {
		src, err1 := e.Download(t.Context(), "d/"+p)
		dst, err2 := e.Download(t.Context(), "e/"+p)
		switch {
		case err1 == nil && err2 != nil && string(src.Data) == "d/"+p:
		case err1 != nil && err2 == nil && string(dst.Data) == "d/"+p:
			moved++
		default:
			t.Fatalf("file %s: at d %v (%v), at e %v (%v); want it whole on one side", p, src, err1, dst, err2)
		}
	}
	if n := events.settle(t, e, b); moved != 1 || n != 1 {
		t.Fatalf("%d files moved and %d events, want 1 and 1", moved, n)
	}
}

// shutdownOnCue returns a Notify that starts Shutdown the first time it is
// called and returns once the engine refuses new calls, so that the call
// it interrupts goes on across a Shutdown that has begun; and a function
// that returns Shutdown's result.
func shutdownOnCue(t *testing.T, e *roomstore.Engine) (func(), func() error) {
	done := make(chan error, 1)
	var once sync.Once
	notify := func() {
		once.Do(func() {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				done <- e.Shutdown(ctx)
			}()
			deadline := time.Now().Add(10 * time.Second)
			for _, err := e.Exists(context.Background(), "f"); !errors.Is(err, fs.ErrClosed); _, err = e.Exists(context.Background(), "f") {
				if time.Now().After(deadline) {
					t.Error("Shutdown did not close the engine within 10s")
					return
				}
				runtime.Gosched()
			}
		})
	}
	return notify, func() error { return awaitResult(t, done) }
}

func TestAFolderMoveAndARemoveAllRunToTheirEndAcrossShutdown(t *testing.T) {
	for _, op := range []backend_mem.Op{backend_mem.OpMove, backend_mem.OpRemove} {
		t.Run(string(op), func(t *testing.T) {
			e, b, _ := faulty(t)
			for _, p := range []string{"d/1/x", "d/2/y", "d/3/z"} {
				put(t, e, p, p)
			}
			notify, shutdown := shutdownOnCue(t, e)
			b.Inject(backend_mem.Fault{Op: op, After: 1, Times: 1, Notify: notify})
			var err error
			if op == backend_mem.OpMove {
				err = e.Move(t.Context(), "d", "m", roomstore.MoveOptions{})
			} else {
				err = e.RemoveAll(t.Context(), "d")
			}
			if err != nil {
				t.Fatalf("%s across Shutdown: %v", op, err)
			}
			if err := shutdown(); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			for _, p := range []string{"d/1/x", "d/2/y", "d/3/z"} {
				info, err := b.Stat(t.Context(), p)
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s left %s behind: %+v, %v", op, p, info, err)
				}
				if op == backend_mem.OpMove {
					if _, err := b.Stat(t.Context(), "m"+p[1:]); err != nil {
						t.Fatalf("%s was not moved: %v", p, err)
					}
				}
			}
		})
	}
}
