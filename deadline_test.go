package roomstore_test

import (
	"context"
	"errors"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
)

// promptly is how long past its deadline a call may take to return.
const promptly = time.Second

// within runs call with a context of the given deadline and returns its
// error, failing the test if it is still running promptly after the
// deadline. A call that hangs is left running: the test has failed.
func within(t *testing.T, what string, deadline time.Duration, call func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(deadline + promptly):
		t.Fatalf("%s still blocked %v after its %v deadline", what, promptly, deadline)
		return nil
	}
}

// stalledCommit returns an engine over a memory store holding f = "old"
// whose next commit, of a handle on f, is stuck in the backend, and the
// function that unsticks it (by ending that Close's context) and returns
// its error.
func stalledCommit(t *testing.T, opts ...roomstore.Option) (*roomstore.Engine, *roomstore.Handle, func() error) {
	t.Helper()
	e, b, _ := faulty(t, opts...)
	stalled, notify := stallNotice()
	b.Inject(backend_mem.Fault{Op: backend_mem.OpCommit, Stall: true, Times: 1, Notify: notify})
	h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(t.Context(), h, []byte("stuck")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	closed := make(chan error, 1)
	go func() { closed <- e.Close(ctx, h) }()
	awaitStall(t, stalled)
	var (
		unstuck sync.Once
		result  error
	)
	unstick := func() error {
		unstuck.Do(func() {
			cancel()
			result = awaitResult(t, closed)
		})
		return result
	}
	t.Cleanup(func() { unstick() })
	return e, h, unstick
}

// TestEveryCallReturnsSoonAfterItsDeadlineBehindAStalledCommit holds a
// commit of f stuck in the backend, with the locks it takes, and checks
// that every call that has to wait for it (another commit of f, a delete,
// calls on the same handle, Shutdown) gives up with its context's error
// promptly after its deadline, while calls that need no lock go through.
func TestEveryCallReturnsSoonAfterItsDeadlineBehindAStalledCommit(t *testing.T) {
	e, stuck, unstick := stalledCommit(t, roomstore.WithBaseURL("http://127.0.0.1:1/dl"))
	ctx := t.Context()
	other, err := e.Open(ctx, "f", roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(ctx, other, []byte("other")); err != nil {
		t.Fatal(err)
	}
	const deadline = 100 * time.Millisecond
	waits := map[string]func(ctx context.Context) error{
		"Close of another handle on f": func(ctx context.Context) error { return e.Close(ctx, other) },
		"Delete of f":                  func(ctx context.Context) error { return e.Delete(ctx, "f") },
		"RemoveAll of the root":        func(ctx context.Context) error { return e.RemoveAll(ctx, "") },
		"Write on the stalled handle":  func(ctx context.Context) error { return e.Write(ctx, stuck, []byte("x")) },
		"Close of the stalled handle":  func(ctx context.Context) error { return e.Close(ctx, stuck) },
		"Abort of the stalled handle":  func(ctx context.Context) error { return e.Abort(ctx, stuck) },
	}
	for what, call := range waits {
		if err := within(t, what, deadline, call); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s = %v, want context.DeadlineExceeded", what, err)
		}
	}
	free := map[string]func(ctx context.Context) error{
		"Exists":      func(ctx context.Context) error { _, err := e.Exists(ctx, "f"); return err },
		"Stat":        func(ctx context.Context) error { _, err := e.Stat(ctx, "f"); return err },
		"Download":    func(ctx context.Context) error { _, err := e.Download(ctx, "f"); return err },
		"List":        func(ctx context.Context) error { _, err := e.List(ctx, ""); return err },
		"DownloadURL": func(ctx context.Context) error { _, err := e.DownloadURL(ctx, "f"); return err },
		"OpenReader": func(ctx context.Context) error {
			r, err := e.OpenReader(ctx, "f", 0, -1)
			if err == nil {
				r.Close()
			}
			return err
		},
		// Not a Close: g may share f's lock stripe.
		"Open, Write and Abort of g": func(ctx context.Context) error {
			h, err := e.Open(ctx, "g", roomstore.OpenOptions{})
			if err != nil {
				return err
			}
			if err := e.Write(ctx, h, []byte("g")); err != nil {
				return err
			}
			return e.Abort(ctx, h)
		},
	}
	for what, call := range free {
		if err := within(t, what, 10*time.Second, call); err != nil {
			t.Fatalf("%s beside the stalled commit: %v", what, err)
		}
	}
	if err := within(t, "Shutdown", deadline, e.Shutdown); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown behind the stalled commit = %v, want context.DeadlineExceeded", err)
	}
	if err := unstick(); !errors.Is(err, context.Canceled) {
		t.Fatalf("the stalled Close = %v, want context.Canceled", err)
	}
	if err := within(t, "Shutdown", 10*time.Second, e.Shutdown); err != nil {
		t.Fatalf("Shutdown once the commit let go: %v", err)
	}
}

