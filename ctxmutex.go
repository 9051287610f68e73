package roomstore

import "context"

// ctxMutex is a mutual exclusion lock whose waiters honour their
// context: a call that waits for another gives up when its context ends,
// which a sync.Mutex cannot do. It is the one lock of a Handle and of each
// of the Engine's path stripes. Waiters get it in the order they came
// (a channel's senders queue), and a free lock is taken whatever the
// context, so that a call whose context has ended still gets to finish
// the handle it holds. Make one with newCtxMutex.
type ctxMutex struct{ ch chan struct{} }

func newCtxMutex() ctxMutex { return ctxMutex{ch: make(chan struct{}, 1)} }

// lock takes the lock, at once if it is free, else waiting until it is
// or ctx ends; then it returns ctx's error.
func (m ctxMutex) lock(ctx context.Context) error {
	if m.tryLock() {
		return nil
	}
	select {
	case m.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryLock takes the lock if it is free, and reports whether it did.
func (m ctxMutex) tryLock() bool {
	select {
	case m.ch <- struct{}{}:
		return true
	default:
		return false
	}
}

// unlock releases the lock, which the caller holds.
func (m ctxMutex) unlock() { <-m.ch }
