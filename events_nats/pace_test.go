package events_nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/events_nats"
	"github.com/roomstore/roomstore/internal/natstest"
)

var memStores atomic.Int64

// memStore returns the URL of a new mem:// store, which every engine of
// this process opening that URL shares: commits there take microseconds,
// far less than a publish to NATS.
func memStore() string { return fmt.Sprintf("mem://events-nats-%d", memStores.Add(1)) }

// waitStats polls f's transport stats until ok holds, or fails the test
// after wait: the counters are all a test can see of the link's state.
func waitStats(t testing.TB, what string, f func() events.TransportStats, ok func(events.TransportStats) bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !ok(f()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; stats %+v", wait, what, f())
		}
		<-tick.C
	}
}

// An engine that commits faster than NATS takes its events waits for room
// in its queue rather than give events up: with a queue of one event, most
// commits wait for the publish before them, and the other engine still
// gets every event, once, in order.
func TestACommitterFasterThanNATSIsHeldToItsPaceAndLosesNothing(t *testing.T) {
	srv := natstest.Start(t)
	store := memStore()
	a := newSide(t, store, srv.URL(), events_nats.WithQueue(1))
	b := newSide(t, store, srv.URL())
	const n = 2000
	ctx := roomstore.WithParticipant(context.Background(), "alice")
	for i := range n {
		if _, err := a.eng.Upload(ctx, fmt.Sprintf("f%d", i%64), strings.NewReader("x"), roomstore.OpenOptions{Overwrite: true}); err != nil {
			t.Fatal(err)
		}
	}
	b.rec.waitUntil(t, "every event of A", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) >= n })
	// The counters follow the deliveries (an acknowledgement may come after
	// the delivery it acknowledges).
	waitStats(t, "A counting every event published", a.eng.TransportStats, func(s events.TransportStats) bool { return s.Published >= n })
	waitStats(t, "B counting every event received", b.eng.TransportStats, func(s events.TransportStats) bool { return s.Received >= n })
	st := a.eng.TransportStats()
	if st.Throttled == 0 || st.GaveUp != 0 || st.Retries != 0 || st.Published != n {
		// (no retry either: the first publish, which may find no stream
		// yet, is no failure)
		t.Errorf("A's stats %+v: want commits throttled, none given up or retried, %d published", st, n)
	}
	if st := b.eng.TransportStats(); st.Received != n || st.Lost != 0 || st.Gaps != 0 {
		t.Errorf("B's stats %+v: want %d received, nothing lost", st, n)
	}
	// A's own subscriber is fed on its own goroutine: what it got is what
	// A published, so it must have it all before the two are compared.
	a.rec.waitUntil(t, "every event of A at A", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) >= n })
	checkExactlyOnce(t, a, b)
}

