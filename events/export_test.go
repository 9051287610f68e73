package events

// Hooks into the package's internals for its external tests.

// Goid is goid, so that a test can pin the runtime.Stack format it parses.
var Goid = goid

// QueueFootprint returns how many events wait in s's queue and the capacity
// of the queue's backing array.
func (s *Subscription) QueueFootprint() (n, capacity int) {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	return s.queue.n, len(s.queue.buf)
}

// ParseGoid is parseGoid.
var ParseGoid = parseGoid

// Delivers is b.delivers: whether id is one of b's delivery goroutines.
func (b *Bus) Delivers(id uint64) bool { return b.delivers(id) }

// RoomWaited reports whether a WaitRoom waits for room in s's queue.
func (s *Subscription) RoomWaited() bool {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	return s.queue.room != nil
}

// HistoryFootprint returns how many events b's history holds and the
// capacity of its ring.
func (b *Bus) HistoryFootprint() (n, capacity int) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	return b.hist.n, len(b.hist.buf)
}
