package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/events"
	"github.com/roomstore/roomstore/internal/batchconn"
	"github.com/roomstore/roomstore/internal/wire"
)

// outMsg is one message waiting for the connection's writer.
type outMsg struct {
	m     wire.Encoded
	n     int64 // the bytes of the send buffer it holds
	event bool  // an event: counted in events, not in the send buffer
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
	bc    *batchconn.Conn // what ws writes to, gathered by the writer (nil: ungathered)
	id    string
	ident Identity
	idst  *identity // the budgets it shares with its identity's other connections
	greet greeting
	// extras: the client asked for roomstore's extensions
	// (wire.ExtensionsParam), and gets the fields and messages MeshAgent
	// clients are never sent.
	extras bool
	// legacy is set by the first handle-era message: the client then gets
	// a move as the deletion of its source and the update of its
	// destination, the events its generation knows.
	legacy atomic.Bool

	ctx    context.Context  // ends when the connection does
	ectx   context.Context  // ctx with the participant and its policy, for the engine
	policy roomstore.Policy // the identity's, as the connection applies it (nil: everything)
	cancel context.CancelFunc
	buf    *sendBuffer  // the send buffer's bytes (Options.SendBuffer)
	queued atomic.Int64 // what buf holds, for Stats
	nextID atomic.Uint64
	reqs   chan struct{} // semaphore of simple calls

	mu      sync.Mutex
	streams map[string]*stream
	handles map[string]*legacyHandle // the handle-era handles it opened, by id
	slots   int                      // streams and handles holding a budget (takeSlot)
	work    sync.WaitGroup           // calls and streams

	closeOnce sync.Once
	closer    sync.WaitGroup // the close handshake under way

	// The messages waiting to go out, and their writer: a goroutine that
	// runs while there are some, so that an idle connection holds neither
	// a goroutine nor a queue.
	qmu     sync.Mutex
	queue   []outMsg
	events  int // of queue
	writing bool
	// lost counts the events dropped for a full queue since the
	// participant was last told (storage.events.overflow); while it is
	// not zero, an event is queued only behind that notice, so that none
	// arrives ahead of a loss before it. lostPos is the position of the
	// last of them, where known: the notice tells it.
	lost    uint64
	lostPos string
	// eventRoom, when not nil, is closed once fewer than SendQueue events
	// wait: what sendEvent waits for.
	eventRoom chan struct{}
	// progress is when the writer last took a message, or the queue last
	// went from empty to not: how far behind the participant is.
	progress time.Time
	writers  sync.WaitGroup
	stalled  *time.Timer // drops a connection whose write takes over WriteTimeout

	// From its joining the room until catchUp has sent what it missed,
	// the room's fanout keeps the participant's events in held, and counts
	// in heldLost those past heldMax (heldLostPos the position of the
	// last); all three under rm.mu.
	holding     bool
	held        []events.Event
	heldLost    uint64
	heldLostPos string

	// The pings, on a timer rather than a goroutine of their own.
	pingMu      sync.Mutex
	pingT       *time.Timer
	pingStopped bool
	pinging     sync.WaitGroup
}

func newConn(s *Server, rm *room, ws *websocket.Conn, ident Identity, idst *identity, greet greeting) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		s: s, rm: rm, ws: ws, id: participantID(), ident: ident, idst: idst,
		greet: greet, extras: greet.extensions,
		ctx: ctx, cancel: cancel,
		buf:     newSendBuffer(int64(s.o.SendBuffer)),
		reqs:    make(chan struct{}, s.o.MaxRequests),
		streams: map[string]*stream{},
		handles: map[string]*legacyHandle{},
	}
	c.ectx = roomstore.WithParticipant(ctx, c.id)
	if ident.Policy != nil || !ident.Expires.IsZero() {
		c.policy = connPolicy{p: ident.Policy, expires: ident.Expires}
		c.ectx = roomstore.WithPolicy(c.ectx, c.policy)
	}
	c.nextID.Store(1 << 62) // server ids never meet the client's, which count from 0
	// Both made stopped: serve starts the pings, the writer arms the other
	// for each message.
	c.stalled = time.AfterFunc(time.Hour, func() {
		c.s.logRefusal(BudgetSendBuffer, "dropping a participant that stopped reading", "room", c.rm.name, "participant", c.id, "after", c.s.o.WriteTimeout)
		_ = c.ws.CloseNow()
	})
	c.stalled.Stop()
	c.pingT = time.AfterFunc(time.Hour, c.ping)
	c.pingT.Stop()
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

