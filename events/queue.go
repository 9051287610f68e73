package events

import (
	"math/bits"
	"sync"
	"time"
)

const (
	// minQueue is the backing array a queue first allocates when an event
	// arrives (or its bound, if smaller); it doubles from there.
	minQueue = 8
	// keepQueue is the largest backing array, in events, that a drained
	// queue keeps for the next event; a larger one is given back, so a
	// burst costs memory only while it waits.
	keepQueue = 16
	// spareClasses is how many array sizes spare holds: minQueue<<i events
	// for i below it, up to 8M events (832 MiB).
	spareClasses = 21
)

// spare holds the backing arrays that queues gave back, all zero, by size
// class (spare[i] holds arrays of minQueue<<i events, as *[]Event), for the
// next queue that grows. Without it, a subscriber that keeps catching up
// with its publisher would allocate its array afresh for every backlog.
// Being sync.Pools, they are emptied by the garbage collector (an array
// survives at most two collections unused), so memory given back to them
// is given back to the runtime.
var spare [spareClasses]sync.Pool

// spareClass returns the index in spare of an array of n events, or -1 if
// arrays of that size are not pooled.
func spareClass(n int) int {
	if n <= keepQueue || n%minQueue != 0 || bits.OnesCount(uint(n/minQueue)) != 1 {
		return -1 // small, or not a power-of-two multiple of minQueue (a bound)
	}
	if i := bits.TrailingZeros(uint(n / minQueue)); i < spareClasses {
		return i
	}
	return -1
}

// newArray returns a zero array of n events, from spare if it has one.
func newArray(n int) []Event {
	if i := spareClass(n); i >= 0 {
		if p, ok := spare[i].Get().(*[]Event); ok {
			return *p
		}
	}
	return make([]Event, n)
}

// giveBack hands buf, which must be all zero and no longer used, to spare.
func giveBack(buf []Event) {
	if i := spareClass(len(buf)); i >= 0 {
		spare[i].Put(&buf)
	}
}

// queue is a subscriber's FIFO of events waiting for its handler: pushed
// by the bus's dispatch (from any number of publishers at once), popped by
// the subscriber's goroutine alone. It grows on demand up to the bound that
// push is given and, once drained, gives a large backing array back to
// spare, so an idle subscriber costs a few words rather than one slot per
// event of its bound, which is what a Go channel would allocate up front.
//
// An event that finds the queue full is dropped, and the gap it leaves is
// marked by an overflow event (of type TypeOverflow) where it is: after
// everything queued before, before everything accepted after. While the
// marker is the newest element it waits in lost and lostAt rather than in
// buf, so it has room even in a full queue (the one element by which the
// queue may exceed its bound), and the next drops only add to its count.
// The next accepted event moves it into buf, where it takes a slot like
// any event; once it is there or delivered, a new drop starts a new one.
type queue struct {
	mu sync.Mutex
	// buf is a ring: len(buf) is the capacity. It is nil until the first
	// push, and again after a drain gave a large one back.
	buf    []Event
	head   int  // index of the oldest event
	n      int  // events in buf
	closed bool // no more pushes; pop reports false once drained

	// marking is set while an overflow marker waits after the newest
	// element of buf; lost counts the events it reports (dropped, or lost
	// before they reached the queue: see gap), lostAt is when the first
	// of them was, and lostPos the position after which the stream goes
	// on (that of the last event dropped; "" if unknown).
	marking bool
	lost    uint64
	lostAt  time.Time
	lostPos string

	// room, when not nil, is closed (and set to nil) once at most roomAt
	// elements wait, or at close: see waitRoom. heldSince is when a waiter
	// first found no room since the queue last drained; lagging is set once
	// waiters have waited past their patience, and both are cleared when
	// the queue drains.
	room      chan struct{}
	roomAt    int
	heldSince time.Time
	lagging   bool

	// wake holds a token whenever the consumer may have something to do:
	// push adds one when the queue goes from empty to not, close adds one.
	// A token is never lost (it waits in the 1-slot buffer) and a stale one
	// only makes pop look again.
	wake chan struct{}
}

// push appends e unless bound elements (events and overflow markers) wait
// already; then it drops e and counts it in the overflow marker at the end
// of the queue, which it starts if the newest element is not one. It
// reports false only when e was dropped; after close it ignores e and
// reports true.
func (q *queue) push(e Event, bound int) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return true
	}
	waiting := q.n
	if q.marking {
		waiting++
	}
	if waiting >= bound {
		if !q.marking {
			q.lostAt = time.Now()
			q.marking = true
		}
		q.lost++
		q.lostPos = e.Position
		q.mu.Unlock()
		return false
	}
	if q.marking { // e goes after the gap: waiting < bound leaves room for both
		*q.slot(bound) = q.marker()
	}
	*q.slot(bound) = e
	first := q.n == 1 // not when a marker was waiting: the consumer knows
	q.mu.Unlock()
	if first {
		q.signal()
	}
	return true
}

