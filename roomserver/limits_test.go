package roomserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

// logWatch is a slog handler that tells when a message was logged.
type logWatch struct {
	mu   sync.Mutex
	seen map[string]chan struct{}
}

func newLogWatch(msgs ...string) *logWatch {
	w := &logWatch{seen: map[string]chan struct{}{}}
	for _, m := range msgs {
		w.seen[m] = make(chan struct{})
	}
	return w
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.seen[r.Message]; ok {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	return nil
}

func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }

// A participant that reads slower than the room changes loses events
// for itself alone, is told exactly how many, and stays connected; the
// writer and the other participants are never held up.
func TestASlowReaderLosesCountedEventsAndNeverStallsTheRoom(t *testing.T) {
	f, watch, upload := slowRoom(t)
	slow := f.dialExt("r1", "slow") // does not read until the loss
	events := upload.untilLost(watch)

	// Every event reaches the slow participant, or is counted in a
	// notice; the notices come in order, none ahead of an event before
	// its loss.
	var got, dropped, notices int
	for got+dropped < events {
		m := slow.until(func(m *wire.Message) bool {
			return m.Type == wire.TypeFileUpdated || m.Type == wire.TypeEventsOverflow
		})
		if m.Type == wire.TypeFileUpdated {
			got++
			continue
		}
		var ov wire.OverflowEvent
		body, _, _ := m.Split()
		if err := json.Unmarshal(body, &ov); err != nil || ov.Dropped == 0 {
			t.Fatalf("overflow %s: %v", body, err)
		}
		dropped += int(ov.Dropped)
		notices++
	}
	if got+dropped != events || notices == 0 || dropped == 0 {
		t.Fatalf("the slow participant got %d events and %d notices of %d lost, of %d", got, notices, dropped, events)
	}
	t.Logf("%d events: %d delivered, %d lost in %d notices", events, got, dropped, notices)
	// Both are still served.
	for i, p := range []*raw{slow, upload.fast} {
		if c := p.upload("u", fmt.Sprintf("after%d.txt", i), []byte("x"), false); c.Method != "close" {
			t.Fatalf("upload after: %+v", c)
		}
	}
}

// slowRoom is a room whose participants have a queue of 8 events and a
// long WriteTimeout (reading late is not stopping), with a participant
// that reads every event, and the uploads that make them.
func slowRoom(t *testing.T) (*fixture, *logWatch, *uploader) {
	watch := newLogWatch("a slow participant lost events")
	f := newFixture(t, func(o *roomserver.Options) {
		o.SendQueue = 8
		o.WriteTimeout = 5 * time.Minute
		o.Logger = slog.New(watch)
	})
	return f, watch, &uploader{t: t, e: f.engine, fast: f.dial("r1", "fast")}
}

// uploader makes one event at a time in room r1, each waited for by a
// participant that reads them all: the writer is never held up by a
// slow participant.
type uploader struct {
	t    *testing.T
	e    func(room string) *roomstore.Engine
	fast *raw
}

func (u *uploader) upload(i int) {
	u.t.Helper()
	ctx := roomstore.WithParticipant(u.t.Context(), "writer")
	name := strings.Repeat("n", 200) // bigger events fill the socket sooner
	if _, err := u.e("r1").Upload(ctx, fmt.Sprintf("%s/%d", name, i%50), bytes.NewReader(nil), roomstore.OpenOptions{Overwrite: true}); err != nil {
		u.t.Fatal(err)
	}
	u.fast.until(func(m *wire.Message) bool { return m.Type == wire.TypeFileUpdated })
}

// untilLost uploads until the one participant that does not read has
// lost an event (it is logged), then 5 more, and returns how many it
// made.
func (u *uploader) untilLost(watch *logWatch) int {
	u.t.Helper()
	deadline := time.After(60 * time.Second)
	events := 0
	for lost := false; !lost; events++ {
		select {
		case <-watch.seen["a slow participant lost events"]:
			lost = true
		case <-deadline:
			u.t.Fatalf("the slow participant never lost an event after %d", events)
		default:
		}
		u.upload(events)
	}
	for range 5 {
		u.upload(events)
		events++
	}
	return events
}

