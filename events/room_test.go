package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/roomstore/roomstore/events"
)

// fullQueue makes a bus of buffer 4 whose held subscriber is blocked in
// its handler (on an event of Size -1) with four events, 1 to 4, waiting.
func fullQueue(t *testing.T) (b *events.Bus, sub *events.Subscription, got <-chan events.Event, hold chan struct{}) {
	t.Helper()
	b, err := events.New(events.WithBuffer(4))
	if err != nil {
		t.Fatal(err)
	}
	sub, got, hold = heldSubscriber(t, b)
	publish(b, -1)
	expect(t, got, []int64{-1}) // the handler has it, and waits on hold
	publish(b, 1, 2, 3, 4)
	if b.Room(1) {
		t.Fatal("Room(1) with the queue full")
	}
	return b, sub, got, hold
}

// roomResult is what a WaitRoom returned.
type roomResult struct {
	lagged bool
	err    error
}

func waitRoom(ctx context.Context, b *events.Bus, n int, patience time.Duration) <-chan roomResult {
	res := make(chan roomResult, 1)
	go func() {
		lagged, err := b.WaitRoom(ctx, n, patience)
		res <- roomResult{lagged, err}
	}()
	return res
}

// result returns what a WaitRoom started by waitRoom returned, within 10s.
func result(t *testing.T, res <-chan roomResult) roomResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for WaitRoom to return")
		return roomResult{}
	}
}

func TestWaitRoomWaitsUntilEverySubscriberHasRoom(t *testing.T) {
	b, _, got, hold := fullQueue(t)
	fast := b.Subscribe(func(events.Event) {}, "t") // keeps up: never waited for
	defer fast.Unsubscribe()
	if lagged, err := b.WaitRoom(context.Background(), 0, time.Hour); !b.Room(0) || lagged || err != nil {
		t.Fatal("no room for nothing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := waitRoom(ctx, b, 2, time.Hour)
	select {
	case r := <-res: // nothing has left the queue: it cannot have room
		t.Fatalf("WaitRoom returned %+v before the subscriber took anything", r)
	default:
	}
	release(t, hold) // the handler goes on: the queue drains to room for 2
	if r := result(t, res); r.err != nil || r.lagged {
		t.Fatalf("WaitRoom: %+v", r)
	}
	expect(t, got, []int64{1, 2, 3, 4})
	if !b.Room(4) {
		t.Fatal("no room in a drained queue")
	}
	expectNothingMore(t, b, got)
	if lagged, err := b.WaitRoom(context.Background(), 5, time.Hour); !b.Room(5) || lagged || err != nil {
		t.Fatal("a closed bus has no room")
	}
}

// A subscriber that keeps WaitRoom waiting past its patience is not waited
// for again until its queue drains, and meanwhile loses events as usual.
func TestWaitRoomPastItsPatienceStopsWaitingForThatSubscriberUntilItCatchesUp(t *testing.T) {
	b, sub, got, hold := fullQueue(t)
	if r := result(t, waitRoom(context.Background(), b, 1, 50*time.Millisecond)); r.err != nil || !r.lagged {
		t.Fatalf("WaitRoom past its patience: %+v, want the subscriber found lagging", r)
	}
	if !b.Room(1) {
		t.Fatal("the lagging subscriber is still waited for")
	}
	if r := result(t, waitRoom(context.Background(), b, 1, time.Hour)); r.err != nil || r.lagged {
		t.Fatalf("WaitRoom with only a lagging subscriber full: %+v", r)
	}
	publish(b, 5, 6) // dropped: the queue is still full
	if sub.Dropped() != 2 {
		t.Fatalf("dropped %d, want 2", sub.Dropped())
	}
	release(t, hold)
	expect(t, got, []int64{1, 2, 3, 4, mark}, 2)
	// Caught up: a full queue is waited for again.
	publish(b, -1)
	expect(t, got, []int64{-1})
	publish(b, 7, 8, 9, 10)
	if b.Room(1) {
		t.Fatal("a subscriber that caught up is still not waited for")
	}
	release(t, hold)
	expect(t, got, []int64{7, 8, 9, 10})
	expectNothingMore(t, b, got)
}

// WaitRoom ends when its context does, without marking anyone lagging.
func TestWaitRoomEndsWithItsContext(t *testing.T) {
	b, _, got, hold := fullQueue(t)
	ctx, cancel := context.WithCancel(context.Background())
	res := waitRoom(ctx, b, 1, time.Hour)
	cancel()
	if r := result(t, res); !errors.Is(r.err, context.Canceled) || r.lagged {
		t.Fatalf("WaitRoom with its context cancelled: %+v", r)
	}
	if b.Room(1) {
		t.Fatal("a cancelled WaitRoom marked the subscriber lagging")
	}
	release(t, hold)
	expect(t, got, []int64{1, 2, 3, 4})
	expectNothingMore(t, b, got)
}

// A queue whose last element is an overflow event has room once that is
// delivered: a waiter for an empty queue is woken then.
func TestWaitRoomWakesWhenTheLastOverflowEventIsDelivered(t *testing.T) {
	b, err := events.New(events.WithBuffer(2))
	if err != nil {
		t.Fatal(err)
	}
	sub, got, hold := heldSubscriber(t, b)
	publish(b, -1)
	expect(t, got, []int64{-1})
	publish(b, 1, 2, 3) // 3 is dropped: an overflow event follows 2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := waitRoom(ctx, b, 2, time.Hour) // room for 2: the queue empty
	for !sub.RoomWaited() {               // WaitRoom is waiting before the queue drains
		select {
		case r := <-res:
			t.Fatalf("WaitRoom returned %+v with the queue full", r)
		case <-ctx.Done():
			t.Fatal("WaitRoom did not wait for the full queue")
		case <-time.After(time.Millisecond):
		}
	}
	release(t, hold)
	expect(t, got, []int64{1, 2, mark}, 1)
	if r := result(t, res); r.err != nil || r.lagged {
		t.Fatalf("WaitRoom once the queue drained to its overflow event and past it: %+v", r)
	}
	expectNothingMore(t, b, got)
}

// Called from a handler, WaitRoom does not wait for the handler's own
// queue, which only that handler's return could drain.
func TestWaitRoomInAHandlerDoesNotWaitForItself(t *testing.T) {
	b, err := events.New(events.WithBuffer(2))
	if err != nil {
		t.Fatal(err)
	}
	defer closeBus(t, b)
	full, res := make(chan struct{}), make(chan error, 1)
	get := func() error {
		select {
		case err := <-res:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for the handler's WaitRoom")
			return nil
		}
	}
	b.Subscribe(func(e events.Event) {
		if e.Size != 1 {
			return
		}
		<-full // two more events wait behind this one: the queue is full
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := b.WaitRoom(ctx, 1, time.Hour)
		res <- err
	}, "t")
	publish(b, 1, 2, 3)
	close(full)
	if err := get(); err != nil {
		t.Fatalf("WaitRoom in a handler: %v", err)
	}
}
