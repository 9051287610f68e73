package roomclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore/internal/batchconn"
	"github.com/roomstore/roomstore/internal/wire"
)

// reply is a server message routed to a waiting call or stream: its JSON
// content and payload.
type reply struct {
	c    wire.Content
	data []byte
	err  error         // a reply that broke the protocol
	msg  *wire.Message // what data lies in: release it once data is used
}

// streamBuffer bounds the response chunks that may wait for a stream. The
// pull protocol keeps at most a few in flight (a pull or a data chunk, then
// a close or an error), so a fuller inbox is a server breaking it.
const streamBuffer = 8

// inbox is where the reader puts one stream's response chunks.
type inbox struct {
	ch     chan reply
	broken chan struct{} // closed when the server overran the inbox
	once   sync.Once
}

// conn is one WebSocket connection to the room. Its reader goroutine
// routes replies to the calls waiting for them (by message id) and
// response chunks to their streams (by tool_call_id), and publishes
// events; writes hold one lock for a whole message, so that its frames go
// out back to back. Everything waiting on a conn ends when it does.
type conn struct {
	c  *Client
	ws *websocket.Conn

	ctx    context.Context // ends when the connection does
	cancel context.CancelFunc
	done   chan struct{} // closed once err is set and every goroutine ended
	err    error         // why the connection ended

	wmu     chan struct{}   // write lock, held for a whole message
	nextID  uint64          // under wmu: client ids count up from 0
	bc      *batchconn.Conn // what ws writes to, when the client dialled it: gathers a message's frames
	stalled *time.Timer     // drops a connection whose write takes over WriteTimeout

	mu      sync.Mutex
	pending map[uint64]chan reply
	streams map[string]*inbox

	ready       chan struct{}   // closed once room_ready and connected arrived
	gotRoom     bool            // under mu
	participant string          // under mu until ready, then fixed
	ext         map[string]bool // the extensions room_ready named; under mu until ready, then fixed
	after       string          // the position it was dialled with (wire.AfterParam), if any
	readyOnce   sync.Once
	wg          sync.WaitGroup // reader, pinger
}

// dial opens a connection and returns it once the server has sent
// room_ready and connected and answered a first call (which proves it
// has joined this participant to the room's events). An HTTP 403 yields
// ErrForbidden, a 404 an error wrapping fs.ErrNotExist.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	h := c.o.HTTPHeader.Clone()
	if h == nil {
		h = http.Header{}
	}
	if c.o.Token != "" {
		h.Set("Authorization", "Bearer "+c.o.Token)
	}
	do := &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: h}
	if c.o.Compression {
		do.CompressionMode = websocket.CompressionNoContextTakeover
	}
	after := c.position()
	slot := &gathered{}
	ws, resp, err := websocket.Dial(context.WithValue(ctx, gatherSlot{}, slot), withExtensions(c.url, after), do)
	if err != nil {
		c.closeIdle()
		if resp != nil {
			switch resp.StatusCode {
			case http.StatusForbidden:
				return nil, fmt.Errorf("dial %s: %w", c.name, ErrForbidden)
			case http.StatusNotFound:
				return nil, fmt.Errorf("dial %s: %w", c.name, errNoRoom)
			}
			if text := refusal(resp); text != "" {
				return nil, fmt.Errorf("dial %s: %w", c.name, newError(resp.StatusCode, text, ""))
			}
		}
		return nil, fmt.Errorf("dial %s: %w", c.name, err)
	}
	ws.SetReadLimit(int64(c.o.MaxMessageSize) + 16 + wire.MaxTypeLen)
	cctx, cancel := context.WithCancel(context.Background())
	k := &conn{
		c: c, ws: ws, ctx: cctx, cancel: cancel,
		done:    make(chan struct{}),
		wmu:     make(chan struct{}, 1),
		pending: map[uint64]chan reply{},
		streams: map[string]*inbox{},
		ready:   make(chan struct{}),
		after:   after,
		bc:      slot.bc,
	}
	// One timer per connection, armed for each write, rather than a
	// context per write (which costs the library a timer of its own per
	// frame).
	k.stalled = time.AfterFunc(time.Hour, func() {
		k.drop(disconnected(fmt.Errorf("a write took over %v", c.o.WriteTimeout)))
	})
	k.stalled.Stop()
	k.wg.Add(2)
	go k.read()
	go k.ping()
	go func() {
		k.wg.Wait()
		close(k.done)
	}()
	if err := k.handshake(ctx); err != nil {
		k.drop(err)
		<-k.done
		return nil, fmt.Errorf("dial %s: %w", c.name, err)
	}
	return k, nil
}

