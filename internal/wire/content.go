package wire

import "encoding/json"

// Content kinds.
const (
	KindJSON    = "json"
	KindError   = "error"
	KindEmpty   = "empty"
	KindControl = "control"
	KindBinary  = "binary"
	// KindFile is the handle-era storage.download reply: the file's name
	// and MIME type, its bytes as the payload.
	KindFile = "file"
)

// Content is a reply body or a stream chunk's header: one JSON object
// whose "type" tells which of the other fields it carries. A binary
// content's bytes travel as the message payload.
type Content struct {
	Type       string          `json:"type"`
	JSON       json.RawMessage `json:"json,omitempty"`
	Text       string          `json:"text,omitempty"`
	Code       int             `json:"code,omitempty"`
	Method     string          `json:"method,omitempty"`
	StatusCode int             `json:"status_code,omitempty"`
	Headers    map[string]any  `json:"headers,omitempty"`
	Name       string          `json:"name,omitempty"`      // KindFile
	MimeType   string          `json:"mime_type,omitempty"` // KindFile
}

// Empty is the empty reply.
func Empty() Content { return Content{Type: KindEmpty} }

// Error is an error reply with an HTTP-like code.
func Error(code int, text string) Content { return Content{Type: KindError, Code: code, Text: text} }

// JSONOf is a JSON reply of v, which must marshal.
func JSONOf(v any) Content {
	j, err := json.Marshal(v)
	if err != nil {
		return Error(500, "internal error")
	}
	return Content{Type: KindJSON, JSON: j}
}

// Control is a control content; close carries status code 1000.
func Control(method string) Content {
	c := Content{Type: KindControl, Method: method}
	if method == "close" {
		c.StatusCode = 1000
	}
	return c
}

// File is the handle-era download reply of a file; its bytes travel as
// the payload.
func File(name, mimeType string) Content {
	return Content{Type: KindFile, Name: name, MimeType: mimeType}
}

// Binary is a binary content with the given headers.
func Binary(headers map[string]any) Content { return Content{Type: KindBinary, Headers: headers} }

// InvokeTool is a room.invoke_tool request.
type InvokeTool struct {
	Toolkit    string  `json:"toolkit"`
	Tool       string  `json:"tool"`
	ToolCallID string  `json:"tool_call_id,omitempty"`
	Arguments  Content `json:"arguments"`
	// Pipelined, on a stream's open (ExtInline), says that the stream's
	// first chunk follows at once: the server may answer the open with
	// the stream's first response, in one write.
	Pipelined bool `json:"pipelined,omitempty"`
}

// Chunk is a room.tool_call_request_chunk or response chunk.
type Chunk struct {
	ToolCallID string  `json:"tool_call_id"`
	Chunk      Content `json:"chunk"`
}

// FileEvent is the body of storage.file.updated and storage.file.deleted.
// ParticipantName and Position, roomstore's extensions, are sent only to
// the clients that asked for the extensions: the name only where the
// server knows it, the position (ExtResume) where the event sits in the
// room's stream, for AfterParam.
type FileEvent struct {
	Path            string `json:"path"`
	ParticipantID   string `json:"participant_id"`
	ParticipantName string `json:"participant_name,omitempty"`
	Position        string `json:"position,omitempty"`
}

// MoveEvent is the body of storage.file.moved (ParticipantName and
// Position: as in FileEvent).
type MoveEvent struct {
	SourcePath      string `json:"source_path"`
	DestinationPath string `json:"destination_path"`
	ParticipantID   string `json:"participant_id"`
	ParticipantName string `json:"participant_name,omitempty"`
	Position        string `json:"position,omitempty"`
}

// OverflowEvent is the body of storage.events.overflow. Position, where
// the server knows it, is where the client's stream goes on: the events
// after the notice come after that position, so that a client that
// re-lists on the notice may keep it for AfterParam.
type OverflowEvent struct {
	Dropped  uint64 `json:"dropped"`
	Position string `json:"position,omitempty"`
}

// Entry is a file or folder as stat and list describe it. Path and
// ETag are roomstore's extensions (ExtPreconditions, ExtHistory), set
// only for the clients that asked for them: the stat of such a client
// carries the file's ETag, and the entries the history tools return
// both.
type Entry struct {
	Name      string  `json:"name"`
	Path      string  `json:"path,omitempty"`
	IsFolder  bool    `json:"is_folder"`
	Size      *int64  `json:"size"`
	CreatedAt *string `json:"created_at"`
	UpdatedAt *string `json:"updated_at"`
	ETag      string  `json:"etag,omitempty"`
}

// Version is a past version of a file as the tools of ExtHistory
// describe it (versions, deleted): times are RFC 3339 with nanoseconds,
// participant_id is "" for a change no participant made.
type Version struct {
	Path          string `json:"path"`
	ID            string `json:"id"`
	ETag          string `json:"etag"`
	Size          int64  `json:"size"`
	ModifiedAt    string `json:"modified_at"`
	ReplacedAt    string `json:"replaced_at"`
	ParticipantID string `json:"participant_id"`
	Reason        string `json:"reason"`
}

// LegacyEntry is a file or folder as the handle era's storage.stat and
// storage.list describe it: no size, and timestamps always present.
type LegacyEntry struct {
	Name      string `json:"name"`
	IsFolder  bool   `json:"is_folder"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// LegacyStat is the handle era's stat reply.
type LegacyStat struct {
	Exists bool `json:"exists"`
	*LegacyEntry
}

// Stat is the stat reply: Exists false carries nothing else.
type Stat struct {
	Exists bool `json:"exists"`
	*Entry
}