// errTokenExpired is what an ended identity's policy answers: a call that
// was admitted just before the expiry is refused saying why, in the
// moment before the connection closes.
var errTokenExpired error = &requestError{CodeForbidden, "token expired"}

// ended reports whether an identity that expires then (zero: never) has
// ended.
func ended(expires time.Time) bool { return !expires.IsZero() && !time.Now().Before(expires) }

// Allow implements roomstore.Policy.
func (c connPolicy) Allow(ctx context.Context, r roomstore.Right, path string) (ok bool, err error) {
	switch {
	case c.ended():
		return false, errTokenExpired
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
		return roomstore.Scope{}, errTokenExpired
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
	defer c.s.lim.leave(c.idst)
	defer c.s.release(c.rm)
	defer c.rm.exit()
	log := c.s.log.With("room", c.rm.name, "participant", c.id)
	log.Info("participant connected", "name", shorten(c.ident.Name))

	defer c.stalled.Stop()
	c.pingT.Reset(c.s.o.PingInterval)
	if !c.ident.Expires.IsZero() {
		// The token ends the connection when it ends: what the participant
		// has open is aborted, and it must come back with a new token.
		expiry := time.AfterFunc(time.Until(c.ident.Expires), func() {
			log.Info("participant's token expired", "name", shorten(c.ident.Name))
			c.close(websocket.StatusPolicyViolation, "token expired")
		})
		defer expiry.Stop()
	}

	attrs := c.ident.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	// Joined before the greetings: a client acts on connected at once, and
	// must not miss the events of its first calls. The room holds its
	// events until it has been greeted and sent what it missed.
	start := c.rm.join(c)
	var missed []events.Event
	if c.greet.after != "" {
		var err error
		if missed, err = c.rm.eng.EventsAfter(c.greet.after); err != nil {
			// Checked before the upgrade; an engine shut down since
			// cannot tell.
			missed = []events.Event{{Type: roomstore.EventOverflow}}
		}
	}
	ready := map[string]any{"room_name": c.rm.name, "room_url": c.greet.roomURL, "session_id": c.id}
	if c.extras {
		ready["extensions"] = extensions
		ready["position"] = start
	}
	c.sendJSON(wire.TypeRoomReady, ready)
	c.sendJSON(wire.TypeConnected, map[string]any{"type": "init", "participantId": c.id, "attributes": attrs})
	if len(missed) == 0 {
		c.catchUp(nil, start)
	} else {
		// While the client reads them, its calls are answered.
		c.work.Go(func() { c.catchUp(missed, start) })
	}

	err := c.reader()
	c.rm.leave(c)
	c.cancel()
	c.work.Wait()
	c.stopPings()
	// A writer starts under qmu, and none once the context has ended,
	// which it has: one running now is the last, and its Add happened
	// before this Wait.
	c.qmu.Lock()
	running := c.writing
	c.qmu.Unlock()
	if running {
		c.writers.Wait()
	}
	c.qmu.Lock()
	left := c.queue
	c.queue = nil
	c.qmu.Unlock()
	for _, m := range left { // never to be written
		c.unqueue(m)
	}
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
			if c.bc != nil {
				// The close frame must not wait for a client stuck
				// writing a message that the handshake reads and drops.
				c.bc.Behind()
			}
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
	_ = c.enqueue(outMsg{closing: true, closeCode: code, closeReason: reason})
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
	// A message must arrive in full within MessageTimeout of its first
	// byte: the timer runs from a frame's start while a message is
	// partly received. What it holds meanwhile counts against the
	// server's MaxPendingBytes.
	late := time.AfterFunc(time.Hour, func() {
		c.s.logRefusal(BudgetMessageTimeout, "closing connection", "room", c.rm.name, "participant", c.id, "reason", "a message incomplete after "+c.s.o.MessageTimeout.String())
		c.close(websocket.StatusPolicyViolation, "message incomplete after "+c.s.o.MessageTimeout.String())
	})
	late.Stop()
	defer late.Stop()
	var held int64
	defer func() { c.s.lim.hold(-held) }()
	for {
		typ, r, err := c.ws.Reader(context.Background()) // ended by the close
		if err == nil && typ != websocket.MessageBinary {
			return c.protocolError(websocket.StatusUnsupportedData, errors.New("a text frame"))
		}
		if err == nil && !a.Busy() {
			late.Reset(c.s.o.MessageTimeout) // a message begins
		}
		var m *wire.Message
		if err == nil {
			// The frame's bytes count against the server's budget as they
			// are read, and what the message keeps of them until it ends.
			fr := &heldReader{r: r, lim: c.s.lim, free: int64(a.Hint())}
			if !c.s.lim.hold(fr.free) {
				err = errPendingBudget
			} else {
				m, err = a.ReadFrame(fr)
				c.s.lim.hold(-max(fr.n, fr.free))
			}
			if err == nil {
				if now := int64(a.Pending()); now != held {
					if !c.s.lim.hold(now - held) {
						err = errPendingBudget
					} else {
						held = now
					}
				}
			}
			if errors.Is(err, errPendingBudget) {
				c.s.logRefusal(Budget(""), "closing connection", "room", c.rm.name, "participant", c.id, "reason", "the server's budget of partly received messages is spent")
				c.close(websocket.StatusTryAgainLater, "server busy: try again later")
				return err
			}
			if err == nil && !a.Busy() {
				late.Stop() // it ended
			}
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
	case wire.TypeResponse, wire.TypeSetAttributes:
		// The server sends no requests, so a stray answer is ignored; so
		// are a participant's attributes, which older clients send after
		// connected and expect no answer to.
		return c.charge()
	case wire.TypeInvokeTool:
		body, payload, err := m.Split()
		if err != nil {
			return c.refuse(m.ID, wire.Error(400, "malformed message: "+err.Error()))
		}
		var req wire.InvokeTool
		if err := json.Unmarshal(body, &req); err != nil {
			return c.refuse(m.ID, wire.Error(400, "invalid JSON in room.invoke_tool"))
		}
		return c.invoke(m.ID, req, payload)
	case wire.TypeRequestChunk:
		body, payload, err := m.Split()
		if err != nil {
			return c.refuse(m.ID, wire.Error(400, "malformed message: "+err.Error()))
		}
		var ch wire.Chunk
		if err := wire.DecodeChunk(body, &ch); err != nil {
			return c.refuse(m.ID, wire.Error(400, "invalid JSON in room.tool_call_request_chunk"))
		}
		return c.chunk(m, ch, payload)
	default:
		if isLegacy(m.Type) {
			return c.legacyCall(m)
		}
		return c.refuse(m.ID, wire.Error(400, fmt.Sprintf("unsupported message type %q", truncate(m.Type, 64))))
	}
}

// refuse answers a message that is no call the server runs (malformed,
// of an unknown type, a chunk of no live stream): it costs the identity a
// call, as one would, so that a flood of them is paced as calls are.
func (c *conn) refuse(id uint64, body wire.Content) error {
	if err := c.reply(id, body, nil); err != nil {
		return err
	}
	return c.charge()
}

// charge takes a call from the identity's rate for a message the server
// answers without running a call; past the rate the connection pauses,
// as after a refused call.
func (c *conn) charge() error {
	if c.s.lim.allowCall(c.idst) {
		return nil
	}
	return c.pause()
}

// invoke starts a call: a stream opens at once, so that its chunks (which
// the client sends without waiting for the open) find it; a simple call
// runs on its own, bounded by MaxRequests.
func (c *conn) invoke(id uint64, req wire.InvokeTool, payload []byte) error {
	if ok, err := c.admit(id); !ok {
		return err
	}
	if req.Toolkit != "storage" {
		return c.reply(id, wire.Error(404, fmt.Sprintf("no toolkit %q", truncate(req.Toolkit, 64))), nil)
	}
	if req.Arguments.Type == wire.KindControl && req.Arguments.Method == "open" {
		return c.openStream(id, req)
	}
	if req.Arguments.Type != wire.KindJSON {
		return c.reply(id, wire.Error(400, fmt.Sprintf("storage.%s takes JSON arguments", truncate(req.Tool, 64))), nil)
	}
	list := req.Tool == "list" || c.extras && historyLists[req.Tool]
	return c.spawn(id, list, func() wire.Content { return c.call(req.Tool, req.Arguments.JSON, false) })
}

// spawn runs a simple call on its own goroutine, bounded by MaxRequests
// (past them the connection waits), and answers request id with what it
// returns, unless that is no content: run then sent the reply itself.
func (c *conn) spawn(id uint64, list bool, run func() wire.Content) error {
	select {
	case c.reqs <- struct{}{}:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer func() { <-c.reqs }()
		if list {
			// A list's reply is built whole: one identity holds two at
			// most, from the start of the listing until the reply has its
			// place in the send buffer.
			select {
			case c.idst.lists <- struct{}{}:
			case <-c.ctx.Done():
				return
			}
			defer func() { <-c.idst.lists }()
		}
		if res := run(); res.Type != "" { // else run sent its reply itself
			_ = c.reply(id, res, nil)
		}
	}()
	return nil
}

// admit takes a call from the identity's rate for request id, or answers
// it: past the rate (429, and the connection pauses), while the server
// shuts down (503), once the token has ended (403). It reports whether
// the call may run, and a connection-level failure.
func (c *conn) admit(id uint64) (bool, error) { return c.admitting(id, false) }

// admitting is admit; under way, a call that goes on with something
// already open (a handle's write or close) is admitted while the server
// shuts down, which lets what is open finish.
func (c *conn) admitting(id uint64, underWay bool) (bool, error) {
	if !c.s.lim.allowCall(c.idst) {
		if err := c.reply(id, wire.Error(CodeTooMany, fmt.Sprintf("rate limited: at most %g calls a second", c.s.o.CallRate)), nil); err != nil {
			return false, err
		}
		return false, c.pause()
	}
	if c.s.draining() && !underWay {
		return false, c.reply(id, wire.Error(503, "server shutting down"), nil)
	}
	if c.expired() {
		return false, c.reply(id, wire.Error(CodeForbidden, "token expired"), nil)
	}
	return true, nil
}

// Bounds of the pause of a connection whose identity spent its calls.
const (
	minPause = 10 * time.Millisecond
	maxPause = time.Second
)

// pause stops reading the connection until its identity's bucket holds a
// call again (at least minPause, at most maxPause), after a call refused
// over the rate: a participant that floods then waits in its own socket,
// rather than cost the server a refusal per call it can send. Only this
// connection waits.
func (c *conn) pause() error {
	r := c.idst.rate.Reserve()
	d := min(max(r.Delay(), minPause), maxPause)
	r.Cancel()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
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
	if code, text := c.takeSlotLocked("streams"); code != 0 {
		c.mu.Unlock()
		return c.reply(id, wire.Error(code, text), nil)
	}
	st := newStream(c, req.ToolCallID, req.Tool)
	pipelined := req.Pipelined && c.extras // wire.ExtInline
	if pipelined {
		// The first chunk follows: its answer and the stream's first
		// response carry this reply, in one write.
		st.holdAnswer(inChunk{id: id}, wire.Control("open"))
	}
	c.streams[st.id] = st
	c.work.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.work.Done()
		defer c.endStream(st)
		st.run()
	}()
	if pipelined {
		return nil
	}
	return c.reply(id, wire.Control("open"), nil)
}

// takeSlotLocked counts a stream or a handle-era handle against the
// connection's MaxStreams and the identity's and the server's stream
// budgets, or refuses it with an error reply's code and text (what
// names the connection's kind in it). c.mu is held.
func (c *conn) takeSlotLocked(what string) (int, string) {
	if c.slots >= c.s.o.MaxStreams {
		c.s.lim.refuse(BudgetStreams)
		return CodeTooMany, fmt.Sprintf("too many %s (at most %d per connection)", what, c.s.o.MaxStreams)
	}
	if code, text := c.s.lim.openStream(c.idst); code != 0 {
		return code, text
	}
	c.slots++
	return 0, ""
}

// dropSlot gives back what takeSlotLocked counted. A stream or handle
// does so before the answer that ends it goes out, so that a client
// that has its answer may open the next one at once.
func (c *conn) dropSlot() {
	c.mu.Lock()
	c.slots--
	c.mu.Unlock()
	c.s.lim.closeStream(c.idst)
}

func (c *conn) endStream(st *stream) {
	st.release()
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
			return c.refuse(id, wire.Empty())
		}
		return c.refuse(id, wire.Error(404, "no open stream with that tool_call_id"))
	}
	// Under the stream's lock a chunk either reaches the stream's inbox
	// before it ends (and is answered by it or by endStream) or finds it
	// done. Any other answer is the connection's, and costs a call, as
	// one that no stream takes would.
	st.mu.Lock()
	var answer wire.Content
	if st.done {
		answer = endedReply(ch.Chunk)
	} else {
		select {
		case st.in <- inChunk{id: id, c: ch.Chunk, data: payload, msg: m}:
			st.mu.Unlock()
			return nil
		default:
			answer = wire.Error(429, "a chunk before the stream's previous one was answered")
		}
	}
	st.mu.Unlock()
	return c.refuse(id, answer)
}

