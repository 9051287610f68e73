package events_nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/afero"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_disk"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/natstest"
)

// hasFile reports whether evs holds an update of p by pid.
func hasFile(p, pid string) func([]events.Event) bool {
	return func(evs []events.Event) bool {
		for _, e := range evs {
			if e.Type == roomstore.EventFileUpdated && e.Path == p && e.ParticipantID == pid {
				return true
			}
		}
		return false
	}
}

func TestTwoStoresOnOneServerNeverSeeEachOthersEvents(t *testing.T) {
	srv := natstest.Start(t)
	one, two := fileStore(t), fileStore(t)
	x1, x2 := newSide(t, one, srv.URL()), newSide(t, one, srv.URL())
	y1, y2 := newSide(t, two, srv.URL()), newSide(t, two, srv.URL())
	if x1.tr.Subject(x1.eng.StoreID()) == y1.tr.Subject(y1.eng.StoreID()) {
		t.Fatalf("two stores share the subject %s", x1.tr.Subject(x1.eng.StoreID()))
	}
	for range 20 {
		x1.write(t, "x", "same/name.txt", "x")
		y1.write(t, "y", "same/name.txt", "y")
	}
	x2.rec.waitUntil(t, "store one's 20 events", func(evs []events.Event) bool { return countFrom(evs, x1.eng.ID()) == 20 })
	y2.rec.waitUntil(t, "store two's 20 events", func(evs []events.Event) bool { return countFrom(evs, y1.eng.ID()) == 20 })
	for _, s := range []*side{x1, x2, y1, y2} {
		s.shutdown(t)
	}
	for _, c := range []struct {
		s     *side
		other []string
	}{{x2, []string{y1.eng.ID(), y2.eng.ID()}}, {y2, []string{x1.eng.ID(), x2.eng.ID()}}} {
		for _, o := range c.other {
			if n := countFrom(c.s.rec.snapshot(), o); n != 0 {
				t.Errorf("an engine got %d events of another store's engine", n)
			}
		}
		if st := c.s.eng.TransportStats(); st.Received != 20 || st.Foreign != 0 {
			t.Errorf("stats %+v: want 20 received, none foreign", st)
		}
	}
}

