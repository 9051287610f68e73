// Package wire is the MeshAgent room protocol's framing and message
// encoding, shared by the room server and the Go client.
//
// A message goes out as a header frame (id, 0, the number of data frames,
// the type) and then its data frames (id, 1..N, a slice of the data). The
// data of a message is a big-endian u64 length, that many bytes of JSON,
// then an optional binary payload. All integers are big-endian.
package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Message types of the storage part of the protocol.
const (
	TypeResponse      = "__response__"
	TypeRoomReady     = "room_ready"
	TypeConnected     = "connected"
	TypeInvokeTool    = "room.invoke_tool"
	TypeRequestChunk  = "room.tool_call_request_chunk"
	TypeResponseChunk = "room.tool_call_response_chunk"
	TypeFileUpdated   = "storage.file.updated"
	TypeFileDeleted   = "storage.file.deleted"
	TypeFileMoved     = "storage.file.moved"
	// TypeEventsOverflow tells a participant that events were lost for
	// it, so that it re-lists what it shows. Clients that do not know it
	// ignore it.
	TypeEventsOverflow = "storage.events.overflow"
)

// Framing bounds.
const (
	// MaxTypeLen bounds a message type.
	MaxTypeLen = 256
	// headerLen is the frame prefix: id high, id low, frame index.
	headerLen = 12
)

// ErrMalformed reports a frame or message that breaks the framing.
var ErrMalformed = errors.New("malformed message")

// Message is one reassembled message.
type Message struct {
	ID   uint64
	Type string
	Data []byte // u64 length | JSON | payload
}

// Split returns the message's JSON and payload.
func (m Message) Split() (json.RawMessage, []byte, error) { return Unpack(m.Data) }

// Pack builds message data from a JSON value and a payload.
func Pack(v any, payload []byte) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 8, 8+len(j)+len(payload))
	binary.BigEndian.PutUint64(out, uint64(len(j)))
	out = append(out, j...)
	return append(out, payload...), nil
}

// Unpack splits message data into its JSON and its payload.
func Unpack(data []byte) (json.RawMessage, []byte, error) {
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("%w: message data shorter than its length prefix", ErrMalformed)
	}
	n := binary.BigEndian.Uint64(data)
	if n > uint64(len(data)-8) {
		return nil, nil, fmt.Errorf("%w: JSON length %d beyond the message's %d bytes", ErrMalformed, n, len(data)-8)
	}
	return json.RawMessage(data[8 : 8+n]), data[8+n:], nil
}

// Frames encodes a message as its header frame and one data frame (the
// protocol allows any slice size; one frame saves the peer reassembly).
func Frames(id uint64, typ string, data []byte) (header, body []byte) {
	header = make([]byte, 16+len(typ))
	binary.BigEndian.PutUint64(header, id)
	binary.BigEndian.PutUint32(header[8:], 0)
	binary.BigEndian.PutUint32(header[12:], 1)
	copy(header[16:], typ)
	body = make([]byte, headerLen+len(data))
	binary.BigEndian.PutUint64(body, id)
	binary.BigEndian.PutUint32(body[8:], 1)
	copy(body[headerLen:], data)
	return header, body
}

// Assembler reassembles frames into messages. The protocol keeps one
// reassembly state per connection: a message's frames arrive back to back.
type Assembler struct {
	// Max bounds a message's data; 0 means no bound.
	Max int

	busy  bool
	id    uint64
	typ   string
	total uint32
	next  uint32
	data  []byte
}

// Add takes one frame. It returns the message the frame completes, if
// any, or an error wrapping ErrMalformed (or ErrTooLarge) for a frame that
// breaks the framing; after an error the connection cannot be trusted.
func (a *Assembler) Add(frame []byte) (*Message, error) {
	if len(frame) < headerLen {
		return nil, fmt.Errorf("%w: a frame of %d bytes", ErrMalformed, len(frame))
	}
	id := binary.BigEndian.Uint64(frame)
	k := binary.BigEndian.Uint32(frame[8:])
	if k == 0 {
		if a.busy {
			return nil, fmt.Errorf("%w: a new message began before message %d ended", ErrMalformed, a.id)
		}
		if len(frame) < 16 {
			return nil, fmt.Errorf("%w: a header frame of %d bytes", ErrMalformed, len(frame))
		}
		typ := frame[16:]
		if len(typ) == 0 || len(typ) > MaxTypeLen || !utf8.Valid(typ) {
			return nil, fmt.Errorf("%w: a message type of %d bytes", ErrMalformed, len(typ))
		}
		a.id, a.typ = id, string(typ)
		a.total = binary.BigEndian.Uint32(frame[12:])
		a.next, a.data = 1, nil
		if a.total == 0 {
			return &Message{ID: id, Type: a.typ}, nil
		}
		a.busy = true
		return nil, nil
	}
	if !a.busy || id != a.id || k != a.next {
		return nil, fmt.Errorf("%w: frame %d of message %d out of order", ErrMalformed, k, id)
	}
	if a.Max > 0 && len(a.data)+len(frame)-headerLen > a.Max {
		return nil, fmt.Errorf("%w: message %d is over %d bytes", ErrTooLarge, id, a.Max)
	}
	a.data = append(a.data, frame[headerLen:]...)
	if k < a.total {
		a.next++
		return nil, nil
	}
	m := &Message{ID: a.id, Type: a.typ, Data: a.data}
	a.busy, a.data = false, nil
	return m, nil
}

// ErrTooLarge reports a message over the assembler's bound.
var ErrTooLarge = errors.New("message too large")
