package roomclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomclient"
)

// peer is the server end of one connection of a scripted fake server,
// for what roomserver cannot be made to do on cue: send an overflow
// event, greet in another order, break the protocol.
type peer struct {
	ws   *websocket.Conn
	a    wire.Assembler
	next uint64
}

func (p *peer) send(typ string, id uint64, v any, payload []byte) error {
	m, err := wire.Encode(id, typ, v, payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageBinary, m.Header); err != nil {
		return err
	}
	return p.ws.Write(ctx, websocket.MessageBinary, m.Body)
}

// event sends a server message with an id of the server's own.
func (p *peer) event(typ string, v any) error {
	p.next++
	return p.send(typ, 1<<62+p.next, v, nil)
}

func (p *peer) reply(id uint64, c wire.Content, payload []byte) error {
	return p.send(wire.TypeResponse, id, c, payload)
}

func (p *peer) chunk(toolCallID string, c wire.Content, payload []byte) error {
	return p.event(wire.TypeResponseChunk, wire.Chunk{ToolCallID: toolCallID, Chunk: c})
}

// recv returns the client's next message, decoded.
func (p *peer) recv() (*wire.Message, json.RawMessage, []byte, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, frame, err := p.ws.Read(ctx)
		cancel()
		if err != nil {
			return nil, nil, nil, err
		}
		m, err := p.a.Add(frame)
		if err != nil {
			return nil, nil, nil, err
		}
		if m != nil {
			body, payload, err := m.Split()
			return m, body, payload, err
		}
	}
}

func (p *peer) greet() error {
	if err := p.event(wire.TypeConnected, map[string]any{"type": "init", "participantId": "p-fake", "attributes": map[string]any{}}); err != nil {
		return err
	}
	return p.event(wire.TypeRoomReady, map[string]any{"room_name": "fake"})
}

// fakeServer runs script on each connection; script returns when it is
// done with the connection.
func fakeServer(t *testing.T, script func(p *peer)) *httptest.Server {
	var wg sync.WaitGroup
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer ws.CloseNow()
		script(&peer{ws: ws})
	}))
	t.Cleanup(func() {
		ts.Close()
		wg.Wait()
	})
	return ts
}

func wsURL(ts *httptest.Server) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/rooms/fake"
}

// invocation decodes a room.invoke_tool.
func invocation(t *testing.T, body json.RawMessage) (wire.InvokeTool, map[string]any) {
	var req wire.InvokeTool
	var args map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		t.Errorf("invoke: %v", err)
	}
	if req.Arguments.Type == wire.KindJSON {
		_ = json.Unmarshal(req.Arguments.JSON, &args)
	}
	return req, args
}

// TestServerEventsReachTheRightHandlers: the overflow event reaches the
// handlers that take events as EventOverflow with its Dropped, never the
// path handlers; moves carry both paths; the client's message ids count
// up from 0; Dial takes connected before room_ready.
func TestServerEventsReachTheRightHandlers(t *testing.T) {
	ids := make(chan uint64, 16)
	ts := fakeServer(t, func(p *peer) {
		if p.greet() != nil {
			return
		}
		for {
			m, body, _, err := p.recv()
			if err != nil {
				return
			}
			ids <- m.ID
			_, args := invocation(t, body)
			_ = p.reply(m.ID, wire.JSONOf(map[string]bool{"exists": false}), nil)
			if args["path"] == "go" {
				_ = p.event(wire.TypeEventsOverflow, wire.OverflowEvent{Dropped: 7})
				_ = p.event(wire.TypeFileMoved, wire.MoveEvent{SourcePath: "a", DestinationPath: "b", ParticipantID: "p-other"})
				_ = p.event(wire.TypeFileUpdated, wire.FileEvent{Path: "u", ParticipantID: "p-other"})
			}
		}
	})
	c, err := roomclient.Dial(deadline(t), wsURL(ts), roomclient.Options{Logger: quiet()})
	must(t, err)
	defer c.Close()
	if c.ParticipantID() != "p-fake" {
		t.Errorf("participant id %q", c.ParticipantID())
	}
	rec := record(t, c)
	moved := make(chan events.Event, 4)
	_, err = c.On(roomstore.EventFileMoved, func(ev events.Event) { moved <- ev })
	must(t, err)
	paths := make(chan string, 4)
	_, err = c.On(roomstore.EventFileUpdated, func(p string) { paths <- p })
	must(t, err)
	if _, err := c.Exists(deadline(t), "go"); err != nil {
		t.Fatal(err)
	}
	if ev := rec.next(t); ev.Type != roomstore.EventOverflow || ev.Dropped != 7 {
		t.Errorf("first event %+v, want an overflow of 7", ev)
	}
	rec.expect(t, roomstore.EventFileMoved, "b", "a", "p-other")
	rec.expect(t, roomstore.EventFileUpdated, "u", "", "p-other")
	for _, want := range []string{roomstore.EventOverflow, roomstore.EventFileMoved} {
		select {
		case ev := <-moved:
			if ev.Type != want {
				t.Errorf("On(file.moved, func(Event)) got %s, want %s", ev.Type, want)
			}
		case <-time.After(wait):
			t.Fatalf("On(file.moved, func(Event)) got no %s", want)
		}
	}
	select {
	case p := <-paths:
		if p != "u" {
			t.Errorf("On(file.updated, func(path)) got %q first, want u", p)
		}
	case <-time.After(wait):
		t.Fatal("On(file.updated, func(path)) got nothing")
	}
	for want := range uint64(2) {
		if got := <-ids; got != want {
			t.Errorf("message id %d, want %d", got, want)
		}
	}
}

