package events_nats_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
)

// wait bounds every wait of these tests.
const wait = 60 * time.Second

// recorder keeps every event a subscriber got, in order.
type recorder struct {
	mu     sync.Mutex
	events []events.Event
	grew   chan struct{} // a token after each event
}

func newRecorder() *recorder { return &recorder{grew: make(chan struct{}, 1)} }

func (r *recorder) handle(e events.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.grew <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitUntil waits until ok holds for the events so far, or fails the
// test after wait, saying what for.
func (r *recorder) waitUntil(t testing.TB, what string, ok func([]events.Event) bool) []events.Event {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		got := r.snapshot()
		if ok(got) {
			return got
		}
		select {
		case <-r.grew:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; got %d events", wait, what, len(got))
		}
	}
}

// fileEvents returns the events that are not overflow events.
func fileEvents(evs []events.Event) []events.Event {
	return slices.DeleteFunc(slices.Clone(evs), func(e events.Event) bool { return e.Type == events.TypeOverflow })
}

func overflows(evs []events.Event) []events.Event {
	return slices.DeleteFunc(slices.Clone(evs), func(e events.Event) bool { return e.Type != events.TypeOverflow })
}

// side is one engine with its own NATS connection and transport, as one
// replica of a server would have, and a subscriber to everything.
type side struct {
	eng *roomstore.Engine
	nc  *nats.Conn
	tr  *events_nats.Transport
	rec *recorder
}

// quiet is a logger for transports whose warnings a test provokes.
var quiet = slog.New(slog.DiscardHandler)

// newSide opens the store at storeURL with a transport to natsURL. The
// engine, transport and connection are closed when the test ends.
func newSide(t testing.TB, storeURL, natsURL string, opts ...events_nats.Option) *side {
	t.Helper()
	return newSideWith(t, storeURL, natsURL, nil, opts...)
}

// newSideWith is newSide with the engine options eopts.
func newSideWith(t testing.TB, storeURL, natsURL string, eopts []roomstore.Option, opts ...events_nats.Option) *side {
	t.Helper()
	nc, err := nats.Connect(natsURL, events_nats.ConnOptions()...)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	tr, err := events_nats.New(nc, append([]events_nats.Option{events_nats.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("events_nats.New: %v", err)
	}
	eng, err := roomstore.OpenURL(context.Background(), storeURL, append(eopts, roomstore.WithEventTransport(tr))...)
	if err != nil {
		t.Fatalf("OpenURL: %v", err)
	}
	s := &side{eng: eng, nc: nc, tr: tr, rec: newRecorder()}
	eng.Subscribe(s.rec.handle)
	t.Cleanup(func() { s.shutdown(t) })
	return s
}

// shutdown stops the engine (publishing what it queued) and the transport.
// It is idempotent.
func (s *side) shutdown(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.eng.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := s.tr.Close(ctx); err != nil {
		t.Errorf("transport Close: %v", err)
	}
}

// write stores data at p as participant pid.
func (s *side) write(t testing.TB, pid, p, data string) {
	t.Helper()
	ctx := roomstore.WithParticipant(context.Background(), pid)
	if _, err := s.eng.Upload(ctx, p, strings.NewReader(data), roomstore.OpenOptions{Overwrite: true}); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

// churnWith makes n changes as participant pid on paths shared with the
// other side: overwrites, appends, deletes and moves, picked by seed, and
// calls fault before change at (while the other side goes on changing).
// Changes that find nothing to change (a delete of a missing file) make no
// event; it returns how many did (one event each).
func churnWith(ctx context.Context, eng *roomstore.Engine, pid string, n int, seed uint64, at int, fault func()) (int, error) {
	ctx = roomstore.WithParticipant(ctx, pid)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	name := func() string { return "f/" + strconv.Itoa(r.IntN(24)) + ".txt" }
	changed := 0
	for i := range n {
		if i == at {
			fault()
		}
		var err error
		switch op := r.IntN(10); {
		case op < 4:
			_, err = eng.Upload(ctx, name(), bytes.NewReader([]byte(fmt.Sprint(pid, i))), roomstore.OpenOptions{Overwrite: true})
		case op < 7:
			_, err = eng.Upload(ctx, name(), bytes.NewReader([]byte(fmt.Sprint(pid, i, ";"))), roomstore.OpenOptions{})
		case op < 9:
			err = eng.Delete(ctx, name())
		default:
			src, dst := name(), name()
			if src == dst {
				dst += ".moved"
			}
			err = eng.Move(ctx, src, dst, roomstore.MoveOptions{Overwrite: r.IntN(2) == 0})
		}
		switch {
		case err == nil:
			changed++
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrExist) && !errors.Is(err, roomstore.ErrConflict):
			return changed, fmt.Errorf("change %d: %w", i, err)
		}
	}
	return changed, nil
}

// idSeq returns the number in an event id, ORIGIN-N.
func idSeq(t testing.TB, id string) uint64 {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	n, err := strconv.ParseUint(id[i+1:], 10, 64)
	if i < 0 || err != nil {
		t.Fatalf("event id %q is not ORIGIN-N", id)
	}
	return n
}

// checkExactlyOnce fails the test unless every side's subscriber got every
// side's events (as each engine's own subscriber recorded them) exactly
// once, equal in every field, each engine's in its commit order, and no
// overflow event.
func checkExactlyOnce(t testing.TB, sides ...*side) {
	t.Helper()
	streams := make([]stream, len(sides))
	for i, s := range sides {
		streams[i] = stream{origin: s.eng.ID(), events: s.rec.snapshot()}
	}
	checkStreams(t, streams...)
}

// stream is what one engine's subscriber got.
type stream struct {
	origin string
	events []events.Event
}

// checkStreams is checkExactlyOnce for subscribers' streams however they
// were recorded (in this process or another).
func checkStreams(t testing.TB, streams ...stream) {
	t.Helper()
	want := map[string]events.Event{} // every event, by id
	for _, s := range streams {
		for _, e := range s.events {
			if e.Origin == s.origin {
				want[e.ID] = e
			}
		}
	}
	for i, s := range streams {
		got := s.events
		if o := overflows(got); len(o) != 0 {
			t.Errorf("side %d got %d overflow events, first %+v", i, len(o), o[0])
		}
		seen := map[string]bool{}
		last := map[string]uint64{}
		for _, e := range fileEvents(got) {
			w, ok := want[e.ID]
			switch {
			case !ok:
				t.Errorf("side %d got an event no engine published: %+v", i, e)
				continue
			case seen[e.ID]:
				t.Errorf("side %d got event %s twice", i, e.ID)
				continue
			}
			seen[e.ID] = true
			if e.Type != w.Type || e.Path != w.Path || e.SourcePath != w.SourcePath || e.ParticipantID != w.ParticipantID ||
				e.Size != w.Size || !e.Time.Equal(w.Time) || e.Origin != w.Origin {
				t.Errorf("side %d got %+v for %+v", i, e, w)
			}
			if n := idSeq(t, e.ID); n <= last[e.Origin] {
				t.Errorf("side %d got %s after %s-%d: out of commit order", i, e.ID, e.Origin, last[e.Origin])
			} else {
				last[e.Origin] = n
			}
		}
		if len(seen) != len(want) {
			t.Errorf("side %d got %d of the %d events", i, len(seen), len(want))
		}
	}
}

// countFrom returns how many events of origin evs holds.
func countFrom(evs []events.Event, origin string) int {
	n := 0
	for _, e := range evs {
		if e.Origin == origin {
			n++
		}
	}
	return n
}