// handshake waits for room_ready and connected, then makes one call.
func (k *conn) handshake(ctx context.Context) error {
	select {
	case <-k.ready:
	case <-k.ctx.Done():
		return k.cause()
	case <-ctx.Done():
		return fmt.Errorf("waiting for room_ready and connected: %w", ctx.Err())
	}
	// The server joins a participant to the room's events just after it
	// sent connected, before it reads calls: once a call is answered, no
	// event can be missed.
	_, _, err := k.invoke(ctx, wire.InvokeTool{Toolkit: "storage", Tool: "exists", Arguments: jsonArgs(map[string]string{"path": ""})})
	return err
}

// refusal returns the reason a room server gave for refusing the upgrade
// (an error status and a one-line text/plain body, such as "room store
// unavailable: permission denied"), or "" for any other answer, whose
// body is no reason meant for people (an HTML page of a proxy).
func refusal(resp *http.Response) string {
	if resp.StatusCode < 400 || resp.Body == nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512)) // the dialler kept the body's first bytes
	text := strings.TrimSpace(string(b))
	if text == "" || strings.ContainsFunc(text, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return ""
	}
	return text
}

// errNoRoom is the cause of a 404 on the upgrade.
var errNoRoom = fmt.Errorf("no such room (404): %w", fs.ErrNotExist)

// cause is why the connection ended (ErrDisconnected, or fs.ErrClosed
// after Client.Close), once it has.
func (k *conn) cause() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		return ErrDisconnected
	}
	return k.err
}

// end records why the connection ends; the first reason wins.
func (k *conn) end(why error) {
	k.mu.Lock()
	if k.err == nil {
		k.err = why
	}
	k.mu.Unlock()
}

// drop ends the connection at once, failing everything that waits on it
// with why.
func (k *conn) drop(why error) {
	k.end(why)
	k.cancel()
	_ = k.ws.CloseNow()
}

// closeNormally ends the connection with close code 1000 and the close
// handshake, failing everything that waits on it with why, and returns
// once its goroutines have ended.
func (k *conn) closeNormally(why error) {
	k.end(why)
	// The reader keeps reading until the server's close arrives: only
	// then may the context end, which would cut the handshake short.
	_ = k.ws.Close(websocket.StatusNormalClosure, "")
	k.cancel()
	<-k.done
}

// read reads and routes messages until the connection ends.
func (k *conn) read() {
	defer k.wg.Done()
	a := wire.Assembler{Max: k.c.o.MaxMessageSize}
	for {
		// Not on k.ctx: a context there costs every read a timer of the
		// library's; whatever ends the connection closes the socket,
		// which ends the read.
		typ, r, err := k.ws.Reader(context.Background())
		if err == nil && typ != websocket.MessageBinary {
			k.broken(protocolError("a text frame"))
			return
		}
		var m *wire.Message
		if err == nil {
			m, err = a.ReadFrame(r)
		}
		if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrTooLarge) {
			k.broken(fmt.Errorf("%w: %w", ErrProtocol, err))
			return
		}
		if err != nil {
			k.drop(disconnected(err))
			return
		}
		if m != nil {
			k.dispatch(m)
		}
	}
}

// broken drops a connection whose framing cannot be trusted.
func (k *conn) broken(err error) {
	k.c.log.Warn("roomclient: closing the connection", "url", k.c.name, "err", err)
	k.end(disconnected(err))
	_ = k.ws.Close(websocket.StatusProtocolError, "")
	k.cancel()
}

// disconnected is the cause of a connection that ended under the client.
func disconnected(err error) error {
	return fmt.Errorf("%w: %w", ErrDisconnected, err)
}

// closeStatus is the close code of the connection's end, or -1.
func (k *conn) closeStatus() websocket.StatusCode {
	k.mu.Lock()
	defer k.mu.Unlock()
	return websocket.CloseStatus(k.err)
}

