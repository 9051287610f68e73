package roomserver_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore"
	_ "github.com/roomstore/roomstore/backend_mem"
	"github.com/roomstore/roomstore/internal/wire"
	"github.com/roomstore/roomstore/roomserver"
)

var secret = []byte("roomserver test secret, 32 bytes or more")

// fixture is a server on a loopback port whose rooms are memory stores
// the test can reach directly.
type fixture struct {
	t      *testing.T
	srv    *roomserver.Server
	http   *httptest.Server // nil for a fixture on pipes
	base   string           // http://host
	client *http.Client     // nil: the default
	mu     sync.Mutex
	rooms  map[string][]*roomstore.Engine // every engine resolved, per room
}

func newFixture(t *testing.T, tweak func(*roomserver.Options)) *fixture {
	t.Helper()
	f, srv := newServer(t, tweak)
	f.http = httptest.NewServer(srv)
	f.base = f.http.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.http.CloseClientConnections()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		f.http.Close()
	})
	return f
}

// newPipeFixture is newFixture on in-memory pipes (net.Pipe) rather than
// sockets, for tests in a synctest bubble, where the server's timers run
// on the bubble's clock. A pipe holds nothing: a peer that stops reading
// stalls its writer at once.
func newPipeFixture(t *testing.T, tweak func(*roomserver.Options)) *fixture {
	t.Helper()
	f, srv := newServer(t, tweak)
	ln := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	hs := &http.Server{Handler: srv}
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(ln) }()
	f.base = "http://pipe"
	f.client = &http.Client{Transport: &http.Transport{DialContext: ln.dial}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		_ = hs.Close()
		<-served
		f.client.CloseIdleConnections()
	})
	return f
}

// pipeListener hands the server one end of a net.Pipe per dial.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// newServer makes the fixture's server: rooms are memory stores the test
// can reach directly.
func newServer(t *testing.T, tweak func(*roomserver.Options)) (*fixture, *roomserver.Server) {
	t.Helper()
	f := &fixture{t: t, rooms: map[string][]*roomstore.Engine{}}
	o := roomserver.Options{
		Logger: slog.New(slog.DiscardHandler),
		Verify: roomserver.HS256(secret),
		Resolve: func(ctx context.Context, room string, _ bool) (*roomstore.Engine, error) {
			e, err := roomstore.OpenURL(ctx, "mem://")
			if err == nil {
				f.mu.Lock()
				f.rooms[room] = append(f.rooms[room], e)
				f.mu.Unlock()
			}
			return e, err
		},
	}
	if tweak != nil {
		tweak(&o)
	}
	srv, err := roomserver.New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	return f, srv
}

// engine returns the room's current engine.
func (f *fixture) engine(room string) *roomstore.Engine {
	f.mu.Lock()
	defer f.mu.Unlock()
	es := f.rooms[room]
	if len(es) == 0 {
		f.t.Fatalf("room %q was never opened", room)
	}
	return es[len(es)-1]
}

func (f *fixture) url(room string) string {
	return "ws" + strings.TrimPrefix(f.base, "http") + "/rooms/" + room
}

