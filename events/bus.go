package events

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	evbus "github.com/asaskevich/EventBus"
)

// DefaultBuffer is the queue bound of a subscriber when no Option sets it.
// A queue holds only what is waiting, so an idle subscriber costs nothing
// for its bound.
const DefaultBuffer = 4096

// Bus delivers events to subscribers. It is safe for concurrent use.
type Bus struct {
	eb     evbus.Bus
	buffer int
	log    *slog.Logger
	obs    Observer         // nil without WithObserver
	admit  func(Event) bool // nil without WithAdmit
	epoch  string           // the random id of the bus's positions

	// Lock order: pubMu, then regMu, then EventBus's own lock (held while
	// it runs dispatch), then mu. So nothing that holds mu may call into
	// EventBus, and dispatch never takes regMu or pubMu.
	//
	// pubMu is held by Publish from numbering an event to its last
	// enqueue, and by Gap, SubscribeAfter and EventsAfter: what a
	// subscription replays and what it gets live then meet exactly. The
	// WithAdmit function is called before it is taken.
	pubMu sync.Mutex
	seq   uint64  // the Seq of the last event published
	hist  history // the latest events published

	regMu      sync.Mutex
	registered sync.Map // topic -> struct{}: topics with an EventBus handler

	mu         sync.RWMutex
	closed     bool
	byTopic    map[string][]*Subscription // replaced, never mutated, so dispatch can read it under RLock
	all        []*Subscription            // subscribers of every topic
	everyone   map[*Subscription]struct{} // all live subscriptions
	deliverers sync.Map                   // goroutine id -> struct{}: the delivery goroutines
	wg         sync.WaitGroup
}

// New returns an open Bus configured by opts, applied in order. If an
// option is nil or fails (see WithBuffer, WithHistory, WithLogger and
// WithObserver), New returns nil and that first error, which wraps
// fs.ErrInvalid. The bus draws a random id for its positions (see
// SubscribeAfter).
func New(opts ...Option) (*Bus, error) {
	b := &Bus{
		eb:       evbus.New(),
		buffer:   DefaultBuffer,
		log:      slog.Default(),
		epoch:    newEpoch(),
		hist:     history{max: DefaultHistory},
		byTopic:  map[string][]*Subscription{},
		everyone: map[*Subscription]struct{}{},
	}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("events: option %d is nil: %w", i, fs.ErrInvalid)
		}
		if err := o(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// register gives topic its one EventBus handler. The handler only
// enqueues, so EventBus's lock is never held while user code runs.
func (b *Bus) register(topic string) {
	if _, ok := b.registered.Load(topic); ok {
		return
	}
	b.regMu.Lock()
	defer b.regMu.Unlock()
	if _, ok := b.registered.Load(topic); !ok {
		_ = b.eb.Subscribe(topic, func(e Event) { b.dispatch(topic, e) })
		b.registered.Store(topic, struct{}{})
	}
}

// Publish sends e to the subscribers of topic (and of every topic) without
// waiting for them. It sets e.Seq to the next number of the bus and
// e.Position to the event's position, and keeps the event in the history
// (see WithHistory). With nobody subscribed it does nothing more but tell
// the Observer (see WithObserver): EventBus's Publish boxes the event and
// builds its reflect arguments even for a topic whose only handler would
// find no subscriber. After Close it does nothing.
// An event of type TypeOverflow, or on that topic, is not published: only
// the bus says where a subscriber lost events; nor is one that the
// WithAdmit function refuses.
func (b *Bus) Publish(topic string, e Event) {
	if topic == TypeOverflow || e.Type == TypeOverflow {
		return
	}
	if b.admit != nil {
		// Outside pubMu: admit takes locks of its own, whose holders may
		// publish.
		b.mu.RLock()
		closed := b.closed
		b.mu.RUnlock()
		if closed || !b.admit(e) {
			return
		}
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	b.mu.RLock()
	closed := b.closed
	idle := len(b.byTopic[topic]) == 0 && len(b.all) == 0
	b.mu.RUnlock()
	if closed {
		return
	}
	b.seq++
	e.Seq, e.Position = b.seq, b.position(b.seq)
	b.hist.add(topic, e)
	if b.obs != nil {
		b.obs.Published(topic, e)
	}
	if idle {
		return
	}
	b.register(topic)
	b.eb.Publish(topic, e)
}

// Gap tells every subscriber that lost events never reached the bus (n of
// them, or an unknown number when n is 0), as a Transport does for events
// of other engines it could not deliver: each subscriber's stream gets an
// event of type TypeOverflow after everything published before the call
// and before everything published after it, with Dropped n (added to an
// overflow event waiting there already). It does not count in the
// subscribers' Dropped, which counts their own queues' drops. The
// overflow event's Position is the bus's latest position. The gap is kept
// with the history too, whether or not anyone is subscribed: a
// SubscribeAfter or EventsAfter for a position from before it gets an
// overflow event, since the events lost there were never in the history.
// After Close it does nothing.
func (b *Bus) Gap(n uint64) {
	at := time.Now()
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return
	}
	b.hist.gapped, b.hist.gapAt = true, b.seq
	if g, ok := b.obs.(GapObserver); ok {
		g.Gap(n)
	}
	pos := b.position(b.seq)
	for s := range b.everyone {
		if !s.stopped.Load() {
			s.queue.gap(n, at, pos)
		}
	}
}

func (b *Bus) dispatch(topic string, e Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return
	}
	for _, s := range b.byTopic[topic] {
		s.enqueue(e)
	}
	for _, s := range b.all {
		s.enqueue(e)
	}
}

// Close stops accepting events, delivers what is queued, and waits until
// every handler has returned or ctx is done (then it returns ctx's error and
// the remaining deliveries finish in the background). Called from inside a
// handler of this bus, it does not wait. It is idempotent.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		for s := range b.everyone {
			s.queue.close(false) // delivered, then the goroutine ends
		}
		b.everyone = nil
		b.byTopic = nil
		b.all = nil
	}
	b.mu.Unlock()
	if b.inHandler() {
		return nil
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