// TestDialWaitsForBothGreetings: without room_ready, or without
// connected, Dial waits until its context ends.
func TestDialWaitsForBothGreetings(t *testing.T) {
	for name, greeting := range map[string]string{"connected alone": wire.TypeConnected, "room_ready alone": wire.TypeRoomReady} {
		t.Run(name, func(t *testing.T) {
			ts := fakeServer(t, func(p *peer) {
				_ = p.event(greeting, map[string]any{"type": "init", "participantId": "p"})
				for {
					if _, _, _, err := p.recv(); err != nil {
						return
					}
				}
			})
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			_, err := roomclient.Dial(ctx, wsURL(ts), roomclient.Options{Logger: quiet()})
			wantErr(t, "Dial", err, context.DeadlineExceeded)
		})
	}
}

// TestADownloadPastItsSizeIsAProtocolError: more bytes than announced
// fail the Read; the client still closes the stream.
func TestADownloadPastItsSizeIsAProtocolError(t *testing.T) {
	closed := make(chan struct{})
	ts := fakeServer(t, func(p *peer) {
		if p.greet() != nil {
			return
		}
		var id string
		for {
			m, body, _, err := p.recv()
			if err != nil {
				return
			}
			switch m.Type {
			case wire.TypeInvokeTool:
				req, _ := invocation(t, body)
				if req.Arguments.Type == wire.KindControl {
					id = req.ToolCallID
					_ = p.reply(m.ID, wire.Control("open"), nil)
				} else {
					_ = p.reply(m.ID, wire.JSONOf(map[string]bool{"exists": true}), nil)
				}
			case wire.TypeRequestChunk:
				var ch wire.Chunk
				_ = json.Unmarshal(body, &ch)
				_ = p.reply(m.ID, wire.Empty(), nil)
				switch {
				case ch.Chunk.Headers["kind"] == "start":
					_ = p.chunk(id, wire.Binary(map[string]any{"kind": "start", "name": "f", "mime_type": "text/plain", "size": 3}), nil)
				case ch.Chunk.Headers["kind"] == "pull":
					_ = p.chunk(id, wire.Binary(map[string]any{"kind": "data"}), []byte("abcde"))
				case ch.Chunk.Method == "close":
					close(closed)
				}
			}
		}
	})
	c, err := roomclient.Dial(deadline(t), wsURL(ts), roomclient.Options{Logger: quiet()})
	must(t, err)
	defer c.Close()
	r, err := c.OpenReader(deadline(t), "f", 0, -1)
	must(t, err)
	if r.Size() != 3 || r.MimeType() != "text/plain" {
		t.Errorf("reader %+v %q", r.Entry(), r.MimeType())
	}
	_, err = io.ReadAll(r)
	wantErr(t, "Read past the size", err, roomclient.ErrProtocol)
	must(t, r.Close())
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("the client did not close the stream")
	}
}

// logs is a slog handler that hands each record's message to a channel.
type logs chan string

func (l logs) Enabled(context.Context, slog.Level) bool { return true }
func (l logs) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Message:
	default:
	}
	return nil
}
func (l logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logs) WithGroup(string) slog.Handler      { return l }

// TestACloseWith1000IsNotReconnected: a server that ends the connection
// cleanly is taken at its word, Reconnect or not.
func TestACloseWith1000IsNotReconnected(t *testing.T) {
	ts := fakeServer(t, func(p *peer) {
		if p.greet() != nil {
			return
		}
		m, _, _, err := p.recv()
		if err != nil {
			return
		}
		_ = p.reply(m.ID, wire.JSONOf(map[string]bool{"exists": true}), nil)
		_ = p.ws.Close(websocket.StatusNormalClosure, "bye")
	})
	l := make(logs, 64)
	c, err := roomclient.Dial(deadline(t), wsURL(ts), roomclient.Options{Reconnect: true, Logger: slog.New(l)})
	must(t, err)
	defer c.Close()
	for {
		select {
		case msg := <-l:
			if strings.Contains(msg, "reconnecting") {
				t.Fatalf("logged %q after a close with 1000", msg)
			}
			if msg != "roomclient: disconnected" {
				continue
			}
		case <-time.After(wait):
			t.Fatal("the client never noticed the close")
		}
		break
	}
	_, err = c.Exists(deadline(t), "x")
	if !errors.Is(err, roomclient.ErrDisconnected) {
		t.Errorf("a call after the close: %v, want ErrDisconnected", err)
	}
}
