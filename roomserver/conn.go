package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/wire"
)

// outMsg is one message waiting for the connection's writer.
type outMsg struct {
	m wire.Encoded
	// closing, set on the last message, closes the connection once what
	// was queued before it has gone out.
	closing     bool
	closeCode   websocket.StatusCode
	closeReason string
}

// conn is one participant's connection. Its reader dispatches messages,
// its writer alone writes frames (a message's frames go out back to
// back), and everything it started ends with it.
type conn struct {
	s     *Server
	rm    *room
	ws    *websocket.Conn
	id    string
	ident Identity

	ctx    context.Context  // ends when the connection does
	ectx   context.Context  // ctx with the participant and its policy, for the engine
	policy roomstore.Policy // the identity's, as the connection applies it (nil: everything)
	cancel context.CancelFunc
	out    chan outMsg
	nextID atomic.Uint64

	// lost counts the events dropped since the participant was last
	// told (storage.events.overflow); while it is not zero, every event
	// waits behind that notice, so that none arrives ahead of a loss
	// before it. trySend and the writer hold lossMu to change it.
	lossMu sync.Mutex
	lost   uint64
	logged time.Time     // when a loss was last logged (at most one a minute)
	reqs   chan struct{} // semaphore of simple calls

	mu      sync.Mutex
	streams map[string]*stream
	work    sync.WaitGroup // calls and streams

	closeOnce sync.Once
	closer    sync.WaitGroup // the close handshake under way
}

func newConn(s *Server, rm *room, ws *websocket.Conn, ident Identity) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		s: s, rm: rm, ws: ws, id: participantID(), ident: ident,
		ctx: ctx, cancel: cancel,
		out:     make(chan outMsg, s.o.SendQueue),
		reqs:    make(chan struct{}, s.o.MaxRequests),
		streams: map[string]*stream{},
	}
	c.ectx = roomstore.WithParticipant(ctx, c.id)
	if ident.Policy != nil || !ident.Expires.IsZero() {
		c.policy = connPolicy{p: ident.Policy, expires: ident.Expires}
		c.ectx = roomstore.WithPolicy(c.ectx, c.policy)
	}
	c.nextID.Store(1 << 62) // server ids never meet the client's, which count from 0
	// The socket's own calls take contexts of their own: a cancelled
	// context there drops the socket at once, before a close frame could
	// tell the peer why. Ending the connection closes it properly.
	context.AfterFunc(ctx, func() { c.close(websocket.StatusGoingAway, "") })
	return c
}

// engineCtx is the context of the calls made for this participant: its
// id and its policy.
func (c *conn) engineCtx() context.Context { return c.ectx }

// connPolicy is a participant's policy as its connection applies it: it
// grants nothing once the identity has ended (whatever is still under
// way, an upload's commit included), and a policy that panics fails the
// call it decides rather than the server.
type connPolicy struct {
	p       roomstore.Policy // nil: everything
	expires time.Time        // zero: never
}

func (c connPolicy) ended() bool { return ended(c.expires) }

// ended reports whether an identity that expires then (zero: never) has
// ended.
func ended(expires time.Time) bool { return !expires.IsZero() && !time.Now().Before(expires) }

// Allow implements roomstore.Policy.
func (c connPolicy) Allow(ctx context.Context, r roomstore.Right, path string) (ok bool, err error) {
	switch {
	case c.ended():
		return false, nil
	case c.p == nil:
		return true, nil
	}
	defer recovered(&err)
	return c.p.Allow(ctx, r, path)
}

// Beneath implements roomstore.Policy.
func (c connPolicy) Beneath(ctx context.Context, r roomstore.Right, folder string) (s roomstore.Scope, err error) {
	switch {
	case c.ended():
		return roomstore.Scope{}, nil
	case c.p == nil:
		return roomstore.Scope{All: true}, nil
	}
	defer recovered(&err)
	return c.p.Beneath(ctx, r, folder)
}

// recovered turns a panic of the embedder's policy into the error of the
// call it was deciding.
func recovered(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("the access policy panicked: %v", r)
	}
}

// expired reports whether the participant's token has ended.
func (c *conn) expired() bool { return ended(c.ident.Expires) }

