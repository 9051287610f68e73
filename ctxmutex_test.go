package roomstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCtxMutex(t *testing.T) {
	m := newCtxMutex()
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if err := m.lock(ended); err != nil {
		t.Fatalf("lock of a free mutex with an ended context = %v, want it taken", err)
	}
	if m.tryLock() {
		t.Fatal("tryLock took a held mutex")
	}
	if err := m.lock(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock of a held mutex with an ended context = %v, want context.Canceled", err)
	}
	got := make(chan error, 1)
	go func() { got <- m.lock(t.Context()) }()
	m.unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiting lock = %v, want it taken once unlocked", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting lock was not given the mutex within 10s of its unlock")
	}
	if m.tryLock() {
		t.Fatal("tryLock took the mutex that the waiter holds")
	}
	m.unlock()
	if !m.tryLock() {
		t.Fatal("tryLock did not take a free mutex")
	}
	m.unlock()
}
