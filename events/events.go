// Package events is roomstore's event bus: ordered, asynchronous delivery of
// file events to subscribers, with github.com/asaskevich/EventBus as the
// transport. EventBus never appears in this package's API.
//
// # Delivery
//
// Each topic has one EventBus handler, which only copies the event into the
// bounded queue of every subscriber of the topic; each subscriber has its
// own goroutine that runs its handler. A queue holds only the events
// waiting in it: it grows on demand up to its bound (WithBuffer) and, once
// drained, gives its memory back (to a pool that the garbage collector
// empties), so an idle subscriber costs about 3 KiB, mostly its parked
// goroutine's stack, whatever the bound. So:
//
//   - Publish never waits for a handler, and a slow subscriber never blocks
//     a writer: when its queue is full the event is dropped for that
//     subscriber only, counted (Subscription.Dropped), logged, and told
//     to the bus's Observer, if any (WithObserver), which also hears of
//     every event published and every one delivered.
//   - A subscriber that lost events is told where: its stream holds one
//     event of type TypeOverflow at the gap, after every event queued
//     before the first drop and before every event accepted once its queue
//     had room again, and its Dropped field counts the events lost there.
//     Handlers that take an Event (Subscribe, and On with a func(Event))
//     get it whatever their topics; On's func(path string) and
//     func(path, participantID string) handlers never do, since they could
//     not tell it from a file event.
//   - A subscriber sees events in publish order.
//   - A handler may call anything, Publish and Unsubscribe included: no
//     EventBus lock is held while it runs.
//   - A handler that panics is recovered and logged; other handlers and the
//     publisher carry on.
//   - Once Unsubscribe returns, the handler is not called again.
//   - Close delivers what is queued, a waiting overflow event included,
//     then stops.
//
// # Positions and resuming
//
// Publish numbers the events a bus accepts (Event.Seq: 1, 2, 3... in
// publish order) and gives each a Position, an opaque token that names
// the bus as well as the number: the bus draws a random id at New, so
// that a position from another bus (another replica, a process that
// restarted) is recognised as foreign rather than taken for one of its
// own. The bus keeps its latest events (WithHistory, default
// DefaultHistory, growing only as events are published). A subscriber
// that comes back with the Position of the last event it handled calls
// SubscribeAfter: the events it missed are queued first, then the live
// ones, with none missing and none twice whatever is published
// meanwhile; every guarantee above holds for them too (the replay counts
// against the queue bound). Where the history cannot say what it missed
// (the position is foreign, older than the oldest event kept, or from
// before a Gap), its stream starts with exactly one TypeOverflow event
// instead, whose Position is where the live events start, and it should
// re-read what it mirrors. EventsAfter answers the same question without
// subscribing, and Position says where the stream is now.
//
// These neutralise EventBus's known defects: its Publish holds a global lock
// while synchronous handlers run (re-entrant calls would deadlock), its
// Unsubscribe matches handlers by code pointer (closures of one literal
// collide), SubscribeOnce can remove the wrong handler, handlers of the
// wrong signature panic inside reflect.Call, and an async handler that
// panics kills the process.
//
// # Recognising handlers
//
// Unsubscribe and Close wait for running handlers, except when they are
// called from inside a handler of the same bus, where waiting could wait
// for itself; InHandler answers the same question for callers. Go has no
// goroutine-local storage, and Unsubscribe and Close take nothing that could
// tell where they are called from, so the bus recognises its delivery
// goroutines by goroutine id, which it reads from the first line of
// runtime.Stack: "goroutine N [status]:".
// That line has had this form since Go 1: every Go traceback and panic
// starts with it, go.uber.org/goleak parses it, and so does net/http, whose
// HTTP/2 code checks which goroutine holds its locks with it (under
// DEBUG_HTTP2_GOROUTINES=1). A test of this package pins the format. If
// the id nonetheless cannot be read, the bus takes the caller to be inside
// a handler: Unsubscribe and Close still stop delivery and Close still
// delivers what is queued, but they no longer wait for running handlers.
// That is a weaker guarantee, never a deadlock.
package events

import (
	"errors"
	"fmt"
	"reflect"
	"time"
)

