package roomclient

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"time"
	"weak"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
)

// gapTopic carries, through the client's bus, the server's overflow
// events and the gaps of reconnections. The bus refuses to publish events
// of type events.TypeOverflow (only it may say where a subscriber's own
// queue lost events), so they travel under this type and the handlers
// that take an Event get them as roomstore.EventOverflow.
const gapTopic = "roomclient.gap"

// fileTopics are the topics On accepts and Subscribe takes by default.
var fileTopics = []string{roomstore.EventFileUpdated, roomstore.EventFileDeleted, roomstore.EventFileMoved}

// onSub is a subscription made by On, found again by Off through the
// code of its handler. It is held weakly: once unsubscribed (by Off, or
// by the caller through the Subscription) the bus lets go of it, and the
// entry goes with the next On or Off.
type onSub struct {
	code uintptr
	sub  weak.Pointer[events.Subscription]
}

// On subscribes handler to event (roomstore.EventFileUpdated,
// EventFileDeleted or EventFileMoved), as roomstore.Engine.On does:
// handler is func(path, participantID string), func(path string) or
// func(events.Event); the path of a move is its destination, and only a
// func(events.Event) also gets roomstore.EventOverflow events (see
// Subscribe). Handlers run asynchronously, one goroutine per
// subscription, in the order the server sent the events; a panicking
// handler is recovered and logged. Subscriptions survive reconnections.
// Any other handler type, or another event name, fails with an error
// wrapping fs.ErrInvalid and subscribes nothing; after Close On fails
// with fs.ErrClosed. Keep the Subscription to unsubscribe closures.
func (c *Client) On(event string, handler any) (*roomstore.Subscription, error) {
	if err := c.checkTopic("on", event); err != nil {
		return nil, err
	}
	h, takesEvents, err := adapt(handler)
	if err != nil {
		return nil, pathError("on", event, fmt.Errorf("%w: %w", fs.ErrInvalid, err))
	}
	sub := c.bus.Subscribe(withGaps(h, takesEvents), event, gapTopic)
	c.subMu.Lock()
	defer c.subMu.Unlock()
	c.ons[event] = append(c.pruned(event), onSub{code: reflect.ValueOf(handler).Pointer(), sub: weak.Make(sub)})
	return sub, nil
}

// Off removes the latest subscription that On made for event with a
// function of the same code as handler, as roomstore.Engine.Off does:
// exact for top-level functions; for closures and method values call
// Unsubscribe on the Subscription that On returned. A handler that is not
// subscribed yields fs.ErrNotExist (and events.ErrNotSubscribed); an
// unknown event or a handler that is no function fs.ErrInvalid.
func (c *Client) Off(event string, handler any) error {
	if err := c.checkTopic("off", event); err != nil {
		return err
	}
	v := reflect.ValueOf(handler)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		return pathError("off", event, fmt.Errorf("%w: %w, not %T", fs.ErrInvalid, events.ErrHandler, handler))
	}
	code := v.Pointer()
	c.subMu.Lock()
	subs := c.pruned(event)
	var found *events.Subscription
	for i := len(subs) - 1; i >= 0; i-- {
		if subs[i].code == code {
			found = subs[i].sub.Value()
			subs = slices.Delete(subs, i, i+1)
			break
		}
	}
	c.ons[event] = subs
	c.subMu.Unlock()
	if found == nil {
		return pathError("off", event, fmt.Errorf("%w: %w", fs.ErrNotExist, events.ErrNotSubscribed))
	}
	found.Unsubscribe()
	return nil
}

// pruned returns On's live subscriptions to event; subMu is held.
func (c *Client) pruned(event string) []onSub {
	return slices.DeleteFunc(c.ons[event], func(s onSub) bool { return s.sub.Value() == nil })
}

// Subscribe calls handler for each event of the given topics (the three
// file topics when none is given), as roomstore.Engine.Subscribe does,
// and with an event of type roomstore.EventOverflow where events were
// lost: its Dropped says how many when that is known (the server's
// queue for this participant, or this client's queue for the handler,
// overflowed, or a reconnection's gap is longer than the server's
// history) and is 0 after a reconnection whose gap may have lost any
// number (a server that does not resume, or one whose room was opened
// anew). Either way, re-read what you mirror. After Close the
// subscription receives nothing.
func (c *Client) Subscribe(handler func(events.Event), topics ...string) *roomstore.Subscription {
	if len(topics) == 0 {
		topics = fileTopics
	}
	return c.bus.Subscribe(withGaps(handler, true), append(slices.Clone(topics), gapTopic)...)
}

