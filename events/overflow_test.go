package events_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore/events"
)

// heldSubscriber subscribes to "t" a handler that sends every event it gets
// to the returned channel (buffered beyond what any of these tests
// publishes, so the handler never waits on it), then, for an event of
// negative Size, waits for a token on hold. Tokens are sent with release.
// When the test ends, even by failing, the handler stops waiting and b is
// closed.
func heldSubscriber(t *testing.T, b *events.Bus) (sub *events.Subscription, got <-chan events.Event, hold chan struct{}) {
	t.Helper()
	ch := make(chan events.Event, 1<<12)
	hold, stop := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); closeBus(t, b) })
	sub = b.Subscribe(func(e events.Event) {
		ch <- e
		if e.Size < 0 {
			select {
			case <-hold:
			case <-stop:
			}
		}
	}, "t")
	return sub, ch, hold
}

// heldBus is a quiet bus of opts with a held subscriber whose handler
// holds on to the event -100: what is published next queues.
func heldBus(t *testing.T, opts ...events.Option) (b *events.Bus, sub *events.Subscription, got <-chan events.Event, hold chan struct{}) {
	t.Helper()
	b = quietBus(t, opts...)
	sub, got, hold = heldSubscriber(t, b)
	publish(b, -100)
	expect(t, got, []int64{-100})
	return b, sub, got, hold
}

// expectDropped fails t unless sub has dropped n events.
func expectDropped(t *testing.T, sub *events.Subscription, n uint64) {
	t.Helper()
	if d := sub.Dropped(); d != n {
		t.Fatalf("Dropped() = %d, want %d", d, n)
	}
}

// release lets a handler that waits on hold go on, within 10s.
func release(t *testing.T, hold chan<- struct{}) {
	t.Helper()
	select {
	case hold <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the handler to wait on hold")
	}
}

// next returns the next event the handler got, within 10s.
func next(t *testing.T, got <-chan events.Event) events.Event {
	t.Helper()
	select {
	case e := <-got:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for an event")
		return events.Event{}
	}
}

// mark stands for an overflow event in what expect wants.
const mark = math.MinInt64

// expect fails the test unless the handler's next events are the ones of
// the sizes in want, in order, and overflow events where want has mark,
// with dropped their Dropped in turn.
func expect(t *testing.T, got <-chan events.Event, want []int64, dropped ...uint64) {
	t.Helper()
	for i, w := range want {
		e := next(t, got)
		if w != mark {
			if e.Type != "t" || e.Size != w {
				t.Fatalf("event %d of %v: %+v, want the event of Size %d", i, want, e, w)
			}
			continue
		}
		if e.Type != events.TypeOverflow || len(dropped) == 0 || e.Dropped != dropped[0] {
			t.Fatalf("event %d of %v: %+v, want an overflow event with Dropped %v", i, want, e, dropped)
		}
		dropped = dropped[1:]
	}
}

// expectNothingMore closes b and fails the test if the handler got
// anything more.
func expectNothingMore(t *testing.T, b *events.Bus, got <-chan events.Event) {
	t.Helper()
	closeBus(t, b) // every handler has returned: whatever it got is in got
	select {
	case e := <-got:
		t.Fatalf("an event past the expected ones: %+v", e)
	default:
	}
}

func publish(b *events.Bus, sizes ...int64) {
	for _, s := range sizes {
		b.Publish("t", events.Event{Type: "t", Path: fmt.Sprint("p", s), Size: s})
	}
}

// seq returns from, from+1, ..., to-1.
func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestAnOverflowMarkerSitsWhereTheGapIs(t *testing.T) {
	for _, c := range []struct{ buffer, lost int }{{1, 1}, {1, 7}, {4, 1}, {64, 100}} {
		t.Run(fmt.Sprintf("buffer %d, %d lost", c.buffer, c.lost), func(t *testing.T) {
			b, sub, got, hold := heldBus(t, events.WithBuffer(c.buffer))
			n := int64(c.buffer)
			publish(b, seq(0, n)...)
			before := time.Now()
			publish(b, seq(n, n+int64(c.lost))...)
			after := time.Now()
			expectDropped(t, sub, uint64(c.lost))
			release(t, hold)

			for i := range n {
				if e := next(t, got); e.Type != "t" || e.Size != i {
					t.Fatalf("event %d: %+v, want the one of Size %d", i, e, i)
				}
			}
			m := next(t, got)
			last := fmt.Sprint(".", 1+n+int64(c.lost)) // the last event dropped: -100 was the first published
			if !strings.HasSuffix(m.Position, last) {
				t.Fatalf("the marker's Position %q is not that of the last event dropped (Seq %s)", m.Position, last[1:])
			}
			if want := (events.Event{Type: events.TypeOverflow, Time: m.Time, Dropped: uint64(c.lost), Position: m.Position}); m != want {
				t.Fatalf("after the queued events: %+v, want %+v", m, want)
			}
			if m.Time.Before(before) || m.Time.After(after) {
				t.Fatalf("the marker's Time %v is not when the first event was dropped (%v to %v)", m.Time, before, after)
			}
			later := seq(1000, 1000+n) // a full buffer again: there is room for all
			publish(b, later...)
			expect(t, got, later)
			expectNothingMore(t, b, got)
		})
	}
}

