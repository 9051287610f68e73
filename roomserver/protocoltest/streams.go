package protocoltest

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/roomstore/roomstore/internal/wire"
)

// chunkOf is a response chunk of a stream: its content as raw JSON and
// decoded, and its payload.
type chunkOf struct {
	raw     map[string]any // the chunk's content
	c       wire.Content
	payload []byte
}

// headers returns a binary chunk's headers as raw JSON.
func (ch chunkOf) headers() map[string]any {
	h, _ := ch.raw["headers"].(map[string]any)
	return h
}

// streamed waits for the next response chunk of stream id.
func (p *Peer) streamed(id string) chunkOf {
	p.t.Helper()
	m := p.Until(func(m *wire.Message) bool {
		if m.Type != wire.TypeResponseChunk {
			return false
		}
		body, _, _ := m.Split()
		var ch struct {
			ToolCallID string `json:"tool_call_id"`
		}
		return json.Unmarshal(body, &ch) == nil && ch.ToolCallID == id
	})
	body, payload, err := m.Split()
	if err != nil {
		p.t.Fatal(err)
	}
	var outer struct {
		Chunk json.RawMessage `json:"chunk"`
	}
	if err := json.Unmarshal(body, &outer); err != nil {
		p.t.Fatal(err)
	}
	var ch chunkOf
	ch.payload = payload
	if err := json.Unmarshal(outer.Chunk, &ch.raw); err != nil {
		p.t.Fatalf("response chunk %s: %v", body, err)
	}
	_ = json.Unmarshal(outer.Chunk, &ch.c)
	return ch
}

// openStream opens a stream of tool and returns its tool_call_id.
func (p *Peer) openStream(tool string, n int) string {
	p.t.Helper()
	id := fmt.Sprintf("%s-%d-%d", tool, p.next, n)
	c, _ := p.Call(wire.TypeInvokeTool, map[string]any{
		"toolkit": "storage", "tool": tool, "tool_call_id": id,
		"participant_id": nil, "on_behalf_of_id": nil,
		"arguments": map[string]any{"type": "control", "method": "open"},
	}, nil)
	if c.Type != wire.KindControl || c.Method != "open" {
		p.t.Fatalf("opening storage.%s: %+v", tool, c)
	}
	return id
}

// chunk sends a request chunk of stream id and returns its answer.
func (p *Peer) chunk(id string, c map[string]any, payload []byte) wire.Content {
	p.t.Helper()
	r, _ := p.Call(wire.TypeRequestChunk, map[string]any{"tool_call_id": id, "chunk": c}, payload)
	return r
}

// shapes collects what a stream's chunks looked like, for the strict
// checks.
type shapes struct {
	pulls, starts, datas []map[string]any
}

// upload writes data to path through the upload stream as the 0.39
// client does, and returns the error chunk the server ended it with
// (nil: committed).
func (p *Peer) upload(path string, data []byte, overwrite bool, extra map[string]any, sh *shapes) *wire.Content {
	p.t.Helper()
	id := p.openStream("upload", len(data))
	start := map[string]any{"kind": "start", "path": path, "overwrite": overwrite, "name": path, "mime_type": "application/octet-stream", "size": len(data)}
	for k, v := range extra {
		start[k] = v
	}
	if r := p.chunk(id, map[string]any{"type": "binary", "headers": start}, nil); r.Type != wire.KindEmpty {
		p.t.Fatalf("upload start answered %+v", r)
	}
	sent := false
	for {
		ch := p.streamed(id)
		switch {
		case ch.c.Type == wire.KindError:
			p.chunk(id, map[string]any{"type": "control", "method": "close", "status_code": 1000}, nil)
			return &ch.c
		case ch.c.Type == wire.KindBinary && ch.headers()["kind"] == "pull":
			if sh != nil {
				sh.pulls = append(sh.pulls, ch.headers())
			}
			if !sent && len(data) > 0 {
				if r := p.chunk(id, map[string]any{"type": "binary", "headers": map[string]any{"kind": "data"}}, data); r.Type != wire.KindEmpty {
					p.t.Fatalf("data chunk answered %+v", r)
				}
				sent = true
				continue
			}
			if r := p.chunk(id, map[string]any{"type": "control", "method": "close", "status_code": 1000}, nil); r.Type != wire.KindEmpty {
				p.t.Fatalf("close answered %+v", r)
			}
		case ch.c.Type == wire.KindControl && ch.c.Method == "close":
			exactly(p.t, "the close of an upload", ch.raw, "method,status_code,type")
			return nil
		default:
			p.t.Fatalf("upload of %s: unexpected chunk %v", path, ch.raw)
		}
	}
}

// download reads path through the download stream as the 0.39 client
// does: pulls while it has fewer bytes than the start announced, then
// takes the server's close and sends its own. It returns the bytes, the
// start's headers, and the error chunk of a refused download.
func (p *Peer) download(path string, extra map[string]any, sh *shapes) ([]byte, map[string]any, *wire.Content) {
	p.t.Helper()
	id := p.openStream("download", 0)
	start := map[string]any{"kind": "start", "path": path, "chunk_size": 64 << 10}
	for k, v := range extra {
		start[k] = v
	}
	if r := p.chunk(id, map[string]any{"type": "binary", "headers": start}, nil); r.Type != wire.KindEmpty {
		p.t.Fatalf("download start answered %+v", r)
	}
	closeStream := func() {
		if r := p.chunk(id, map[string]any{"type": "control", "method": "close", "status_code": 1000}, nil); r.Type != wire.KindEmpty {
			p.t.Fatalf("close answered %+v", r)
		}
	}
	ch := p.streamed(id)
	if ch.c.Type == wire.KindError {
		closeStream()
		return nil, nil, &ch.c
	}
	h := ch.headers()
	if ch.c.Type != wire.KindBinary || h["kind"] != "start" {
		p.t.Fatalf("download of %s began with %v", path, ch.raw)
	}
	if sh != nil {
		sh.starts = append(sh.starts, h)
	}
	size, _ := h["size"].(float64)
	var got bytes.Buffer
	for float64(got.Len()) < size {
		if r := p.chunk(id, map[string]any{"type": "binary", "headers": map[string]any{"kind": "pull"}}, nil); r.Type != wire.KindEmpty {
			p.t.Fatalf("pull answered %+v", r)
		}
		d := p.streamed(id)
		if d.c.Type != wire.KindBinary || d.headers()["kind"] != "data" {
			p.t.Fatalf("a pull of %s brought %v", path, d.raw)
		}
		if sh != nil {
			sh.datas = append(sh.datas, d.headers())
		}
		got.Write(d.payload)
	}
	end := p.streamed(id)
	if end.c.Type != wire.KindControl || end.c.Method != "close" {
		p.t.Fatalf("download of %s ended with %v", path, end.raw)
	}
	closeStream()
	return got.Bytes(), h, nil
}