// A commit that finds the queue full while the publisher cannot reach NATS
// does not wait for it: it waits no longer than its context, or than the
// publisher takes to fail, and its event is given up on, counted, and
// shows as a gap on the other engine; the events queued before it are
// published once NATS is back.
func TestACommitFindingTheQueueFullWaitsNoLongerThanItsContext(t *testing.T) {
	srv := natstest.Start(t)
	store := memStore()
	a := newSide(t, store, srv.URL(), events_nats.WithQueue(1), events_nats.WithPublishTimeout(10*time.Minute))
	b := newSide(t, store, srv.URL())
	a.write(t, "alice", "first.txt", "1")
	b.rec.waitUntil(t, "the first event", hasFile("first.txt", "alice"))

	srv.Stop()
	a.write(t, "alice", "queued1.txt", "q") // in flight, retried until NATS is back
	a.write(t, "alice", "queued2.txt", "q") // waits in the queue
	waitStats(t, "two events queued", a.eng.TransportStats, func(s events.TransportStats) bool { return s.Queued == 2 })
	ctx, cancel := context.WithTimeout(roomstore.WithParticipant(context.Background(), "alice"), 200*time.Millisecond)
	defer cancel()
	if _, err := a.eng.Upload(ctx, "lost1.txt", strings.NewReader("l"), roomstore.OpenOptions{}); err != nil {
		t.Fatalf("the commit held by a full queue: %v", err) // committed all the same
	}
	a.write(t, "alice", "lost2.txt", "l") // no deadline: given up once the publisher fails
	if st := a.eng.TransportStats(); st.GaveUp != 2 || st.Queued != 2 {
		t.Fatalf("A's stats %+v: want 2 given up, 2 queued", st)
	}
	for _, p := range []string{"lost1.txt", "lost2.txt"} {
		if ok, err := a.eng.Exists(context.Background(), p); !ok || err != nil {
			t.Fatalf("%s, whose event was given up on, is not in the store: %v %v", p, ok, err)
		}
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitStats(t, "the queued events published", a.eng.TransportStats, func(s events.TransportStats) bool { return s.Published == 3 })
	a.write(t, "alice", "next.txt", "n")
	got := b.rec.waitUntil(t, "the event after the gap", hasFile("next.txt", "alice"))
	var paths []string
	for _, e := range got {
		if e.Type == events.TypeOverflow {
			paths = append(paths, fmt.Sprintf("gap of %d", e.Dropped))
		} else {
			paths = append(paths, e.Path)
		}
	}
	if want := "first.txt queued1.txt queued2.txt gap of 2 next.txt"; strings.Join(paths, " ") != want {
		t.Fatalf("B got %q, want %q", strings.Join(paths, " "), want)
	}
}

// gate is a subscriber that blocks on its first event until opened.
type gate struct {
	open    chan struct{}
	blocked chan struct{} // closed when the first event arrived
	once    sync.Once
	rec     *recorder
}

func newGate() *gate {
	return &gate{open: make(chan struct{}), blocked: make(chan struct{}), rec: newRecorder()}
}

func (g *gate) handle(e events.Event) {
	g.once.Do(func() {
		close(g.blocked)
		select {
		case <-g.open:
		case <-time.After(wait):
		}
	})
	g.rec.handle(e)
}

// A subscriber that falls behind for a moment loses none of the other
// engines' events: they wait in the stream while its queue is full.
func TestASubscriberBehindForAMomentLosesNoRemoteEvents(t *testing.T) {
	srv := natstest.Start(t)
	store := memStore()
	a := newSide(t, store, srv.URL())
	b := newSideWith(t, store, srv.URL(), []roomstore.Option{roomstore.WithEventBuffer(4)}, events_nats.WithHold(wait))
	slow := newGate()
	sub := b.eng.Subscribe(slow.handle)
	const n = 50
	for i := range n {
		a.write(t, "alice", fmt.Sprintf("f%d", i), "x")
	}
	waitStats(t, "B holding events for the slow subscriber", b.eng.TransportStats, func(s events.TransportStats) bool { return s.Held > 0 })
	close(slow.open)
	got := slow.rec.waitUntil(t, "every event", func(evs []events.Event) bool { return len(evs) >= n })
	if sub.Dropped() != 0 || len(overflows(got)) != 0 {
		t.Fatalf("the slow subscriber lost events: %d dropped, overflows %+v", sub.Dropped(), overflows(got))
	}
	for i, e := range got {
		if want := fmt.Sprintf("f%d", i); e.Path != want {
			t.Fatalf("event %d is %s, want %s", i, e.Path, want)
		}
	}
	b.rec.waitUntil(t, "every event", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) >= n })
	a.rec.waitUntil(t, "every event of A at A", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) >= n })
	checkExactlyOnce(t, a, b)
}

// A subscriber that stays behind holds the others up for the hold only:
// then it loses events as it would local ones (counted, marked by an
// overflow event), and the others get theirs.
func TestASubscriberThatStaysBehindHoldsTheOthersUpOnlyForTheHold(t *testing.T) {
	srv := natstest.Start(t)
	store := memStore()
	logs := newLogTap()
	a := newSide(t, store, srv.URL())
	b := newSideWith(t, store, srv.URL(), []roomstore.Option{roomstore.WithEventBuffer(4), roomstore.WithLogger(quiet)},
		events_nats.WithHold(100*time.Millisecond), events_nats.WithLogger(slog.New(logs)))
	stuck := newGate()
	sub := b.eng.Subscribe(stuck.handle)
	const n = 50
	for i := range n {
		a.write(t, "alice", fmt.Sprintf("f%d", i), "x")
	}
	logs.next(t, "not keeping up")
	b.rec.waitUntil(t, "every event at the other subscriber", func(evs []events.Event) bool { return countFrom(evs, a.eng.ID()) >= n })
	close(stuck.open)
	// Once its queue drains, the stuck subscriber has every event, or an
	// overflow event counting it.
	accounted := func(evs []events.Event) bool {
		k := uint64(len(fileEvents(evs)))
		for _, e := range overflows(evs) {
			k += e.Dropped
		}
		return k == n
	}
	got := stuck.rec.waitUntil(t, "every event or its overflow event", accounted)
	waitStats(t, "B counting every event received", b.eng.TransportStats, func(s events.TransportStats) bool { return s.Received >= n })
	if st := b.eng.TransportStats(); st.Held == 0 || st.Received != n {
		t.Errorf("B's stats %+v: want held, %d received", st, n)
	}
	if sub.Dropped() == 0 || len(overflows(got)) == 0 {
		t.Errorf("the stuck subscriber's queue dropped %d, and it got overflow events %+v: want some", sub.Dropped(), overflows(got))
	}
}
