package roomstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
	if e.watch != nil {
		e.watch.own(ev, false)
	}
	if e.link != nil {
		e.link.Publish(ctx, ev)
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
