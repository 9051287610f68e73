package roomserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
)

// The engine's overflow marker reaches participants that asked for
// roomstore's extensions as storage.events.overflow, with the count
// lost, so that they re-list; any other participant is closed with 1013,
// so that it reconnects and re-lists.
func TestOverflowIsForwarded(t *testing.T) {
	s, rm := queueTestRoom(t, 4)
	c := queueTestConn(t, s, rm, true)
	strict := queueTestConn(t, s, rm, false)
	for _, c := range []*conn{c, strict} {
		rm.join(c)
		c.catchUp(nil, "") // greeted, nothing missed: the room sends it events
	}
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
	if len(strict.queue) != 1 || !strict.queue[0].closing || strict.queue[0].closeCode != 1013 {
		t.Fatalf("the participant without extensions got %+v, want a close with 1013", strict.queue)
	}
	if n := s.Stats().Refused[BudgetSendBuffer]; n != 0 {
		t.Errorf("the room's own overflow counted %d against participants' send buffers", n)
	}
}

// A participant that did not ask for roomstore's extensions cannot be
// told of a loss: it gets the events queued before it, then a close with
// 1013, and nothing after.
func TestAStrictParticipantThatLosesEventsIsClosedAfterWhatCameBefore(t *testing.T) {
	s, rm := queueTestRoom(t, 2)
	c := queueTestConn(t, s, rm, false)
	for i := 1; i <= 5; i++ { // 1 and 2 queued, 3 lost: the close; 4 and 5 lost
		if i == 3 {
			// Its writer has taken nothing for longer than burstLag: it
			// is not reading.
			c.progress = time.Now().Add(-2 * burstLag)
		}
		c.trySend(fileEvent(t, i), "")
	}
	var got []string
	for {
		m, ok := c.pop()
		if !ok {
			break
		}
		if m.closing {
			got = append(got, fmt.Sprint("close ", int(m.closeCode)))
			continue
		}
		got = append(got, describe(t, m.m))
	}
	if want := []string{"1", "2", "close 1013"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the participant got %v, want %v", got, want)
	}
	if n := s.Stats().Refused[BudgetSendBuffer]; n != 1 {
		t.Fatalf("%d losses counted, want 1", n)
	}
}

