package events_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore/events"
)

// quietBus returns a bus, configured by opts, that logs nowhere; it fails
// the test if New does.
func quietBus(t testing.TB, opts ...events.Option) *events.Bus {
	t.Helper()
	b, err := newQuietBus(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

// newQuietBus is quietBus for goroutines that must not call t.Fatal.
func newQuietBus(opts ...events.Option) (*events.Bus, error) {
	return events.New(append([]events.Option{events.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
}

func closeBus(t *testing.T, b *events.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestClosuresOfOneLiteralAreIndependentSubscribers(t *testing.T) {
	b := quietBus(t)
	var counts [2]atomic.Int32
	var subs [2]*events.Subscription
	for i := range 2 {
		subs[i] = b.Subscribe(func(events.Event) { counts[i].Add(1) }, "t")
	}
	subs[0].Unsubscribe()
	b.Publish("t", events.Event{Type: "t"})
	closeBus(t, b)
	if counts[0].Load() != 0 || counts[1].Load() != 1 {
		t.Fatalf("counts %d %d, want 0 1: unsubscribing one closure touched its twin", counts[0].Load(), counts[1].Load())
	}
}

func TestWrongHandlerShapesAreRefusedAtOn(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b)
	for _, h := range []any{nil, 1, func(int) {}, func() {}, func(string) bool { return true }, (func(events.Event))(nil)} {
		if _, err := b.On("t", h); !errors.Is(err, events.ErrHandler) {
			t.Fatalf("On(%T) = %v, want ErrHandler", h, err)
		}
	}
	if err := b.Off("t", func(string) {}); !errors.Is(err, events.ErrNotSubscribed) {
		t.Fatalf("Off of an unknown handler: %v", err)
	}
	b.Publish("t", events.Event{}) // nothing subscribed that could panic
}

func TestNoDeliveryStartsAfterUnsubscribeReturns(t *testing.T) {
	b := quietBus(t)
	defer closeBus(t, b) // on failure; Close is idempotent
	var running, after atomic.Bool
	var unsubscribed atomic.Bool
	started := make(chan struct{}, 1)
	sub := b.Subscribe(func(events.Event) {
		if unsubscribed.Load() {
			after.Store(true)
		}
		running.Store(true)
		select {
		case started <- struct{}{}:
		default:
		}
		time.Sleep(30 * time.Millisecond)
		running.Store(false)
	}, "t")
	for range 50 {
		b.Publish("t", events.Event{})
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never started")
	}
	sub.Unsubscribe() // waits for the running call
	unsubscribed.Store(true)
	if running.Load() {
		t.Fatal("handler still running after Unsubscribe returned")
	}
	closeBus(t, b) // every delivery goroutine has ended: a late call would have happened
	if after.Load() {
		t.Fatal("handler called after Unsubscribe returned")
	}
}

func TestHandlersMayPublishSubscribeAndCloseFromInside(t *testing.T) {
	b := quietBus(t)
	// The outer handler sees "first" and "second", the inner one "second".
	var got sync.WaitGroup
	got.Add(3)
	innerMade := make(chan *events.Subscription, 1)
	b.Subscribe(func(e events.Event) {
		if e.Path == "first" {
			innerMade <- b.Subscribe(func(events.Event) { got.Done() }, "t")
			b.Publish("t", events.Event{Path: "second"})
		}
		got.Done()
	}, "t")
	b.Publish("t", events.Event{Path: "first"})
	waitOrFail(t, &got)
	(<-innerMade).Unsubscribe()
	closed := make(chan error, 1)
	b.Subscribe(func(events.Event) { closed <- b.Close(context.Background()) }, "bye")
	b.Publish("bye", events.Event{})
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close from inside a handler deadlocked")
	}
	closeBus(t, b)
}

func TestCloseDeliversQueuedEventsThenIgnoresPublish(t *testing.T) {
	b := quietBus(t)
	var n atomic.Int32
	b.Subscribe(func(events.Event) { time.Sleep(time.Millisecond); n.Add(1) })
	for range 20 {
		b.Publish("any", events.Event{})
	}
	closeBus(t, b)
	if n.Load() != 20 {
		t.Fatalf("%d of 20 queued events delivered by Close", n.Load())
	}
	b.Publish("any", events.Event{})
	late := b.Subscribe(func(events.Event) { n.Add(100) })
	late.Unsubscribe()
	if n.Load() != 20 {
		t.Fatal("an event was delivered after Close")
	}
}

func TestAPanickingHandlerKeepsItsSubscriptionAndOthersRun(t *testing.T) {
	b := quietBus(t)
	var ok, panicked atomic.Int32
	b.Subscribe(func(events.Event) { panicked.Add(1); panic("boom") }, "t")
	b.Subscribe(func(events.Event) { ok.Add(1) }, "t")
	for range 3 {
		b.Publish("t", events.Event{})
	}
	closeBus(t, b)
	if ok.Load() != 3 || panicked.Load() != 3 {
		t.Fatalf("ok %d panicked %d, want 3 and 3", ok.Load(), panicked.Load())
	}
}

func TestOrderIsKeptPerSubscriberAcrossTopics(t *testing.T) {
	b := quietBus(t)
	var got []int64
	b.Subscribe(func(e events.Event) { got = append(got, e.Size) }, "a", "b")
	for i := range 1000 {
		b.Publish([]string{"a", "b"}[i%2], events.Event{Size: int64(i)})
	}
	closeBus(t, b)
	for i, v := range got {
		if v != int64(i) {
			t.Fatalf("event %d has %d: out of order", i, v)
		}
	}
	if len(got) != 1000 {
		t.Fatalf("%d of 1000 events", len(got))
	}
}

func TestAFullQueueDropsAndCountsWithoutBlocking(t *testing.T) {
	b := quietBus(t, events.WithBuffer(4))
	release := make(chan struct{})
	var n atomic.Int32
	var reported atomic.Uint64 // the Dropped of the overflow events
	sub := b.Subscribe(func(e events.Event) {
		<-release
		if e.Type == events.TypeOverflow {
			reported.Add(e.Dropped)
			return
		}
		n.Add(1)
	}, "t")
	for range 100 {
		b.Publish("t", events.Event{Type: "t"}) // must not block on the stuck handler
	}
	close(release)
	closeBus(t, b)
	if sub.Dropped() == 0 || uint64(n.Load())+sub.Dropped() != 100 || reported.Load() != sub.Dropped() {
		t.Fatalf("delivered %d dropped %d of 100, overflow events reported %d", n.Load(), sub.Dropped(), reported.Load())
	}
}

func waitOrFail(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out: deadlock?")
	}
}

func TestFirstUseOfATopicRacesPublishesWithoutDeadlock(t *testing.T) {
	for range 100 {
		b := quietBus(t)
		sub := b.Subscribe(func(events.Event) {}, "x")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 200 {
				b.Publish("x", events.Event{})
			}
		}()
		for i := range 20 { // new topics, by publish and by subscribe
			b.Publish(string(rune('a'+i)), events.Event{})
			b.Subscribe(func(events.Event) {}, string(rune('A'+i))).Unsubscribe()
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("publishing deadlocked against the first use of a topic")
		}
		sub.Unsubscribe()
		closeBus(t, b)
	}
}

func TestOffNeverMatchesNilOrSubscribeHandlers(t *testing.T) {
	b := quietBus(t)
	var n atomic.Int32
	b.Subscribe(func(events.Event) { n.Add(1) }, "t")
	if err := b.Off("t", (func(string))(nil)); !errors.Is(err, events.ErrHandler) {
		t.Fatalf("Off(nil) = %v, want ErrHandler", err)
	}
	b.Publish("t", events.Event{})
	closeBus(t, b)
	if n.Load() != 1 {
		t.Fatalf("subscriber got %d events after Off(nil), want 1", n.Load())
	}
}

func TestATopicNamedTwiceDeliversOnce(t *testing.T) {
	b := quietBus(t)
	var n atomic.Int32
	b.Subscribe(func(events.Event) { n.Add(1) }, "t", "t")
	b.Publish("t", events.Event{})
	closeBus(t, b)
	if n.Load() != 1 {
		t.Fatalf("%d deliveries, want 1", n.Load())
	}
}
