package roomstore

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_mem"
)

// stateStore is a memory store whose writers report the state of the
// handle they commit for, as the commit sees it, and fail their commit
// while failCommit is set.
type stateStore struct {
	*backend_mem.Backend
	h          *Handle
	seen       []handleState
	failCommit bool
}

func (s *stateStore) Create(ctx context.Context, p string, o backend.WriteOptions) (backend.Writer, error) {
	w, err := s.Backend.Create(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return &stateWriter{Writer: w, s: s}, nil
}

type stateWriter struct {
	backend.Writer
	s *stateStore
}

func (w *stateWriter) Commit(ctx context.Context) (backend.Info, error) {
	// Close holds the handle's mu while it commits, so reading its state
	// here races with nothing.
	w.s.seen = append(w.s.seen, w.s.h.state)
	if w.s.failCommit {
		return backend.Info{}, errors.New("commit refused")
	}
	return w.Writer.Commit(ctx)
}

func TestHandleStates(t *testing.T) {
	ctx := t.Context()
	s := &stateStore{Backend: backend_mem.New()}
	e, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	open := func(t *testing.T) *Handle {
		t.Helper()
		h, err := e.Open(ctx, "f.txt", OpenOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		if h.state != handleOpen {
			t.Fatalf("state after Open = %d, want open", h.state)
		}
		s.h, s.seen = h, nil
		return h
	}
	// ended checks that h ended in state want with reason why, and that a
	// later Write fails with that reason.
	ended := func(t *testing.T, h *Handle, want handleState, why error) {
		t.Helper()
		if h.state != want || h.reason != why {
			t.Errorf("state %d (%v), want %d (%v)", h.state, h.reason, want, why)
		}
		if err := e.Write(ctx, h, []byte("x")); !errors.Is(err, why) {
			t.Errorf("Write after the end = %v, want %v", err, why)
		}
		if _, err := e.Handle(ctx, h.ID()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Engine.Handle after the end = %v, want fs.ErrNotExist", err)
		}
	}

	t.Run("Close commits from closing to closed", func(t *testing.T) {
		h := open(t)
		if err := e.Close(ctx, h); err != nil {
			t.Fatal(err)
		}
		if len(s.seen) != 1 || s.seen[0] != handleClosing {
			t.Errorf("states seen by the commit = %v, want [closing]", s.seen)
		}
		ended(t, h, handleClosed, errCommitted)
	})
	t.Run("a failed commit goes from closing to aborted", func(t *testing.T) {
		h := open(t)
		s.failCommit = true
		defer func() { s.failCommit = false }()
		if err := e.Close(ctx, h); err == nil {
			t.Fatal("Close with a failing commit succeeded")
		}
		if len(s.seen) != 1 || s.seen[0] != handleClosing {
			t.Errorf("states seen by the commit = %v, want [closing]", s.seen)
		}
		ended(t, h, handleAborted, errCloseFailed)
	})
	t.Run("Abort goes from open to aborted", func(t *testing.T) {
		h := open(t)
		if err := e.Abort(ctx, h); err != nil {
			t.Fatal(err)
		}
		if len(s.seen) != 0 {
			t.Errorf("an aborted handle committed: %v", s.seen)
		}
		if h.state != handleAborted || !errors.Is(h.reason, fs.ErrClosed) {
			t.Errorf("state %d (%v), want aborted (fs.ErrClosed)", h.state, h.reason)
		}
		ended(t, h, handleAborted, h.reason)
	})
	t.Run("a Write whose context ended aborts an open handle", func(t *testing.T) {
		h := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := e.Write(cctx, h, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Write = %v, want context.Canceled", err)
		}
		ended(t, h, handleAborted, h.reason)
		if !errors.Is(h.reason, fs.ErrClosed) {
			t.Errorf("reason %v, want fs.ErrClosed", h.reason)
		}
	})
}
