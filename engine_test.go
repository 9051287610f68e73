package roomstore_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

// The bubble's clock makes "promptly" exact: Shutdown returns when its
// deadline passes, not a moment later, however slow the machine.
func TestShutdownHonoursItsDeadlineAndFinishesLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := backend_mem.New()
		e, err := roomstore.New(b)
		if err != nil {
			t.Fatal(err)
		}
		delivered := make(chan struct{}, 1)
		e.Subscribe(func(roomstore.Event) { delivered <- struct{}{} })
		stuck := make(chan struct{}, 1)
		b.Inject(backend_mem.Fault{Op: backend_mem.OpCommit, Stall: true, Times: 1, Notify: func() { stuck <- struct{}{} }})
		h, err := e.Open(t.Context(), "f", roomstore.OpenOptions{Overwrite: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := e.Write(t.Context(), h, []byte("x")); err != nil {
			t.Fatalf("Write: %v", err)
		}
		closeCtx, cancelClose := context.WithCancel(t.Context())
		closed := make(chan error, 1)
		go func() { closed <- e.Close(closeCtx, h) }()
		<-stuck // Close is now stuck committing

		const deadline = 50 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		defer cancel()
		start := time.Now()
		err = e.Shutdown(ctx)
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took != deadline {
			t.Fatalf("Shutdown = %v after %v, want its deadline after exactly %v", err, took, deadline)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			t.Fatalf("Shutdown error %v is not a PathError", err)
		}
		cancelClose() // the stuck call ends; the background work can finish
		if err := <-closed; !errors.Is(err, context.Canceled) {
			t.Fatalf("Close = %v", err)
		}
		if err := e.Shutdown(t.Context()); err != nil {
			t.Fatalf("second Shutdown: %v", err)
		}
		select {
		case <-delivered:
			t.Fatal("a failed Close published an event")
		default:
		}
	})
}

func TestSubscriptionCallsFollowTheErrorModel(t *testing.T) {
	e, err := roomstore.New(backend_mem.New())
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err, target error) {
		t.Helper()
		var pe *fs.PathError
		if !errors.Is(err, target) || !errors.As(err, &pe) {
			t.Fatalf("%s: %v, want a PathError matching %v", what, err, target)
		}
	}
	_, err = e.On(roomstore.EventFileUpdated, func(int) {})
	check("On with a wrong shape", err, fs.ErrInvalid)
	_, err = e.On("file.created", func(string) {})
	check("On with an unknown event", err, fs.ErrInvalid)
	check("Off of a handler never subscribed", e.Off(roomstore.EventFileUpdated, TestMain), fs.ErrNotExist)
	check("Off with nil", e.Off(roomstore.EventFileUpdated, (func(string))(nil)), fs.ErrInvalid)
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err = e.On(roomstore.EventFileUpdated, func(string) {})
	check("On after Shutdown", err, fs.ErrClosed)
}

func TestATrailingSlashNamesOnlyAFolder(t *testing.T) {
	e, err := roomstore.New(backend_mem.New())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	put(t, e, "file", "x")
	put(t, e, "dir/inner", "x")
	if ok, err := e.Exists(t.Context(), "file/"); ok || err != nil {
		t.Fatalf("Exists(file/) = %v, %v; want false", ok, err)
	}
	if _, err := e.Stat(t.Context(), "file/"); !errors.Is(err, roomstore.ErrNotFolder) {
		t.Fatalf("Stat(file/) = %v, want ErrNotFolder", err)
	}
	if err := e.RemoveAll(t.Context(), "file/"); !errors.Is(err, roomstore.ErrNotFolder) {
		t.Fatalf("RemoveAll(file/) = %v, want ErrNotFolder", err)
	}
	if ok, _ := e.Exists(t.Context(), "dir/"); !ok {
		t.Fatal("Exists(dir/) = false")
	}
	if ok, _ := e.Exists(t.Context(), "file"); !ok {
		t.Fatal("the file was removed")
	}
}

func TestShutdownFromAHandlerDoesNotDeadlock(t *testing.T) {
	e, err := roomstore.New(backend_mem.New())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	e.On(roomstore.EventFileUpdated, func(string) { done <- e.Shutdown(context.Background()) })
	put(t, e, "f", "x")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown from a handler deadlocked")
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// The idle timeout counts from a handle's last Write, on the bubble's
// clock: a handle is open a nanosecond before its timeout and discarded at
// it, and a handle in use outlives it.
func TestAnIdleHandleIsDiscardedExactlyAtItsTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = time.Minute
		e, err := roomstore.New(backend_mem.New(), roomstore.WithIdleTimeout(idle), roomstore.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := e.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}()
		ctx := t.Context()
		open := func(p string) *roomstore.Handle {
			t.Helper()
			h, err := e.Open(ctx, p, roomstore.OpenOptions{Overwrite: true})
			if err != nil {
				t.Fatalf("Open %s: %v", p, err)
			}
			return h
		}
		write := func(h *roomstore.Handle, data string) {
			t.Helper()
			if err := e.Write(ctx, h, []byte(data)); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
		isOpen := func(h *roomstore.Handle) bool {
			t.Helper()
			synctest.Wait() // every timer due by now has fired and its discard finished
			_, err := e.Handle(ctx, h.ID())
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Handle: %v", err)
			}
			return err == nil
		}
		old := open("f")
		write(old, "old")
		if err := e.Close(ctx, old); err != nil {
			t.Fatalf("Close: %v", err)
		}
		idleH, busy := open("f"), open("busy")
		write(idleH, "new")

		time.Sleep(idle - time.Nanosecond)
		if !isOpen(idleH) {
			t.Fatalf("the idle handle was discarded a nanosecond before its %v timeout", idle)
		}
		write(busy, ".")
		time.Sleep(time.Nanosecond)
		if isOpen(idleH) {
			t.Fatalf("the idle handle is still open at its %v timeout", idle)
		}
		if !isOpen(busy) {
			t.Fatal("the handle written a nanosecond ago was discarded")
		}
		time.Sleep(idle - 2*time.Nanosecond)
		if !isOpen(busy) {
			t.Fatalf("the busy handle was discarded before %v since its last Write", idle)
		}
		time.Sleep(time.Nanosecond)
		if isOpen(busy) {
			t.Fatalf("the busy handle is still open %v after its last Write", idle)
		}

		if err := e.Write(ctx, idleH, []byte("x")); !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("Write on the discarded handle: %v, want fs.ErrClosed", err)
		}
		if err := e.Close(ctx, idleH); !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("Close on the discarded handle: %v, want fs.ErrClosed", err)
		}
		f, err := e.Download(ctx, "f")
		if err != nil || string(f.Data) != "old" {
			t.Fatalf("f after the discard: %v, %v; want the old content", f, err)
		}
		if ok, err := e.Exists(ctx, "busy"); ok || err != nil {
			t.Fatalf("Exists(busy) after its discard = %v, %v; want false", ok, err)
		}
	})
}
