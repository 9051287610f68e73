package roomserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/wire"
)

// inChunk is one request chunk waiting for its stream.
type inChunk struct {
	id   uint64
	c    wire.Content
	data []byte
	msg  *wire.Message // what data lies in
}

// stream is one upload or download. Its goroutine alone answers its
// chunks and sends its response chunks, so none goes out after it ended.
type stream struct {
	mu    sync.Mutex // orders chunk deliveries with the stream's end
	done  bool
	c     *conn
	id    string
	tool  string
	in    chan inChunk
	ended chan struct{}

	// release gives back what the stream holds (its reader or handle,
	// the room's upload share, its slot), once: before the answer that
	// ends the stream goes out, so that a client that has its answer
	// may open the next stream at once, or at the latest as it ends.
	release func()
	cleanup []func() // what release undoes, last first

	// held is what goes out with the stream's next response chunk, in
	// one write: the answer to its start, and that to its open when the
	// client pipelined them (wire.ExtInline).
	held []wire.Encoded
}

func newStream(c *conn, id, tool string) *stream {
	st := &stream{c: c, id: id, tool: tool, in: make(chan inChunk, 1), ended: make(chan struct{})}
	st.release = sync.OnceFunc(func() {
		for i := len(st.cleanup) - 1; i >= 0; i-- {
			st.cleanup[i]()
		}
		c.dropSlot()
	})
	return st
}

// finish sends the response chunk that ends the stream, after giving
// back what the stream holds.
func (st *stream) finish(body wire.Content) {
	st.release()
	_ = st.respond(body, nil)
}

// errStreamEnded ends a stream whose client went away or stalled.
var errStreamEnded = errors.New("stream ended")

// next waits for the stream's next chunk.
func (st *stream) next() (inChunk, error) {
	t := time.NewTimer(st.c.s.o.StreamIdle)
	defer t.Stop()
	select {
	case ch := <-st.in:
		return ch, nil
	case <-t.C:
		// The client is told, so that one waiting for the stream's end
		// (an upload's commit) does not wait for ever.
		st.fail(&requestError{CodeTimeout, fmt.Sprintf("%s ended: no chunk for %s", st.tool, st.c.s.o.StreamIdle)})
		return inChunk{}, fmt.Errorf("%w: no chunk for %s", errStreamEnded, st.c.s.o.StreamIdle)
	case <-st.c.ctx.Done():
		return inChunk{}, errStreamEnded
	}
}

// answer replies to a request chunk, after what the stream held back.
func (st *stream) answer(ch inChunk, body wire.Content) error {
	m, err := wire.Encode(ch.id, wire.TypeResponse, body, nil)
	if err != nil {
		return err
	}
	return st.sendHeld(m)
}

// holdAnswer encodes the answer to a request chunk, to go out with the
// stream's next response chunk.
func (st *stream) holdAnswer(ch inChunk, body wire.Content) {
	if m, err := wire.Encode(ch.id, wire.TypeResponse, body, nil); err == nil {
		st.held = append(st.held, m)
	}
}

// respond sends a response chunk, after what the stream held back.
func (st *stream) respond(body wire.Content, payload []byte) error {
	m, err := st.encode(body, payload)
	if err != nil {
		return err
	}
	return st.sendHeld(m)
}

// encode encodes a response chunk of the stream.
func (st *stream) encode(body wire.Content, payload []byte) (wire.Encoded, error) {
	return wire.Encode(st.c.nextID.Add(1), wire.TypeResponseChunk, wire.Chunk{ToolCallID: st.id, Chunk: body}, payload)
}

// sendHeld sends what the stream held back, then ms, in one write.
func (st *stream) sendHeld(ms ...wire.Encoded) error {
	if len(st.held) > 0 {
		ms = append(st.held, ms...)
		st.held = nil
	}
	return st.c.sendAll(ms...)
}

// asOp is err as the refusal of the protocol's call op (the client asked
// for an upload, not for the engine's open and close).
func asOp(op string, err error) error {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: pe.Path, Err: pe.Err}
}

