package events_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore/events"
)

// FuzzBus runs random interleavings of subscribe, unsubscribe, publish and
// handler behaviour (re-entrant publish, unsubscribe from inside, panic)
// and checks that nothing deadlocks and no handler starts after its
// Unsubscribe returned.
func FuzzBus(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{0, 0, 8, 2, 2, 1, 9, 2, 12, 5, 0, 3})
	f.Add([]byte{4, 4, 4, 2, 2, 2, 1, 1, 1, 7, 7, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		done := make(chan string, 1)
		go func() { done <- runBusOps(ops) }()
		select {
		case msg := <-done:
			if msg != "" {
				t.Fatal(msg)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("deadlock on ops %v", ops)
		}
	})
}

type fuzzSub struct {
	sub  *events.Subscription
	gone atomic.Bool // set once Unsubscribe returned
}

func runBusOps(ops []byte) string {
	b, err := newQuietBus(events.WithBuffer(4))
	if err != nil {
		return "New: " + err.Error()
	}
	topics := []string{"a", "b"}
	var subs []*fuzzSub
	var violation atomic.Value
	for i, op := range ops {
		arg := int(op >> 3)
		switch op % 8 {
		case 0, 4: // subscribe, with a behaviour chosen by arg
			fs := &fuzzSub{}
			behaviour := arg % 4
			fs.sub = b.Subscribe(func(e events.Event) {
				if fs.gone.Load() {
					violation.Store("a handler ran after its Unsubscribe returned")
				}
				switch behaviour {
				case 1:
					if e.Size < 3 { // re-entrant publish, bounded
						b.Publish(e.Type, events.Event{Type: e.Type, Size: e.Size + 1})
					}
				case 2:
					fs.sub.Unsubscribe()
				case 3:
					panic("fuzz")
				}
			}, topics[arg%2])
			subs = append(subs, fs)
		case 1, 5: // unsubscribe from outside
			if len(subs) > 0 {
				s := subs[arg%len(subs)]
				s.sub.Unsubscribe()
				s.gone.Store(true)
			}
		case 2, 6: // publish
			b.Publish(topics[arg%2], events.Event{Type: topics[arg%2], Size: int64(i % 2)})
		case 3: // wait a moment, letting deliveries interleave
			time.Sleep(time.Duration(arg) * time.Microsecond)
		case 7: // close, mid-run
			if arg%4 == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := b.Close(ctx)
				cancel()
				if err != nil {
					return "Close: " + err.Error()
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		return "Close: " + err.Error()
	}
	if v := violation.Load(); v != nil {
		return v.(string)
	}
	return ""
}