func TestDropsMergeIntoTheWaitingMarker(t *testing.T) {
	b, sub, got, hold := heldBus(t, events.WithBuffer(3))
	publish(b, -1, 2, 3) // queued
	publish(b, 4)        // lost: the marker waits after 3
	release(t, hold)
	expect(t, got, []int64{-1}) // held: 2, 3 and the marker fill the queue
	publish(b, 5)               // lost into the waiting marker
	release(t, hold)
	expect(t, got, []int64{2, 3, mark}, 2)
	publish(b, 6)
	expect(t, got, []int64{6})
	expectDropped(t, sub, 2)
	expectNothingMore(t, b, got)
}

func TestADropAfterAnAcceptedEventStartsANewMarker(t *testing.T) {
	b, sub, got, hold := heldBus(t, events.WithBuffer(3))
	publish(b, -1, -2, 3) // queued
	publish(b, 4)         // lost
	release(t, hold)
	expect(t, got, []int64{-1}) // held: -2, 3 and the marker fill the queue
	publish(b, 5)               // lost into the waiting marker
	release(t, hold)
	expect(t, got, []int64{-2}) // held: 3 and the marker leave room for one
	publish(b, 6)               // after the marker
	publish(b, 7, 8)            // lost after 6: a new marker
	release(t, hold)
	expect(t, got, []int64{3, mark, 6, mark}, 2, 2)
	publish(b, 9)
	expect(t, got, []int64{9})
	expectDropped(t, sub, 4)
	expectNothingMore(t, b, got)
}

func TestEachOverflowEpisodeHasItsOwnMarker(t *testing.T) {
	const buffer = 5
	b := quietBus(t, events.WithBuffer(buffer))
	sub, got, hold := heldSubscriber(t, b)
	for episode, lost := range []int64{3, 9} {
		base := int64(100 * (episode + 1))
		publish(b, -base)
		expect(t, got, []int64{-base})
		publish(b, seq(base, base+buffer+lost)...)
		release(t, hold)
		expect(t, got, append(seq(base, base+buffer), mark), uint64(lost))
	}
	publish(b, 1)
	expect(t, got, []int64{1})
	if d := sub.Dropped(); d != 12 {
		t.Fatalf("Dropped() = %d, want 12 in all", d)
	}
	expectNothingMore(t, b, got)
}

