package roomstore_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_mem"
)

// uploadsOf counts the uploads a store holds.
func uploadsOf(t *testing.T, b *backend_mem.Backend) int {
	t.Helper()
	n := 0
	for _, err := range b.ListStaged(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// The engine's hourly timer removes an abandoned upload once it has
// expired, also with no history to expire, on the bubble's clock: not an
// hour before, and within the hour after.
func TestTheHourlyTimerExpiresUploadsWithoutAHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := backend_mem.New()
		e, err := roomstore.New(b, roomstore.WithHistory(roomstore.History{}),
			roomstore.WithResumable(roomstore.ResumableLimits{MaxAge: 90 * time.Minute, PerParticipant: 4}),
			roomstore.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := e.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}()
		ctx := t.Context()
		r, err := e.CreateResumable(ctx, "f", roomstore.ResumableOptions{Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.WriteResumable(ctx, r.ID, 0, strings.NewReader("abc")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour + time.Minute) // the first run: not expired yet
		synctest.Wait()
		if n := uploadsOf(t, b); n != 1 {
			t.Fatalf("%d uploads after the first hourly run, want the upload kept", n)
		}
		time.Sleep(time.Hour) // the second run, past Expires
		synctest.Wait()
		if n := uploadsOf(t, b); n != 0 {
			t.Fatalf("%d uploads after the second hourly run, want the expired one removed", n)
		}
		if _, err := e.Resumable(ctx, r.ID); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Resumable of the expired upload: %v", err)
		}
	})
}

// endless yields one byte per read, for ever.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = 'x'
	return 1, nil
}

// Shutdown stops a write in flight at its next read, keeping the bytes it
// had, and another engine continues the upload.
func TestShutdownStopsAResumableWriteInFlight(t *testing.T) {
	b := backend_mem.New()
	e, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	r, err := e.CreateResumable(ctx, "f", roomstore.ResumableOptions{Size: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  roomstore.Resumable
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := e.WriteResumable(ctx, r.ID, 0, endless{})
		done <- result{st, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur, err := b.Staged(ctx, r.ID)
		if err == nil && cur.Size > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no byte arrived within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with a write in flight: %v", err)
	}
	res := <-done
	if !errors.Is(res.err, context.Canceled) || res.st.Offset == 0 {
		t.Fatalf("the write stopped by Shutdown: %+v, %v; want context.Canceled and the bytes kept", res.st, res.err)
	}
	e2, err := roomstore.New(b)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Shutdown(context.Background())
	st, err := e2.Resumable(ctx, r.ID)
	if err != nil || st.Offset != res.st.Offset {
		t.Fatalf("the other engine's Resumable = %+v, %v; want Offset %d", st, err, res.st.Offset)
	}
	if _, err := e2.WriteResumable(ctx, r.ID, st.Offset, bytes.NewReader([]byte("y"))); err != nil {
		t.Fatal(err)
	}
	if err := e2.AbortResumable(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if n := uploadsOf(t, b); n != 0 {
		t.Fatalf("%d uploads after the abort", n)
	}
}

// The calls on a resumable upload are counted under their operations,
// and its bytes once, when the commit makes them a file.
func TestResumableCallsAreCounted(t *testing.T) {
	e, err := roomstore.New(backend_mem.New())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	ctx := t.Context()
	r, err := e.CreateResumable(ctx, "f", roomstore.ResumableOptions{Size: 6})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"abc", "def"} {
		st, err := e.Resumable(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.WriteResumable(ctx, r.ID, st.Offset, strings.NewReader(part)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.WriteResumable(ctx, r.ID, 0, strings.NewReader("x")); !errors.Is(err, roomstore.ErrConflict) {
		t.Fatalf("a stale write: %v", err)
	}
	if _, err := e.CommitResumable(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.AbortResumable(ctx, r.ID); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an abort of a committed upload: %v", err)
	}
	s := e.Stats()
	want := map[string]map[string]uint64{
		"create_resumable": {"ok": 1},
		"resumable":        {"ok": 2},
		"write_resumable":  {"ok": 2, "conflict": 1},
		"commit_resumable": {"ok": 1},
		"abort_resumable":  {"not_exist": 1},
	}
	for op, outcomes := range want {
		for o, n := range outcomes {
			if got := s.Calls[op][o]; got != n {
				t.Errorf("Calls[%q][%q] = %d, want %d", op, o, got, n)
			}
		}
	}
	if s.BytesWritten != 6 || s.CommitAttempts != 1 || s.EventsPublished != 1 {
		t.Errorf("BytesWritten %d, CommitAttempts %d, EventsPublished %d; want 6, 1, 1", s.BytesWritten, s.CommitAttempts, s.EventsPublished)
	}
}
