package protocoltest

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/roomstore/roomstore/internal/wire"
)

// wait bounds every wait of the suite.
const wait = 20 * time.Second

// Peer is one participant that speaks the protocol frame by frame, as
// the suite's checks need: it sends what a client of any generation
// sends, and keeps every message it reads, so that a check can find the
// one it waits for and look at all of them.
type Peer struct {
	t    *testing.T
	ws   *websocket.Conn
	a    wire.Assembler
	next uint64
	// ID is the participant id the server sent in connected, Ready the
	// body of room_ready, Proto the subprotocol the server chose.
	ID    string
	Ready map[string]any
	Proto string

	backlog []*wire.Message
	seen    []*wire.Message // every server message read, in order
}

// DialOptions say how a Peer connects, as the client generations do.
type DialOptions struct {
	Query       string      // appended to the room's URL ("?token=...")
	Header      http.Header // e.g. Authorization: Bearer
	Subprotocol string      // e.g. meshagent-room.<jwt>
	Compress    bool        // offer permessage-deflate
}

// dial connects to url and waits for room_ready and connected.
func dial(t *testing.T, url string, o DialOptions) (*Peer, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	do := &websocket.DialOptions{HTTPHeader: o.Header}
	if o.Subprotocol != "" {
		do.Subprotocols = []string{o.Subprotocol}
	}
	if o.Compress {
		do.CompressionMode = websocket.CompressionContextTakeover
	}
	ws, resp, err := websocket.Dial(ctx, url+o.Query, do)
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(64 << 20)
	p := &Peer{t: t, ws: ws, Proto: ws.Subprotocol()}
	t.Cleanup(func() { _ = ws.CloseNow() })
	ready := p.Until(func(m *wire.Message) bool { return m.Type == wire.TypeRoomReady })
	p.Ready = p.object(ready)
	c := p.object(p.Until(func(m *wire.Message) bool { return m.Type == wire.TypeConnected }))
	p.ID, _ = c["participantId"].(string)
	if c["type"] != "init" || p.ID == "" {
		t.Fatalf("connected message %v: want type init and a participantId", c)
	}
	return p, resp, nil
}

// read returns the next whole message.
func (p *Peer) read(ctx context.Context) (*wire.Message, error) {
	for {
		_, frame, err := p.ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		m, err := p.a.Add(frame)
		if err != nil {
			return nil, err
		}
		if m != nil {
			p.seen = append(p.seen, m)
			return m, nil
		}
	}
}

// Until reads until a message matches, keeping the others for later.
func (p *Peer) Until(match func(*wire.Message) bool) *wire.Message {
	p.t.Helper()
	for i, m := range p.backlog {
		if match(m) {
			p.backlog = append(p.backlog[:i:i], p.backlog[i+1:]...)
			return m
		}
	}
	ctx, cancel := context.WithTimeout(p.t.Context(), wait)
	defer cancel()
	for {
		m, err := p.read(ctx)
		if err != nil {
			p.t.Fatalf("waiting for a message: %v", err)
		}
		if match(m) {
			return m
		}
		p.backlog = append(p.backlog, m)
	}
}

// Send sends a message of type typ with body's JSON and payload and
// returns its id.
func (p *Peer) Send(typ string, body any, payload []byte) uint64 {
	p.t.Helper()
	id := p.next
	p.next++
	m, err := wire.Encode(id, typ, body, payload)
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(p.t.Context(), wait)
	defer cancel()
	for _, fr := range [][]byte{m.Header, m.Body} {
		if err := p.ws.Write(ctx, websocket.MessageBinary, fr); err != nil {
			p.t.Fatalf("write: %v", err)
		}
	}
	return id
}

// Reply waits for the answer to request id: its content (as raw JSON
// and decoded) and payload.
func (p *Peer) Reply(id uint64) (map[string]any, wire.Content, []byte) {
	p.t.Helper()
	m := p.Until(func(m *wire.Message) bool { return m.Type == wire.TypeResponse && m.ID == id })
	body, payload, err := m.Split()
	if err != nil {
		p.t.Fatal(err)
	}
	var c wire.Content
	var raw map[string]any
	if err := json.Unmarshal(body, &c); err != nil {
		p.t.Fatalf("reply %s: %v", body, err)
	}
	_ = json.Unmarshal(body, &raw)
	return raw, c, payload
}

// Call sends a request and returns its reply's content and payload.
func (p *Peer) Call(typ string, body any, payload []byte) (wire.Content, []byte) {
	p.t.Helper()
	_, c, pl := p.Reply(p.Send(typ, body, payload))
	return c, pl
}

// object decodes a message's JSON as an object.
func (p *Peer) object(m *wire.Message) map[string]any {
	p.t.Helper()
	body, _, err := m.Split()
	if err != nil {
		p.t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		p.t.Fatalf("%s %s: %v", m.Type, body, err)
	}
	return v
}

// Tool makes a toolkit call with a JSON argument object, the envelope as
// the newest clients send it (null ids, a tool_call_id), and returns the
// reply.
func (p *Peer) Tool(tool string, args map[string]any) wire.Content {
	p.t.Helper()
	c, _ := p.Call(wire.TypeInvokeTool, envelope(tool, args), nil)
	return c
}

// envelope is a simple call's room.invoke_tool body as Python 0.56 sends
// it: with participant_id and on_behalf_of_id null, a tool_call_id, and
// a caller_context the TypeScript clients add.
func envelope(tool string, args map[string]any) map[string]any {
	return map[string]any{
		"toolkit": "storage", "tool": tool,
		"participant_id": nil, "on_behalf_of_id": nil, "caller_context": nil,
		"tool_call_id": "5f0c2a",
		"arguments":    map[string]any{"type": "json", "json": args},
	}
}

// keys returns the sorted keys of an object.
func keys(v map[string]any) string {
	ks := make([]string, 0, len(v))
	for k := range v {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// exactly fails unless v has exactly the keys want (comma separated,
// sorted).
func exactly(t *testing.T, what string, v map[string]any, want string) {
	t.Helper()
	if got := keys(v); got != want {
		t.Errorf("%s has the fields %q, want exactly %q: %v", what, got, want, v)
	}
}