// serve runs the connection to its end.
func (c *conn) serve() {
	defer c.s.untrack(c)
	defer c.s.release(c.rm)
	log := c.s.log.With("room", c.rm.name, "participant", c.id)
	log.Info("participant connected", "name", c.ident.Name)

	writerDone := make(chan struct{})
	go func() { defer close(writerDone); c.writer() }()
	pingDone := make(chan struct{})
	go func() { defer close(pingDone); c.pinger() }()
	if !c.ident.Expires.IsZero() {
		// The token ends the connection when it ends: what the participant
		// has open is aborted, and it must come back with a new token.
		expiry := time.AfterFunc(time.Until(c.ident.Expires), func() {
			log.Info("participant's token expired", "name", c.ident.Name)
			c.close(websocket.StatusPolicyViolation, "token expired")
		})
		defer expiry.Stop()
	}

	attrs := c.ident.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	// Joined before the greetings: a client acts on connected at once, and
	// must not miss the events of its first calls.
	c.rm.join(c)
	c.sendJSON(wire.TypeRoomReady, map[string]any{"room_name": c.rm.name, "session_id": c.id})
	c.sendJSON(wire.TypeConnected, map[string]any{"type": "init", "participantId": c.id, "attributes": attrs})

	err := c.reader()
	c.rm.leave(c)
	c.cancel()
	c.work.Wait()
	<-writerDone
	<-pingDone
	// After this Do no close can begin, and one that began has its
	// goroutine counted: the wait below cannot race with its Go.
	c.closeOnce.Do(func() {})
	c.closer.Wait()
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		log.Info("participant disconnected", "code", int(ce.Code), "reason", ce.Reason)
	case err != nil:
		log.Info("participant disconnected", "err", err)
	}
	_ = c.ws.CloseNow()
}

// close ends the connection with a close code; the reader then returns.
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.closer.Go(func() {
			_ = c.ws.Close(code, reason)
			c.cancel()
		})
	})
}

// closeAfterQueued closes the connection after the messages already
// queued, so that the last replies of calls that finished reach the
// client before the close frame. A queue that does not drain within
// WriteTimeout is dropped.
func (c *conn) closeAfterQueued(code websocket.StatusCode, reason string) {
	t := time.NewTimer(c.s.o.WriteTimeout)
	defer t.Stop()
	select {
	case c.out <- outMsg{closing: true, closeCode: code, closeReason: reason}:
	case <-c.ctx.Done():
	case <-t.C:
		c.close(code, reason)
	}
}

