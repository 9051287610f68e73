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
	"io"
	"slices"
	"sync"
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
	// TypeSetAttributes is a participant's attribute update, which older
	// TypeScript clients send after connected and expect no answer to.
	TypeSetAttributes = "set_attributes"
)

// The handle-era messages (clients before 0.30): one message type per
// storage call, each answered by a __response__.
const (
	TypeLegacyExists      = "storage.exists"
	TypeLegacyStat        = "storage.stat"
	TypeLegacyOpen        = "storage.open"
	TypeLegacyWrite       = "storage.write"
	TypeLegacyClose       = "storage.close"
	TypeLegacyDownload    = "storage.download"
	TypeLegacyDownloadURL = "storage.download_url"
	TypeLegacyList        = "storage.list"
	TypeLegacyDelete      = "storage.delete"
)

// ExtensionsParam is the query parameter (value "1") with which a client
// asks a roomstore server for what MeshAgent clients are never sent:
// the extra fields of download starts, storage.events.overflow, and the
// list of extensions the server speaks, in room_ready's "extensions".
// MeshAgent clients never send it, and some of them refuse any field
// the protocol does not define, so that a server sends none unasked.
const ExtensionsParam = "roomstore_extensions"

// The extensions a roomstore server names in room_ready for a client
// that asked for them (ExtensionsParam).
const (
	// ExtAppend: an upload start with "append": true (and no overwrite)
	// appends to the file, as Engine.Open without Overwrite or Exclusive.
	ExtAppend = "append"
	// ExtRange: a download start with "offset" and "length" streams that
	// range; its start then also carries "total_size", the file's size.
	ExtRange = "range"
	// ExtVersion: a download start carries "etag", "updated_at" and
	// "chunk_size" (the bytes each pull brings).
	ExtVersion = "version"
	// ExtOverflow: storage.events.overflow {dropped} tells the client
	// that events were lost for it, rather than closing its connection.
	ExtOverflow = "overflow"
	// ExtResume: room_ready carries "position", where the connection's
	// stream of events starts, and each storage.file.* event its
	// "position"; a client that connects with AfterParam gets every event
	// of the room after that position before any live one, or one
	// storage.events.overflow when the server cannot tell what came after
	// it.
	ExtResume = "resume"
	// ExtPreconditions: the calls that change a file take "if_match"
	// (an ETag: change the file only while it is that version) and an
	// upload start also "if_none_match" (an ETag, or "*": only while no
	// file is there); a change refused by one is an error 412. A stat
	// reply carries the file's "etag", the version a client reads before
	// it saves.
	ExtPreconditions = "preconditions"
	// ExtHistory: the tools versions, restore, deleted and restore_all,
	// and a download start with "version" streams that past version of
	// the file.
	ExtHistory = "history"
	// ExtInline: a small stream costs one round trip. An upload start
	// with "inline": true carries the whole file (at most InlineMax
	// bytes) as its payload: the server writes and commits it, then
	// answers the start and ends the stream with its close (or an
	// error chunk), with no pull; the client sends no data and no close.
	// A download start with "push": true is answered, when what it
	// streams fits in one chunk (its chunk_size), by a start that also
	// carries "push": true, the data and the close, with no pull; the
	// client then sends no pull and no close. Larger downloads stream as
	// usual. A client that knows the extension may send the start (or the
	// first chunk of any stream) together with its open, without waiting
	// for the open's reply.
	ExtInline = "inline"
)

// InlineMax bounds the payload of an inline upload start (ExtInline).
const InlineMax = 256 << 10

// AfterParam is the query parameter with which a client that asks for
// roomstore's extensions (ExtensionsParam) names the position of the
// last event it saw (ExtResume), to be sent what it missed. MeshAgent
// clients never send it.
const AfterParam = "roomstore_after"

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

	buf *[]byte // the pooled buffer Data lies in, if any
}

