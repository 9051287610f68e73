package events

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestQueueIsAFIFOBoundedByItsBound checks the ring against a slice, over
// random pushes and pops that wrap it around, grow it and drain it, with
// an overflow marker at each gap that drops leave.
func TestQueueIsAFIFOBoundedByItsBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, bound := range []int{1, 2, 3, 7, 8, 9, 17, 100, 1000} {
		q := queue{wake: make(chan struct{}, 1)}
		var model []Event // events and markers, with markers' Time zero
		next := int64(0)
		for step := range 20000 {
			if r.IntN(100) < 55 { // push, a little more often than pop
				ok := q.push(Event{Size: next}, bound)
				if ok != (len(model) < bound) {
					t.Fatalf("bound %d step %d: push with %d queued reported %v", bound, step, len(model), ok)
				}
				switch last := len(model) - 1; {
				case ok:
					model = append(model, Event{Size: next})
				case model[last].Type == TypeOverflow: // the newest is a marker
					model[last].Dropped++
				default:
					model = append(model, Event{Type: TypeOverflow, Dropped: 1})
				}
				next++
			} else if len(model) > 0 { // pop only what is there: pop would wait
				e, ok := q.pop()
				if e.Type == TypeOverflow {
					if e.Time.IsZero() {
						t.Fatalf("bound %d step %d: a marker without the time of its first drop", bound, step)
					}
					e.Time = time.Time{}
				}
				if !ok || e != model[0] {
					t.Fatalf("bound %d step %d: pop = %+v, %v; want %+v", bound, step, e, ok, model[0])
				}
				model = model[1:]
			}
			waiting := q.n
			if q.lost != 0 {
				waiting++
			}
			if waiting != len(model) || len(q.buf) > bound || q.n > len(q.buf) {
				t.Fatalf("bound %d step %d: %d queued in an array of %d, model %d", bound, step, waiting, len(q.buf), len(model))
			}
			if q.n == 0 && len(q.buf) > keepQueue {
				t.Fatalf("bound %d step %d: a drained queue keeps an array of %d", bound, step, len(q.buf))
			}
			// Slots outside the ring's live part are zero, so that an array
			// given back to spare holds on to no event's strings.
			for i := q.n; i < len(q.buf); i++ {
				if q.buf[(q.head+i)%len(q.buf)] != (Event{}) {
					t.Fatalf("bound %d step %d: free slot %d holds an event", bound, step, (q.head+i)%len(q.buf))
				}
			}
		}
	}
}

func TestSpareHoldsPowerOfTwoMultiplesOfMinQueueAboveKeepQueue(t *testing.T) {
	for n, want := range map[int]int{
		0: -1, 1: -1, 5: -1, minQueue: -1, keepQueue: -1, 2 * keepQueue: 2, 100: -1, 4096: 9,
		minQueue << (spareClasses - 1): spareClasses - 1, minQueue << spareClasses: -1, 3 * minQueue << 4: -1,
	} {
		if got := spareClass(n); got != want {
			t.Errorf("spareClass(%d) = %d, want %d", n, got, want)
		}
	}
	for _, n := range []int{5, keepQueue, 2 * keepQueue, 100, 4096} {
		a := newArray(n)
		if len(a) != n {
			t.Fatalf("newArray(%d) has %d events", n, len(a))
		}
		giveBack(a) // zero, unused: as the queue hands them back
	}
}

func TestAClosedQueueDrainsThenEnds(t *testing.T) {
	q := queue{wake: make(chan struct{}, 1)}
	for i := range 3 {
		q.push(Event{Size: int64(i)}, 10)
	}
	q.close(false)
	if !q.push(Event{Size: 99}, 10) || q.n != 3 {
		t.Fatalf("a push after close was queued or reported as a drop: %d queued", q.n)
	}
	for i := range 3 {
		if e, ok := q.pop(); !ok || e.Size != int64(i) {
			t.Fatalf("pop %d = %d, %v", i, e.Size, ok)
		}
	}
	if _, ok := q.pop(); ok {
		t.Fatal("a closed, drained queue popped an event")
	}

	q = queue{wake: make(chan struct{}, 1)}
	q.push(Event{}, 10)
	q.close(true)
	if _, ok := q.pop(); ok || q.buf != nil {
		t.Fatal("a queue closed with discard still delivers or holds events")
	}
}

// BenchmarkQueuePush measures push on the path of every event that finds
// room: the event is copied once, into the slot that slot returns.
func BenchmarkQueuePush(b *testing.B) {
	e := Event{Type: "file.updated", Path: "a/b.txt", ParticipantID: "p"}
	q := queue{wake: make(chan struct{}, 1)}
	const bound = 1024
	for b.Loop() {
		if !q.push(e, bound) {
			b.Fatal("an event was dropped from a queue with room")
		}
		if q.n == bound { // empty it without popping, which is not measured
			q.mu.Lock()
			clear(q.buf)
			q.head, q.n = 0, 0
			q.mu.Unlock()
		}
	}
}
