package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The JSON of the envelopes every call sends and receives (Content,
// Chunk, InvokeTool) is written and read here by hand, without
// reflection: the same bytes encoding/json writes, and for what it
// reads, the same values. Anything outside the shapes handled (a header
// of another type, a string that needs escaping, a body of another
// form) goes through encoding/json.

// marshal is json.Marshal(v).
func marshal(v any) ([]byte, error) {
	var b []byte
	ok := false
	switch x := v.(type) {
	case Content:
		b, ok = appendContent(make([]byte, 0, 64), x)
	case Chunk:
		b, ok = appendChunk(make([]byte, 0, 128), x)
	case InvokeTool:
		b, ok = appendInvoke(make([]byte, 0, 160), x)
	}
	if ok {
		return b, nil
	}
	return json.Marshal(v)
}

func appendInvoke(b []byte, v InvokeTool) ([]byte, bool) {
	b = append(b, `{"toolkit":`...)
	b = appendString(b, v.Toolkit)
	b = append(b, `,"tool":`...)
	b = appendString(b, v.Tool)
	if v.ToolCallID != "" {
		b = append(b, `,"tool_call_id":`...)
		b = appendString(b, v.ToolCallID)
	}
	b = append(b, `,"arguments":`...)
	b, ok := appendContent(b, v.Arguments)
	if v.Pipelined {
		b = append(b, `,"pipelined":true`...)
	}
	return append(b, '}'), ok
}

func appendChunk(b []byte, v Chunk) ([]byte, bool) {
	b = append(b, `{"tool_call_id":`...)
	b = appendString(b, v.ToolCallID)
	b = append(b, `,"chunk":`...)
	b, ok := appendContent(b, v.Chunk)
	return append(b, '}'), ok
}

func appendContent(b []byte, c Content) ([]byte, bool) {
	b = append(b, `{"type":`...)
	b = appendString(b, c.Type)
	if len(c.JSON) > 0 {
		// encoding/json compacts a raw message and escapes HTML in it:
		// one that needs neither is copied as it is.
		if bytes.ContainsAny(c.JSON, " \t\r\n<>&\u2028\u2029") || !json.Valid(c.JSON) {
			return b, false
		}
		b = append(b, `,"json":`...)
		b = append(b, c.JSON...)
	}
	if c.Text != "" {
		b = append(b, `,"text":`...)
		b = appendString(b, c.Text)
	}
	if c.Code != 0 {
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(c.Code), 10)
	}
	if c.Method != "" {
		b = append(b, `,"method":`...)
		b = appendString(b, c.Method)
	}
	if c.StatusCode != 0 {
		b = append(b, `,"status_code":`...)
		b = strconv.AppendInt(b, int64(c.StatusCode), 10)
	}
	if len(c.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		keys := make([]string, 0, len(c.Headers))
		for k := range c.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var ok bool
			if b, ok = appendValue(b, c.Headers[k]); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	if c.Name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, c.Name)
	}
	if c.MimeType != "" {
		b = append(b, `,"mime_type":`...)
		b = appendString(b, c.MimeType)
	}
	return append(b, '}'), true
}

// appendValue appends a header's value of the types the protocol's
// headers hold; any other is not handled.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendString(b, x), true
	case bool:
		return strconv.AppendBool(b, x), true
	case int:
		return strconv.AppendInt(b, int64(x), 10), true
	case int64:
		return strconv.AppendInt(b, x, 10), true
	case float64:
		// encoding/json writes a whole number below 1e21 as an integer.
		if x != math.Trunc(x) || math.Abs(x) >= 1e21 {
			return b, false
		}
		return strconv.AppendFloat(b, x, 'f', -1, 64), true
	}
	return b, false
}

// appendString appends s as encoding/json writes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, _ := json.Marshal(s) // escapes: rare, left to encoding/json
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// The bodies replies and chunks most often carry, as encoding/json
// writes them (and as this package does).
var (
	emptyJSON      = []byte(`{"type":"empty"}`)
	openJSON       = []byte(`{"type":"control","method":"open"}`)
	closeJSON      = []byte(`{"type":"control","method":"close","status_code":1000}`)
	dataJSON       = []byte(`{"type":"binary","headers":{"kind":"data"}}`)
	pullJSON       = []byte(`{"type":"binary","headers":{"kind":"pull"}}`)
	chunkPrefix    = []byte(`{"tool_call_id":"`)
	chunkInfix     = []byte(`","chunk":`)
	maxFastChunkID = 256
)

// DecodeContent decodes a reply body or a chunk's content, as
// json.Unmarshal into a Content does.
func DecodeContent(b []byte, c *Content) error {
	switch {
	case bytes.Equal(b, emptyJSON):
		*c = Content{Type: KindEmpty}
	case bytes.Equal(b, openJSON):
		*c = Content{Type: KindControl, Method: "open"}
	case bytes.Equal(b, closeJSON):
		*c = Content{Type: KindControl, Method: "close", StatusCode: 1000}
	case bytes.Equal(b, dataJSON):
		*c = Content{Type: KindBinary, Headers: map[string]any{"kind": "data"}}
	case bytes.Equal(b, pullJSON):
		*c = Content{Type: KindBinary, Headers: map[string]any{"kind": "pull"}}
	default:
		*c = Content{}
		return json.Unmarshal(b, c)
	}
	return nil
}

// DecodeChunk decodes the body of a request or response chunk, as
// json.Unmarshal into a Chunk does.
func DecodeChunk(b []byte, ch *Chunk) error {
	// {"tool_call_id":"ID","chunk":CONTENT}, with an ID that needs no
	// unescaping, is the form every client writes.
	if rest, ok := bytes.CutPrefix(b, chunkPrefix); ok && len(b) > 0 && b[len(b)-1] == '}' {
		if i := bytes.IndexByte(rest[:min(len(rest), maxFastChunkID+1)], '"'); i >= 0 {
			id := rest[:i]
			if body, ok := bytes.CutPrefix(rest[i:], chunkInfix); ok && plainID(id) {
				body = body[:len(body)-1]
				var c Content
				if err := DecodeContent(body, &c); err == nil {
					*ch = Chunk{ToolCallID: string(id), Chunk: c}
					return nil
				}
			}
		}
	}
	*ch = Chunk{}
	return json.Unmarshal(b, ch)
}

// plainID reports whether id is a JSON string's content that needs no
// unescaping: printable ASCII or valid UTF-8, no backslash.
func plainID(id []byte) bool {
	for _, c := range id {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	return utf8.Valid(id)
}