// TestHandleMethodsWithoutAContextAreBounded checks that a Handle's own
// Write and Close, which take no context, end after WithHandleTimeout.
func TestHandleMethodsWithoutAContextAreBounded(t *testing.T) {
	const limit = 100 * time.Millisecond
	e, stuck, unstick := stalledCommit(t, roomstore.WithHandleTimeout(limit))
	other, err := e.Open(t.Context(), "f", roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Write([]byte("other")); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(context.Context) error{
		"Handle.Close behind the stalled commit": func(context.Context) error { return other.Close() },
		"Handle.Write on the stalled handle":     func(context.Context) error { _, err := stuck.Write([]byte("x")); return err },
		"Handle.Abort of the stalled handle":     func(context.Context) error { return stuck.Abort() },
	}
	for what, call := range calls {
		if err := within(t, what, limit, call); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s = %v, want context.DeadlineExceeded", what, err)
		}
	}
	unstick()
	f, err := e.Download(t.Context(), "f")
	if err != nil || string(f.Data) != "old" {
		t.Fatalf("f = %v, %v; want the old content", f, err)
	}
	if _, err := roomstore.New(backend_mem.New(), roomstore.WithHandleTimeout(0)); err == nil {
		t.Fatal("WithHandleTimeout(0) accepted")
	}
}

// slowAborts is a memory store whose writers' Abort waits for release (or
// its own context), as a remote store's cleanup waits for a server.
type slowAborts struct {
	*backend_mem.Backend
	release chan struct{}
	aborted chan struct{}
}

func (s *slowAborts) Create(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	w, err := s.Backend.Create(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return &slowAbort{Writer: w, s: s}, nil
}

type slowAbort struct {
	backend.Writer
	s *slowAborts
}

func (w *slowAbort) Abort(ctx context.Context) error {
	select {
	case <-w.s.release:
	case <-ctx.Done():
	}
	defer close(w.s.aborted)
	return w.Writer.Abort(ctx)
}

// cancellingReader yields one chunk, then cancels its upload's context and
// fails, as a client that goes away mid-upload.
type cancellingReader struct {
	cancel context.CancelFunc
	sent   bool
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "first chunk"), nil
	}
	r.cancel()
	return 0, errors.New("client went away")
}

func TestAFailedUploadDoesNotWaitForItsCleanup(t *testing.T) {
	b := &slowAborts{Backend: backend_mem.New(), release: make(chan struct{}), aborted: make(chan struct{})}
	e, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	err = within(t, "Upload from a reader that cancels", 10*time.Second, func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := e.Upload(ctx, "f", &cancellingReader{cancel: cancel}, roomstore.OpenOptions{Overwrite: true})
		return err
	})
	if err == nil {
		t.Fatal("Upload succeeded")
	}
	select {
	case <-b.aborted:
		t.Fatal("the writer's abort finished before it was released: Upload did not leave it to the background")
	default:
	}
	close(b.release)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-b.aborted:
	default:
		t.Fatal("Shutdown returned before the abort it must wait for")
	}
	if info, err := b.Stat(t.Context(), "f"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the failed upload left %+v (%v)", info, err)
	}
}