// Release hands the message's buffer back for reuse, for a receiver done
// with Data and every slice of it. Calling it is optional (an unreleased
// buffer is garbage like any other); a second call does nothing.
func (m *Message) Release() {
	if m.buf != nil {
		putBuf(m.buf)
		m.buf, m.Data = nil, nil
	}
}

// Split returns the message's JSON and payload.
func (m Message) Split() (json.RawMessage, []byte, error) { return Unpack(m.Data) }

// Encoded is a message ready for the socket: its header frame and its one
// data frame. It is not changed by writing, so one Encoded may go to many
// connections.
type Encoded struct {
	Header []byte
	Body   []byte

	buf *[]byte // the pooled buffer Body lies in, if any
}

// Held is the memory the message holds: its pooled buffer's capacity,
// or the bytes of its frames.
func (m Encoded) Held() int {
	if m.buf != nil {
		return cap(*m.buf) + len(m.Header)
	}
	return len(m.Header) + len(m.Body)
}

// Release hands the message's buffer back for reuse, once it has been
// written and will not be written again. Calling it is optional, and
// does nothing for an Encode result (only EncodeFill's lie in a pooled
// buffer, so only those must go to one connection alone).
func (m Encoded) Release() {
	if m.buf != nil {
		putBuf(m.buf)
	}
}

// Encode builds the frames of message id of type typ whose data is the
// JSON of v followed by payload. The payload is copied once, straight
// into the data frame (the protocol allows any slice size; one data frame
// saves the peer reassembly).
func Encode(id uint64, typ string, v any, payload []byte) (Encoded, error) {
	j, err := marshal(v)
	if err != nil {
		return Encoded{}, err
	}
	m := newEncoded(id, typ, j, len(payload), nil)
	m.Body = append(m.Body, payload...)
	return m, nil
}

// EncodeFill is Encode for a payload of at most n bytes that fill writes
// straight into the data frame, returning how many it wrote; it returns
// fill's error with the frames of the bytes written. The frames lie in a
// pooled buffer: Release them once written.
func EncodeFill(id uint64, typ string, v any, n int, fill func([]byte) (int, error)) (Encoded, error) {
	j, err := marshal(v)
	if err != nil {
		return Encoded{}, err
	}
	bp := getBuf(headerLen + 8 + len(j) + n)
	m := newEncoded(id, typ, j, n, bp)
	k, err := fill(m.Body[len(m.Body) : len(m.Body)+n])
	m.Body = m.Body[:len(m.Body)+k]
	return m, err
}

// EncodeFillOwn is EncodeFill whose frames lie in a buffer of their own,
// of exactly their size, rather than in a pooled one (whose capacity may
// be far more than a small message needs): for a sender that counts the
// memory a message holds before it exists.
func EncodeFillOwn(id uint64, typ string, v any, n int, fill func([]byte) (int, error)) (Encoded, error) {
	j, err := marshal(v)
	if err != nil {
		return Encoded{}, err
	}
	m := newEncoded(id, typ, j, n, nil)
	k, err := fill(m.Body[len(m.Body) : len(m.Body)+n])
	m.Body = m.Body[:len(m.Body)+k]
	return m, err
}

// newEncoded lays out the frames up to the payload, leaving room for n
// payload bytes; the body goes in *bp when bp is not nil.
func newEncoded(id uint64, typ string, j []byte, n int, bp *[]byte) Encoded {
	var body []byte
	if bp != nil {
		body = (*bp)[:headerLen+8]
	} else {
		body = make([]byte, headerLen+8, headerLen+8+len(j)+n)
	}
	binary.BigEndian.PutUint64(body[headerLen:], uint64(len(j)))
	body = append(body, j...)
	m := Encoded{Header: make([]byte, 16+len(typ)), Body: body, buf: bp}
	binary.BigEndian.PutUint32(m.Header[12:], 1)
	copy(m.Header[16:], typ)
	binary.BigEndian.PutUint32(m.Body[8:], 1)
	m.SetID(id)
	return m
}