func (c *Client) checkTopic(op, event string) error {
	if !slices.Contains(fileTopics, event) {
		return pathError(op, event, fmt.Errorf("%w: unknown event (want %q, %q or %q)", fs.ErrInvalid,
			roomstore.EventFileUpdated, roomstore.EventFileDeleted, roomstore.EventFileMoved))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return pathError(op, event, errClientClosed)
	}
	return nil
}

// withGaps passes gap events to a handler that takes events, as
// EventOverflow, and keeps them from the others.
func withGaps(h func(events.Event), takesEvents bool) func(events.Event) {
	return func(e events.Event) {
		if e.Type == gapTopic {
			if !takesEvents {
				return
			}
			e.Type = roomstore.EventOverflow
		}
		h(e)
	}
}

var (
	pathParticipantType = reflect.TypeFor[func(string, string)]()
	pathType            = reflect.TypeFor[func(string)]()
	eventType           = reflect.TypeFor[func(events.Event)]()
)

// adapt turns the handler shapes On accepts (and named types of them)
// into a func(events.Event), as package events does, and says whether
// the handler takes events. Those that take paths skip the bus's own
// overflow events.
func adapt(handler any) (h func(events.Event), takesEvents bool, err error) {
	v := reflect.ValueOf(handler)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		return nil, false, fmt.Errorf("%w, not %T", events.ErrHandler, handler)
	}
	switch t := v.Type(); {
	case t.ConvertibleTo(eventType):
		return v.Convert(eventType).Interface().(func(events.Event)), true, nil
	case t.ConvertibleTo(pathParticipantType):
		f := v.Convert(pathParticipantType).Interface().(func(string, string))
		return func(e events.Event) {
			if e.Type != events.TypeOverflow {
				f(e.Path, e.ParticipantID)
			}
		}, false, nil
	case t.ConvertibleTo(pathType):
		f := v.Convert(pathType).Interface().(func(string))
		return func(e events.Event) {
			if e.Type != events.TypeOverflow {
				f(e.Path)
			}
		}, false, nil
	}
	return nil, false, fmt.Errorf("%w, not %T", events.ErrHandler, handler)
}

// publish hands one server event to the subscribers. Its Time is when it
// arrived; Size is unknown (0): the protocol's events do not carry it.
func (c *Client) publish(typ string, body json.RawMessage) {
	now := time.Now()
	switch typ {
	case wire.TypeFileUpdated, wire.TypeFileDeleted:
		var v wire.FileEvent
		if err := json.Unmarshal(body, &v); err != nil {
			c.log.Warn("roomclient: a malformed event", "type", typ, "err", err)
			return
		}
		topic := roomstore.EventFileUpdated
		if typ == wire.TypeFileDeleted {
			topic = roomstore.EventFileDeleted
		}
		c.bus.Publish(topic, events.Event{Type: topic, Path: v.Path, ParticipantID: v.ParticipantID, ParticipantName: v.ParticipantName, Time: now})
		c.handed(v.Position)
	case wire.TypeFileMoved:
		var v wire.MoveEvent
		if err := json.Unmarshal(body, &v); err != nil {
			c.log.Warn("roomclient: a malformed event", "type", typ, "err", err)
			return
		}
		c.bus.Publish(roomstore.EventFileMoved, events.Event{Type: roomstore.EventFileMoved,
			Path: v.DestinationPath, SourcePath: v.SourcePath, ParticipantID: v.ParticipantID, ParticipantName: v.ParticipantName, Time: now})
		c.handed(v.Position)
	case wire.TypeEventsOverflow:
		var v wire.OverflowEvent
		if err := json.Unmarshal(body, &v); err != nil {
			c.log.Warn("roomclient: a malformed event", "type", typ, "err", err)
			return
		}
		c.bus.Publish(gapTopic, events.Event{Type: gapTopic, Dropped: v.Dropped, Time: now})
		c.handed(v.Position)
	}
}

// handed records the server's position of an event handed to the
// subscribers (of an overflow notice: where the stream goes on), for a
// redial to resume after; "" (a server that gives none) changes nothing.
func (c *Client) handed(pos string) {
	if pos == "" {
		return
	}
	c.posMu.Lock()
	c.pos = pos
	c.posMu.Unlock()
}

// startAt records where a connection's stream starts (room_ready's
// position) unless the client has a position already: a redial keeps
// the one it resumes after, which the events it is sent then advance.
func (c *Client) startAt(pos string) {
	c.posMu.Lock()
	if c.pos == "" {
		c.pos = pos
	}
	c.posMu.Unlock()
}

// position is where a redial resumes.
func (c *Client) position() string {
	c.posMu.Lock()
	defer c.posMu.Unlock()
	return c.pos
}

// publishGap tells the subscribers that take events that a reconnection
// may have lost some.
func (c *Client) publishGap() {
	c.bus.Publish(gapTopic, events.Event{Type: gapTopic, Time: time.Now()})
}