// fail ends the stream with err.
func (st *stream) fail(err error) {
	ec := errorContent(err)
	if ec.Code == CodeInternal {
		st.c.s.log.Error("storage stream failed", "room", st.c.rm.name, "participant", st.c.id, "tool", st.tool, "err", err)
	}
	st.finish(ec)
}

func (st *stream) run() {
	ch, err := st.next()
	if err != nil {
		return
	}
	if ch.c.Type == wire.KindControl && ch.c.Method == "close" {
		st.release()
		_ = st.answer(ch, wire.Empty())
		return
	}
	if ch.c.Type != wire.KindBinary || ch.c.Headers["kind"] != "start" {
		_ = st.answer(ch, wire.Empty())
		st.fail(badRequest("a stream begins with a binary chunk of kind start"))
		return
	}
	// The start's answer goes out with the stream's first response (the
	// first pull, the download's start), in one write.
	st.holdAnswer(ch, wire.Empty())
	inline, _ := ch.c.Headers["inline"].(bool) // wire.ExtInline
	push, _ := ch.c.Headers["push"].(bool)
	if st.tool == "upload" {
		st.upload(ch, inline)
	} else {
		st.download(ch.c.Headers, push)
	}
}

func (st *stream) upload(start inChunk, inline bool) {
	h := start.c.Headers
	p, ok := h["path"].(string)
	if !ok {
		st.fail(badRequest("upload start needs a path"))
		return
	}
	overwrite, _ := h["overwrite"].(bool)
	appending, _ := h["append"].(bool) // wire.ExtAppend
	opts := roomstore.OpenOptions{Overwrite: overwrite, Exclusive: !overwrite && !appending}
	// wire.ExtPreconditions, honoured from any client: ignoring one would
	// overwrite what its sender meant to save only over the version it
	// read.
	var ok1, ok2 bool
	opts.IfMatch, ok1 = optionalString(h, "if_match")
	opts.IfNoneMatch, ok2 = optionalString(h, "if_none_match")
	if !ok1 || !ok2 {
		st.fail(badRequest("upload if_match and if_none_match must be strings"))
		return
	}
	want := int64(-1)
	if n, ok := h["size"].(float64); ok {
		if n < 0 || n != float64(int64(n)) {
			st.fail(badRequest("upload size must be a whole number of bytes"))
			return
		}
		want = int64(n)
	}
	e := st.c.rm.eng
	ctx := st.c.engineCtx()
	if share, ok := st.c.rm.takeHandle(st.c.idst.name); !ok {
		st.c.s.lim.refuse(BudgetRoomHandles)
		st.fail(&requestError{CodeTooMany, fmt.Sprintf("upload %s: too many uploads open in this room (at most %d per identity)", truncate(p, 256), share)})
		return
	}
	st.cleanup = append(st.cleanup, func() { st.c.rm.dropHandle(st.c.idst.name) })
	if inline {
		if len(start.data) > wire.InlineMax {
			st.fail(badRequest(fmt.Sprintf("an inline upload carries at most %d bytes", wire.InlineMax)))
			return
		}
		if want >= 0 && int64(len(start.data)) != want {
			st.fail(badRequest(fmt.Sprintf("an inline upload of %d bytes carries %d", want, len(start.data))))
			return
		}
		want = int64(len(start.data))
	}
	opts.Size = max(want, 0)
	hd, err := e.Open(ctx, p, opts)
	if err != nil {
		st.fail(asOp("upload", err))
		return
	}
	committed := false
	st.cleanup = append(st.cleanup, func() {
		if !committed {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = e.Abort(actx, hd)
			cancel()
		}
	})
	if inline {
		st.inline(hd, start, &committed)
		return
	}
	size := st.c.s.o.ChunkSize
	pull := wire.Binary(map[string]any{"kind": "pull", "chunk_size": size})
	if st.respond(pull, nil) != nil {
		return
	}
	var written int64
	for {
		ch, err := st.next()
		if err != nil {
			return
		}
		switch {
		case ch.c.Type == wire.KindBinary && ch.c.Headers["kind"] == "data":
			if len(ch.data) > size {
				_ = st.answer(ch, wire.Error(400, fmt.Sprintf("a data chunk over the %d bytes pulled", size)))
				st.fail(badRequest("upload aborted: a data chunk over the size pulled"))
				return
			}
			if want >= 0 && written+int64(len(ch.data)) > want {
				_ = st.answer(ch, wire.Error(400, "more bytes than the upload's size"))
				st.fail(badRequest("upload aborted: more bytes than its size"))
				return
			}
			// The next pull goes out (with the chunk's answer, in one
			// write) before this chunk is written, so the client sends
			// while the engine writes.
			st.holdAnswer(ch, wire.Empty())
			if st.respond(pull, nil) != nil {
				return
			}
			if err := e.Write(ctx, hd, ch.data); err != nil {
				st.fail(err)
				return
			}
			written += int64(len(ch.data))
			ch.msg.Release() // the engine keeps no slice of what it was given
		case ch.c.Type == wire.KindControl && ch.c.Method == "close":
			_ = st.answer(ch, wire.Empty())
			if ch.c.StatusCode != 0 && ch.c.StatusCode != 1000 {
				st.fail(badRequest("upload cancelled by the client"))
				return
			}
			if want >= 0 && written != want {
				st.fail(badRequest(fmt.Sprintf("upload of %d bytes ended after %d", want, written)))
				return
			}
			committed = true
			// Every byte came: the commit is the server's now, and a client
			// that goes away meanwhile does not cut it short.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
			err := e.Close(cctx, hd)
			cancel()
			if err != nil {
				st.fail(asOp("upload", err))
				return
			}
			st.finish(wire.Control("close"))
			return
		default:
			_ = st.answer(ch, wire.Error(400, "an upload takes data chunks and a close"))
			st.fail(badRequest("upload aborted: an unexpected chunk"))
			return
		}
	}
}