// Events lost to a full queue are told in order: the notice goes out
// after every event queued before the loss and before any queued after.
func TestLostEventsAreToldInOrder(t *testing.T) {
	s, rm := queueTestRoom(t, 2)
	c := queueTestConn(t, s, rm, true)
	event := func(i int) wire.Encoded {
		m, err := wire.Encode(uint64(i), wire.TypeFileUpdated, wire.FileEvent{Path: fmt.Sprint(i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// take takes the next queued message, as the writer does
	var got []string
	take := func() {
		t.Helper()
		m, ok := c.pop()
		if !ok {
			t.Fatal("nothing queued")
		}
		got = append(got, describe(t, m.m))
	}
	for i := 1; i <= 5; i++ { // 1 and 2 queued, 3 to 5 lost
		c.trySend(event(i), "")
	}
	take()                  // 1
	c.trySend(event(6), "") // the notice of 3 takes the free place; 6 is lost
	take()                  // 2
	take()                  // the notice of 3; with no event left, that of 1 is queued
	take()                  // the notice of 1
	c.trySend(event(7), "")
	take() // 7
	want := []string{"1", "2", "lost 3", "lost 1", "7"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the participant got %v, want %v", got, want)
	}
	if n := s.Stats().Refused[BudgetSendBuffer]; n != 2 {
		t.Fatalf("%d losses counted, want 2", n)
	}
}

// queueTestRoom is a server with SendQueue sendQueue and a room, for the
// tests of a connection's queue.
func queueTestRoom(t *testing.T, sendQueue int) (*Server, *room) {
	t.Helper()
	s := &Server{o: Options{SendQueue: sendQueue, Logger: slog.New(slog.DiscardHandler)}}
	s.o.defaults()
	s.log = s.o.Logger
	s.lim = newLimits(&s.o)
	return s, &room{name: "r", conns: map[*conn]struct{}{}}
}

// queueTestConn is a live connection of rm whose queue the test takes
// itself: writing is set, so that no writer starts.
func queueTestConn(t *testing.T, s *Server, rm *room, extras bool) *conn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &conn{s: s, rm: rm, ctx: ctx, cancel: cancel, writing: true, extras: extras, buf: newSendBuffer(int64(s.o.SendBuffer))}
}

// fileEvent is the storage.file.updated of path i.
func fileEvent(t *testing.T, i int) wire.Encoded {
	t.Helper()
	m, err := wire.Encode(uint64(i), wire.TypeFileUpdated, wire.FileEvent{Path: fmt.Sprint(i)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A participant that did not ask for the extensions, and keeps reading,
// has room for a burst of strictBurst times SendQueue events (a
// recursive delete) before a loss closes it; one that asked is told of
// a loss past SendQueue.
func TestABurstDoesNotCloseAStrictParticipantThatKeepsReading(t *testing.T) {
	s, rm := queueTestRoom(t, 4)
	strict := queueTestConn(t, s, rm, false)
	told := queueTestConn(t, s, rm, true)
	burst := strictBurst * s.o.SendQueue
	for i := 1; i <= burst+1; i++ {
		strict.trySend(fileEvent(t, i), "")
		told.trySend(fileEvent(t, i), "")
	}
	drain := func(c *conn) (events, closes, notices int) {
		for {
			m, ok := c.pop()
			switch {
			case !ok:
				return
			case m.closing:
				closes++
			case describe(t, m.m)[0] == 'l':
				notices++
			default:
				events++
			}
		}
	}
	if e, cl, _ := drain(strict); e != burst || cl != 1 {
		t.Errorf("the strict participant got %d events and %d closes of a burst of %d, want %d and the close of the one past them", e, cl, burst+1, burst)
	}
	if e, cl, n := drain(told); e != s.o.SendQueue || cl != 0 || n != 1 {
		t.Errorf("the participant that asked got %d events, %d closes, %d notices, want %d, 0, 1", e, cl, n, s.o.SendQueue)
	}
}

// describe is what a queued message tells: an event's path, or a loss.
func describe(t *testing.T, m wire.Encoded) string {
	t.Helper()
	var a wire.Assembler
	if _, err := a.Add(m.Header); err != nil {
		t.Fatal(err)
	}
	msg, err := a.Add(m.Body)
	if err != nil || msg == nil {
		t.Fatalf("data frame: %v %v", msg, err)
	}
	body, _, err := msg.Split()
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type == wire.TypeEventsOverflow {
		var ov wire.OverflowEvent
		if err := json.Unmarshal(body, &ov); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint("lost ", ov.Dropped)
	}
	var fe wire.FileEvent
	if err := json.Unmarshal(body, &fe); err != nil {
		t.Fatal(err)
	}
	return fe.Path
}

// A participant that joins with a position is sent what it missed, then
// what the room held for it meanwhile, skipping the events it got from
// both, then the live events: each once, in order, and a loss of the
// room's own where it happened.
func TestACatchUpSendsWhatWasMissedThenWhatWasHeldOnceAndInOrder(t *testing.T) {
	s, rm := queueTestRoom(t, 64)
	c := queueTestConn(t, s, rm, true)
	ev := func(i int) events.Event {
		return events.Event{Type: roomstore.EventFileUpdated, Path: fmt.Sprint(i), Seq: uint64(i), Position: fmt.Sprint("e.", i)}
	}
	start := rm.join(c)
	rm.fanout(ev(3)) // published before the engine was asked what c missed
	rm.fanout(ev(4))
	rm.fanout(events.Event{Type: roomstore.EventOverflow, Dropped: 2, Position: "e.6"}) // the room lost 5 and 6
	rm.fanout(ev(7))
	if len(c.queue) != 0 {
		t.Fatalf("%d messages sent before the catch-up, want none", len(c.queue))
	}
	c.catchUp([]events.Event{ev(1), ev(2), ev(3), ev(4), ev(5)}, start)
	rm.fanout(ev(8))
	var got []string
	for {
		m, ok := c.pop()
		if !ok {
			break
		}
		got = append(got, describe(t, m.m))
	}
	if want := "[1 2 3 4 5 lost 2 7 8]"; fmt.Sprint(got) != want {
		t.Fatalf("the participant got %v, want %s", got, want)
	}
}

// One that comes back with a position the engine cannot resume from is
// told once, where its stream goes on, before anything else.
func TestACatchUpThatCannotResumeTellsTheLossFirst(t *testing.T) {
	s, rm := queueTestRoom(t, 64)
	c := queueTestConn(t, s, rm, true)
	rm.lastPos = "e.9"
	start := rm.join(c)
	rm.fanout(events.Event{Type: roomstore.EventFileUpdated, Path: "10", Seq: 10, Position: "e.10"})
	c.catchUp([]events.Event{{Type: roomstore.EventOverflow, Dropped: 4}}, start)
	var got []string
	for {
		m, ok := c.pop()
		if !ok {
			break
		}
		got = append(got, describe(t, m.m))
		if len(got) == 1 {
			var ov wire.OverflowEvent
			if body := bodyOf(t, m.m); json.Unmarshal(body, &ov) != nil || ov.Position != "e.9" {
				t.Fatalf("the notice %s, want the position e.9 where the stream goes on", body)
			}
		}
	}
	if want := "[lost 4 10]"; fmt.Sprint(got) != want {
		t.Fatalf("the participant got %v, want %s", got, want)
	}
}

// bodyOf is the JSON of a queued message.
func bodyOf(t *testing.T, m wire.Encoded) []byte {
	t.Helper()
	var a wire.Assembler
	if _, err := a.Add(m.Header); err != nil {
		t.Fatal(err)
	}
	msg, err := a.Add(m.Body)
	if err != nil || msg == nil {
		t.Fatalf("data frame: %v %v", msg, err)
	}
	body, _, err := msg.Split()
	if err != nil {
		t.Fatal(err)
	}
	return body
}
