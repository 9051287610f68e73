package roomstore

import (
	"context"
	"fmt"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/roomstore/roomstore/backend"
)

// Handle is an open write to one file, made by Engine.Open. Its bytes stay
// invisible until Close commits them. A Handle implements io.WriteCloser
// for code that has no context to pass; those calls act as the participant
// that opened it, bounded by WithHandleTimeout.
//
// A handle is open, then closing (a Close has taken it to commit), then
// closed (committed) or aborted (discarded); see handleState. Every call
// on it holds mu, its one lock, which a waiting call gives up when its
// context ends. Only two things reach it from outside mu: an abort (Abort,
// the idle timeout, Shutdown) first records its reason in discarding and
// cancels ctx, so that a call stuck in the backend lets go of mu and
// reports that reason; and the idle timer reads lastUsed. A handle is
// registered in its Engine's handles while open or closing; see the
// Engine for the lock order.
type Handle struct {
	e     *Engine
	id    string
	path  string
	owner string
	// policy is the Policy the handle was opened under (nil: none), asked
	// again at Close.
	policy Policy
	// replace is whether Close replaces the file (Overwrite, Exclusive)
	// rather than append to it.
	replace bool
	w       backend.Writer
	ctx     context.Context // lives as long as the handle; cancelled by discard
	stop    context.CancelFunc
	timer   *time.Timer

	// discarding holds the reason of the first discard (Abort, idle
	// timeout, Shutdown), set before it interrupts a running call so that
	// the call can report it.
	discarding atomic.Pointer[error]
	lastUsed   atomic.Int64 // UnixNano of the last Write, read by the idle timer

	// mu serialises Write, Close and Abort, the idle timeout and
	// Shutdown's abort.
	mu ctxMutex
	// state and reason change only in setState; reason is why the handle
	// ended (the error of every later call on it), nil while it is open or
	// closing. Guarded by mu.
	state  handleState
	reason error
	size   int64 // guarded by mu
}

// handleState is where a Handle is in its life:
//
//	open ──Close takes it──▶ closing ──commit──▶ closed
//	  │                        │
//	  │                        └──failed check or commit──▶ aborted
//	  └──Abort, failed Write, idle timeout, Shutdown──────▶ aborted
//
// closed and aborted are final. A Write or Close finds a handle open or
// finished, never closing: the Close that holds a closing handle holds
// its mu until the handle is closed or aborted, and an Abort waits for it.
type handleState uint8

const (
	handleOpen    handleState = iota // takes Write, Close and Abort
	handleClosing                    // a Close commits it or fails: it never reopens
	handleClosed                     // committed: its bytes are in the file
	handleAborted                    // discarded: its bytes are dropped, the file as it was
)

// setState moves h to the state to, the one place where a handle's state
// changes; to is the next state of the diagram on handleState. Closing
// stops the idle timer, the commit being no idle time. Ending (closed or
// aborted) records why as h's reason, gives back what h staged against
// the Quota, stops the timer, aborts the writer unless it committed (Abort
// is then a no-op by the backend.Writer contract, and the goroutine and
// bounded context it needs would cost every Close), cancels h's context
// and frees its slot; the abort is waited for as long as ctx allows. The
// caller holds h.mu.
func (h *Handle) setState(ctx context.Context, to handleState, why error) {
	h.state = to
	if to == handleClosing {
		h.timer.Stop()
		return
	}
	h.reason = why
	if h.e.usage != nil {
		h.e.usage.unstage(h.size)
	}
	h.timer.Stop()
	if to == handleAborted {
		h.e.abortWriter(ctx, h.w)
	}
	h.stop()
	h.e.forget(h)
}

// ID returns the handle's id: 32 random hex digits, safe to hand to a
// client and resolve later with Engine.Handle.
func (h *Handle) ID() string { return h.id }

// Path returns the clean path the handle writes.
func (h *Handle) Path() string { return h.path }

// Participant returns the participant that opened the handle.
func (h *Handle) Participant() string { return h.owner }

