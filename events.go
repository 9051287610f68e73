package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"time"

	"github.com/roomstore/roomstore/events"
)

// Event topics.
const (
	// EventFileUpdated is published after every successful Close.
	EventFileUpdated = "file.updated"
	// EventFileDeleted is published after every file Delete or RemoveAll
	// actually removed.
	EventFileDeleted = "file.deleted"
	// EventFileMoved is published after every file Move moved, with
	// Event.Path the destination and Event.SourcePath the source.
	EventFileMoved = "file.moved"
	// EventOverflow is the Type of the event that tells a subscriber its
	// queue was full and it lost Event.Dropped events at that point of its
	// stream, so that it re-reads what it mirrors (List, Walk). It is no
	// topic: every handler that takes an Event gets it, whatever its
	// topics; handlers that take paths never do. See package events.
	EventOverflow = events.TypeOverflow
)

func (e *Engine) publish(ctx context.Context, topic, p string, size int64, etag string) {
	e.publishEvent(ctx, events.Event{Type: topic, Path: p, Size: size, ETag: etag})
}

// publishEvent stamps ev with the participant of ctx and the time, and
// publishes it on its topic.
func (e *Engine) publishEvent(ctx context.Context, ev events.Event) {
	ev.ParticipantID = ParticipantFrom(ctx)
	ev.Time = time.Now()
	ev.Origin = e.id
	ev.ID = e.id + "-" + strconv.FormatUint(e.evSeq.Add(1), 10)
	if e.link != nil {
		e.link.Publish(ctx, ev)
	}
	if e.watch != nil {
		// After the transport has it: what the watcher knows, and saves for
		// the engines after this one, is then told (see watcher.save).
		e.watch.own(ev, false)
	}
	e.bus.Publish(ev.Type, ev)
}

// On subscribes handler to event (EventFileUpdated, EventFileDeleted or
// EventFileMoved). handler is func(path, participantID string),
// func(path string) or func(events.Event); the path of a move is its
// destination, and only a func(events.Event) also gets EventOverflow. Any
// other type, or another event name, fails with fs.ErrInvalid and
// subscribes nothing; after Shutdown On fails with fs.ErrClosed. Keep the
// Subscription to unsubscribe closures.
func (e *Engine) On(event string, handler any) (*events.Subscription, error) {
	if err := e.checkTopic("on", event); err != nil {
		return nil, err
	}
	sub, err := e.bus.On(event, handler)
	if err != nil {
		return nil, &fs.PathError{Op: "on", Path: event, Err: fmt.Errorf("%w: %w", fs.ErrInvalid, err)}
	}
	return sub, nil
}

// Off removes a handler that On subscribed to event. It matches functions
// by code, which is exact for top-level functions; for closures and method
// values call Unsubscribe on the Subscription that On returned. A handler
// that is not subscribed yields fs.ErrNotExist (and events.ErrNotSubscribed).
func (e *Engine) Off(event string, handler any) error {
	if err := e.checkTopic("off", event); err != nil {
		return err
	}
	if err := e.bus.Off(event, handler); err != nil {
		if errors.Is(err, events.ErrNotSubscribed) {
			return &fs.PathError{Op: "off", Path: event, Err: fmt.Errorf("%w: %w", fs.ErrNotExist, err)}
		}
		return &fs.PathError{Op: "off", Path: event, Err: fmt.Errorf("%w: %w", fs.ErrInvalid, err)}
	}
	return nil
}

// Subscribe calls handler for each event of the given topics (all three
// when none is given), and with EventOverflow when its queue lost events.
// After Shutdown the subscription receives nothing.
func (e *Engine) Subscribe(handler func(events.Event), topics ...string) *events.Subscription {
	if len(topics) == 0 {
		topics = []string{EventFileUpdated, EventFileDeleted, EventFileMoved}
	}
	return e.bus.Subscribe(handler, topics...)
}