// A participant that did not ask for roomstore's extensions, and stops
// reading, cannot be told of its loss: it gets what was queued before
// it, then a close with 1013 (once its writer has been stuck for a
// second: while it reads it has room for bursts).
func TestAStrictReaderThatStopsReadingIsClosedAfterWhatCameBefore(t *testing.T) {
	f, watch, upload := slowRoom(t)
	plain := f.dial("r1", "plain")
	events := upload.untilLost(watch)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := 0
	for {
		m, err := plain.read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusTryAgainLater || ctx.Err() != nil {
				t.Fatalf("the participant ended with %v (code %d), want a close with 1013", err, code)
			}
			break
		}
		switch m.Type {
		case wire.TypeFileUpdated:
			got++
		case wire.TypeEventsOverflow:
			t.Fatalf("%s sent to a participant that did not ask for it", m.Type)
		}
	}
	if got == 0 || got >= events {
		t.Fatalf("the participant got %d of %d events before its close", got, events)
	}
}

// A participant that stops reading altogether is dropped after
// WriteTimeout, and the room goes on.
func TestAParticipantThatStopsReadingIsDropped(t *testing.T) {
	watch := newLogWatch("dropping a participant that stopped reading")
	f := newFixture(t, func(o *roomserver.Options) {
		o.SendQueue = 8
		o.WriteTimeout = 200 * time.Millisecond
		o.Logger = slog.New(watch)
	})
	stuck := f.dialExt("r1", "stuck") // never reads from here on
	fast := f.dial("r1", "fast")
	e := f.engine("r1")
	ctx := roomstore.WithParticipant(t.Context(), "writer")
	name := strings.Repeat("n", 200)
	deadline := time.After(60 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-watch.seen["dropping a participant that stopped reading"]:
		case <-deadline:
			t.Fatalf("the participant that stopped reading was never dropped after %d events", i)
		default:
			if _, err := e.Upload(ctx, fmt.Sprintf("%s/%d", name, i%50), bytes.NewReader(nil), roomstore.OpenOptions{Overwrite: true}); err != nil {
				t.Fatal(err)
			}
			fast.until(func(m *wire.Message) bool { return m.Type == wire.TypeFileUpdated })
			continue
		}
		break
	}
	rctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		if _, err := stuck.read(rctx); err != nil {
			if rctx.Err() != nil {
				t.Fatal("the dropped connection is still open")
			}
			break // what was written before the drop, then the end
		}
	}
	if c := fast.upload("u", "after.txt", []byte("x"), false); c.Method != "close" {
		t.Fatalf("upload after: %+v", c)
	}
}

func TestAnIdleRoomIsShutDownAndReopened(t *testing.T) {
	watch := newLogWatch("room closed")
	f := newFixture(t, func(o *roomserver.Options) {
		o.RoomIdle = 10 * time.Millisecond
		o.Logger = slog.New(watch)
	})
	p := f.dial("r1", "alice")
	p.upload("u", "a", []byte("x"), false)
	first := f.engine("r1")
	_ = p.ws.Close(websocket.StatusNormalClosure, "")
	select {
	case <-watch.seen["room closed"]:
	case <-time.After(20 * time.Second):
		t.Fatal("the idle room was never closed")
	}
	if _, err := first.Exists(t.Context(), "a"); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("the idle room's engine is still open: %v", err)
	}
	q := f.dial("r1", "bob")
	var ex struct{ Exists bool }
	jsonOf(t, q.call("exists", map[string]any{"path": ""}), &ex)
	if f.engine("r1") == first {
		t.Fatal("the room was not reopened")
	}
}