func (k *conn) dispatch(m *wire.Message) {
	body, payload, err := m.Split()
	if err != nil {
		k.c.log.Warn("roomclient: a malformed message", "type", m.Type, "err", err)
		return
	}
	switch m.Type {
	case wire.TypeResponse:
		r := reply{data: payload}
		if err := wire.DecodeContent(body, &r.c); err != nil {
			r.err = protocolError("a reply that is not JSON content: %v", err)
		}
		k.mu.Lock()
		ch := k.pending[m.ID]
		delete(k.pending, m.ID)
		k.mu.Unlock()
		if ch != nil {
			ch <- r // buffered, one reply per call
		}
	case wire.TypeResponseChunk:
		var ch wire.Chunk
		if err := wire.DecodeChunk(body, &ch); err != nil {
			k.c.log.Warn("roomclient: a malformed response chunk", "err", err)
			return
		}
		k.mu.Lock()
		in := k.streams[ch.ToolCallID]
		k.mu.Unlock()
		if in == nil {
			return // a stream that has ended, or was never ours
		}
		select {
		case in.ch <- reply{c: ch.Chunk, data: payload, msg: m}:
		default:
			in.once.Do(func() { close(in.broken) })
		}
	case wire.TypeRoomReady:
		var v struct {
			Extensions []string `json:"extensions"`
			Position   string   `json:"position"`
		}
		_ = json.Unmarshal(body, &v)
		k.mu.Lock()
		first := !k.gotRoom
		if first {
			k.ext = map[string]bool{}
			for _, e := range v.Extensions {
				k.ext[e] = true
			}
		}
		k.gotRoom = true
		k.mu.Unlock()
		if first && v.Position != "" {
			k.c.startAt(v.Position)
		}
		k.checkReady()
	case wire.TypeConnected:
		var v struct {
			ParticipantID string `json:"participantId"`
		}
		_ = json.Unmarshal(body, &v)
		k.mu.Lock()
		if k.participant == "" {
			k.participant = v.ParticipantID
		}
		k.mu.Unlock()
		k.checkReady()
	case wire.TypeFileUpdated, wire.TypeFileDeleted, wire.TypeFileMoved, wire.TypeEventsOverflow:
		k.c.publish(m.Type, body)
	default:
		k.c.log.Debug("roomclient: ignoring a server message", "type", m.Type)
	}
}

// checkReady closes ready once both room_ready and connected arrived.
func (k *conn) checkReady() {
	k.mu.Lock()
	ok := k.gotRoom && k.participant != ""
	k.mu.Unlock()
	if ok {
		k.readyOnce.Do(func() { close(k.ready) })
	}
}

// has reports whether the server named extension ext in room_ready.
func (k *conn) has(ext string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ext[ext]
}

// withExtensions is the room's URL asking for roomstore's extensions
// (wire.ExtensionsParam) and, with after, for the events after that
// position (wire.AfterParam); a server that does not know them ignores
// them.
func withExtensions(raw, after string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set(wire.ExtensionsParam, "1")
	if after != "" {
		q.Set(wire.AfterParam, after)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// resumed reports whether the server sends this connection what the
// client missed since the position it dialled with: it was dialled with
// one, and the server named the resume extension.
func (k *conn) resumed() bool { return k.after != "" && k.has(wire.ExtResume) }

// participantID is the id the server gave this connection.
func (k *conn) participantID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.participant
}

// ping drops a connection whose server stops answering pings, so that a
// silently dead network fails the calls in flight and, with Reconnect,
// redials.
func (k *conn) ping() {
	defer k.wg.Done()
	t := time.NewTicker(k.c.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(k.ctx, k.c.o.PingTimeout)
			err := k.ws.Ping(ctx)
			cancel()
			if err != nil && k.ctx.Err() == nil {
				k.c.log.Warn("roomclient: the room server stopped answering pings", "url", k.c.name)
				k.drop(disconnected(errors.New("ping timeout")))
				return
			}
		case <-k.ctx.Done():
			return
		}
	}
}

// gatherSlot is the context key under which dial learns the
// batchconn.Conn the client's own transport made for the connection.
type gatherSlot struct{}

// gathered is what dial finds under gatherSlot.
type gathered struct{ bc *batchconn.Conn }

// send writes one message, its frames back to back. Before writing,
// register (if not nil) runs with the id under the write lock, so that a
// reply cannot arrive before its waiter is known. Waiting for the lock
// honours ctx; the write itself is bounded by WriteTimeout only, since
// abandoning a message halfway would break the connection for every
// other call.
func (k *conn) send(ctx context.Context, m wire.Encoded, register func(id uint64)) error {
	var reg func(int, uint64)
	if register != nil {
		reg = func(_ int, id uint64) { register(id) }
	}
	return k.sendAll(ctx, []wire.Encoded{m}, reg)
}