// inline writes and commits the bytes an inline upload's start carried
// (wire.ExtInline), then ends the stream: its held answer and the close,
// or an error chunk, in one write.
func (st *stream) inline(hd *roomstore.Handle, start inChunk, committed *bool) {
	e := st.c.rm.eng
	if len(start.data) > 0 {
		if err := e.Write(st.c.engineCtx(), hd, start.data); err != nil {
			st.fail(err)
			return
		}
	}
	start.msg.Release() // the engine keeps no slice of what it was given
	*committed = true
	cctx, cancel := context.WithTimeout(context.WithoutCancel(st.c.engineCtx()), commitTimeout)
	err := e.Close(cctx, hd)
	cancel()
	if err != nil {
		st.fail(asOp("upload", err))
		return
	}
	st.finish(wire.Control("close"))
}

// optionalString is the string h holds at key: "" when it holds none
// (or null), and false when it holds anything else.
func optionalString(h map[string]any, key string) (string, bool) {
	switch v := h[key].(type) {
	case nil:
		return "", true
	case string:
		return v, true
	}
	return "", false
}

// commitTimeout bounds the commit of an upload whose bytes all came.
const commitTimeout = time.Minute

// maxDownloadChunk bounds the chunk size a client may ask for.
const maxDownloadChunk = 4<<20 - 64<<10