// SetID gives the message another id, in place: for a sender that picks
// the id only when the message's turn to go out has come.
func (m Encoded) SetID(id uint64) {
	binary.BigEndian.PutUint64(m.Header, id)
	binary.BigEndian.PutUint64(m.Body, id)
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

// Frames encodes a message whose data is already packed (a length-
// prefixed JSON and a payload, as Unpack reads them) as its header frame
// and one data frame; Encode is the way to build one from values.
func Frames(id uint64, typ string, data []byte) (header, body []byte) {
	m := Encoded{Header: make([]byte, 16+len(typ)), Body: make([]byte, headerLen+len(data))}
	binary.BigEndian.PutUint32(m.Header[12:], 1)
	copy(m.Header[16:], typ)
	binary.BigEndian.PutUint32(m.Body[8:], 1)
	copy(m.Body[headerLen:], data)
	m.SetID(id)
	return m.Header, m.Body
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

	last int // the buffer the last large frame needed, up to maxBuf
}

// Add takes one frame. It returns the message the frame completes, if
// any, or an error wrapping ErrMalformed (or ErrTooLarge) for a frame that
// breaks the framing; after an error the connection cannot be trusted.
func (a *Assembler) Add(frame []byte) (*Message, error) { return a.add(frame, false) }

// add is Add; with adopt, the data of a message that is this frame alone
// is the frame's own bytes rather than a copy.
func (a *Assembler) add(frame []byte, adopt bool) (*Message, error) {
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
	if a.total == 1 && adopt {
		a.data = frame[headerLen:]
	} else {
		a.data = append(a.data, frame[headerLen:]...)
	}
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

// bufs holds the buffers frames are read into and encoded in. A buffer
// larger than maxBuf is not kept.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

const maxBuf = 4<<20 + 64<<10

// getBuf returns an empty pooled buffer of at least n bytes' capacity.
func getBuf(n int) *[]byte {
	bp := bufs.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, 0, n)
	}
	return bp
}

func putBuf(bp *[]byte) {
	if cap(*bp) <= maxBuf {
		*bp = (*bp)[:0]
		bufs.Put(bp)
	}
}

// adoptMin is the smallest frame ReadFrame hands over in its buffer
// rather than copying out.
const adoptMin = 16 << 10

// ReadFrame reads one WebSocket message (one frame of the protocol) to
// its end from r into a pooled buffer and passes it to the assembler,
// returning what Add returns, or r's error. A large message that is its
// frame alone keeps the buffer (Release gives it back); any other frame
// is copied out and the buffer reused at once. A socket reader calling
// this instead of reading each frame into a fresh slice saves an
// allocation and a growing copy per frame.
func (a *Assembler) ReadFrame(r io.Reader) (*Message, error) {
	// A lone data frame gets a buffer of the size of the last large
	// frame, which saves growing one from the pool's default by
	// doubling, a copy at each step.
	hint := 0
	if a.busy && a.total == 1 {
		hint = a.last
	}
	bp := getBuf(hint)
	buf := (*bp)[:0]
	defer func() {
		if len(buf) >= adoptMin {
			a.last = min(cap(buf), maxBuf)
		}
	}()
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = buf
			putBuf(bp)
			return nil, err
		}
	}
	*bp = buf
	adopt := len(buf) >= adoptMin && a.busy && a.total == 1 && a.next == 1
	m, err := a.add(buf, adopt)
	if adopt && m != nil {
		m.buf = bp // Data lies in buf: see Add
		return m, nil
	}
	putBuf(bp)
	return m, err
}

// Pending is the bytes of the message partly received, held until its
// last frame: 0 between messages.
func (a *Assembler) Pending() int {
	if !a.busy {
		return 0
	}
	return len(a.data)
}

// Hint is the buffer the next ReadFrame takes before it reads a byte (0:
// the pool's smallest).
func (a *Assembler) Hint() int {
	if a.busy && a.total == 1 {
		return a.last
	}
	return 0
}

// Busy reports whether a message is partly received: its header frame
// came, and not all its data frames.
func (a *Assembler) Busy() bool { return a.busy }