func TestNATSDownAtStart(t *testing.T) {
	srv := natstest.Reserve(t) // nothing listens on its URL yet
	store := fileStore(t)
	a, b := newSide(t, store, srv.URL()), newSide(t, store, srv.URL())

	a.write(t, "alice", "early.txt", "written while NATS is down")
	a.rec.waitUntil(t, "the local event with NATS down", hasFile("early.txt", "alice"))
	if st := a.eng.TransportStats(); st.Published != 0 || st.Queued != 1 {
		t.Fatalf("with NATS down: %+v, want 1 queued, none published", st)
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	b.rec.waitUntil(t, "the event written before NATS came up", hasFile("early.txt", "alice"))
	b.write(t, "bob", "later.txt", "after")
	a.rec.waitUntil(t, "an event the other way", hasFile("later.txt", "bob"))
	a.shutdown(t)
	b.shutdown(t)
	checkExactlyOnce(t, a, b)
}

func TestAStreamDeletedUnderTheEnginesIsMadeAgainAndTheGapSignalled(t *testing.T) {
	srv := natstest.Start(t)
	store := fileStore(t)
	a, b := newSide(t, store, srv.URL()), newSide(t, store, srv.URL())
	a.write(t, "alice", "before.txt", "1")
	b.rec.waitUntil(t, "an event before the deletion", hasFile("before.txt", "alice"))

	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := js.DeleteStream(ctx, a.tr.Stream(a.eng.StoreID())); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	a.write(t, "alice", "after.txt", "2")
	got := b.rec.waitUntil(t, "an event after the deletion", hasFile("after.txt", "alice"))
	var sawGap bool
	for _, e := range got {
		if e.Type == events.TypeOverflow {
			sawGap = true
		}
		if e.Path == "after.txt" && !sawGap {
			t.Fatalf("the event after the deletion came before any overflow event: %+v", got)
		}
	}
	if _, err := js.Stream(ctx, a.tr.Stream(a.eng.StoreID())); err != nil {
		t.Fatalf("the stream was not made again: %v", err)
	}
	if n := len(fileEvents(got)); n != 2 {
		t.Fatalf("B got %d file events, want before.txt and after.txt once each: %+v", n, got)
	}
	if st := b.eng.TransportStats(); st.Gaps == 0 || st.Reconnects == 0 {
		t.Errorf("stats %+v: want a gap and a resubscription counted", st)
	}
}

func TestMalformedAndForeignMessagesAreCountedAndNeverDelivered(t *testing.T) {
	srv := natstest.Start(t)
	store := fileStore(t)
	a, b := newSide(t, store, srv.URL()), newSide(t, store, srv.URL())
	subject := b.tr.Subject(b.eng.StoreID())
	a.write(t, "alice", "first.txt", "once the stream exists")
	b.rec.waitUntil(t, "the first event", hasFile("first.txt", "alice"))

	valid := func(storeHash string) []byte {
		m := map[string]any{"v": 1, "store": storeHash, "origin": "0123456789abcdef", "events": []map[string]any{
			{"seq": 1, "id": "0123456789abcdef-1", "type": "file.updated", "path": "forged.txt", "time": time.Now()},
		}}
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	bad := [][]byte{
		[]byte("not json"),
		[]byte(`{"v":2}`),
		[]byte(`{"v":1,"store":"x","origin":"o","events":[{"seq":1,"id":"o-1","type":"file.exploded","path":"a","time":"2026-01-01T00:00:00Z"}]}`),
		[]byte(`{"v":1,"store":"x","origin":"o","events":[{"seq":1,"id":"o-1","type":"file.updated","path":"../escape","time":"2026-01-01T00:00:00Z"}]}`),
	}
	for _, data := range bad {
		if err := a.nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	// A message that is well formed but names another store: published
	// straight onto this store's subject, as a misconfigured publisher would.
	if err := a.nc.Publish(subject, valid("another store")); err != nil {
		t.Fatal(err)
	}
	a.write(t, "alice", "real.txt", "after the junk")
	b.rec.waitUntil(t, "the real event after the junk", hasFile("real.txt", "alice"))
	a.shutdown(t)
	b.shutdown(t)
	for _, e := range b.rec.snapshot() {
		if e.Path == "forged.txt" || e.Path == "a" || e.Type == events.TypeOverflow {
			t.Errorf("delivered %+v", e)
		}
	}
	if st := b.eng.TransportStats(); st.Malformed != uint64(len(bad)) || st.Foreign != 1 || st.Received != 2 {
		t.Errorf("stats %+v: want %d malformed, 1 foreign, 2 received", st, len(bad))
	}
}

func TestEventsGivenUpOnShowAsAGapOnTheOtherEngines(t *testing.T) {
	srv := natstest.Start(t)
	store := fileStore(t)
	logs := newLogTap()
	a := newSide(t, store, srv.URL(), events_nats.WithPublishTimeout(200*time.Millisecond), events_nats.WithLogger(slog.New(logs)))
	b := newSide(t, store, srv.URL())
	a.write(t, "alice", "first.txt", "1")
	b.rec.waitUntil(t, "the first event", hasFile("first.txt", "alice"))

	srv.Stop()
	for _, p := range []string{"lost1.txt", "lost2.txt", "lost3.txt"} {
		a.write(t, "alice", p, "x")
	}
	for given := int64(0); given < 3; { // the publisher gives up within its 200ms bound, and says so
		r := logs.next(t, "given up on")
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "events" {
				given += a.Value.Int64()
			}
			return true
		})
	}
	if st := a.eng.TransportStats(); st.GaveUp != 3 || st.Published != 1 {
		t.Fatalf("publisher stats %+v: want 3 given up, 1 published", st)
	}
	reconnected := a.nc.StatusChanged(nats.CONNECTED)
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	select { // within the 200ms bound, next.txt must find a connection
	case <-reconnected:
	case <-time.After(wait):
		t.Fatal("the publisher's connection did not come back")
	}
	a.write(t, "alice", "next.txt", "y")
	got := b.rec.waitUntil(t, "the event after the gap", hasFile("next.txt", "alice"))
	var gap events.Event
	for _, e := range got {
		if e.Type == events.TypeOverflow {
			gap = e
		}
		if e.Path == "next.txt" {
			break
		}
		if e.Path == "lost1.txt" || e.Path == "lost2.txt" || e.Path == "lost3.txt" {
			t.Fatalf("a given-up event arrived: %+v", e)
		}
	}
	if gap.Dropped != 3 {
		t.Fatalf("before next.txt: overflow %+v, want Dropped 3; events %+v", gap, got)
	}
	if st := b.eng.TransportStats(); st.Lost != 3 || st.Gaps != 1 {
		t.Errorf("receiver stats %+v: want 3 lost in 1 gap", st)
	}
}

func TestBadArguments(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL(), events_nats.ConnOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for name, opts := range map[string][]events_nats.Option{
		"nil option":                {nil},
		"prefix with a wildcard":    {events_nats.WithPrefix("rooms.*")},
		"empty prefix":              {events_nats.WithPrefix("")},
		"retention under a minute":  {events_nats.WithRetention(time.Second)},
		"publish timeout of 0":      {events_nats.WithPublishTimeout(0)},
		"publish timeout over half": {events_nats.WithRetention(time.Minute), events_nats.WithPublishTimeout(time.Minute)},
		"flush timeout of 0":        {events_nats.WithFlushTimeout(0)},
		"queue of 0":                {events_nats.WithQueue(0)},
		"replicas of 0":             {events_nats.WithReplicas(0)},
		"nil logger":                {events_nats.WithLogger(nil)},
	} {
		if _, err := events_nats.New(nc, opts...); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("%s: New = %v, want fs.ErrInvalid", name, err)
		}
	}
	if _, err := events_nats.New(nil); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("New(nil) = %v, want fs.ErrInvalid", err)
	}

	tr, err := events_nats.New(nc, events_nats.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	bus, err := events.New()
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close(context.Background())
	for name, args := range map[string]struct {
		store, origin string
		bus           *events.Bus
	}{"no store": {"", "o", bus}, "no origin": {"s", "", bus}, "no bus": {"s", "o", nil}} {
		if _, err := tr.Attach(args.store, args.origin, args.bus); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("%s: Attach = %v, want fs.ErrInvalid", name, err)
		}
	}
	l, err := tr.Attach("s", "o", bus)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Attach("s", "o", bus); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("a second Attach of one origin = %v, want fs.ErrInvalid", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil { // closed by the transport already: idempotent
		t.Errorf("Close after the transport's: %v", err)
	}
	if _, err := tr.Attach("s", "p", bus); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Attach after Close = %v, want fs.ErrClosed", err)
	}

	// An engine whose backend cannot name its store needs WithStoreID.
	tr2, err := events_nats.New(nc, events_nats.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close(ctx)
	anon := backend_disk.NewAfero(afero.NewMemMapFs())
	if _, err := roomstore.New(anon, roomstore.WithEventTransport(tr2)); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("New over an unnamed store = %v, want fs.ErrInvalid", err)
	}
	eng, err := roomstore.New(anon, roomstore.WithEventTransport(tr2), roomstore.WithStoreID("room-42"))
	if err != nil {
		t.Fatalf("New with WithStoreID: %v", err)
	}
	if eng.StoreID() != "room-42" {
		t.Errorf("StoreID() = %q", eng.StoreID())
	}
	if err := eng.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]roomstore.Option{"nil transport": roomstore.WithEventTransport(nil), "empty store id": roomstore.WithStoreID("")} {
		if _, err := roomstore.New(anon, o); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("%s: New = %v, want fs.ErrInvalid", name, err)
		}
	}
}

// logTap is a slog.Handler that hands every record to the test.
type logTap struct{ records chan slog.Record }

func newLogTap() *logTap { return &logTap{records: make(chan slog.Record, 1024)} }

func (l *logTap) Enabled(context.Context, slog.Level) bool { return true }
func (l *logTap) Handle(_ context.Context, r slog.Record) error {
	select {
	case l.records <- r.Clone():
	default: // a test that stopped reading loses nothing it waits for
	}
	return nil
}
func (l *logTap) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logTap) WithGroup(string) slog.Handler      { return l }

// next returns the next record whose message contains what, within wait.
func (l *logTap) next(t testing.TB, what string) slog.Record {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		select {
		case r := <-l.records:
			if strings.Contains(r.Message, what) {
				return r
			}
		case <-deadline.C:
			t.Fatalf("timed out waiting for a log record about %q", what)
		}
	}
}