func (st *stream) download(h map[string]any, push bool) {
	p, ok := h["path"].(string)
	if !ok {
		st.fail(badRequest("download start needs a path"))
		return
	}
	size := 64 << 10
	if n, ok := h["chunk_size"].(float64); ok && n >= 1 {
		size = int(min(n, float64(min(maxDownloadChunk, st.c.s.o.MaxMessageSize-64<<10))))
	}
	// wire.ExtRange: a range of the file rather than all of it.
	offset, length := int64(0), int64(-1)
	for key, v := range map[string]*int64{"offset": &offset, "length": &length} {
		if n, ok := h[key].(float64); ok {
			if n < 0 || n != float64(int64(n)) {
				st.fail(badRequest("download " + key + " must be a whole number of bytes"))
				return
			}
			*v = int64(n)
		}
	}
	version, ok := optionalString(h, "version") // wire.ExtHistory
	if !ok {
		st.fail(badRequest("download version must be a string"))
		return
	}
	var r *roomstore.Reader
	var err error
	switch {
	case version == "":
		r, err = st.c.rm.eng.OpenReader(st.c.engineCtx(), p, offset, length)
	case offset != 0 || length >= 0:
		err = badRequest("a past version is streamed whole: no offset or length with version")
	default:
		r, err = st.c.rm.eng.OpenVersion(st.c.engineCtx(), p, version)
	}
	if err != nil {
		st.fail(asOp("download", err))
		return
	}
	st.cleanup = append(st.cleanup, func() { _ = r.Close() })
	ent := r.Entry()
	left := ent.Size - offset
	if length >= 0 {
		left = min(left, length)
	}
	// Exactly the fields MeshAgent's clients know (the strict ones refuse
	// any other), unless the client asked for roomstore's extensions:
	// the version streamed, and chunk_size, how much each pull brings,
	// so that the client may pull the next chunk before this one came.
	start := map[string]any{"kind": "start", "name": path.Base(ent.Path), "mime_type": r.MimeType(), "size": left}
	if st.c.extras {
		start["etag"], start["chunk_size"], start["total_size"] = ent.ETag, size, ent.Size
		if !ent.ModTime.IsZero() {
			start["updated_at"] = ent.ModTime.UTC().Format(time.RFC3339Nano)
		}
	}
	data := wire.Chunk{ToolCallID: st.id, Chunk: wire.Binary(map[string]any{"kind": "data"})}
	if push && left <= int64(size) {
		st.push(r, start, data, left)
		return
	}
	if st.respond(wire.Binary(start), nil) != nil {
		return
	}
	for left > 0 {
		ch, err := st.next()
		if err != nil {
			return
		}
		switch {
		case ch.c.Type == wire.KindBinary && ch.c.Headers["kind"] == "pull":
			// The pull's answer and its bytes go out in one write; the
			// bytes are read straight into the message that carries them,
			// which the writer recycles once sent.
			st.holdAnswer(ch, wire.Empty())
			n := int(min(int64(size), left))
			m, err := wire.EncodeFill(st.c.nextID.Add(1), wire.TypeResponseChunk, data, n, func(b []byte) (int, error) {
				return io.ReadFull(r, b)
			})
			if err != nil {
				m.Release()
				st.fail(err)
				return
			}
			left -= int64(n)
			if left == 0 {
				// The last bytes and the close, in one write, the stream's
				// budgets given back before: a client that has its last
				// byte may open the next stream at once.
				end, err := st.encode(wire.Control("close"), nil)
				if err != nil {
					m.Release()
					st.fail(err)
					return
				}
				st.release()
				_ = st.sendHeld(m, end)
				return
			}
			if st.sendHeld(m) != nil {
				return
			}
		case ch.c.Type == wire.KindControl && ch.c.Method == "close":
			st.release()
			_ = st.answer(ch, wire.Empty())
			return
		default:
			_ = st.answer(ch, wire.Error(400, "a download takes pull chunks and a close"))
			st.fail(badRequest("download ended: an unexpected chunk"))
			return
		}
	}
	st.finish(wire.Control("close"))
}

// push sends a download that fits in one chunk without pulls
// (wire.ExtInline): the held answer to its start, its start, its data
// and its close, in one write.
func (st *stream) push(r *roomstore.Reader, start map[string]any, data wire.Chunk, left int64) {
	start["push"] = true
	first, err := st.encode(wire.Binary(start), nil)
	if err != nil {
		st.fail(err)
		return
	}
	ms := []wire.Encoded{first}
	if left > 0 {
		m, err := wire.EncodeFill(st.c.nextID.Add(1), wire.TypeResponseChunk, data, int(left), func(b []byte) (int, error) {
			return io.ReadFull(r, b)
		})
		if err != nil {
			m.Release()
			st.fail(err) // its held answer and the error; the client drops the start it never got
			return
		}
		ms = append(ms, m)
	}
	end, err := st.encode(wire.Control("close"), nil)
	if err != nil {
		for _, m := range ms {
			m.Release()
		}
		st.fail(err)
		return
	}
	st.release()
	_ = st.sendHeld(append(ms, end)...)
}
