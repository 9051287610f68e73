// Package keylock holds mutual exclusion locks by key: a lock is made on
// its key's first use and dropped by its last user, so a set of locks
// holds only the keys in use, and its waiters honour their context.
package keylock

import (
	"context"
	"sync"
)

// Locks are locks by key. The zero value is ready for use; a Locks must
// not be copied after first use.
type Locks struct {
	mu sync.Mutex
	m  map[string]*entry
}

// entry is one key's lock: a channel of one slot (its senders queue in
// the order they came) and how many callers hold or wait for it.
type entry struct {
	ch    chan struct{}
	users int
}

// Lock takes key's lock, waiting until it is free or ctx ends, and
// returns its release, which must be called once. It fails with ctx's
// error, holding nothing, when ctx has ended, even if the lock is free.
func (l *Locks) Lock(ctx context.Context, key string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*entry{}
	}
	e := l.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.users++
	l.mu.Unlock()
	drop := func() {
		l.mu.Lock()
		if e.users--; e.users == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
	default:
		select {
		case e.ch <- struct{}{}:
		case <-ctx.Done():
			drop()
			return nil, ctx.Err()
		}
	}
	return func() { <-e.ch; drop() }, nil
}

// Len is how many keys are in use: held, or waited for.
func (l *Locks) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