func token(t *testing.T, name, room string, ttl time.Duration) string {
	t.Helper()
	tok, err := roomserver.NewToken(secret, name, room, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// raw is a participant that speaks the protocol frame by frame, so that
// a test can send what no well-behaved client would.
type raw struct {
	t       *testing.T
	ws      *websocket.Conn
	a       wire.Assembler
	next    uint64
	id      string // participant id from connected
	backlog []*wire.Message
}

func (f *fixture) dial(room, name string) *raw {
	f.t.Helper()
	r, resp, err := f.tryDial(room, "?token="+token(f.t, name, room, time.Hour), nil, nil)
	if err != nil {
		f.t.Fatalf("dial %s: %v (%v)", room, err, resp)
	}
	return r
}

// dialExt is dial for a client that asks for roomstore's extensions,
// as roomclient does.
func (f *fixture) dialExt(room, name string) *raw {
	f.t.Helper()
	r, resp, err := f.tryDial(room, "?token="+token(f.t, name, room, time.Hour)+"&"+wire.ExtensionsParam+"=1", nil, nil)
	if err != nil {
		f.t.Fatalf("dial %s: %v (%v)", room, err, resp)
	}
	return r
}

func (f *fixture) tryDial(room, query string, hdr http.Header, protos []string) (*raw, *http.Response, error) {
	ctx, cancel := context.WithTimeout(f.t.Context(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, f.url(room)+query, &websocket.DialOptions{HTTPHeader: hdr, Subprotocols: protos, HTTPClient: f.client})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(64 << 20)
	r := &raw{t: f.t, ws: ws}
	f.t.Cleanup(func() { _ = ws.CloseNow() })
	ready := r.until(func(m *wire.Message) bool { return m.Type == wire.TypeRoomReady })
	_ = ready
	c := r.until(func(m *wire.Message) bool { return m.Type == wire.TypeConnected })
	var init struct {
		Type          string         `json:"type"`
		ParticipantID string         `json:"participantId"`
		Attributes    map[string]any `json:"attributes"`
	}
	body, _, _ := c.Split()
	if err := json.Unmarshal(body, &init); err != nil || init.Type != "init" || init.ParticipantID == "" {
		f.t.Fatalf("connected message %s: %v", body, err)
	}
	r.id = init.ParticipantID
	return r, resp, nil
}

// read returns the next whole message.
func (r *raw) read(ctx context.Context) (*wire.Message, error) {
	for {
		_, frame, err := r.ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		m, err := r.a.Add(frame)
		if err != nil {
			return nil, err
		}
		if m != nil {
			return m, nil
		}
	}
}

// until reads until a message matches, keeping the others for later.
func (r *raw) until(match func(*wire.Message) bool) *wire.Message {
	r.t.Helper()
	for i, m := range r.backlog {
		if match(m) {
			r.backlog = append(r.backlog[:i:i], r.backlog[i+1:]...)
			return m
		}
	}
	ctx, cancel := context.WithTimeout(r.t.Context(), 20*time.Second)
	defer cancel()
	for {
		m, err := r.read(ctx)
		if err != nil {
			r.t.Fatalf("waiting for a message: %v", err)
		}
		if match(m) {
			return m
		}
		r.backlog = append(r.backlog, m)
	}
}

func (r *raw) sendFrames(frames ...[]byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 10*time.Second)
	defer cancel()
	for _, fr := range frames {
		if err := r.ws.Write(ctx, websocket.MessageBinary, fr); err != nil {
			r.t.Fatalf("write: %v", err)
		}
	}
}

// request sends a message and returns its id.
func (r *raw) request(typ string, body any, payload []byte) uint64 {
	r.t.Helper()
	id := r.next
	r.next++
	m, err := wire.Encode(id, typ, body, payload)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendFrames(m.Header, m.Body)
	return id
}

// response waits for the reply to request id.
func (r *raw) response(id uint64) wire.Content {
	r.t.Helper()
	m := r.until(func(m *wire.Message) bool { return m.Type == wire.TypeResponse && m.ID == id })
	return content(r.t, m.Data)
}

func content(t *testing.T, data []byte) wire.Content {
	t.Helper()
	body, _, err := wire.Unpack(data)
	if err != nil {
		t.Fatal(err)
	}
	var c wire.Content
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("reply %s: %v", body, err)
	}
	return c
}

// call makes one simple storage call.
func (r *raw) call(tool string, args any) wire.Content {
	r.t.Helper()
	j, err := json.Marshal(args)
	if err != nil {
		r.t.Fatalf("encode the arguments of %s: %v", tool, err)
	}
	return r.response(r.request(wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: tool, Arguments: wire.Content{Type: wire.KindJSON, JSON: j}}, nil))
}

// open opens a stream and returns its tool_call_id.
func (r *raw) open(tool, callID string) wire.Content {
	r.t.Helper()
	return r.response(r.request(wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: tool, ToolCallID: callID, Arguments: wire.Control("open")}, nil))
}

// chunk sends a request chunk and returns its reply.
func (r *raw) chunk(callID string, c wire.Content, payload []byte) wire.Content {
	r.t.Helper()
	return r.response(r.request(wire.TypeRequestChunk, wire.Chunk{ToolCallID: callID, Chunk: c}, payload))
}

// streamed waits for the next response chunk of a stream.
func (r *raw) streamed(callID string) (wire.Content, []byte) {
	r.t.Helper()
	m := r.until(func(m *wire.Message) bool {
		if m.Type != wire.TypeResponseChunk {
			return false
		}
		body, _, _ := m.Split()
		var ch wire.Chunk
		return json.Unmarshal(body, &ch) == nil && ch.ToolCallID == callID
	})
	body, payload, _ := m.Split()
	var ch wire.Chunk
	_ = json.Unmarshal(body, &ch)
	return ch.Chunk, payload
}

// startUpload opens an upload stream, sends its start chunk with the
// headers of start (kind set to "start") and returns the first chunk the
// server streams back.
func (r *raw) startUpload(callID string, start map[string]any) (wire.Content, []byte) {
	r.t.Helper()
	start["kind"] = "start"
	r.open("upload", callID)
	r.chunk(callID, wire.Binary(start), nil)
	return r.streamed(callID)
}

// upload writes data to p through the upload stream, in chunks as pulled.
func (r *raw) upload(callID, p string, data []byte, overwrite bool) wire.Content {
	r.t.Helper()
	if c := r.open("upload", callID); c.Type != wire.KindControl || c.Method != "open" {
		r.t.Fatalf("open upload: %+v", c)
	}
	r.chunk(callID, wire.Binary(map[string]any{"kind": "start", "path": p, "overwrite": overwrite, "size": len(data)}), nil)
	for {
		c, _ := r.streamed(callID)
		switch {
		case c.Type == wire.KindError, c.Type == wire.KindControl:
			r.chunk(callID, wire.Control("close"), nil)
			return c
		case c.Headers["kind"] == "pull":
			if len(data) == 0 {
				r.chunk(callID, wire.Control("close"), nil)
				continue
			}
			n := min(len(data), int(c.Headers["chunk_size"].(float64)))
			r.chunk(callID, wire.Binary(map[string]any{"kind": "data"}), data[:n])
			data = data[n:]
		default:
			r.t.Fatalf("upload got %+v", c)
		}
	}
}

// closeStatus waits for the connection to end and returns its close code.
func (r *raw) closeStatus() websocket.StatusCode {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 20*time.Second)
	defer cancel()
	for {
		_, _, err := r.ws.Read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				r.t.Fatal("the connection stayed open")
			}
			if websocket.CloseStatus(err) == -1 {
				r.t.Logf("connection ended by %v", err)
			}
			return websocket.CloseStatus(err)
		}
	}
}

func be32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
