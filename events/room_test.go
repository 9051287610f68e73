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

func waitRoom(ctx context.Context, b *events.Bus, n int) <-chan error {
	res := make(chan error, 1)
	go func() { res <- b.WaitRoom(ctx, n) }()
	return res
}

// result returns what a WaitRoom started by waitRoom returned, within 10s.
func result(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for WaitRoom to return")
		return nil
	}
}

func TestWaitRoomWaitsUntilEverySubscriberHasRoom(t *testing.T) {
	b, _, got, hold := fullQueue(t)
	fast := b.Subscribe(func(events.Event) {}, "t") // keeps up: never waited for
	defer fast.Unsubscribe()
	if !b.Room(0) || b.WaitRoom(context.Background(), 0) != nil {
		t.Fatal("no room for nothing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := waitRoom(ctx, b, 2)
	select {
	case err := <-res: // nothing has left the queue: it cannot have room
		t.Fatalf("WaitRoom returned %v before the subscriber took anything", err)
	default:
	}
	release(t, hold) // the handler goes on: the queue drains to room for 2
	if err := result(t, res); err != nil {
		t.Fatalf("WaitRoom: %v", err)
	}
	expect(t, got, []int64{1, 2, 3, 4})
	if !b.Room(4) {
		t.Fatal("no room in a drained queue")
	}
	expectNothingMore(t, b, got)
	if !b.Room(5) || b.WaitRoom(context.Background(), 5) != nil {
		t.Fatal("a closed bus has no room")
	}
}

// A subscriber that keeps WaitRoom waiting past its context is not waited
// for again until its queue drains, and meanwhile loses events as usual.
func TestWaitRoomPastItsContextStopsWaitingForThatSubscriberUntilItCatchesUp(t *testing.T) {
	b, sub, got, hold := fullQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := result(t, waitRoom(ctx, b, 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRoom past its deadline: %v", err)
	}
	if !b.Room(1) {
		t.Fatal("the lagging subscriber is still waited for")
	}
	if err := result(t, waitRoom(context.Background(), b, 1)); err != nil {
		t.Fatalf("WaitRoom with only a lagging subscriber full: %v", err)
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

// Called from a handler, WaitRoom does not wait for the handler's own
// queue, which only that handler's return could drain.
func TestWaitRoomInAHandlerDoesNotWaitForItself(t *testing.T) {
	b, err := events.New(events.WithBuffer(2))
	if err != nil {
		t.Fatal(err)
	}
	defer closeBus(t, b)
	full, res := make(chan struct{}), make(chan error, 1)
	b.Subscribe(func(e events.Event) {
		if e.Size != 1 {
			return
		}
		<-full // two more events wait behind this one: the queue is full
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res <- b.WaitRoom(ctx, 1)
	}, "t")
	publish(b, 1, 2, 3)
	close(full)
	if err := result(t, res); err != nil {
		t.Fatalf("WaitRoom in a handler: %v", err)
	}
}