// protocolError closes the connection over a frame it cannot trust.
func (c *conn) protocolError(code websocket.StatusCode, err error) error {
	c.s.log.Warn("closing connection", "room", c.rm.name, "participant", c.id, "code", int(code), "err", err)
	c.close(code, truncate(err.Error(), 120))
	return err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// reader reads and dispatches messages until the connection ends.
func (c *conn) reader() error {
	a := wire.Assembler{Max: c.s.o.MaxMessageSize}
	for {
		typ, r, err := c.ws.Reader(context.Background()) // ended by the close
		if err == nil && typ != websocket.MessageBinary {
			return c.protocolError(websocket.StatusUnsupportedData, errors.New("a text frame"))
		}
		var m *wire.Message
		if err == nil {
			m, err = a.ReadFrame(r)
		}
		switch {
		case errors.Is(err, wire.ErrTooLarge):
			return c.protocolError(websocket.StatusMessageTooBig, err)
		case errors.Is(err, wire.ErrMalformed):
			return c.protocolError(websocket.StatusProtocolError, err)
		case err != nil:
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || errors.Is(err, websocket.ErrMessageTooBig) {
				c.s.log.Warn("closing connection", "room", c.rm.name, "participant", c.id, "code", 1009, "err", err)
				// Over the read limit the library has sent the code; finish
				// the handshake, which reads (and drops) what the client
				// still sends, rather than dropping the socket before the
				// client has read the code.
				c.close(websocket.StatusMessageTooBig, "message too big")
			}
			return err
		}
		if m != nil {
			if err := c.dispatch(m); err != nil {
				return err
			}
		}
	}
}

// dispatch handles one message; only a connection-level failure is
// returned.
func (c *conn) dispatch(m *wire.Message) error {
	switch m.Type {
	case wire.TypeResponse:
		return nil // the server sends no requests; a stray answer is ignored
	case wire.TypeInvokeTool:
		body, payload, err := m.Split()
		if err != nil {
			return c.reply(m.ID, wire.Error(400, "malformed message: "+err.Error()), nil)
		}
		var req wire.InvokeTool
		if err := json.Unmarshal(body, &req); err != nil {
			return c.reply(m.ID, wire.Error(400, "invalid JSON in room.invoke_tool"), nil)
		}
		return c.invoke(m.ID, req, payload)
	case wire.TypeRequestChunk:
		body, payload, err := m.Split()
		if err != nil {
			return c.reply(m.ID, wire.Error(400, "malformed message: "+err.Error()), nil)
		}
		var ch wire.Chunk
		if err := json.Unmarshal(body, &ch); err != nil {
			return c.reply(m.ID, wire.Error(400, "invalid JSON in room.tool_call_request_chunk"), nil)
		}
		return c.chunk(m, ch, payload)
	default:
		return c.reply(m.ID, wire.Error(400, fmt.Sprintf("unsupported message type %q", truncate(m.Type, 64))), nil)
	}
}

// invoke starts a call: a stream opens at once, so that its chunks (which
// the client sends without waiting for the open) find it; a simple call
// runs on its own, bounded by MaxRequests.
func (c *conn) invoke(id uint64, req wire.InvokeTool, payload []byte) error {
	if req.Toolkit != "storage" {
		return c.reply(id, wire.Error(404, fmt.Sprintf("no toolkit %q", truncate(req.Toolkit, 64))), nil)
	}
	if c.s.draining() {
		return c.reply(id, wire.Error(503, "server shutting down"), nil)
	}
	if c.expired() {
		return c.reply(id, wire.Error(CodeForbidden, "token expired"), nil)
	}
	if req.Arguments.Type == wire.KindControl && req.Arguments.Method == "open" {
		return c.openStream(id, req)
	}
	if req.Arguments.Type != wire.KindJSON {
		return c.reply(id, wire.Error(400, fmt.Sprintf("storage.%s takes JSON arguments", truncate(req.Tool, 64))), nil)
	}
	select {
	case c.reqs <- struct{}{}:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer func() { <-c.reqs }()
		res := c.call(req.Tool, req.Arguments.JSON)
		_ = c.reply(id, res, nil)
	}()
	return nil
}

func (c *conn) openStream(id uint64, req wire.InvokeTool) error {
	if req.Tool != "upload" && req.Tool != "download" {
		return c.reply(id, wire.Error(400, fmt.Sprintf("storage.%s does not stream", truncate(req.Tool, 64))), nil)
	}
	if req.ToolCallID == "" || len(req.ToolCallID) > 256 {
		return c.reply(id, wire.Error(400, "a stream needs a tool_call_id of 1 to 256 bytes"), nil)
	}
	c.mu.Lock()
	if _, dup := c.streams[req.ToolCallID]; dup {
		c.mu.Unlock()
		return c.reply(id, wire.Error(409, "tool_call_id already in use"), nil)
	}
	if len(c.streams) >= c.s.o.MaxStreams {
		c.mu.Unlock()
		return c.reply(id, wire.Error(429, fmt.Sprintf("too many streams (at most %d per connection)", c.s.o.MaxStreams)), nil)
	}
	st := newStream(c, req.ToolCallID, req.Tool)
	c.streams[st.id] = st
	c.work.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.work.Done()
		defer c.endStream(st)
		st.run()
	}()
	return c.reply(id, wire.Control("open"), nil)
}

func (c *conn) endStream(st *stream) {
	c.mu.Lock()
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	c.mu.Unlock()
	// A chunk that came in as the stream ended is answered, not lost.
	st.mu.Lock()
	st.done = true
	for len(st.in) > 0 {
		ch := <-st.in
		_ = c.reply(ch.id, endedReply(ch.c), nil)
	}
	st.mu.Unlock()
	close(st.ended)
}

// chunk hands a request chunk to its stream. A close for a stream that
// has ended is answered (the client always sends one); any other chunk
// of an unknown or ended stream gets a 404.
func (c *conn) chunk(m *wire.Message, ch wire.Chunk, payload []byte) error {
	id := m.ID
	c.mu.Lock()
	st := c.streams[ch.ToolCallID]
	c.mu.Unlock()
	if st == nil {
		if ch.Chunk.Type == wire.KindControl && ch.Chunk.Method == "close" {
			return c.reply(id, wire.Empty(), nil)
		}
		return c.reply(id, wire.Error(404, "no open stream with that tool_call_id"), nil)
	}
	// Under the stream's lock a chunk either reaches the stream's inbox
	// before it ends (and is answered by it or by endStream) or finds it
	// done.
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return c.reply(id, endedReply(ch.Chunk), nil)
	}
	select {
	case st.in <- inChunk{id: id, c: ch.Chunk, data: payload, msg: m}:
		return nil
	default:
		return c.reply(id, wire.Error(429, "a chunk before the stream's previous one was answered"), nil)
	}
}

// endedReply answers a chunk of a stream that has ended: its close is
// answered (the client always sends one), anything else refused.
func endedReply(ch wire.Content) wire.Content {
	if ch.Type == wire.KindControl && ch.Method == "close" {
		return wire.Empty()
	}
	return wire.Error(404, "the stream has ended")
}

