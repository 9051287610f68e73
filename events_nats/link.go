package events_nats

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roomstore/roomstore/events"
)

// link is one engine's attachment: a publisher goroutine that sends the
// engine's events in order, one message at a time (a message carries every
// event waiting, up to a batch), and a receiver goroutine that delivers the
// other engines' events from a consumer of the store's stream.
type link struct {
	t                       *Transport
	store, origin           string
	hash, subject, stream   string
	bus                     *events.Bus
	log                     *slog.Logger
	since                   time.Time // the receiver's first subscription starts here
	ctx                     context.Context
	cancel                  context.CancelFunc
	pubDone, recvDone, wake chan struct{}
	made                    chan struct{} // the publisher made the stream: the receiver need not wait

	mu       sync.Mutex
	queue    []entry
	room     sync.Cond     // signalled when the queue has room, or Publish must stop waiting for it
	inflight int           // events of the message being published
	seq      uint64        // the number of the last event Publish was given
	settled  uint64        // every event up to this number is published or given up
	advanced chan struct{} // closed (and replaced) when settled grows
	closing  bool
	failing  bool                      // the publisher's last attempt failed
	iter     jetstream.MessagesContext // the receiver's current subscription
	consumer string                    // its consumer's name

	streamMu sync.Mutex // one stream lookup or creation at a time

	peers map[string]*peer // the receiver's alone

	stats     counters
	closeOnce sync.Once
	closed    chan struct{} // closed once Close's work is all done
}

// counters are the link's TransportStats, updated atomically.
type counters struct {
	published, retries, gaveUp, throttled, received, duplicates atomic.Uint64
	lost, gaps, malformed, foreign, reconnects, held, lagging   atomic.Uint64
	lagCount                                                    atomic.Uint64
	lagTotal, lagMax                                            atomic.Int64
}

func newLink(t *Transport, store, origin string, bus *events.Bus) *link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{
		t: t, store: store, origin: origin,
		hash: storeHash(store), subject: t.Subject(store), stream: t.Stream(store),
		bus: bus, log: t.cfg.log.With("store", storeHash(store)[:12], "engine", origin),
		since: time.Now().Add(-startSkew), ctx: ctx, cancel: cancel,
		pubDone: make(chan struct{}), recvDone: make(chan struct{}), wake: make(chan struct{}, 1), made: make(chan struct{}, 1), closed: make(chan struct{}),
		peers: map[string]*peer{}, advanced: make(chan struct{}),
	}
	l.room.L = &l.mu
	return l
}

func (l *link) start() {
	go l.publishLoop()
	go l.receiveLoop()
}

// Stats implements events.Link.
func (l *link) Stats() events.TransportStats {
	l.mu.Lock()
	queued := uint64(len(l.queue) + l.inflight)
	l.mu.Unlock()
	c := &l.stats
	return events.TransportStats{
		Published: c.published.Load(), Queued: queued, Retries: c.retries.Load(), GaveUp: c.gaveUp.Load(), Throttled: c.throttled.Load(),
		Received: c.received.Load(), Held: c.held.Load(), Duplicates: c.duplicates.Load(), Lost: c.lost.Load(), Gaps: c.gaps.Load(),
		Malformed: c.malformed.Load(), Foreign: c.foreign.Load(), Reconnects: c.reconnects.Load(),
		LagCount: c.lagCount.Load(), LagTotal: time.Duration(c.lagTotal.Load()), LagMax: time.Duration(c.lagMax.Load()),
	}
}

// Flush implements events.Flusher.
func (l *link) Flush(ctx context.Context) error {
	l.mu.Lock()
	target := l.seq
	for l.settled < target {
		advanced := l.advanced
		l.mu.Unlock()
		select {
		case <-advanced:
		case <-l.pubDone: // nothing more is published: the rest was given up on
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		l.mu.Lock()
	}
	l.mu.Unlock()
	return nil
}

// settle records that every event up to seq is published or given up on;
// l.mu is held.
func (l *link) settle(seq uint64) {
	if seq > l.settled {
		l.settled = seq
		close(l.advanced)
		l.advanced = make(chan struct{})
	}
}

// Close implements events.Link: publishing stops at once when the flush
// timeout passes or ctx ends (then Close returns ctx's error), whichever
// is first. Every caller's ctx bounds its own wait, a later caller's too.
func (l *link) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		l.room.Broadcast()
		l.mu.Unlock()
		l.signal()
		go l.finish()
	})
	select {
	case <-l.closed:
		return nil
	case <-ctx.Done():
		// Stop flushing now. The receiver ends at once once stopped (its
		// calls all use l.ctx): after this, the bus gets nothing more.
		l.stop()
		<-l.recvDone
		return ctx.Err()
	}
}

// finish does Close's work once: flush within the flush timeout, stop,
// and delete the receiver's last consumer (best effort, briefly; the
// server would delete it after the inactivity threshold anyway).
func (l *link) finish() {
	defer close(l.closed)
	flush := time.NewTimer(l.t.cfg.flushTimeout)
	select {
	case <-l.pubDone:
	case <-flush.C:
	case <-l.ctx.Done():
	}
	flush.Stop()
	l.stop() // what is still queued fails at once and is given up on
	<-l.pubDone
	<-l.recvDone
	l.mu.Lock()
	consumer := l.consumer
	l.mu.Unlock()
	l.deleteConsumer(context.Background(), consumer)
	l.t.detach(l)
}

// stop ends the publisher's and the receiver's work at once.
func (l *link) stop() {
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.iter != nil {
		l.iter.Stop()
	}
}

// deleteConsumer deletes a consumer the receiver is done with, if the
// connection is up, waiting at most a second.
func (l *link) deleteConsumer(ctx context.Context, name string) {
	if name == "" || !l.t.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = l.t.js.DeleteConsumer(ctx, l.stream, name)
}

// sleep waits d, or less if the link stops; it reports whether it may go on.
func (l *link) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// backoff is the wait before retry n (n >= 1): exponential with full
// jitter, from minBackoff to maxBackoff.
func backoff(n int) time.Duration {
	ceiling := min(minBackoff<<min(n-1, 10), maxBackoff)
	return ceiling/2 + rand.N(ceiling/2+1)
}
