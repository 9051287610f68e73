package keylock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait of these tests.
const wait = 10 * time.Second

func TestOneHolderPerKey(t *testing.T) {
	var l Locks
	ctx := context.Background()
	unlockA, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is free while a is held.
	unlockB, err := l.Lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	unlockA()
	// Holders of one key never overlap: each checks it is alone inside.
	var inside, most, entered atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				u, err := l.Lock(ctx, "a")
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				entered.Add(1)
				inside.Add(-1)
				u()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("1,600 locks of one key not taken within %v", wait)
	}
	if most.Load() != 1 || entered.Load() != 1600 {
		t.Fatalf("%d holders at once at most over %d entries, want 1 over 1600", most.Load(), entered.Load())
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys kept after every release, want 0", n)
	}
}

func TestContextEnds(t *testing.T) {
	var l Locks
	unlock, err := l.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter whose context ends: %v, want context.DeadlineExceeded", err)
	}
	unlock()
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys kept, want 0", n)
	}
	// An ended context gets nothing, even for a free key.
	if _, err := l.Lock(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an ended context on a free key: %v", err)
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys kept after a refused lock, want 0", n)
	}
}
