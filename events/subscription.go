package events

import (
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

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
	return b.subscribe(handler, 0, topics, nil)
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
	return b.subscribe(h, reflect.ValueOf(handler).Pointer(), []string{topic}, nil), nil
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

// normalTopics returns topics sorted, each once (a topic named twice is
// still one subscription), or nil for every topic.
func normalTopics(topics []string) []string {
	if len(topics) == 0 {
		return nil
	}
	topics = slices.Clone(topics)
	slices.Sort(topics)
	return slices.Compact(topics)
}

// subscribe subscribes h; with after, it first queues what a subscriber
// that saw the events up to after missed (see SubscribeAfter).
func (b *Bus) subscribe(h func(Event), code uintptr, topics []string, after *mark) *Subscription {
	topics = normalTopics(topics)
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
	if after != nil {
		// No Publish between the replay and the subscription's joining.
		b.pubMu.Lock()
		defer b.pubMu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.stopped.Store(true)
		s.queue.close(true)
		return s
	}
	if after != nil {
		b.replay(s, *after)
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
// events' Dropped, less what those of Gap and of a SubscribeAfter that
// could not replay report (events lost before they reached the queue).
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