// drainStreams waits until the connection has no stream open, or ctx
// ends.
func (c *conn) drainStreams(ctx context.Context) {
	for {
		c.mu.Lock()
		var st *stream
		for _, s := range c.streams {
			st = s
			break
		}
		c.mu.Unlock()
		if st == nil {
			return
		}
		select {
		case <-st.ended:
		case <-c.ctx.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// reply answers request id.
func (c *conn) reply(id uint64, body wire.Content, payload []byte) error {
	m, err := wire.Encode(id, wire.TypeResponse, body, payload)
	if err != nil {
		return err
	}
	return c.send(m)
}

// sendJSON sends a server message.
func (c *conn) sendJSON(typ string, v any) {
	m, err := wire.Encode(c.nextID.Add(1), typ, v, nil)
	if err == nil {
		_ = c.send(m)
	}
}

// send queues a message, waiting for room in the queue while the
// connection lives: only this participant's own calls wait.
func (c *conn) send(m wire.Encoded) error {
	select {
	case c.out <- outMsg{m: m}:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

// trySend queues an event without waiting. An event that finds the
// queue full is dropped and counted; the participant is told how many
// it lost (storage.events.overflow {dropped}) before the next event it
// gets, or as soon as the queue has drained, so that it re-lists rather
// than being disconnected by a burst of changes. A participant that
// stops reading altogether is dropped after WriteTimeout by the writer.
// The event's frames are shared by every participant of the room.
func (c *conn) trySend(m wire.Encoded) {
	c.lossMu.Lock()
	defer c.lossMu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	if c.lost > 0 {
		notice, err := c.lossMessage()
		if err != nil {
			c.lost++
			return
		}
		select {
		case c.out <- outMsg{m: notice}:
			c.lost = 0
		default:
			c.lost++
			return
		}
	}
	select {
	case c.out <- outMsg{m: m}:
	default:
		if c.lost == 0 && time.Since(c.logged) >= time.Minute {
			c.logged = time.Now()
			c.s.log.Warn("a slow participant lost events", "room", c.rm.name, "participant", c.id, "queue", cap(c.out))
		}
		c.lost++
	}
}

// lossNotice takes the loss to tell the participant once every event
// queued before it has gone out, or returns false.
func (c *conn) lossNotice() (wire.Encoded, bool) {
	c.lossMu.Lock()
	defer c.lossMu.Unlock()
	if c.lost == 0 || len(c.out) != 0 {
		return wire.Encoded{}, false
	}
	notice, err := c.lossMessage()
	if err != nil {
		return wire.Encoded{}, false
	}
	c.lost = 0
	return notice, true
}

// lossMessage is the storage.events.overflow telling the loss counted so
// far; c.lossMu is held.
func (c *conn) lossMessage() (wire.Encoded, error) {
	return c.rm.encode(events.Event{Type: roomstore.EventOverflow, Dropped: c.lost}, viewWhole)
}

// writer writes queued messages, each message's frames back to back. A
// message that takes over WriteTimeout to go out drops the connection:
// one timer, armed for each message, rather than a context per write
// (which costs the library a timer of its own per frame).
func (c *conn) writer() {
	stalled := time.AfterFunc(time.Hour, func() {
		c.s.log.Warn("dropping a participant that stopped reading", "room", c.rm.name, "participant", c.id)
		_ = c.ws.CloseNow()
	})
	stalled.Stop()
	defer stalled.Stop()
	write := func(m wire.Encoded) error {
		stalled.Reset(c.s.o.WriteTimeout)
		err := c.ws.Write(context.Background(), websocket.MessageBinary, m.Header)
		if err == nil {
			err = c.ws.Write(context.Background(), websocket.MessageBinary, m.Body)
		}
		stalled.Stop()
		m.Release()
		return err
	}
	for {
		select {
		case m := <-c.out:
			if m.closing {
				c.close(m.closeCode, m.closeReason)
				return
			}
			err := write(m.m)
			if err == nil {
				if notice, ok := c.lossNotice(); ok {
					err = write(notice)
				}
			}
			if err != nil {
				c.cancel()
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// pinger drops a connection whose peer stops answering pings.
func (c *conn) pinger() {
	t := time.NewTicker(c.s.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.s.o.PingTimeout)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.s.log.Info("dropping a participant that stopped answering pings", "room", c.rm.name, "participant", c.id)
				c.close(websocket.StatusPolicyViolation, "ping timeout")
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}
