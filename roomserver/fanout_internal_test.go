package roomserver

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
)

// The engine's overflow marker reaches participants as
// storage.events.overflow, with the count lost, so that they re-list.
func TestOverflowIsForwarded(t *testing.T) {
	s := &Server{o: Options{SendQueue: 4}}
	s.o.defaults()
	s.log = s.o.Logger
	rm := &room{name: "r", conns: map[*conn]struct{}{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// writing set: the test reads the queue itself, no writer starts.
	c := &conn{s: s, rm: rm, ctx: ctx, cancel: cancel, writing: true, buf: newSendBuffer(int64(s.o.SendBuffer))}
	rm.join(c)
	rm.fanout(events.Event{Type: roomstore.EventOverflow, Dropped: 7, Time: time.Now()})
	rm.fanout(events.Event{Type: "something.else"})
	if len(c.queue) != 1 {
		t.Fatalf("%d messages queued, want the overflow alone", len(c.queue))
	}
	{
		m := c.queue[0]
		var a wire.Assembler
		if got, err := a.Add(m.m.Header); got != nil || err != nil {
			t.Fatalf("header frame: %v %v", got, err)
		}
		msg, err := a.Add(m.m.Body)
		if err != nil || msg == nil {
			t.Fatalf("data frame: %v %v", msg, err)
		}
		var ov wire.OverflowEvent
		body, _, err := msg.Split()
		if err != nil || msg.Type != wire.TypeEventsOverflow || json.Unmarshal(body, &ov) != nil || ov.Dropped != 7 {
			t.Fatalf("got %s %s %v", msg.Type, body, err)
		}
	}
}
