package protocoltest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/roomstore/roomstore/internal/wire"
)

// inlineWhenAsked: a server that names the inline extension takes an
// upload's whole file with its start, which the client sends with the
// stream's open (pipelined: "pipelined": true on the open) without
// waiting for the open's reply; it answers the open, the start and
// ends the stream with the commit's close, in that order, with no pull.
// A download start with "push" for a file that fits in one chunk gets a
// start that says "push", the data and the close, unpulled; one for a
// bigger file streams as the protocol does, its start without "push".
// A client that did not ask for the extensions has its open answered at
// once, pipelined or not.
func inlineWhenAsked(t *testing.T, tg Target) {
	rm := room(t)
	x := tg.dial(t, rm, "ann", "&"+wire.ExtensionsParam+"=1")
	exts, _ := x.Ready["extensions"].([]any)
	if !slices.Contains(exts, any(wire.ExtInline)) {
		t.Logf("the server does not name %q: nothing to check", wire.ExtInline)
		return
	}
	open := func(p *Peer, tool, id string, pipelined bool) uint64 {
		body := map[string]any{"toolkit": "storage", "tool": tool, "tool_call_id": id,
			"arguments": map[string]any{"type": "control", "method": "open"}}
		if pipelined {
			body["pipelined"] = true
		}
		return p.Send(wire.TypeInvokeTool, body, nil)
	}
	start := func(p *Peer, id string, h map[string]any, payload []byte) uint64 {
		return p.Send(wire.TypeRequestChunk, map[string]any{"tool_call_id": id, "chunk": map[string]any{"type": "binary", "headers": h}}, payload)
	}
	data := []byte("inline bytes")
	oid := open(x, "upload", "up-1", true)
	sid := start(x, "up-1", map[string]any{"kind": "start", "path": "in/a.txt", "overwrite": true, "name": "a.txt", "mime_type": "text/plain", "size": nil, "inline": true}, data)
	if _, c, _ := x.Reply(oid); c.Type != wire.KindControl || c.Method != "open" {
		t.Fatalf("a pipelined open answered %+v", c)
	}
	if _, c, _ := x.Reply(sid); c.Type != wire.KindEmpty {
		t.Fatalf("an inline start answered %+v", c)
	}
	end := x.streamed("up-1")
	if end.c.Type != wire.KindControl || end.c.Method != "close" || end.c.StatusCode != 1000 {
		t.Fatalf("an inline upload ended with %v, want its close", end.raw)
	}
	exactly(t, "the close of an inline upload", end.raw, "method,status_code,type")
	order(t, x, oid, sid)
	if got, _, e := x.download("in/a.txt", nil, nil); e != nil || !bytes.Equal(got, data) {
		t.Fatalf("after an inline upload the file holds %q (%+v), want %q", got, e, data)
	}

	// An inline upload refused: its start answered, then the error chunk.
	oid = open(x, "upload", "up-2", true)
	sid = start(x, "up-2", map[string]any{"kind": "start", "path": "in/a.txt", "overwrite": false, "name": "a.txt", "mime_type": "text/plain", "inline": true}, data)
	x.Reply(oid)
	x.Reply(sid)
	if e := x.streamed("up-2"); e.c.Type != wire.KindError || e.c.Code != 409 {
		t.Errorf("an inline upload onto a file without overwrite ended with %v, want 409", e.raw)
	}

	// A pushed download: start (saying push), data, close, nothing pulled.
	oid = open(x, "download", "down-1", true)
	sid = start(x, "down-1", map[string]any{"kind": "start", "path": "in/a.txt", "chunk_size": 64 << 10, "push": true}, nil)
	x.Reply(oid)
	x.Reply(sid)
	st := x.streamed("down-1")
	if st.c.Type != wire.KindBinary || st.headers()["kind"] != "start" || st.headers()["push"] != true || st.headers()["size"] != float64(len(data)) {
		t.Fatalf("a pushed download began with %v", st.raw)
	}
	d := x.streamed("down-1")
	if d.c.Type != wire.KindBinary || d.headers()["kind"] != "data" || !bytes.Equal(d.payload, data) {
		t.Fatalf("a pushed download brought %v %q", d.raw, d.payload)
	}
	exactly(t, "a pushed data chunk's headers", d.headers(), "kind")
	if e := x.streamed("down-1"); e.c.Type != wire.KindControl || e.c.Method != "close" {
		t.Fatalf("a pushed download ended with %v", e.raw)
	}

	// Too big for one chunk: pulled as usual, no push in its start.
	big := bytes.Repeat([]byte("b"), 3000)
	if e := x.upload("in/big.bin", big, true, nil, nil); e != nil {
		t.Fatal(e)
	}
	got, h, e := x.download("in/big.bin", map[string]any{"push": true, "chunk_size": 1000}, nil)
	if e != nil || !bytes.Equal(got, big) {
		t.Fatalf("a download of 3 chunks asking for push: %d bytes, %+v", len(got), e)
	}
	if _, ok := h["push"]; ok {
		t.Errorf("the start of a download bigger than a chunk says push: %v", h)
	}

	// Without asking, a pipelined open is answered at once, before its
	// stream's first chunk.
	p := tg.dial(t, rm, "bob", "")
	oid = open(p, "download", "plain-1", true)
	if _, c, _ := p.Reply(oid); c.Type != wire.KindControl || c.Method != "open" {
		t.Fatalf("an open from a client that did not ask answered %+v", c)
	}
	if got, _, e := p.download("in/a.txt", nil, nil); e != nil || !bytes.Equal(got, data) {
		t.Fatalf("a download after: %q %+v", got, e)
	}
}

// order fails unless the replies to the requests ids arrived in that
// order.
func order(t *testing.T, p *Peer, ids ...uint64) {
	t.Helper()
	var got []uint64
	for _, m := range p.seen {
		if m.Type == wire.TypeResponse && slices.Contains(ids, m.ID) {
			got = append(got, m.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("replies arrived in the order %v, want %v", got, ids)
	}
}
