package events_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/roomstore/roomstore/events"
)

// tally is an Observer that counts what it is told.
type tally struct {
	mu                           sync.Mutex
	published                    []events.Event
	delivered, dropped           int
	deliveredSizes, droppedSizes []int64
}

func (o *tally) Published(_ string, e events.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.published = append(o.published, e)
}

func (o *tally) Delivered(e events.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delivered++
	o.deliveredSizes = append(o.deliveredSizes, e.Size)
}

func (o *tally) Dropped(e events.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dropped++
	o.droppedSizes = append(o.droppedSizes, e.Size)
}

// counts returns how many events o was told were published, delivered
// and dropped.
func (o *tally) counts() (published, delivered, dropped int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.published), o.delivered, o.dropped
}

func TestTheObserverHearsOfEveryEventPublishedEvenWithoutSubscribers(t *testing.T) {
	o := &tally{}
	b := quietBus(t, events.WithObserver(o))
	publish(b, 1, 2)
	b.Publish(events.TypeOverflow, events.Event{Type: events.TypeOverflow}) // refused: not told
	b.Publish("t", events.Event{Type: events.TypeOverflow})                 // refused too
	if p, d, x := o.counts(); p != 2 || d != 0 || x != 0 {
		t.Fatalf("told of %d published, %d delivered, %d dropped; want 2, 0, 0", p, d, x)
	}
	closeBus(t, b)
	publish(b, 3)
	if p, _, _ := o.counts(); p != 2 {
		t.Fatalf("after Close: told of %d published, want still 2", p)
	}
}

func TestTheObserverCountsDeliveriesAndDropsExactly(t *testing.T) {
	o := &tally{}
	b, sub, got, hold := heldBus(t, events.WithBuffer(2), events.WithObserver(o))
	publish(b, 1, 2)    // queued
	publish(b, 3, 4, 5) // dropped
	if p, d, x := o.counts(); p != 6 || d != 1 || x != 3 || sub.Dropped() != 3 {
		t.Fatalf("while the handler holds: told of %d published, %d delivered, %d dropped (Dropped() %d); want 6, 1, 3 (3)", p, d, x, sub.Dropped())
	}
	release(t, hold)
	expect(t, got, []int64{1, 2, mark}, 3)
	expectNothingMore(t, b, got) // closes b: every delivery is done
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.delivered != 4 || o.dropped != 3 {
		t.Fatalf("told of %d delivered, %d dropped; want 4 (-100, 1, 2 and the overflow event) and 3", o.delivered, o.dropped)
	}
	if want := []int64{3, 4, 5}; !slices.Equal(o.droppedSizes, want) {
		t.Errorf("told of drops of %v, want %v", o.droppedSizes, want)
	}
	if want := []int64{-100, 1, 2, 0}; !slices.Equal(o.deliveredSizes, want) {
		t.Errorf("told of deliveries of %v, want %v (the overflow event last)", o.deliveredSizes, want)
	}
}
