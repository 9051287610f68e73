package events_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomstore/roomstore/events"
)

// memory returns the live heap and the goroutine stacks in use, after two
// full collections: the arrays that drained queues give back to their
// sync.Pool are gone after the second.
func memory() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

func signedMiB(n int64) string { return fmt.Sprintf("%+.2f MiB", float64(n)/(1<<20)) }

func TestIdleSubscribersAreCheap(t *testing.T) {
	const subscribers, limit = 1000, 16 << 20
	b := quietBus(t) // DefaultBuffer: the bound must not cost while nothing waits
	heap0, stack0 := memory()
	subs := make([]*events.Subscription, subscribers)
	for i := range subs {
		subs[i] = b.Subscribe(func(events.Event) {}, "t")
	}
	heap1, stack1 := memory()
	runtime.KeepAlive(subs)
	heap, stack := heap1-heap0, stack1-stack0
	t.Logf("%d idle subscribers (buffer %d): heap %s + stacks %s = %s (%d bytes each)",
		subscribers, events.DefaultBuffer, mib(heap), mib(stack), mib(heap+stack), (heap+stack)/subscribers)
	closeBus(t, b)
	if heap+stack > limit {
		t.Fatalf("%d idle subscribers cost %s, want at most %s", subscribers, mib(heap+stack), mib(limit))
	}
}

// syncBuffer is a bytes.Buffer for a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor fails the test unless ch is closed within 10s.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestABurstOfExactlyBufferIsDeliveredInOrderAndMoreIsDroppedCountedAndLogged(t *testing.T) {
	for _, buffer := range []int{1, 5, 100, events.DefaultBuffer} {
		t.Run(fmt.Sprint(buffer), func(t *testing.T) {
			var logs syncBuffer
			b := quietBus(t, events.WithBuffer(buffer), events.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			defer closeBus(t, b)
			started, release := make(chan struct{}), make(chan struct{})
			unblock := sync.OnceFunc(func() { close(release) })
			defer unblock() // before closeBus, even on failure
			var got []int64 // the handler's; read after Close waited for it
			var overflows []uint64
			sub := b.Subscribe(func(e events.Event) {
				if e.Type == events.TypeOverflow {
					overflows = append(overflows, e.Dropped)
					return
				}
				if e.Size < 0 { // hold the handler so that the rest queues up
					close(started)
					<-release
					return
				}
				got = append(got, e.Size)
			}, "t")
			b.Publish("t", events.Event{Type: "t", Size: -1})
			waitFor(t, started, "the handler to start")

			for i := range buffer {
				b.Publish("t", events.Event{Type: "t", Size: int64(i)})
			}
			if n, c := sub.QueueFootprint(); n != buffer || c != buffer {
				t.Fatalf("after a burst of %d: %d queued in an array of %d, want %d in %d", buffer, n, c, buffer, buffer)
			}
			if d := sub.Dropped(); d != 0 {
				t.Fatalf("a burst of exactly the buffer dropped %d", d)
			}
			const extra = 8
			for i := range extra {
				b.Publish("t", events.Event{Type: "t", Size: int64(buffer + i)})
			}
			if d := sub.Dropped(); d != extra {
				t.Fatalf("Dropped() = %d after %d events past a full queue", d, extra)
			}
			unblock()
			closeBus(t, b)

			if len(got) != buffer {
				t.Fatalf("%d events delivered, want %d", len(got), buffer)
			}
			for i, v := range got {
				if v != int64(i) {
					t.Fatalf("event %d has %d: out of order", i, v)
				}
			}
			if len(overflows) != 1 || overflows[0] != extra {
				t.Fatalf("overflow events reported %v dropped, want [%d]", overflows, extra)
			}
			// The 1st, 2nd, 4th and 8th drops are logged.
			if n := strings.Count(logs.String(), "events dropped for a slow subscriber"); n != 4 {
				t.Fatalf("%d drops logged, want 4 (the 1st, 2nd, 4th, 8th):\n%s", n, logs.String())
			}
			if want := fmt.Sprintf("dropped=8 buffer=%d", buffer); !strings.Contains(logs.String(), want) {
				t.Fatalf("log lacks %q:\n%s", want, logs.String())
			}
		})
	}
}

func TestADrainedQueueGivesItsMemoryBack(t *testing.T) {
	const subscribers, burst = 8, events.DefaultBuffer
	b := quietBus(t, events.WithHistory(0)) // the queues' memory alone, not the history's
	defer closeBus(t, b)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	defer unblock()
	var delivered sync.WaitGroup
	delivered.Add(subscribers * burst)
	subs := make([]*events.Subscription, subscribers)
	for i := range subs {
		subs[i] = b.Subscribe(func(events.Event) { <-release; delivered.Done() }, "t")
	}
	heap0, _ := memory()
	for range burst {
		b.Publish("t", events.Event{Type: "t", Path: "p"})
	}
	heap1, _ := memory()
	unblock()
	waitOrFail(t, &delivered)
	heap2, _ := memory()
	t.Logf("%d subscribers: heap %s with a burst of %d each queued, %s once drained",
		subscribers, signedMiB(heap1-heap0), burst, signedMiB(heap2-heap0))
	for i, s := range subs {
		if n, c := s.QueueFootprint(); n != 0 || c > 16 {
			t.Fatalf("subscriber %d, drained, keeps %d events in an array of %d", i, n, c)
		}
	}
	// Each queued event takes its 80 bytes of Event: the heap must show at
	// least half of that, or measuring it tells nothing.
	if queued := int64(subscribers * (burst - 1) * 80); heap1-heap0 < queued/2 {
		t.Fatalf("heap grew %s with %d events queued: the measurement is off", mib(heap1-heap0), subscribers*(burst-1))
	}
	if heap2-heap0 > 512<<10 {
		t.Fatalf("heap still %s above its level before the burst once drained", mib(heap2-heap0))
	}
	runtime.KeepAlive(subs)
}
