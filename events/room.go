package events

import (
	"context"
	"time"
)

// Buffer returns the queue bound of each subscriber (see WithBuffer).
func (b *Bus) Buffer() int { return b.buffer }

// Room reports whether every subscriber's queue has room for n more
// events, not counting lagging ones: whether WaitRoom, called from outside
// the bus's handlers, would return at once without finding a subscriber
// lagging.
func (b *Bus) Room(n int) bool {
	if n < 1 {
		return true
	}
	level := max(b.buffer-n, 0)
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.everyone {
		if !s.queue.hasRoom(level) {
			return false
		}
	}
	return true
}

// WaitRoom waits until every subscriber's queue, whatever its topics, has
// room for n more events (a queue bound under n counts as room once it is
// empty). A Transport whose events wait for it in a durable log calls it
// before publishing the next of them, so that a subscriber that falls
// behind for a moment delays those events rather than loses them; events
// published meanwhile, by the engine or another goroutine, can still fill
// a queue.
//
// A subscriber is waited for at most patience in all, over every call,
// from when a call first found its queue without room until the queue
// next drains: past that it is lagging, and no call waits for it until it
// has drained, so that a subscriber that is stuck, or keeps up too slowly,
// holds the others up for patience once, not at every call; meanwhile it
// loses events as it would local ones (dropped, counted and marked by an
// overflow event). WaitRoom reports whether it found a subscriber lagging
// this way. If ctx ends first, it returns ctx's error. After Close, with
// nobody subscribed, for n below 1, or called from a handler of this bus
// (which would wait for itself) it returns at once. It is meant for one
// caller at a time: callers waiting at once for different n may wait until
// there is room for the largest.
func (b *Bus) WaitRoom(ctx context.Context, n int, patience time.Duration) (lagged bool, err error) {
	if n < 1 || b.inHandler() {
		return false, nil
	}
	level := max(b.buffer-n, 0)
	for {
		var (
			wait <-chan struct{}
			left time.Duration
		)
		now := time.Now()
		b.mu.RLock()
		for s := range b.everyone {
			var l bool
			if wait, left, l = s.queue.waitRoom(level, patience, now); l {
				lagged = true
			}
			if wait != nil {
				break
			}
		}
		b.mu.RUnlock()
		if wait == nil {
			return lagged, nil
		}
		t := time.NewTimer(left)
		select {
		case <-wait: // that queue has room: look at them all again
		case <-t.C: // its patience is up: the next look marks it lagging
		case <-ctx.Done():
			t.Stop()
			return lagged, ctx.Err()
		}
		t.Stop()
	}
}