func TestShutdownAbortsOpenUploadsAndClosesWithGoingAway(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	e := f.engine("r1")
	p.startUpload("u", map[string]any{"path": "half.bin"})
	p.chunk("u", wire.Binary(map[string]any{"kind": "data"}), []byte("part"))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	// The upload does not finish within ctx: it is aborted.
	done := make(chan error, 1)
	go func() { done <- f.srv.Shutdown(ctx) }()
	if got := p.closeStatus(); got != websocket.StatusGoingAway {
		t.Fatalf("close code %d, want 1001", got)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	if err := f.srv.Shutdown(wctx); err != nil { // waits for the rest
		t.Fatal(err)
	}
	if _, err := e.Exists(context.Background(), "half.bin"); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("the room's engine is still open: %v", err)
	}
	dctx, dcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer dcancel()
	if ws, resp, err := websocket.Dial(dctx, f.url("r1")+"?token="+token(t, "a", "r1", time.Hour), nil); err == nil {
		_ = ws.CloseNow()
		t.Fatal("connected after Shutdown")
	} else if resp == nil || resp.StatusCode != 503 {
		t.Fatalf("after Shutdown: %v %v, want 503", err, resp)
	}
}

func TestShutdownLetsUploadsFinish(t *testing.T) {
	f := newFixture(t, nil)
	p := f.dial("r1", "alice")
	p.startUpload("u", map[string]any{"path": "whole.bin"})
	// New calls are refused while the upload goes on.
	done := f.shutdownRefusing(p)
	p.chunk("u", wire.Binary(map[string]any{"kind": "data"}), []byte("all of it"))
	p.streamed("u") // the next pull
	p.chunk("u", wire.Control("close"), nil)
	if c, _ := p.streamed("u"); c.Method != "close" {
		t.Fatalf("upload end: %+v", c)
	}
	shutdownEnds(t, p, done)
}

// shutdownRefusing begins the server's Shutdown and returns once p's
// calls are refused (503), with the channel of Shutdown's outcome.
func (f *fixture) shutdownRefusing(p *raw) <-chan error {
	f.t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.srv.Shutdown(f.t.Context()) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := p.call("exists", map[string]any{"path": ""})
		if c.Type == wire.KindError {
			wantError(f.t, c, roomserver.CodeUnavailable)
			return done
		}
		if time.Now().After(deadline) {
			f.t.Fatal("calls were still served during Shutdown")
		}
	}
}

// shutdownEnds checks that p's connection ends with 1001 and that
// Shutdown returns without error.
func shutdownEnds(t *testing.T, p *raw, done <-chan error) {
	t.Helper()
	if got := p.closeStatus(); got != websocket.StatusGoingAway {
		t.Fatalf("close code %d, want 1001", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// A participant that did not ask for roomstore's extensions, and keeps
// reading, gets every event of a burst bigger than its queue (a
// recursive delete of 600 files, default options): a burst is no loss,
// and does not close it.
func TestABurstReachesAStrictReaderWhole(t *testing.T) {
	f := newFixture(t, nil)
	strict := f.dial("r1", "strict")
	other := f.dialExt("r1", "other")
	e := f.engine("r1")
	ctx := roomstore.WithParticipant(t.Context(), "writer")
	const n = 600
	for i := range n {
		if _, err := e.Upload(ctx, fmt.Sprintf("burst/%03d.txt", i), bytes.NewReader(nil), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}
	if c := other.call("delete", map[string]any{"path": "burst", "recursive": true}); c.Type == wire.KindError {
		t.Fatalf("recursive delete: %+v", c)
	}
	ctx2, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	counts := map[string]int{}
	for counts[wire.TypeFileUpdated] < n || counts[wire.TypeFileDeleted] < n {
		m, err := strict.read(ctx2)
		if err != nil {
			t.Fatalf("after %v events: %v (close code %d)", counts, err, websocket.CloseStatus(err))
		}
		counts[m.Type]++
	}
	if counts[wire.TypeEventsOverflow] != 0 {
		t.Fatalf("the strict reader got %v", counts)
	}
}