// endedReply answers a chunk of a stream that has ended: its close is
// answered (the client always sends one), anything else refused.
func endedReply(ch wire.Content) wire.Content {
	if ch.Type == wire.KindControl && ch.Method == "close" {
		return wire.Empty()
	}
	return wire.Error(404, "the stream has ended")
}

// drainStreams waits until the connection has no stream and no
// handle-era handle open, or ctx ends.
func (c *conn) drainStreams(ctx context.Context) {
	for {
		var ended chan struct{}
		c.mu.Lock()
		for _, s := range c.streams {
			ended = s.ended
			break
		}
		if ended == nil {
			for _, h := range c.handles {
				ended = h.ended
				break
			}
		}
		c.mu.Unlock()
		if ended == nil {
			return
		}
		select {
		case <-ended:
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

// size is what m holds of a send buffer: the memory it holds (a pooled
// buffer's capacity, not only the bytes it carries) and its place in the
// queue; the whole buffer for a message bigger than that, which then goes
// alone.
func (c *conn) size(m wire.Encoded) int64 {
	return min(int64(m.Held()+queueEntry), int64(c.s.o.SendBuffer))
}

// queueEntry is what a queued message costs beyond its frames.
const queueEntry = 128

// send queues a message, waiting for room in the send buffer and the
// queue while the connection lives: only this participant's own calls
// wait. When no writer runs, the calling goroutine writes it (and what
// others queue meanwhile) itself: a reply reaches the socket without a
// hand-off to another goroutine.
func (c *conn) send(m wire.Encoded) error { return c.sendAll(m) }

// sendAll is send for messages that go out together, in order: the
// writer gathers them into one write to the socket.
func (c *conn) sendAll(ms ...wire.Encoded) error {
	// One acquire for all of them, at most the whole buffer: messages
	// that each took their share apart could wait for ever, holding
	// what the first ones took, for room only their own going out frees.
	var total int64
	for _, m := range ms {
		total += int64(m.Held() + queueEntry)
	}
	take := min(total, int64(c.s.o.SendBuffer))
	if err := c.buf.acquire(c.ctx, take); err != nil {
		for _, m := range ms {
			m.Release()
		}
		return err
	}
	c.queued.Add(take)
	out := make([]outMsg, 0, len(ms))
	for i, m := range ms {
		n := min(int64(m.Held()+queueEntry), take)
		if i == len(ms)-1 {
			n = take // the rest: what the messages give back adds up to what was taken
		}
		take -= n
		out = append(out, outMsg{m: m, n: n})
	}
	c.qmu.Lock()
	if err := c.ctx.Err(); err != nil {
		c.qmu.Unlock()
		for _, o := range out {
			c.unqueue(o)
		}
		return err
	}
	for _, o := range out {
		c.queueLocked(o)
	}
	mine := !c.writing
	if mine {
		c.writing = true
		c.writers.Add(1)
	}
	c.qmu.Unlock()
	if mine {
		c.writer()
	}
	return nil
}

// enqueue queues m for the writer, starting the writer if none runs. Once
// the connection has ended nothing is queued: m is given back and the
// context's error returned.
func (c *conn) enqueue(m outMsg) error {
	c.qmu.Lock()
	if err := c.ctx.Err(); err != nil {
		c.qmu.Unlock()
		c.unqueue(m)
		return err
	}
	c.enqueueLocked(m)
	c.qmu.Unlock()
	return nil
}

// enqueueLocked queues m on a live connection, starting a writer
// goroutine if none runs; c.qmu is held. It never writes itself: its
// callers (the room's fan-out of events) must not wait for a socket.
func (c *conn) enqueueLocked(m outMsg) {
	c.queueLocked(m)
	if !c.writing {
		c.writing = true
		c.writers.Add(1)
		go c.writer()
	}
}

// queueLocked puts m in the queue; c.qmu is held.
func (c *conn) queueLocked(m outMsg) {
	if len(c.queue) == 0 {
		c.progress = time.Now()
	}
	c.queue = append(c.queue, m)
	if m.event {
		c.events++
	}
}

// trySend queues an event without waiting. The event's frames are
// shared by every participant of the room, so that what a participant's
// queued events hold is their place in its queue: they are counted apart
// from the send buffer, which replies and download chunks may fill
// without an event ever finding it full. An event that finds SendQueue
// events waiting already is lost for this participant (see lose). A
// participant that stops reading altogether is dropped after
// WriteTimeout.
// pos is the event's position, for the notice of its loss.
func (c *conn) trySend(m wire.Encoded, pos string) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	if c.lost > 0 && c.extras && c.events < c.s.o.SendQueue {
		c.tellLossLocked()
	}
	if c.lost > 0 || c.events >= c.s.o.SendQueue && !c.burstLocked() {
		c.loseLocked(1, true, pos)
		return
	}
	c.enqueueLocked(outMsg{m: m, event: true})
}

// sendEvent queues an event as trySend does, but waits while SendQueue
// events wait already, for as long as the connection lives: for the
// events a participant missed, which only it waits for. After a loss
// that closes the connection (a client that did not ask for the
// extensions) it drops the event. It fails once the connection has
// ended.
func (c *conn) sendEvent(m wire.Encoded) error {
	for {
		c.qmu.Lock()
		if err := c.ctx.Err(); err != nil {
			c.qmu.Unlock()
			return err
		}
		if c.lost > 0 && c.extras && c.events < c.s.o.SendQueue {
			c.tellLossLocked()
		}
		switch {
		case c.lost > 0 && !c.extras:
			c.qmu.Unlock()
			return nil
		case c.lost == 0 && c.events < c.s.o.SendQueue:
			c.enqueueLocked(outMsg{m: m, event: true})
			c.qmu.Unlock()
			return nil
		}
		if c.eventRoom == nil {
			c.eventRoom = make(chan struct{})
		}
		room := c.eventRoom
		c.qmu.Unlock()
		select {
		case <-room:
		case <-c.ctx.Done():
		}
	}
}

// heldMax bounds the events the room holds for a participant that is
// being sent what it missed: past it, they are lost for it (and it is
// told, see lose).
func (c *conn) heldMax() int { return strictBurst * c.s.o.SendQueue }

// holdLocked keeps ev for a participant that catchUp has not caught up
// yet; rm.mu is held.
func (c *conn) holdLocked(ev events.Event) {
	if len(c.held) < c.heldMax() && c.heldLost == 0 {
		c.held = append(c.held, ev)
		return
	}
	n := uint64(1)
	if ev.Type == roomstore.EventOverflow {
		n = max(ev.Dropped, 1)
	}
	c.heldLost += n
	c.heldLostPos = ev.Position
}

// catchUp sends a participant that has just joined the room and been
// greeted what it missed (the events after the position it connected
// with, missed, which ends with any that came after start, or one
// overflow event where the engine could not tell), then the events the
// room held for it meanwhile, skipping those it sent already, and then
// lets the room send it events as they come. Nothing reaches it out of
// order, twice, or, short of a loss it is told of, not at all. It returns
// early once the connection ends.
func (c *conn) catchUp(missed []events.Event, start string) {
	var last uint64 // the Seq of the last event sent
	for _, ev := range missed {
		if ev.Type == roomstore.EventOverflow {
			// The engine cannot tell what came after the client's position:
			// one notice, and its stream goes on after start.
			m, err := c.rm.encode(ev, viewWhole, extras{position: start})
			if err != nil {
				continue
			}
			if c.sendEvent(m) != nil {
				return
			}
			continue
		}
		if !c.sendMissed(ev) {
			return
		}
		last = max(last, ev.Seq)
	}
	for {
		c.rm.mu.Lock()
		held, lost, lostPos := c.held, c.heldLost, c.heldLostPos
		c.held, c.heldLost, c.heldLostPos = nil, 0, ""
		if len(held) == 0 && lost == 0 {
			c.holding = false
			c.rm.mu.Unlock()
			return
		}
		c.rm.mu.Unlock()
		for _, ev := range held {
			switch {
			case ev.Type == roomstore.EventOverflow:
				c.lose(max(ev.Dropped, 1), ev.Position)
			case ev.Seq <= last: // sent from missed already
			case !c.sendMissed(ev):
				return
			}
		}
		if lost > 0 {
			c.lose(lost, lostPos)
		}
	}
}

// sendMissed sends ev as the room would have, waiting for room in the
// queue; it reports false once the connection has ended.
func (c *conn) sendMissed(ev events.Event) bool {
	var f forms
	ms, n := c.rm.messages(c, ev, c.rm.nameOf(ev.ParticipantID), &f)
	for _, m := range ms[:n] {
		if c.sendEvent(*m) != nil {
			return false
		}
	}
	return true
}

// Room for bursts of events (a recursive delete, a folder moved) to a
// participant that cannot be told of a loss: up to strictBurst times
// SendQueue events, while its writer took a message within burstLag.
const (
	strictBurst = 8
	burstLag    = time.Second
)

// burstLocked reports whether an event past SendQueue is queued still:
// only for a participant that did not ask for the extensions (a loss
// closes its connection) and keeps reading, within strictBurst times
// SendQueue; c.qmu is held.
func (c *conn) burstLocked() bool {
	return !c.extras && c.events < strictBurst*c.s.o.SendQueue && time.Since(c.progress) < burstLag
}

// lose records n events lost for the participant (a full queue here, or
// the room's own subscription overflowing). A client that asked for
// roomstore's extensions is told how many (storage.events.overflow
// {dropped}) before its next event, or once its queue holds no event, so
// that it re-lists rather than being disconnected by a burst of changes.
// Any other client cannot be told (MeshAgent clients know no such
// message, and the strict ones refuse unknown ones): its connection is
// closed with 1013 after the events queued before the loss, so that it
// reconnects and re-lists rather than believe a view that is wrong. So
// that a burst of changes does not close the connection of a
// participant that keeps reading, such a participant has room for
// strictBurst times SendQueue events while it does (see burstLocked).
func (c *conn) lose(n uint64, pos string) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.ctx.Err() == nil {
		c.loseLocked(n, false, pos)
	}
}

// loseLocked is lose with c.qmu held, on a live connection; slow tells
// that the participant's own queue was full, which counts against its
// send buffer's budget; pos is the position of the last event lost, where
// known ("" otherwise).
func (c *conn) loseLocked(n uint64, slow bool, pos string) {
	first := c.lost == 0
	c.lost += n
	c.lostPos = pos
	if !first {
		return
	}
	if slow {
		c.s.logRefusal(BudgetSendBuffer, "a slow participant lost events", "room", c.rm.name, "participant", c.id, "queue", c.s.o.SendQueue)
	}
	if c.extras {
		if c.events < c.s.o.SendQueue {
			c.tellLossLocked() // an overflow of the room's own, told at once
		}
		return
	}
	c.enqueueLocked(outMsg{closing: true, closeCode: websocket.StatusTryAgainLater, closeReason: "events lost: reconnect and re-list"})
}

// tellLossLocked queues the notice of the events lost (c.lost > 0) and
// resets the count; c.qmu is held. A notice that cannot be encoded waits
// for the next chance.
func (c *conn) tellLossLocked() {
	notice, err := c.rm.encode(events.Event{Type: roomstore.EventOverflow, Dropped: c.lost}, viewWhole, extras{position: c.lostPos})
	if err != nil {
		return
	}
	c.lost, c.lostPos = 0, ""
	c.enqueueLocked(outMsg{m: notice, event: true})
}

// unqueue gives back what a message held of the send buffer, once it
// was written or will never be.
func (c *conn) unqueue(m outMsg) {
	m.m.Release()
	if m.n > 0 {
		c.buf.release(m.n)
		c.queued.Add(-m.n)
	}
}

// writer writes the queued messages, each message's frames back to back,
// until none is left: those it finds queued together reach the socket in
// one write (see batchconn). A message that takes over WriteTimeout to go
// out drops the connection: one timer per connection, armed for each
// batch, rather than a context per write (which costs the library a
// timer of its own per frame).
func (c *conn) writer() {
	defer c.writers.Done()
	for {
		c.hold()
		c.stalled.Reset(c.s.o.WriteTimeout)
		for {
			m, ok := c.pop()
			if !ok {
				break
			}
			if m.closing {
				// Nothing goes out after the close frame: writing stays set,
				// so that no writer starts again.
				c.flush()
				c.stalled.Stop()
				c.close(m.closeCode, m.closeReason)
				return
			}
			err := c.ws.Write(context.Background(), websocket.MessageBinary, m.m.Header)
			if err == nil {
				err = c.ws.Write(context.Background(), websocket.MessageBinary, m.m.Body)
			}
			c.unqueue(m)
			if err != nil {
				c.cancel()
			}
		}
		if c.flush() != nil {
			c.cancel()
		}
		c.stalled.Stop()
		if c.idle() {
			return
		}
	}
}

// hold gathers the writes to the socket until flush.
func (c *conn) hold() {
	if c.bc != nil {
		c.bc.Hold()
	}
}

// flush writes what hold gathered.
func (c *conn) flush() error {
	if c.bc != nil {
		return c.bc.Flush()
	}
	return nil
}

// pop takes the next message for the writer, if one waits (and the
// connection lives).
func (c *conn) pop() (outMsg, bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 || c.ctx.Err() != nil {
		return outMsg{}, false
	}
	m := c.queue[0]
	c.queue[0] = outMsg{}
	c.queue = c.queue[1:]
	c.progress = time.Now()
	if m.event {
		c.events--
		if c.events == 0 && c.lost > 0 && c.extras {
			c.tellLossLocked() // after m, every event before the loss
		}
		if c.eventRoom != nil && c.events < c.s.o.SendQueue {
			close(c.eventRoom)
			c.eventRoom = nil
		}
	}
	if len(c.queue) == 0 {
		c.queue = nil // an idle connection keeps no array
	}
	return m, true
}

// idle ends the writer once nothing is queued (or the connection has
// ended), and reports whether it did; a message queued since the last
// pop keeps it writing.
func (c *conn) idle() bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 || c.ctx.Err() != nil {
		c.writing = false
		return true
	}
	return false
}