// Event is one change to the store.
type Event struct {
	// Type is the topic, such as "file.updated", "file.deleted" or
	// "file.moved", or TypeOverflow.
	Type string
	// Path is the clean path of the file (the destination of a move).
	Path string
	// SourcePath is the path a moved file had before the move ("" for
	// other events).
	SourcePath string
	// ParticipantID identifies who caused the change: the participant in
	// the context of the call that made it ("" when none was set).
	ParticipantID string
	// ParticipantName is the name of that participant where the source of
	// the event knows it: a room server tells roomclient the name of its
	// token's identity; an Engine's own events leave it "".
	ParticipantName string
	// Size is the file's size after the change (0 for a deletion).
	Size int64
	// ETag identifies the file's version after the change (the version
	// removed, for a deletion, where the engine knew it): the Info.ETag
	// that Stat reports for it. Engines use it to recognise a change they
	// were told of already, whoever saw it first; "" where unknown.
	ETag string
	// Time is when the change became visible.
	Time time.Time
	// Dropped is, in an event of type TypeOverflow, how many events the
	// subscriber lost at that point of its stream (0 in other events, and
	// in an overflow that a Transport reported without knowing how many).
	Dropped uint64
	// ID identifies the event among every engine's events ("" in events
	// of type TypeOverflow): the same on every engine that delivers it.
	ID string
	// Origin identifies the engine whose change it reports (its ID), so a
	// subscriber tells its own engine's events from those another engine
	// sent through a Transport; "" in events of type TypeOverflow.
	Origin string
	// Seq numbers the events of the Bus that delivers it: 1, 2, 3... in
	// the order Bus.Publish accepted them, set by Publish whatever the
	// caller put there (0 in events of type TypeOverflow). It is the
	// bus's own: the same change has another Seq on another engine.
	Seq uint64
	// Position is where the event sits in the stream of the Bus that
	// delivers it, an opaque token (see Bus.SubscribeAfter): keep the
	// Position of the last event handled, and a later SubscribeAfter
	// with it delivers what came after. It names the bus as well as Seq,
	// so that a position from another bus (another replica, a restarted
	// process) is recognised as foreign. In an event of type TypeOverflow
	// it is the position after which the subscriber's stream goes on
	// (that of the last event lost, or where a SubscribeAfter that could
	// not replay went live; "" when not known); a subscriber that re-read
	// what it mirrors after the overflow may keep it.
	Position string
}

// TypeOverflow is the Type of the event that tells a subscriber it lost
// events: its queue was full when they were published. Its Dropped field
// says how many were lost at that point of the subscriber's stream, and its
// Time is when the first of them was dropped; its Position is where the
// stream goes on (see Event.Position); Path, SourcePath, ParticipantID,
// Size, ID, Origin and Seq are empty. Bus.Gap makes one too, for events a
// Transport lost before they reached the bus, and so does
// Bus.SubscribeAfter where it cannot replay. It is no topic:
// only the bus makes it, for the subscriber that lost events (Publish
// drops an event of this type or topic, so none can be forged; see
// Delivery in the package documentation for where it sits and which
// handlers get it). A subscriber
// that gets it should re-read the state it mirrors, such as by listing
// again, since the events it would have been told are gone.
const TypeOverflow = "events.overflow"

// ErrHandler reports a handler that On cannot call: nil, or not one of the
// accepted function types.
var ErrHandler = errors.New("events: handler must be func(path, participantID string), func(path string) or func(events.Event)")

// ErrNotSubscribed reports an Off for a handler that is not subscribed.
var ErrNotSubscribed = errors.New("events: handler is not subscribed")

var (
	pathParticipantType = reflect.TypeFor[func(string, string)]()
	pathType            = reflect.TypeFor[func(string)]()
	eventType           = reflect.TypeFor[func(Event)]()
)

// adapt turns one of the accepted handler shapes (or a named type with one
// of those underlying types) into a func(Event). It checks once, at
// subscription, so that a wrong shape can never fail at publish. The
// handlers that take paths skip overflow events, which have none.
func adapt(handler any) (func(Event), error) {
	v := reflect.ValueOf(handler)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		return nil, fmt.Errorf("%w, not %T", ErrHandler, handler)
	}
	switch t := v.Type(); {
	case t.ConvertibleTo(eventType):
		return v.Convert(eventType).Interface().(func(Event)), nil
	case t.ConvertibleTo(pathParticipantType):
		h := v.Convert(pathParticipantType).Interface().(func(string, string))
		return func(e Event) {
			if e.Type != TypeOverflow {
				h(e.Path, e.ParticipantID)
			}
		}, nil
	case t.ConvertibleTo(pathType):
		h := v.Convert(pathType).Interface().(func(string))
		return func(e Event) {
			if e.Type != TypeOverflow {
				h(e.Path)
			}
		}, nil
	}
	return nil, fmt.Errorf("%w, not %T", ErrHandler, handler)
}