// gap marks, after everything queued, that n events (0: an unknown number)
// were lost before they reached the queue: it adds them to the overflow
// marker at the end of the queue, which it starts if the newest element is
// not one, and the stream goes on after position pos. A gap of an unknown
// number still starts a marker. After close it does nothing.
func (q *queue) gap(n uint64, at time.Time, pos string) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if !q.marking {
		q.lostAt = at
		q.marking = true
	}
	q.lost += n
	q.lostPos = pos
	q.mu.Unlock()
	q.signal()
}

// slot appends an element to buf, growing it, and returns it for the
// caller to fill, so that an event is copied once, straight into buf: a
// call that took the event by value would copy it once more, on every
// event's path. q.mu is held and q.n < bound.
func (q *queue) slot(bound int) *Event {
	if q.n == len(q.buf) {
		q.grow(bound)
	}
	i := q.head + q.n
	if i >= len(q.buf) {
		i -= len(q.buf)
	}
	q.n++
	return &q.buf[i]
}

// marker takes the waiting overflow marker out of lost and lostAt. q.mu is
// held and q.marking is set.
func (q *queue) marker() Event {
	e := Event{Type: TypeOverflow, Time: q.lostAt, Dropped: q.lost, Position: q.lostPos}
	q.marking, q.lost, q.lostAt, q.lostPos = false, 0, time.Time{}, ""
	return e
}

// grow replaces the full ring by one twice as large (at least minQueue, at
// most bound), oldest event first. q.mu is held and q.n == len(q.buf) < bound.
func (q *queue) grow(bound int) {
	buf := newArray(min(max(2*len(q.buf), minQueue), bound))
	k := copy(buf, q.buf[q.head:])
	copy(buf[k:], q.buf[:q.head])
	if spareClass(len(q.buf)) >= 0 {
		clear(q.buf)
		giveBack(q.buf)
	}
	q.buf, q.head = buf, 0
}

// pop waits for the oldest element (event or overflow marker) and removes
// it. It reports false when the queue is closed and empty: the consumer is
// done.
func (q *queue) pop() (Event, bool) {
	for {
		q.mu.Lock()
		if q.n > 0 {
			e := q.buf[q.head]
			q.buf[q.head] = Event{} // let go of the event's strings
			q.head++
			if q.head == len(q.buf) {
				q.head = 0
			}
			q.n--
			q.removed()
			if q.n == 0 {
				q.head = 0
				if len(q.buf) > keepQueue {
					giveBack(q.buf) // a burst's memory; each slot was zeroed as popped
					q.buf = nil
				}
			}
			q.mu.Unlock()
			return e, true
		}
		if q.marking { // the marker after the last event
			e := q.marker()
			q.removed()
			q.mu.Unlock()
			return e, true
		}
		if q.closed {
			q.mu.Unlock()
			return Event{}, false
		}
		q.mu.Unlock()
		<-q.wake
	}
}

// removed does the room bookkeeping after pop removed an element: it wakes
// the waiters for room once there is, and forgets the queue's holding up
// once it has drained. q.mu is held.
func (q *queue) removed() {
	w := q.waiting()
	if q.room != nil && w <= q.roomAt {
		close(q.room)
		q.room = nil
	}
	if w == 0 { // caught up
		q.heldSince, q.lagging = time.Time{}, false
	}
}

// waiting is how many elements wait, a waiting overflow marker included.
// q.mu is held.
func (q *queue) waiting() int {
	if q.marking {
		return q.n + 1
	}
	return q.n
}

// waitRoom returns nil if at most level elements wait, the queue is
// closed or it is lagging. Otherwise, if waiters have found it without
// room for patience since it last drained, it marks it lagging and returns
// nil and true; else it returns a channel that is closed once at most
// level elements wait, and how much longer waiters may wait for it.
// Waiters share the channel, which is closed at the lowest level any of
// them asked for.
func (q *queue) waitRoom(level int, patience time.Duration, now time.Time) (room <-chan struct{}, left time.Duration, lagged bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.roomFor(level) {
		return nil, 0, false
	}
	if q.heldSince.IsZero() {
		q.heldSince = now
	}
	if left = q.heldSince.Add(patience).Sub(now); left <= 0 {
		q.lagging = true
		return nil, 0, true
	}
	if q.room == nil {
		q.room, q.roomAt = make(chan struct{}), level
	}
	q.roomAt = min(q.roomAt, level)
	return q.room, left, false
}

// hasRoom reports whether waitRoom(level, ...) would return at once
// without marking the queue lagging.
func (q *queue) hasRoom(level int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.roomFor(level)
}

// roomFor is hasRoom with q.mu held.
func (q *queue) roomFor(level int) bool { return q.closed || q.lagging || q.waiting() <= level }

// close stops pushes. pop still returns what is queued, a waiting overflow
// marker included, unless discard drops it. It is idempotent.
func (q *queue) close(discard bool) {
	q.mu.Lock()
	q.closed = true
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
	if discard {
		q.buf, q.head, q.n = nil, 0, 0
		q.marking, q.lost, q.lostAt, q.lostPos = false, 0, time.Time{}, ""
	}
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default: // a token is pending already
	}
}