func TestOnlyHandlersThatTakeAnEventGetTheMarker(t *testing.T) {
	const buffer, lost = 3, 4
	b := quietBus(t, events.WithBuffer(buffer))
	defer closeBus(t, b)
	hold := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(hold) })
	defer unblock() // before closeBus, even on failure
	var started sync.WaitGroup
	started.Add(4)
	// Each records what it gets; read after Close waited for it.
	var paths, pairs []string
	var viaOn, viaSubscribe []events.Event
	onPath := func(p string) {
		if p == "hold" {
			started.Done()
			<-hold
		}
		paths = append(paths, p)
	}
	onPair := func(p, participant string) {
		if p == "hold" {
			started.Done()
			<-hold
		}
		pairs = append(pairs, p+"|"+participant)
	}
	onEvent := func(record *[]events.Event) func(events.Event) {
		return func(e events.Event) {
			if e.Path == "hold" {
				started.Done()
				<-hold
			}
			*record = append(*record, e)
		}
	}
	for _, h := range []any{onPath, onPair, onEvent(&viaOn)} {
		if _, err := b.On("t", h); err != nil {
			t.Fatalf("On(%T): %v", h, err)
		}
	}
	b.Subscribe(onEvent(&viaSubscribe), "other", "t")
	b.Publish("t", events.Event{Type: "t", Path: "hold", ParticipantID: "x"})
	waitOrFail(t, &started)
	for i := range buffer + lost {
		b.Publish("t", events.Event{Type: "t", Path: fmt.Sprint("p", i), ParticipantID: "x"})
	}
	unblock()
	closeBus(t, b)

	wantPaths := []string{"hold", "p0", "p1", "p2"}
	if fmt.Sprint(paths) != fmt.Sprint(wantPaths) {
		t.Errorf("func(path) got %q, want %q", paths, wantPaths)
	}
	if want := "[hold|x p0|x p1|x p2|x]"; fmt.Sprint(pairs) != want {
		t.Errorf("func(path, participantID) got %q, want %s", pairs, want)
	}
	for name, got := range map[string][]events.Event{"On(func(Event))": viaOn, "Subscribe": viaSubscribe} {
		if len(got) != len(wantPaths)+1 {
			t.Errorf("%s got %d events, want %d: %+v", name, len(got), len(wantPaths)+1, got)
			continue
		}
		for i, p := range wantPaths {
			if got[i].Path != p {
				t.Errorf("%s event %d: %+v, want path %s", name, i, got[i], p)
			}
		}
		if m := got[len(wantPaths)]; m.Type != events.TypeOverflow || m.Dropped != lost {
			t.Errorf("%s last event: %+v, want an overflow event with Dropped %d", name, m, lost)
		}
	}
}

func TestCloseDeliversAWaitingMarker(t *testing.T) {
	const buffer, lost = 4, 2
	b, _, got, hold := heldBus(t, events.WithBuffer(buffer))
	publish(b, seq(0, buffer+lost)...)
	// A done context: Close closes at once and does not wait for the
	// handler, which still holds -100 while the marker waits.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with a done context = %v, want context.Canceled", err)
	}
	publish(b, 99) // ignored: closed
	release(t, hold)
	expect(t, got, append(seq(0, buffer), mark), lost)
	expectNothingMore(t, b, got)
}

func TestPublishersCannotForgeAnOverflowEvent(t *testing.T) {
	b, err := events.New()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan events.Event, 4)
	b.Subscribe(func(e events.Event) { got <- e })
	b.Publish(events.TypeOverflow, events.Event{Type: events.TypeOverflow, Dropped: 7})
	b.Publish("file.updated", events.Event{Type: events.TypeOverflow, Dropped: 7})
	b.Publish("file.updated", events.Event{Type: "file.updated", Path: "real"})
	select {
	case e := <-got:
		if e.Type != "file.updated" || e.Path != "real" {
			t.Fatalf("first delivery %+v, want the real event only", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("forged overflow events were delivered: %+v", <-got)
	}
}

func TestGapMarksEverySubscriberWhereItIsCalled(t *testing.T) {
	b := quietBus(t, events.WithBuffer(8))
	sub, got, hold := heldSubscriber(t, b)
	other := make(chan events.Event, 16)
	b.Subscribe(func(e events.Event) { other <- e }, "elsewhere")
	paths := make(chan string, 16)
	if _, err := b.On("t", func(p string) { paths <- p }); err != nil {
		t.Fatal(err)
	}

	publish(b, -1, 2) // the held subscriber waits on -1; 2 stays queued
	b.Gap(5)
	b.Gap(0) // an unknown number joins the waiting marker
	publish(b, 3)
	b.Gap(0) // a new marker: 3 came between
	publish(b, 4)
	release(t, hold)
	expect(t, got, []int64{-1, 2, mark, 3, mark, 4}, 5, 0)
	for _, want := range []string{"p-1", "p2", "p3", "p4"} { // path handlers never see a marker
		select {
		case p := <-paths:
			if p != want {
				t.Fatalf("the path handler got %q, want %q", p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %q", want)
		}
	}
	// A subscriber of another topic gets the marks too: the first with 5
	// (the later ones join it unless its goroutine took it already).
	if e := next(t, other); e.Type != events.TypeOverflow || e.Dropped != 5 {
		t.Fatalf("a subscriber of another topic got %+v, want the overflow of 5", e)
	}
	if d := sub.Dropped(); d != 0 {
		t.Fatalf("Dropped() = %d after gaps only, want 0: it counts the queue's own drops", d)
	}
	expectNothingMore(t, b, got)
	b.Gap(3) // after Close: nothing, and no panic
}