// SubscribeAfter is Subscribe for a subscriber that saw the engine's
// events up to position (the Event.Position of the last event it handled,
// or an EventPosition): handler first gets the events of topics (all
// three when none is given) published after position that the engine's
// history holds (WithEventHistory), then the live ones, with none missed
// and none twice whatever is published meanwhile. Where the history
// cannot tell what came after position (another engine's position, such
// as one from before a restart, or one older than the history reaches, or
// from before events a transport lost), handler gets exactly one
// EventOverflow first, whose Position is where the live events start and
// whose Dropped counts the events published after position when that is
// known (else 0), and should re-read what it mirrors. "" subscribes from
// now, as Subscribe. A malformed position, an unknown topic or a nil
// handler fails with fs.ErrInvalid, and after Shutdown SubscribeAfter
// fails with fs.ErrClosed; a failed call subscribes nothing.
func (e *Engine) SubscribeAfter(position string, handler func(events.Event), topics ...string) (*events.Subscription, error) {
	if handler == nil {
		return nil, &fs.PathError{Op: "subscribe", Path: position, Err: fmt.Errorf("%w: a nil handler", fs.ErrInvalid)}
	}
	topics, every, err := e.eventTopics("subscribe", topics)
	if err != nil {
		return nil, err
	}
	if every {
		h := handler
		handler = func(ev events.Event) {
			if isEventType(ev.Type) {
				h(ev)
			}
		}
	}
	sub, err := e.bus.SubscribeAfter(position, handler, topics...)
	if err != nil {
		return nil, &fs.PathError{Op: "subscribe", Path: position, Err: err}
	}
	return sub, nil
}

// EventsAfter returns what SubscribeAfter(position, handler, topics...)
// would deliver before the live events, without subscribing: the events of
// topics (all three when none is given) published after position that
// the history holds, oldest first, or a single EventOverflow where it
// cannot tell (see SubscribeAfter). "" returns nothing. Its errors are
// SubscribeAfter's.
func (e *Engine) EventsAfter(position string, topics ...string) ([]events.Event, error) {
	topics, every, err := e.eventTopics("events", topics)
	if err != nil {
		return nil, err
	}
	evs, err := e.bus.EventsAfter(position, topics...)
	if err != nil {
		return nil, &fs.PathError{Op: "events", Path: position, Err: err}
	}
	if every {
		evs = slices.DeleteFunc(evs, func(ev events.Event) bool { return !isEventType(ev.Type) })
	}
	return evs, nil
}

// EventPosition returns the position of the engine's latest event, or
// where its stream starts if it published none: SubscribeAfter with it
// delivers every event from then on, so that a subscriber that reads
// the store first can take the position before, and miss nothing after.
// After Shutdown it returns the last position.
func (e *Engine) EventPosition() string { return e.bus.Position() }

// eventTopics checks the topics of SubscribeAfter and EventsAfter and
// returns those to give the bus: none when they are every topic (all
// three, or none given), with every set, so that the bus can count
// what a subscriber missed; then the caller keeps to the three topics,
// since a transport may bring the bus an engine's events of a topic this
// engine does not know.
func (e *Engine) eventTopics(op string, topics []string) (_ []string, every bool, err error) {
	for _, t := range topics {
		if err := e.checkTopic(op, t); err != nil {
			return nil, false, err
		}
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, false, &fs.PathError{Op: op, Path: "", Err: fs.ErrClosed}
	}
	for _, t := range []string{EventFileUpdated, EventFileDeleted, EventFileMoved} {
		if len(topics) > 0 && !slices.Contains(topics, t) {
			return topics, false, nil
		}
	}
	return nil, true, nil
}

// isEventType reports whether typ is one of the engine's topics or
// EventOverflow.
func isEventType(typ string) bool {
	return typ == EventFileUpdated || typ == EventFileDeleted || typ == EventFileMoved || typ == EventOverflow
}

func (e *Engine) checkTopic(op, event string) error {
	if event != EventFileUpdated && event != EventFileDeleted && event != EventFileMoved {
		return &fs.PathError{Op: op, Path: event, Err: fmt.Errorf("%w: unknown event (want %q, %q or %q)", fs.ErrInvalid, EventFileUpdated, EventFileDeleted, EventFileMoved)}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return &fs.PathError{Op: op, Path: event, Err: fs.ErrClosed}
	}
	return nil
}

// Event is an event delivered to subscribers (see package events).
type Event = events.Event

// Subscription is a subscriber's registration (see package events).
type Subscription = events.Subscription