// sendAll is send for messages that go out together, in order, in one
// write to the socket: register runs with each one's index and id.
func (k *conn) sendAll(ctx context.Context, ms []wire.Encoded, register func(i int, id uint64)) error {
	defer func() {
		for _, m := range ms {
			m.Release()
		}
	}()
	select {
	case k.wmu <- struct{}{}:
	case <-k.ctx.Done():
		return k.cause()
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-k.wmu }()
	// Small messages are gathered into one write; a large one (the
	// client masks every byte it sends) is written by the connection's
	// goroutine as it is masked, so that the two overlap.
	large := 0
	for _, m := range ms {
		large += len(m.Body)
	}
	background := large >= batchconn.Direct
	if k.bc != nil {
		if background {
			k.bc.Background()
		} else {
			k.bc.Hold()
		}
	}
	k.stalled.Reset(k.c.o.WriteTimeout)
	var err error
	for i, m := range ms {
		id := k.nextID
		k.nextID++
		if register != nil {
			register(i, id)
		}
		m.SetID(id)
		if err = k.ws.Write(context.Background(), websocket.MessageBinary, m.Header); err != nil {
			break
		}
		if err = k.ws.Write(context.Background(), websocket.MessageBinary, m.Body); err != nil {
			break
		}
	}
	if k.bc != nil {
		ferr := error(nil)
		if background {
			ferr = k.bc.Foreground()
		} else {
			ferr = k.bc.Flush()
		}
		if err == nil {
			err = ferr
		}
	}
	k.stalled.Stop()
	if err != nil {
		// A server that closed the connection said why in its close
		// frame, which the reader may be about to read: let it, briefly
		// and never past ctx, so that the cause is the server's reason,
		// not the write's.
		t := time.NewTimer(closeReasonWait)
		select {
		case <-k.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		k.drop(disconnected(err))
		return k.cause()
	}
	return nil
}

// closeReasonWait bounds how long a failed write waits for the reader to
// learn why the connection ended.
const closeReasonWait = time.Second

// request sends a message and waits for its __response__. An error reply
// is returned as content, for the caller to turn into an *Error with its
// path; err is the connection's end, ctx's or a local failure.
func (k *conn) request(ctx context.Context, typ string, v any, payload []byte) (wire.Content, []byte, error) {
	m, err := wire.Encode(0, typ, v, payload) // send gives it its id
	if err != nil {
		return wire.Content{}, nil, err
	}
	w, err := k.post(ctx, m)
	if err != nil {
		return wire.Content{}, nil, err
	}
	return w.wait(ctx)
}

// waiter is a request sent whose __response__ is still to come.
type waiter struct {
	k  *conn
	id uint64
	ch chan reply
}

// post sends a request encoded with any id (send gives it its own) and
// returns, without waiting for its answer, what waits for it.
func (k *conn) post(ctx context.Context, m wire.Encoded) (*waiter, error) {
	w := &waiter{k: k, ch: make(chan reply, 1)}
	registered := false
	err := k.send(ctx, m, func(i uint64) {
		w.id, registered = i, true
		k.mu.Lock()
		k.pending[i] = w.ch
		k.mu.Unlock()
	})
	if err != nil {
		if registered {
			w.forget()
		}
		return nil, err
	}
	return w, nil
}

// wait waits for the request's __response__; see request.
func (w *waiter) wait(ctx context.Context) (wire.Content, []byte, error) {
	select {
	case r := <-w.ch:
		return r.c, r.data, r.err
	case <-w.k.ctx.Done():
		w.forget()
		return wire.Content{}, nil, w.k.cause()
	case <-ctx.Done():
		w.forget()
		return wire.Content{}, nil, ctx.Err()
	}
}

// forget stops waiting for the answer.
func (w *waiter) forget() {
	w.k.mu.Lock()
	delete(w.k.pending, w.id)
	w.k.mu.Unlock()
}

// invoke makes a room.invoke_tool request.
func (k *conn) invoke(ctx context.Context, req wire.InvokeTool) (wire.Content, []byte, error) {
	return k.request(ctx, wire.TypeInvokeTool, req, nil)
}

// openInbox registers a stream's inbox before the stream is opened, so
// that no response chunk can arrive before it.
func (k *conn) openInbox(id string) (*inbox, error) {
	in := &inbox{ch: make(chan reply, streamBuffer), broken: make(chan struct{})}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, dup := k.streams[id]; dup {
		return nil, fmt.Errorf("tool_call_id %q already in use", id)
	}
	k.streams[id] = in
	return in, nil
}

func (k *conn) closeInbox(id string) {
	k.mu.Lock()
	delete(k.streams, id)
	k.mu.Unlock()
}

// jsonArgs is the arguments content of a simple call.
func jsonArgs(v any) wire.Content { return wire.JSONOf(v) }
