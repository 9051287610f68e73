package events

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	evbus "github.com/asaskevich/EventBus"
)

// DefaultBuffer is the queue bound of a subscriber when no Option sets it.
// A queue holds only what is waiting, so an idle subscriber costs nothing
// for its bound.
const DefaultBuffer = 4096

// Option configures New. An Option returns an error, wrapping
// fs.ErrInvalid, when its argument is unusable; New then fails with it.
type Option func(*Bus) error

// WithBuffer sets how many events may wait for each subscriber (default
// DefaultBuffer). Past that, events are dropped for that subscriber only,
// counted (Subscription.Dropped), logged and marked in its stream by an
// event of type TypeOverflow, which has room even in a full queue. The
// queue grows on demand up to n and gives its memory back when it drains,
// so a large n costs only while events are actually waiting. An n below 1 makes New fail with an
// error wrapping fs.ErrInvalid.
func WithBuffer(n int) Option {
	return func(b *Bus) error {
		if n < 1 {
			return fmt.Errorf("events: buffer must be at least 1, got %d: %w", n, fs.ErrInvalid)
		}
		b.buffer = n
		return nil
	}
}

// WithLogger sets where recovered panics and dropped events are logged
// (default slog.Default()). A nil l makes New fail with an error wrapping
// fs.ErrInvalid.
func WithLogger(l *slog.Logger) Option {
	return func(b *Bus) error {
		if l == nil {
			return fmt.Errorf("events: WithLogger(nil): %w", fs.ErrInvalid)
		}
		b.log = l
		return nil
	}
}

// WithObserver makes the bus tell o, as they happen, of the events it
// accepts, delivers and drops (see Observer): the hook for counters and
// metrics, which the bus does not keep itself. A nil o makes New fail with
// an error wrapping fs.ErrInvalid.
func WithObserver(o Observer) Option {
	return func(b *Bus) error {
		if o == nil {
			return fmt.Errorf("events: WithObserver(nil): %w", fs.ErrInvalid)
		}
		b.obs = o
		return nil
	}
}

// Observer is told what a Bus does with its events, for counters and
// metrics (WithObserver). Its methods run synchronously on the goroutine
// that does the thing, so they must be quick, must not block and must not
// call the bus; they may run concurrently with each other.
type Observer interface {
	// Published is called once for every event that Publish accepts (one
	// not of type TypeOverflow, on a bus not closed), on the publisher's
	// goroutine, before the event is queued, whether or not anyone
	// subscribed to topic.
	Published(topic string, e Event)
	// Delivered is called on a subscriber's goroutine right before e is
	// handed to it, overflow events included: once a handler has run, its
	// event has been counted. An overflow event handed to a subscriber of
	// On with a handler that takes paths counts too, though that handler
	// is not called for it.
	Delivered(e Event)
	// Dropped is called when e is dropped for a subscriber whose queue is
	// full, once for each subscriber that lost it, on the publisher's
	// goroutine. Events that a Transport lost (Gap) are not.
	Dropped(e Event)
}

// GapObserver is an Observer that is also told of every Gap, on the
// goroutine that calls it, whether or not anyone subscribed: for state
// kept from the events, which must be rebuilt once some were lost.
type GapObserver interface {
	Observer
	Gap(n uint64)
}

