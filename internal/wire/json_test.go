package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// contents are envelopes of every shape the hand-written JSON handles,
// and of shapes it leaves to encoding/json.
func contents() []Content {
	return []Content{
		Empty(), Control("open"), Control("close"), Error(404, "no such file: a/b.txt"),
		Error(400, `bad "quote" \ back <tag> & amp`), Error(500, "tab\there\nnewline \u2028 é ☃"),
		{Type: KindJSON, JSON: json.RawMessage(`{"path":"a"}`)},
		{Type: KindJSON, JSON: json.RawMessage(`{"path": "spaced"}`)},
		{Type: KindJSON, JSON: json.RawMessage(`{"path":"<html>"}`)},
		{Type: KindJSON, JSON: json.RawMessage(`{"files":[{"name":"a","size":null}]}`)},
		Binary(map[string]any{"kind": "data"}), Binary(map[string]any{"kind": "pull"}),
		Binary(map[string]any{"kind": "pull", "chunk_size": 4<<20 - 64<<10}),
		Binary(map[string]any{"kind": "start", "path": "d/é.txt", "overwrite": true, "size": nil, "name": "é.txt", "mime_type": "text/plain; charset=utf-8"}),
		Binary(map[string]any{"kind": "start", "size": float64(4096), "total_size": int64(1 << 40), "half": 0.5, "huge": 1e22}),
		Binary(map[string]any{"kind": "start", "nested": map[string]any{"a": 1}, "list": []any{1, "x"}}),
		{Type: KindControl, Method: "close", StatusCode: 1001},
		File("a.txt", "text/plain"),
		{Type: ""},
	}
}

// The hand-written encoder writes exactly what encoding/json writes.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	var values []any
	for _, c := range contents() {
		values = append(values, c,
			Chunk{ToolCallID: "ABCDEF234567", Chunk: c}, Chunk{ToolCallID: `we"ird<id>`, Chunk: c},
			InvokeTool{Toolkit: "storage", Tool: "upload", ToolCallID: "x", Arguments: c, Pipelined: true},
			InvokeTool{Toolkit: "storage", Tool: "stat", Arguments: c})
	}
	values = append(values, map[string]int{"n": 1}, FileEvent{Path: "a", ParticipantID: "p"})
	for _, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshal(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("marshal(%#v) = %s, %v\nencoding/json:     %s", v, got, err, want)
		}
	}
}

// DecodeContent and DecodeChunk read what encoding/json reads, from the
// forms they read by hand and from any other.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	var bodies [][]byte
	for _, c := range contents() {
		b, _ := json.Marshal(c)
		bodies = append(bodies, b)
	}
	bodies = append(bodies, []byte(`{"TYPE":"empty"}`), []byte(`{"type":"empty"} `), []byte(`{"type":"empty","x":1}`), []byte(`not json`))
	for _, b := range bodies {
		var want, got Content
		werr := json.Unmarshal(b, &want)
		gerr := DecodeContent(b, &got)
		if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("DecodeContent(%s) = %#v, %v; encoding/json %#v, %v", b, got, gerr, want, werr)
		}
		for _, chunk := range [][]byte{
			append(append([]byte(`{"tool_call_id":"ID7","chunk":`), b...), '}'),
			append(append([]byte(`{"tool_call_id":"I\"D","chunk":`), b...), '}'),
			append(append([]byte(`{"tool_call_id":"ID","chunk":`), b...), []byte(`,"chunk":{"type":"empty"}}`)...),
			append(append([]byte(`{"tool_call_id":"ID","chunk":`), b...), []byte(`,"tool_call_id":"other"}`)...),
			append(append([]byte(`{"tool_call_id":"","chunk":`), b...), '}'),
		} {
			var want, got Chunk
			werr := json.Unmarshal(chunk, &want)
			gerr := DecodeChunk(chunk, &got)
			if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeChunk(%s) = %#v, %v; encoding/json %#v, %v", chunk, got, gerr, want, werr)
			}
		}
	}
}

// The envelopes of a small upload cost no reflection: Encode of a chunk
// allocates only its frames and the JSON.
func TestEncodeChunkAllocations(t *testing.T) {
	c := Chunk{ToolCallID: "ABCDEF234567", Chunk: Binary(map[string]any{"kind": "data"})}
	n := testing.AllocsPerRun(100, func() {
		if _, err := Encode(1, TypeResponseChunk, c, nil); err != nil {
			t.Fatal(err)
		}
	})
	if n > 5 {
		t.Errorf("Encode of a data chunk: %v allocations, want at most 5", n)
	}
}