// ping pings the peer, and drops a connection whose peer stops
// answering; it runs on its timer every PingInterval.
func (c *conn) ping() {
	c.pingMu.Lock()
	if c.pingStopped {
		c.pingMu.Unlock()
		return
	}
	c.pinging.Add(1)
	c.pingMu.Unlock()
	defer c.pinging.Done()
	ctx, cancel := context.WithTimeout(context.Background(), c.s.o.PingTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil && c.ctx.Err() == nil {
		c.s.log.Info("dropping a participant that stopped answering pings", "room", c.rm.name, "participant", c.id)
		c.close(websocket.StatusPolicyViolation, "ping timeout")
		return
	}
	c.pingMu.Lock()
	if !c.pingStopped {
		c.pingT.Reset(c.s.o.PingInterval)
	}
	c.pingMu.Unlock()
}

// stopPings stops the pings and waits for one under way.
func (c *conn) stopPings() {
	c.pingMu.Lock()
	c.pingStopped = true
	c.pingT.Stop()
	c.pingMu.Unlock()
	c.pinging.Wait()
}

// errPendingBudget ends a connection whose message would pass the
// server's MaxPendingBytes.
var errPendingBudget = errors.New("the server's budget of partly received messages is spent")

// heldReader counts the bytes of a frame being read against the server's
// MaxPendingBytes (n of them so far, the first free of them held already:
// the buffer the frame is read into), failing a read that would pass it.
// It reads at most heldStep bytes at a time, so that they are counted as
// they arrive.
type heldReader struct {
	r    io.Reader
	lim  *limits
	n    int64
	free int64
}

// heldStep bounds one read of a frame.
const heldStep = 64 << 10

func (h *heldReader) Read(p []byte) (int, error) {
	if len(p) > heldStep {
		p = p[:heldStep]
	}
	n, err := h.r.Read(p)
	if n > 0 {
		if more := h.n + int64(n) - max(h.n, h.free); more > 0 && !h.lim.hold(more) {
			return 0, errPendingBudget
		}
		h.n += int64(n)
	}
	return n, err
}

// sendBuffer bounds the bytes waiting to go out on one connection. A
// message that finds the buffer empty is taken whatever its size; the
// others wait for room, each on its own (no order among them), so that
// one big message waiting holds up no smaller one that fits.
type sendBuffer struct {
	mu   sync.Mutex
	used int64
	max  int64
	room chan struct{} // closed and replaced when bytes are given back
}

func newSendBuffer(max int64) *sendBuffer {
	return &sendBuffer{max: max, room: make(chan struct{})}
}

// acquire takes n bytes, waiting for room while ctx lives.
func (b *sendBuffer) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		room := b.room
		b.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// force takes n bytes without waiting: for a message that exists
// already and holds a little more than was taken for it.
func (b *sendBuffer) force(n int64) {
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
}

// release gives n bytes back.
func (b *sendBuffer) release(n int64) {
	b.mu.Lock()
	b.used -= n
	close(b.room)
	b.room = make(chan struct{})
	b.mu.Unlock()
}