// Bus delivers events to subscribers. It is safe for concurrent use.
type Bus struct {
	eb     evbus.Bus
	buffer int
	log    *slog.Logger
	obs    Observer // nil without WithObserver

	// Lock order: EventBus's own lock (held while it runs dispatch) comes
	// before mu, and regMu before EventBus's lock. So nothing that holds mu
	// may call into EventBus, and dispatch never takes regMu.
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
// option is nil or fails (see WithBuffer, WithLogger and WithObserver),
// New returns nil and that first error, which wraps fs.ErrInvalid.
func New(opts ...Option) (*Bus, error) {
	b := &Bus{
		eb:       evbus.New(),
		buffer:   DefaultBuffer,
		log:      slog.Default(),
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

// Subscription is one subscriber: a handler, its queue and its goroutine.
// Its methods are safe for concurrent use, from inside handlers too.
type Subscription struct {
	bus     *Bus
	topics  []string // nil: every topic
	handler func(Event)
	code    uintptr // the subscribed function's code pointer, for Off
	queue   queue

	// gate is held shared while the handler runs; Unsubscribe takes it
	// exclusively to wait out a running handler.
	gate    sync.RWMutex
	stopped atomic.Bool
	dropped atomic.Uint64
}

// Subscribe calls handler for every event of the given topics (every topic
// when none is given), in publish order, on the subscription's own
// goroutine. Whatever the topics, handler also gets an event of type
// TypeOverflow where its queue lost events (see Delivery in the package
// documentation). After Close it returns a subscription that receives
// nothing.
func (b *Bus) Subscribe(handler func(Event), topics ...string) *Subscription {
	return b.subscribe(handler, 0, topics)
}

// On subscribes handler to topic. handler must be func(path, participantID
// string), func(path string) or func(Event); anything else yields an error
// wrapping ErrHandler and subscribes nothing. A func(Event) also gets an
// event of type TypeOverflow where its queue lost events, as with
// Subscribe; handlers that take paths never get one, since they could not
// tell it from a file event.
func (b *Bus) On(topic string, handler any) (*Subscription, error) {
	h, err := adapt(handler)
	if err != nil {
		return nil, err
	}
	return b.subscribe(h, reflect.ValueOf(handler).Pointer(), []string{topic}), nil
}

// Off unsubscribes the most recent subscription that On made for topic with
// a function of the same code as handler. Code identity is exact for
// top-level functions; closures made by one function literal share their
// code, so keep the *Subscription that On returned and call Unsubscribe for
// them. A handler that is not subscribed yields ErrNotSubscribed.
func (b *Bus) Off(topic string, handler any) error {
	v := reflect.ValueOf(handler)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		return fmt.Errorf("%w, not %T", ErrHandler, handler)
	}
	code := v.Pointer()
	b.mu.RLock()
	subs := b.byTopic[topic]
	var found *Subscription
	for i := len(subs) - 1; i >= 0; i-- {
		if s := subs[i]; s.code != 0 && s.code == code && len(s.topics) == 1 {
			found = s
			break
		}
	}
	b.mu.RUnlock()
	if found == nil {
		return fmt.Errorf("%w: %s", ErrNotSubscribed, topic)
	}
	found.Unsubscribe()
	return nil
}

func (b *Bus) subscribe(h func(Event), code uintptr, topics []string) *Subscription {
	topics = slices.Clone(topics)
	slices.Sort(topics)
	topics = slices.Compact(topics) // a topic named twice is still one subscription
	for _, t := range topics {
		b.register(t)
	}
	s := &Subscription{
		bus:     b,
		topics:  topics,
		handler: h,
		code:    code,
		queue:   queue{wake: make(chan struct{}, 1)},
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.stopped.Store(true)
		s.queue.close(true)
		return s
	}
	if len(topics) == 0 {
		b.all = append(slices.Clip(b.all), s)
	}
	for _, t := range s.topics {
		b.byTopic[t] = append(slices.Clip(b.byTopic[t]), s)
	}
	b.everyone[s] = struct{}{}
	b.wg.Add(1)
	go s.run()
	return s
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
// waiting for them. After Close, or with nobody subscribed, it does
// nothing but tell the Observer (see WithObserver): EventBus's Publish
// boxes the event and builds its reflect arguments even for a topic whose
// only handler would find no subscriber.
// An event of type TypeOverflow, or on that topic, is not published: only
// the bus says where a subscriber lost events.
func (b *Bus) Publish(topic string, e Event) {
	if topic == TypeOverflow || e.Type == TypeOverflow {
		return
	}
	b.mu.RLock()
	closed := b.closed
	idle := len(b.byTopic[topic]) == 0 && len(b.all) == 0
	b.mu.RUnlock()
	if closed {
		return
	}
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
// subscribers' Dropped, which counts their own queues' drops. After Close,
// or with nobody subscribed, it does nothing.
func (b *Bus) Gap(n uint64) {
	at := time.Now()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return
	}
	if g, ok := b.obs.(GapObserver); ok {
		g.Gap(n)
	}
	for s := range b.everyone {
		if !s.stopped.Load() {
			s.queue.gap(n, at)
		}
	}
}

// Buffer returns the queue bound of each subscriber (see WithBuffer).
func (b *Bus) Buffer() int { return b.buffer }

// Room reports whether every subscriber's queue has room for n more
// events, not counting lagging ones: whether WaitRoom, called from outside
// the bus's handlers, would return at once without finding a subscriber
// lagging.
func (b *Bus) Room(n int) bool {
	if n < 1 {
		return true
	}
	level := max(b.buffer-n, 0)
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.everyone {
		if !s.queue.hasRoom(level) {
			return false
		}
	}
	return true
}

// WaitRoom waits until every subscriber's queue, whatever its topics, has
// room for n more events (a queue bound under n counts as room once it is
// empty). A Transport whose events wait for it in a durable log calls it
// before publishing the next of them, so that a subscriber that falls
// behind for a moment delays those events rather than loses them; events
// published meanwhile, by the engine or another goroutine, can still fill
// a queue.
//
// A subscriber is waited for at most patience in all, over every call,
// from when a call first found its queue without room until the queue
// next drains: past that it is lagging, and no call waits for it until it
// has drained, so that a subscriber that is stuck, or keeps up too slowly,
// holds the others up for patience once, not at every call; meanwhile it
// loses events as it would local ones (dropped, counted and marked by an
// overflow event). WaitRoom reports whether it found a subscriber lagging
// this way. If ctx ends first, it returns ctx's error. After Close, with
// nobody subscribed, for n below 1, or called from a handler of this bus
// (which would wait for itself) it returns at once. It is meant for one
// caller at a time: callers waiting at once for different n may wait until
// there is room for the largest.
func (b *Bus) WaitRoom(ctx context.Context, n int, patience time.Duration) (lagged bool, err error) {
	if n < 1 || b.inHandler() {
		return false, nil
	}
	level := max(b.buffer-n, 0)
	for {
		var (
			wait <-chan struct{}
			left time.Duration
		)
		now := time.Now()
		b.mu.RLock()
		for s := range b.everyone {
			var l bool
			if wait, left, l = s.queue.waitRoom(level, patience, now); l {
				lagged = true
			}
			if wait != nil {
				break
			}
		}
		b.mu.RUnlock()
		if wait == nil {
			return lagged, nil
		}
		t := time.NewTimer(left)
		select {
		case <-wait: // that queue has room: look at them all again
		case <-t.C: // its patience is up: the next look marks it lagging
		case <-ctx.Done():
			t.Stop()
			return lagged, ctx.Err()
		}
		t.Stop()
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

func (s *Subscription) enqueue(e Event) {
	if s.stopped.Load() || s.queue.push(e, s.bus.buffer) {
		return
	}
	if o := s.bus.obs; o != nil {
		o.Dropped(e)
	}
	n := s.dropped.Add(1)
	if n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th... drop, not every one
		s.bus.log.Warn("roomstore: event queue full, events dropped for a slow subscriber",
			"topic", e.Type, "path", e.Path, "dropped", n, "buffer", s.bus.buffer)
	}
}

func (s *Subscription) run() {
	id := goid()
	if id != 0 { // 0: unparsable, and inHandler already answers true for it
		s.bus.deliverers.Store(id, struct{}{})
	}
	defer func() {
		s.bus.deliverers.Delete(id)
		s.bus.wg.Done()
	}()
	for {
		e, ok := s.queue.pop()
		if !ok {
			return
		}
		s.deliver(e)
	}
}

func (s *Subscription) deliver(e Event) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.stopped.Load() {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 4<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.bus.log.Error("roomstore: event handler panicked",
				"topic", e.Type, "path", e.Path, "panic", fmt.Sprint(r), "stack", string(buf))
		}
	}()
	if o := s.bus.obs; o != nil {
		o.Delivered(e)
	}
	s.handler(e)
}

// Dropped returns how many events this subscriber lost to a full queue in
// all, whether or not the overflow events that report them were delivered
// yet. It counts a drop just after the overflow event has counted it, so
// a handler that reads it while handling that event may see it a few
// short; once publishing has stopped, it equals the sum of the overflow
// events' Dropped.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Unsubscribe stops delivery to this subscription. Once it returns, the
// handler is not called again; when called from outside the handlers of
// its bus it also waits for a running call of this handler to finish. It is
// idempotent and safe to call from inside a handler.
func (s *Subscription) Unsubscribe() {
	if s == nil || s.stopped.Swap(true) {
		return
	}
	b := s.bus
	b.mu.Lock()
	if _, live := b.everyone[s]; live {
		delete(b.everyone, s)
		for _, t := range s.topics {
			b.byTopic[t] = slices.DeleteFunc(slices.Clone(b.byTopic[t]), func(x *Subscription) bool { return x == s })
		}
		if s.topics == nil {
			b.all = slices.DeleteFunc(slices.Clone(b.all), func(x *Subscription) bool { return x == s })
		}
	}
	b.mu.Unlock()
	// Whether or not Close already closed it, nothing queued will be
	// delivered now: let go of it, and let the goroutine end.
	s.queue.close(true)
	if !b.inHandler() {
		// Taking the gate waits out a running call; dropping the handler
		// lets go of whatever the caller's closure holds.
		s.gate.Lock()
		s.handler = nil
		s.gate.Unlock()
	}
}

// InHandler reports whether the caller runs inside a handler of this bus
// (on one of its delivery goroutines), where waiting for delivery would
// wait for itself. Should the runtime ever stop reporting goroutine ids
// (see the package documentation), it reports true: the answer that makes
// a caller deciding whether to wait not wait, rather than deadlock.
func (b *Bus) InHandler() bool { return b.inHandler() }

func (b *Bus) inHandler() bool { return b.delivers(goid()) }

// delivers reports whether id is one of the bus's delivery goroutines. Id 0
// means goid could not read the id; then it reports true, so that
// Unsubscribe, Close and callers of InHandler do not wait (the worst that
// can happen is that Unsubscribe returns while a call of the handler is
// still running) rather than wait, possibly for themselves, forever.
func (b *Bus) delivers(id uint64) bool {
	if id == 0 {
		return true
	}
	_, ok := b.deliverers.Load(id)
	return ok
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

// goid returns the current goroutine's id, or 0 if it cannot be read.
// The runtime does not export it; the bus needs it only to tell its own
// delivery goroutines apart: once when a subscriber's goroutine starts, and
// on the rare paths of Unsubscribe, Close and InHandler. It reads the first
// line of runtime.Stack, whose format the package documentation discusses.
func goid() uint64 {
	var buf [64]byte
	return parseGoid(buf[:runtime.Stack(buf[:], false)])
}

// parseGoid returns N from a traceback that starts "goroutine N [" (or
// "goroutine N gp=...", as with GOTRACEBACK=system), or 0 for anything else.
func parseGoid(stack []byte) uint64 {
	rest, ok := bytes.CutPrefix(stack, []byte("goroutine "))
	if !ok {
		return 0
	}
	digits, _, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(digits) == 0 {
		return 0
	}
	id, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return 0 // not a number, or more than 64 bits of one
	}
	return id
}