// Write stages p as the handle's owner (see Engine.Write), on a context
// that ends after WithHandleTimeout.
func (h *Handle) Write(p []byte) (int, error) {
	ctx, cancel := h.ownerContext()
	defer cancel()
	if err := h.e.Write(ctx, h, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close commits the handle as its owner (see Engine.Close), on a context
// that ends after WithHandleTimeout.
func (h *Handle) Close() error {
	ctx, cancel := h.ownerContext()
	defer cancel()
	return h.e.Close(ctx, h)
}

// Abort discards the handle as its owner (see Engine.Abort), on a context
// that ends after WithHandleTimeout.
func (h *Handle) Abort() error {
	ctx, cancel := h.ownerContext()
	defer cancel()
	return h.e.Abort(ctx, h)
}

// ownerContext is the context of the calls made without one: the owner's,
// bounded by WithHandleTimeout.
func (h *Handle) ownerContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(WithParticipant(context.Background(), h.owner), h.e.cfg.handleCall)
}

// Handle returns the open handle with the given ID, for servers that hand
// IDs to their clients. An ID that is not 32 hex digits yields
// fs.ErrInvalid; one of no open handle (never opened, or finished since)
// fs.ErrNotExist; another participant's handle fs.ErrPermission; and
// after Shutdown every ID yields fs.ErrClosed.
func (e *Engine) Handle(ctx context.Context, id string) (*Handle, error) {
	if !validHandleID(id) {
		return nil, &fs.PathError{Op: "handle", Path: "", Err: fmt.Errorf("%w: malformed handle ID (want 32 hex digits)", fs.ErrInvalid)}
	}
	e.mu.Lock()
	h := e.handles[id]
	closed := e.closed
	e.mu.Unlock()
	switch {
	case closed:
		return nil, &fs.PathError{Op: "handle", Path: id, Err: fmt.Errorf("%w: engine shut down", fs.ErrClosed)}
	case h == nil:
		return nil, &fs.PathError{Op: "handle", Path: id, Err: fmt.Errorf("%w: no open handle with this ID", fs.ErrNotExist)}
	case h.owner != ParticipantFrom(ctx):
		return nil, &fs.PathError{Op: "handle", Path: h.path, Err: fmt.Errorf("%w: handle belongs to another participant", fs.ErrPermission)}
	}
	return h, nil
}

// validHandleID reports whether id has the form of a handle's ID.
func validHandleID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// check admits a call on h: it must be this engine's handle and the caller
// its owner. It changes nothing, so a refused caller cannot disturb the
// owner's handle.
func (e *Engine) check(ctx context.Context, op string, h *Handle) error {
	switch {
	case h == nil:
		return &fs.PathError{Op: op, Path: "", Err: fmt.Errorf("%w: nil handle", fs.ErrInvalid)}
	case h.e != e:
		return &fs.PathError{Op: op, Path: h.path, Err: fmt.Errorf("%w: handle belongs to another engine", fs.ErrInvalid)}
	case h.owner != ParticipantFrom(ctx):
		return &fs.PathError{Op: op, Path: h.path, Err: fmt.Errorf("%w: handle belongs to another participant", fs.ErrPermission)}
	}
	return e.begin(op, h.path)
}

// callContext bounds one call on h by both the call's context and the
// handle's life, so Abort, an idle timeout or Shutdown interrupt it.
func (h *Handle) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(h.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// failLocked ends h after a failed call and returns the call's error: the
// caller's own context error, else the reason of a discard that
// interrupted it, else the backend's. The caller holds h.mu.
func (h *Handle) failLocked(ctx context.Context, op string, err, reason error) error {
	r := h.discarding.Load()
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case r != nil:
		err = *r
	}
	if r != nil {
		reason = *r
	}
	h.setState(ctx, handleAborted, reason)
	return pathError(op, h.path, err)
}

// idle runs when the idle timer fires.
func (h *Handle) idle() {
	wait := h.e.cfg.idleTimeout - time.Since(time.Unix(0, h.lastUsed.Load()))
	if wait > 0 { // a Write just reset the timer while it fired
		h.timer.Reset(wait)
		return
	}
	_, _ = h.discard(context.Background(), fmt.Errorf("%w: handle aborted after %v idle", fs.ErrClosed, h.e.cfg.idleTimeout), "idle timeout")
}

// discard interrupts whatever runs on h, then aborts its writer. It
// reports whether h was still open, or ctx's error if ctx ends before the
// call running on h lets go of it (that call then ends h with reason, or
// commits). A non-empty why is logged.
func (h *Handle) discard(ctx context.Context, reason error, why string) (bool, error) {
	h.discarding.CompareAndSwap(nil, &reason)
	h.stop() // so that a Write or Close stuck in the backend lets go of h.mu
	if err := h.mu.lock(ctx); err != nil {
		return false, err
	}
	defer h.mu.unlock()
	if h.state != handleOpen {
		return h.reason == reason, nil // an interrupted call already ended h for us
	}
	if why != "" {
		h.e.cfg.logger.Warn("roomstore: handle discarded", "path", h.path, "handle", h.id, "participant", h.owner, "reason", why, "bytes", h.size)
	}
	h.setState(ctx, handleAborted, reason)
	return true, nil
}

// errCommitted is why a handle that Close committed is finished. One
// value serves every handle: building it per Close was a measurable part
// of a small commit.
var errCommitted = fmt.Errorf("%w: handle already closed", fs.ErrClosed)

// errCloseFailed is why a handle whose Close failed is finished.
var errCloseFailed = fmt.Errorf("%w: handle discarded after a failed close", fs.ErrClosed)

// abortTimeout bounds the abort of a writer, which removes what it staged
// (on a remote store, requests that retry while the server is away).
const abortTimeout = 30 * time.Second

// abortWriter aborts w on a context of its own, bounded by abortTimeout,
// and waits for it as long as ctx allows: what is left goes on in the
// background, and Shutdown waits for it.
func (e *Engine) abortWriter(ctx context.Context, w backend.Writer) {
	done := make(chan struct{})
	e.cleanups.Add(1)
	go func() {
		defer e.cleanups.Done()
		defer close(done)
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_ = w.Abort(actx)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// forget unregisters h, if it was registered.
func (e *Engine) forget(h *Handle) {
	e.mu.Lock()
	_, registered := e.handles[h.id]
	delete(e.handles, h.id)
	e.mu.Unlock()
	if registered {
		e.tel.HandleClosed(context.Background())
	}
}
