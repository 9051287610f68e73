package roomclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"path"
	"sync"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/wire"
)

// Stream status codes of the closing chunk: 1000 commits an upload, any
// other code cancels it.
const (
	statusDone      = 1000
	statusCancelled = 1001
)

// defaultPull is the chunk size of a pull that names none (the protocol's
// default).
const defaultPull = 64 << 10

// closeTimeout bounds the closing chunk of a stream, which is sent even
// when the call's context has ended, so that the server lets go of the
// stream (and aborts an upload) at once.
const closeTimeout = 10 * time.Second

// closeRetry is how often a closing chunk refused with 429 (a chunk the
// call abandoned still waits for the server's stream) is sent again.
const closeRetry = 10 * time.Millisecond

// stream is one upload or download: a tool call whose response chunks
// come through its inbox.
type stream struct {
	k     *conn
	id    string
	in    *inbox
	op, p string
}

// openStream opens a storage stream of tool for op on p (a path
// checkPath passed) over k. On failure the stream is closed again.
func (c *Client) openStream(ctx context.Context, k *conn, op, p, tool string) (*stream, error) {
	st := &stream{k: k, id: rand.Text(), op: op, p: p}
	var err error
	if st.in, err = k.openInbox(st.id); err != nil {
		return nil, pathError(op, p, err)
	}
	res, _, err := k.invoke(ctx, wire.InvokeTool{Toolkit: "storage", Tool: tool, ToolCallID: st.id, Arguments: wire.Control("open")})
	if err == nil {
		err = replyError(res, p)
	}
	if err == nil && (res.Type != wire.KindControl || res.Method != "open") {
		err = protocolError("storage.%s answered %q to an open", tool, res.Type)
	}
	if err != nil {
		st.close(ctx, statusCancelled)
		return nil, pathError(op, p, err)
	}
	return st, nil
}

// openWith opens a stream of tool whose id is id and whose first chunk,
// encoded in first, goes out with the open, in one write (wire.ExtInline:
// the server then answers both with the stream's first response, in one
// write too), and returns the stream with that first response chunk. On
// failure the stream is closed again.
func (c *Client) openWith(ctx context.Context, k *conn, op, p, tool, id string, first wire.Encoded) (*stream, reply, error) {
	st := &stream{k: k, id: id, op: op, p: p}
	var err error
	if st.in, err = k.openInbox(st.id); err != nil {
		first.Release()
		return nil, reply{}, pathError(op, p, err)
	}
	open, err := wire.Encode(0, wire.TypeInvokeTool, wire.InvokeTool{Toolkit: "storage", Tool: tool, ToolCallID: id, Arguments: wire.Control("open"), Pipelined: true}, nil)
	if err != nil {
		first.Release()
		k.closeInbox(id)
		return nil, reply{}, pathError(op, p, err)
	}
	ws := [2]*waiter{{k: k, ch: make(chan reply, 1)}, {k: k, ch: make(chan reply, 1)}}
	registered := 0
	err = k.sendAll(ctx, []wire.Encoded{open, first}, func(i int, mid uint64) {
		ws[i].id = mid
		k.mu.Lock()
		k.pending[mid] = ws[i].ch
		k.mu.Unlock()
		registered = i + 1
	})
	if err != nil {
		for _, w := range ws[:registered] {
			w.forget()
		}
		k.closeInbox(id)
		return nil, reply{}, pathError(op, p, err)
	}
	fail := func(err error) (*stream, reply, error) {
		ws[1].forget()
		st.close(ctx, statusCancelled)
		return nil, reply{}, pathError(op, p, err)
	}
	res, _, err := ws[0].wait(ctx)
	if err == nil {
		err = replyError(res, p)
	}
	if err == nil && (res.Type != wire.KindControl || res.Method != "open") {
		err = protocolError("storage.%s answered %q to an open", tool, res.Type)
	}
	if err != nil {
		return fail(err)
	}
	if res, _, err = ws[1].wait(ctx); err == nil {
		err = replyError(res, p)
	}
	if err != nil {
		return fail(err)
	}
	r, err := st.next(ctx)
	if err != nil {
		return fail(err)
	}
	return st, r, nil
}

// send sends a request chunk and waits for its answer.
func (st *stream) send(ctx context.Context, c wire.Content, payload []byte) error {
	m, err := wire.Encode(0, wire.TypeRequestChunk, wire.Chunk{ToolCallID: st.id, Chunk: c}, payload)
	if err != nil {
		return err
	}
	return st.sendEncoded(ctx, m)
}

// sendEncoded sends an encoded request chunk and waits for its answer.
func (st *stream) sendEncoded(ctx context.Context, m wire.Encoded) error {
	w, err := st.k.post(ctx, m)
	if err != nil {
		return err
	}
	res, _, err := w.wait(ctx)
	if err != nil {
		return err
	}
	return replyError(res, st.p)
}

// next waits for the stream's next response chunk. A chunk that arrived
// is taken even when the connection has ended since.
func (st *stream) next(ctx context.Context) (reply, error) {
	select {
	case r := <-st.in.ch:
		return r, nil
	default:
	}
	select {
	case r := <-st.in.ch:
		return r, nil
	case <-st.in.broken:
		return reply{}, protocolError("the server sent response chunks the stream did not pull")
	case <-st.k.ctx.Done():
		select {
		case r := <-st.in.ch:
			return r, nil
		default:
		}
		return reply{}, st.k.cause()
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// close sends the stream's closing chunk with status (the server answers
// it whether or not the stream still runs), on a context of its own so
// that an ended ctx still lets the server go, and forgets the stream.
func (st *stream) close(ctx context.Context, status int) {
	defer st.k.closeInbox(st.id)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	chunk := wire.Content{Type: wire.KindControl, Method: "close", StatusCode: status}
	for {
		err := st.send(ctx, chunk, nil)
		var re *Error
		if !errors.As(err, &re) || re.Code != 429 {
			return
		}
		t := time.NewTimer(closeRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		case <-st.k.ctx.Done():
			t.Stop()
			return
		}
	}
}

// chunkError is the error of a response chunk that is not what the
// stream expects at that point.
func (st *stream) chunkError(r reply, expected string) error {
	if err := replyError(r.c, st.p); err != nil {
		return err
	}
	kind, _ := r.c.Headers["kind"].(string)
	return protocolError("a %s %s chunk where %s was expected", r.c.Type, kind, expected)
}

// Upload streams everything r yields to the file at p, following the
// server's pull flow control (at most one chunk of Options.ChunkSize in
// flight), and returns the Entry of the file written: Name, Path and
// Size (ModTime is zero: the protocol's answer carries none; Stat for
// it). opts mean what they mean to Engine.Upload: Overwrite replaces the
// file, Exclusive refuses an existing one (fs.ErrExist), neither appends
// (from a server that speaks roomstore's append extension, as
// roomserver does; any other yields errors.ErrUnsupported, since the
// protocol's upload can only create or replace), and Size, when
// positive, is announced so that the server refuses another number of
// bytes (and a quota refuses the upload before its first byte).
// IfMatch and IfNoneMatch make the upload conditional, as for
// Engine.Upload: the server checks them when it opens the file and again
// atomically with the commit, and refuses with roomstore.ErrPrecondition
// (the file keeps the other writer's content); a server that does not
// speak roomstore's preconditions extension could not honour them, so
// the upload fails with errors.ErrUnsupported before sending anything.
// The MIME type announced comes from the path's extension.
//
// Nothing is visible before the server has committed the last byte: if r
// fails, ctx ends, the connection drops or the client is closed, the
// upload is cancelled and the file keeps its old content. A Read that
// blocks is not interrupted by ctx (as with io.Copy). Errors are
// *fs.PathError values of the operation "upload": fs.ErrExist,
// fs.ErrInvalid for an invalid path, a nil r or a size that does not
// match opts.Size (or IfMatch with Exclusive), roomstore.ErrIsFolder or
// ErrNotFolder where a folder is in the way, roomstore.ErrTooManyHandles,
// ErrQuotaExceeded, ErrPrecondition, errors.ErrUnsupported, r's error
// wrapped, ctx's error, and ErrDisconnected.
func (c *Client) Upload(ctx context.Context, p string, r io.Reader, opts roomstore.OpenOptions) (roomstore.Entry, error) {
	if r == nil {
		return roomstore.Entry{}, pathError("upload", p, &classError{"nil reader", fs.ErrInvalid})
	}
	fill := readFull(r)
	if n, rest, done, err := c.uploadInline(ctx, p, r, opts); done {
		if err != nil {
			return roomstore.Entry{}, err
		}
		cp := clean(p)
		return roomstore.Entry{Name: path.Base(cp), Path: cp, Size: n}, nil
	} else if rest != nil {
		fill = readFull(rest)
	}
	st, first, err := c.beginUpload(ctx, "upload", p, opts)
	if err != nil {
		return roomstore.Entry{}, err
	}
	n, err := st.pump(ctx, fill, first, opts.Size, c.o.ChunkSize)
	if err != nil {
		return roomstore.Entry{}, pathError("upload", p, err)
	}
	cp := clean(p)
	return roomstore.Entry{Name: path.Base(cp), Path: cp, Size: n}, nil
}

// uploadInline uploads what r yields in one round trip, with the
// upload's start (wire.ExtInline), when the server speaks the extension
// and r ends within wire.InlineMax bytes: done then reports that the
// upload happened or failed (err), with the bytes sent. Otherwise, when
// it read some of r, rest yields them and then the rest of r, for the
// streamed upload.
func (c *Client) uploadInline(ctx context.Context, p string, r io.Reader, opts roomstore.OpenOptions) (n int64, rest io.Reader, done bool, err error) {
	if opts.Size > wire.InlineMax || min(wire.InlineMax, c.o.ChunkSize) < 1 {
		return 0, nil, false, nil
	}
	if checkPath("upload", p, p) != nil {
		return 0, nil, false, nil // beginUpload tells
	}
	k, err := c.conn("upload", p)
	if err != nil || !k.has(wire.ExtInline) {
		return 0, nil, false, nil
	}
	start, err := c.uploadStart(k, "upload", p, opts)
	if err != nil {
		return 0, nil, true, err
	}
	start["inline"] = true
	id := rand.Text()
	limit := min(wire.InlineMax, c.o.ChunkSize)
	got := 0
	m, rerr := wire.EncodeFill(0, wire.TypeRequestChunk, wire.Chunk{ToolCallID: id, Chunk: wire.Binary(start)}, limit+1, func(b []byte) (int, error) {
		var err error
		got, err = readFull(r)(b)
		return got, err
	})
	switch {
	case rerr != nil && rerr != io.EOF:
		m.Release()
		return 0, nil, true, pathError("upload", p, fmt.Errorf("reading the upload: %w", rerr))
	case got > limit:
		// Too big to go inline: what was read goes first in the stream.
		head := bytes.Clone(m.Body[len(m.Body)-got:])
		m.Release()
		return 0, io.MultiReader(bytes.NewReader(head), r), false, nil
	case opts.Size > 0 && int64(got) != opts.Size:
		m.Release()
		return 0, nil, true, pathError("upload", p, &classError{fmt.Sprintf("%d bytes where %d were announced", got, opts.Size), fs.ErrInvalid})
	}
	if err := ctx.Err(); err != nil {
		m.Release()
		return 0, nil, true, pathError("upload", p, err)
	}
	st, res, err := c.openWith(ctx, k, "upload", p, "upload", id, m)
	if err != nil {
		return 0, nil, true, err
	}
	defer st.k.closeInbox(st.id) // the server ended the stream
	if res.c.Type != wire.KindControl || res.c.Method != "close" {
		return 0, nil, true, pathError("upload", p, st.chunkError(res, "the close that commits"))
	}
	return int64(got), nil, true, nil
}

// beginUpload opens an upload stream for op on p and returns it with the
// server's first pull, once the server has opened the file; a refusal
// (the file exists, a quota, a right) is returned as the error of op.
// A server that speaks wire.ExtInline gets the start with the open, in
// one round trip.
func (c *Client) beginUpload(ctx context.Context, op, p string, opts roomstore.OpenOptions) (*stream, reply, error) {
	if err := checkPath(op, p, p); err != nil {
		return nil, reply{}, err
	}
	k, err := c.conn(op, p)
	if err != nil {
		return nil, reply{}, err
	}
	start, err := c.uploadStart(k, op, p, opts)
	if err != nil {
		return nil, reply{}, err
	}
	var st *stream
	var first reply
	if k.has(wire.ExtInline) {
		id := rand.Text()
		m, err := wire.Encode(0, wire.TypeRequestChunk, wire.Chunk{ToolCallID: id, Chunk: wire.Binary(start)}, nil)
		if err != nil {
			return nil, reply{}, pathError(op, p, err)
		}
		if st, first, err = c.openWith(ctx, k, op, p, "upload", id, m); err != nil {
			return nil, reply{}, err
		}
	} else {
		if st, err = c.openStream(ctx, k, op, p, "upload"); err != nil {
			return nil, reply{}, err
		}
		if err := st.send(ctx, wire.Binary(start), nil); err != nil {
			st.close(ctx, statusCancelled)
			return nil, reply{}, pathError(op, p, err)
		}
		if first, err = st.next(ctx); err != nil {
			st.close(ctx, statusCancelled)
			return nil, reply{}, pathError(op, p, err)
		}
	}
	if kind, _ := first.c.Headers["kind"].(string); first.c.Type != wire.KindBinary || kind != "pull" {
		st.close(ctx, statusCancelled)
		return nil, reply{}, pathError(op, p, st.chunkError(first, "a pull"))
	}
	return st, first, nil
}

// uploadStart is the start chunk's headers of an upload for op on p
// over k, or the refusal of opts that k's server could not honour.
func (c *Client) uploadStart(k *conn, op, p string, opts roomstore.OpenOptions) (map[string]any, error) {
	start := map[string]any{"kind": "start", "path": p, "name": path.Base(clean(p)), "size": nil}
	switch {
	case opts.Exclusive:
		start["overwrite"] = false
	case opts.Overwrite:
		start["overwrite"] = true
	default:
		// Appending is roomstore's extension: a server that does not
		// speak it would create or refuse instead.
		if !k.has(wire.ExtAppend) {
			return nil, pathError(op, p, &classError{"appending needs a server that speaks roomstore's append extension: pass Overwrite or Exclusive", errors.ErrUnsupported})
		}
		start["overwrite"], start["append"] = false, true
	}
	if opts.IfMatch != "" || opts.IfNoneMatch != "" {
		// A server that does not speak the extension would ignore them,
		// and overwrite what the caller meant to save only over the
		// version it read.
		if _, err := c.connNeeding(op, p, wire.ExtPreconditions, "IfMatch and IfNoneMatch"); err != nil {
			return nil, err
		}
		if opts.IfMatch != "" {
			start["if_match"] = opts.IfMatch
		}
		if opts.IfNoneMatch != "" {
			start["if_none_match"] = opts.IfNoneMatch
		}
	}
	mt := mime.TypeByExtension(path.Ext(p))
	if mt == "" {
		mt = "application/octet-stream"
	}
	start["mime_type"] = mt
	if opts.Size > 0 {
		start["size"] = opts.Size
	}
	return start, nil
}

// readFull is the fill of an upload from r: whole chunks, io.EOF with
// the last bytes (or none).
func readFull(r io.Reader) func([]byte) (int, error) {
	return func(b []byte) (int, error) {
		n, err := io.ReadFull(r, b)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return n, err
	}
}

// pump answers the server's pulls, the first of which has come, with
// the bytes fill puts in each chunk (at most the chunk; io.EOF once there
// are no more), then commits; it returns the bytes sent. Unless it
// committed, the stream is cancelled, and the server keeps nothing.
func (st *stream) pump(ctx context.Context, fill func([]byte) (int, error), first reply, size int64, chunkSize int) (sent int64, err error) {
	committed := false
	defer func() {
		if !committed {
			st.close(ctx, statusCancelled)
		} else {
			st.k.closeInbox(st.id)
		}
	}()
	data := wire.Chunk{ToolCallID: st.id, Chunk: wire.Binary(map[string]any{"kind": "data"})}
	closed := false // the closing chunk went out: the server commits
	ch := first
	for {
		switch kind, _ := ch.c.Headers["kind"].(string); {
		case ch.c.Type == wire.KindBinary && kind == "pull" && !closed:
			n := chunkSize
			if v, ok := ch.c.Headers["chunk_size"].(float64); ok && v >= 1 {
				n = min(n, int(min(v, float64(chunkSize))))
			} else {
				n = min(n, defaultPull)
			}
			// The bytes are read straight into the message that carries
			// them.
			m := 0
			msg, rerr := wire.EncodeFill(0, wire.TypeRequestChunk, data, n, func(b []byte) (int, error) {
				var err error
				m, err = fill(b)
				return m, err
			})
			if rerr != nil && rerr != io.EOF {
				msg.Release()
				return sent, fmt.Errorf("reading the upload: %w", rerr)
			}
			if err := ctx.Err(); err != nil {
				msg.Release()
				return sent, err
			}
			if m > 0 {
				if err := st.sendEncoded(ctx, msg); err != nil {
					return sent, err
				}
				sent += int64(m)
				break // the next pull asks for more, or for the close
			}
			msg.Release()
			if size > 0 && sent != size {
				return sent, &classError{fmt.Sprintf("%d bytes where %d were announced", sent, size), fs.ErrInvalid}
			}
			if err := st.send(ctx, wire.Control("close"), nil); err != nil {
				return sent, err
			}
			closed = true
		case ch.c.Type == wire.KindControl && ch.c.Method == "close" && closed:
			committed = true
			return sent, nil
		default:
			return sent, st.chunkError(ch, "a pull, or the close that commits")
		}
		if ch, err = st.next(ctx); err != nil {
			return sent, err
		}
	}
}

// Handle is an open write to one file of the room, made by Open: the
// remote twin of the engine's Handle, built on the protocol's upload
// stream (so it works with any server of the 0.30 protocol and later).
// Its bytes stay invisible until Close commits them; Abort, a failure of
// the upload, the end of Open's context, the connection dropping or
// Client.Close discard them, as does the server when the handle takes no
// byte for its idle limit (roomserver.Options.StreamIdle, 2 minutes by
// default), as an engine's handle is discarded after WithHandleTimeout.
// Each Write's bytes go out as soon as the server pulls, a chunk at most
// at a time. Write, Close and Abort may be called from several
// goroutines (Writes one after the other, each Write's bytes together);
// Close or Abort every handle, as a file.
type Handle struct {
	p   string
	max int // bytes staged at most: a chunk

	wmu      sync.Mutex // one Write at a time, so that each Write's bytes stay together
	mu       sync.Mutex
	buf      []byte // staged, not yet sent
	closing  bool   // Close was called: the rest goes out, then the commit
	finished bool   // Close or Abort was called
	err      error  // why the upload ended, once it has (errCommitted: it committed)

	more  chan struct{} // (1) bytes were staged, or Close was called
	room  chan struct{} // (1) staged bytes were taken
	abort chan struct{} // closed by Abort
	done  chan struct{} // closed once the upload has ended
}

// errAborted ends the upload of an aborted Handle; errCommitted is the
// end of one that committed.
var (
	errAborted   = errors.New("handle aborted")
	errCommitted = errors.New("committed")
)

// Open opens the file at p for writing, as Engine.Open: opts.Overwrite
// replaces it at Close, opts.Exclusive refuses an existing file
// (fs.ErrExist, at Open), and neither appends at Close (from a server
// that speaks roomstore's append extension; any other yields
// errors.ErrUnsupported); a positive opts.Size is announced, so that
// Close fails when another number of bytes was written; opts.IfMatch and
// IfNoneMatch are checked at Open and again at Close, as Upload says
// (roomstore.ErrPrecondition from either). ctx bounds the
// handle's whole life: when it ends, the handle is aborted. Open returns
// once the server has opened the file, so that its refusals (a right,
// a quota, too many handles) are Open's errors, *fs.PathError values of
// the operation "open".
func (c *Client) Open(ctx context.Context, p string, opts roomstore.OpenOptions) (*Handle, error) {
	st, first, err := c.beginUpload(ctx, "open", p, opts)
	if err != nil {
		return nil, err
	}
	h := &Handle{p: p, max: c.o.ChunkSize, more: make(chan struct{}, 1), room: make(chan struct{}, 1), abort: make(chan struct{}), done: make(chan struct{})}
	go func() {
		_, err := st.pump(ctx, func(b []byte) (int, error) { return h.take(ctx, st.k, b) }, first, opts.Size, c.o.ChunkSize)
		if err == nil {
			err = errCommitted
		}
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
		close(h.done)
	}()
	return h, nil
}

// signal wakes the one waiting on ch, if any.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// take moves the staged bytes (at most len(b)) into b for the next
// chunk, waiting for some; io.EOF once Close was called and all went
// out. It fails when the handle is aborted, its context ends or its
// connection does.
func (h *Handle) take(ctx context.Context, k *conn, b []byte) (int, error) {
	for {
		h.mu.Lock()
		if n := copy(b, h.buf); n > 0 {
			h.buf = h.buf[:copy(h.buf, h.buf[n:])]
			h.mu.Unlock()
			signal(h.room)
			return n, nil
		}
		closing := h.closing
		h.mu.Unlock()
		if closing {
			return 0, io.EOF
		}
		select {
		case <-h.more:
		case <-h.abort:
			return 0, errAborted
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-k.ctx.Done():
			return 0, k.cause()
		}
	}
}

// Path returns the path the handle writes, as given to Open.
func (h *Handle) Path() string { return h.p }

// Write stages b: it returns once every byte is staged (at most a chunk
// waits in memory; Write waits for the server to take the bytes beyond
// that). After a failure of the upload it returns that failure, and
// after Close or Abort fs.ErrClosed, as *fs.PathError values of the
// operation "write"; the file then keeps its old content.
func (h *Handle) Write(b []byte) (int, error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	n := 0
	for {
		h.mu.Lock()
		switch {
		case h.finished || h.err == errCommitted:
			h.mu.Unlock()
			return n, pathError("write", h.p, fs.ErrClosed)
		case h.err != nil:
			err := h.err
			h.mu.Unlock()
			return n, pathError("write", h.p, err)
		}
		k := min(len(b), h.max-len(h.buf))
		h.buf = append(h.buf, b[:k]...)
		b, n = b[k:], n+k
		h.mu.Unlock()
		if k > 0 {
			signal(h.more)
		}
		if len(b) == 0 {
			return n, nil
		}
		select {
		case <-h.room:
		case <-h.done:
		}
	}
}

// Close commits what was written and returns once the server has (the
// file is then visible, and its event published), or returns why it
// could not: the upload's failure (the file keeps its old content), or
// fs.ErrClosed for a handle already closed or aborted; *fs.PathError
// values of the operation "close".
func (h *Handle) Close() error {
	h.mu.Lock()
	if h.finished {
		h.mu.Unlock()
		return pathError("close", h.p, fs.ErrClosed)
	}
	h.finished, h.closing = true, true
	h.mu.Unlock()
	signal(h.more)
	<-h.done
	if h.err != errCommitted {
		return pathError("close", h.p, h.err)
	}
	return nil
}

// Abort discards what was written: the file keeps its old content. It
// returns once the server has been told, or fs.ErrClosed (an
// *fs.PathError of the operation "abort") for a handle already closed or
// aborted.
func (h *Handle) Abort() error {
	h.mu.Lock()
	if h.finished {
		h.mu.Unlock()
		return pathError("abort", h.p, fs.ErrClosed)
	}
	h.finished = true
	h.mu.Unlock()
	close(h.abort)
	<-h.done
	return nil
}

// Reader streams one file from the room with the protocol's pull flow
// control: each Read that finds no bytes buffered takes the next chunk
// (of at most Options.ChunkSize), pulling it if no pull is under way and,
// when the server announced its chunk size, the one after it too. It is
// an io.ReadCloser for one goroutine at a time; Close may also be called
// from another goroutine to stop a Read. The caller closes it.
type Reader struct {
	st     *stream
	ctx    context.Context
	cancel context.CancelCauseFunc // Close cancels with errReaderClosed
	entry  roomstore.Entry
	size   int64 // the bytes the server streams
	mime   string
	skip   int64 // bytes to drop before the first Read returns any (a range the server did not cut)
	left   int64 // bytes Read may still return (-1: all)

	mu     sync.Mutex    // Read and Close
	buf    []byte        // received, not yet read
	msg    *wire.Message // what buf lies in, released once read
	got    int64         // bytes received
	err    error         // sticky: io.EOF or the failure
	closed bool

	// Pulls run one ahead when the server announced its chunk size: the
	// next pull goes out once the last one was answered, before its data
	// has arrived, so that the server reads while the data travels.
	pushed bool    // the server sends every byte unpulled (wire.ExtInline)
	chunk  int64   // bytes per pull as the server announced them, or 0
	asked  int64   // bytes pulled so far (with chunk)
	pulls  int     // pulls whose data has not arrived
	ack    *waiter // the last pull sent, not yet answered
}

// OpenReader opens length bytes of the file at p from offset (length <
// 0: to the end) for streaming, as Engine.OpenReader. ctx bounds the
// opening and every later Read. The Reader's Entry gives the file's
// Name, Path and Size (the whole file's, of the version it streams) and
// MimeType its MIME type. A server that speaks roomstore's range
// extension (roomserver) streams only the range; from any other the
// bytes before offset are read and dropped. A missing file yields
// fs.ErrNotExist, a folder roomstore.ErrIsFolder, an invalid path or an
// offset below zero or past the end fs.ErrInvalid, all as *fs.PathError
// values of the operation "read", as are the errors of Read; a length
// past the end is cut at the end.
func (c *Client) OpenReader(ctx context.Context, p string, offset, length int64) (*Reader, error) {
	if offset < 0 {
		return nil, pathError("read", p, &classError{fmt.Sprintf("negative offset %d", offset), fs.ErrInvalid})
	}
	return c.openReader(ctx, "read", p, "", offset, length, false)
}

// openReader opens a download for op: of the past version named
// version (wire.ExtHistory), or of the file's current one when that is
// "". From a server that speaks wire.ExtInline, the start goes with the
// open, and with push a file that fits in one chunk comes with the
// start's answer, the server's stream ending at once (a Reader that is
// held open then holds none of the server's streams).
func (c *Client) openReader(ctx context.Context, op, p, version string, offset, length int64, push bool) (*Reader, error) {
	if err := checkPath(op, p, p); err != nil {
		return nil, err
	}
	k, err := c.conn(op, p)
	if err != nil {
		return nil, err
	}
	ranged := (offset > 0 || length >= 0) && k.has(wire.ExtRange)
	h := downloadStart(p, c.o.ChunkSize, version, ranged, offset, length)
	var st *stream
	var rd *Reader
	if k.has(wire.ExtInline) {
		if push {
			h["push"] = true
		}
		id := rand.Text()
		var m wire.Encoded
		if m, err = wire.Encode(0, wire.TypeRequestChunk, wire.Chunk{ToolCallID: id, Chunk: wire.Binary(h)}, nil); err != nil {
			return nil, pathError(op, p, err)
		}
		var first reply
		if st, first, err = c.openWith(ctx, k, op, p, "download", id, m); err != nil {
			return nil, err
		}
		rd, err = st.started(first)
	} else {
		if st, err = c.openStream(ctx, k, op, p, "download"); err != nil {
			return nil, err
		}
		rd, err = st.start(ctx, h)
	}
	if err == nil && !ranged && offset > rd.entry.Size {
		err = &classError{fmt.Sprintf("offset %d past the end (%d bytes)", offset, rd.entry.Size), fs.ErrInvalid}
	}
	if err != nil {
		st.close(ctx, statusDone)
		return nil, pathError(op, p, err)
	}
	rd.ctx, rd.cancel = context.WithCancelCause(ctx)
	rd.left = -1
	if !ranged {
		rd.skip = offset
		if length >= 0 {
			rd.left = length
		}
	}
	return rd, nil
}

// downloadStart is the start chunk's headers of a download of p: of its
// past version named version, unless that is ""; a range of it, when
// ranged.
func downloadStart(p string, chunkSize int, version string, ranged bool, offset, length int64) map[string]any {
	h := map[string]any{"kind": "start", "path": p, "chunk_size": chunkSize}
	if version != "" {
		h["version"] = version
	}
	if ranged {
		h["offset"] = offset
		if length >= 0 {
			h["length"] = length
		}
	}
	return h
}

// start sends the download's start chunk, headers h, and reads the
// server's start chunk.
func (st *stream) start(ctx context.Context, h map[string]any) (*Reader, error) {
	if err := st.send(ctx, wire.Binary(h), nil); err != nil {
		return nil, err
	}
	ch, err := st.next(ctx)
	if err != nil {
		return nil, err
	}
	return st.started(ch)
}

// started reads the server's start chunk ch into a Reader.
func (st *stream) started(ch reply) (*Reader, error) {
	if kind, _ := ch.c.Headers["kind"].(string); ch.c.Type != wire.KindBinary || kind != "start" {
		return nil, st.chunkError(ch, "the start of the download")
	}
	name, ok1 := ch.c.Headers["name"].(string)
	mt, ok2 := ch.c.Headers["mime_type"].(string)
	size, ok3 := ch.c.Headers["size"].(float64)
	if !ok1 || !ok2 || !ok3 || size < 0 || size != float64(int64(size)) {
		return nil, protocolError("a download start without a name, a mime_type and a whole size")
	}
	p := clean(st.p)
	if name == "" {
		name = path.Base(p)
	}
	rd := &Reader{st: st, entry: roomstore.Entry{Name: name, Path: p, Size: int64(size)}, size: int64(size), mime: mt}
	// roomserver also names the version streamed, and the whole file's
	// size of a range; other servers do not.
	if etag, ok := ch.c.Headers["etag"].(string); ok {
		rd.entry.ETag = etag
	}
	if at, ok := ch.c.Headers["updated_at"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			rd.entry.ModTime = t
		}
	}
	if n, ok := ch.c.Headers["total_size"].(float64); ok && n >= size && n == float64(int64(n)) {
		rd.entry.Size = int64(n)
	}
	if n, ok := ch.c.Headers["chunk_size"].(float64); ok && n >= 1 && n == float64(int64(n)) {
		rd.chunk = int64(n)
	}
	// wire.ExtInline: the data and the close follow unpulled, and the
	// server has ended the stream.
	rd.pushed, _ = ch.c.Headers["push"].(bool)
	return rd, nil
}

// Entry describes the file being read: Name, Path and Size (the whole
// file's, as announced) and, from a server that names the version it
// streams (as roomserver does), ETag and ModTime; from others they are
// zero.
func (r *Reader) Entry() roomstore.Entry { return r.entry }

// Size is the file's size in bytes, as Entry().Size.
func (r *Reader) Size() int64 { return r.entry.Size }

// MimeType is the file's MIME type as the server announced it.
func (r *Reader) MimeType() string { return r.mime }

// Read reads the next bytes of the file, pulling a chunk from the server
// when none is buffered. At the end it returns io.EOF; any other error is
// an *fs.PathError of the operation "read" on the file's path: the
// server's error, the stream ending short of the announced size or going
// past it (ErrProtocol, io.ErrUnexpectedEOF), the connection dropping
// (ErrDisconnected), ctx ending, or a closed Reader (fs.ErrClosed).
func (r *Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, pathError("read", r.st.p, errReaderClosed)
	}
	for r.skip > 0 && r.err == nil {
		if len(r.buf) == 0 {
			if r.err = r.pull(); r.err != nil {
				break
			}
		}
		n := int(min(int64(len(r.buf)), r.skip))
		r.buf, r.skip = r.buf[n:], r.skip-int64(n)
		if len(r.buf) == 0 {
			r.release()
		}
	}
	if r.left == 0 {
		return 0, io.EOF
	}
	if len(r.buf) == 0 && r.err == nil {
		r.err = r.pull()
	}
	if len(r.buf) > 0 {
		if r.left > 0 && int64(len(p)) > r.left {
			p = p[:r.left]
		}
		n := copy(p, r.buf)
		if r.left > 0 {
			r.left -= int64(n)
		}
		r.buf = r.buf[n:]
		if len(r.buf) == 0 {
			r.release()
		}
		return n, nil
	}
	if r.err != io.EOF && context.Cause(r.ctx) == errReaderClosed {
		// Close began while this Read waited: report that, not the
		// cancellation it caused.
		r.err = pathError("read", r.st.p, errReaderClosed)
	}
	return 0, r.err
}

// errReaderClosed fails the Reads of a closed Reader.
var errReaderClosed error = &classError{"reader closed", fs.ErrClosed}

// pull fetches the next chunk into buf. It returns io.EOF once every
// announced byte has arrived, or the failure (an *fs.PathError).
func (r *Reader) pull() error {
	fail := func(err error) error { return pathError("read", r.st.p, err) }
	if r.got >= r.size {
		if r.ack != nil {
			// Pulls never run past the size announced; one that did is
			// the server's chunks breaking the size it announced.
			r.ack.forget()
			return fail(protocolError("a pull past the end of the download"))
		}
		return io.EOF
	}
	if r.pulls == 0 && !r.pushed {
		if err := r.postPull(); err != nil {
			return fail(err)
		}
	}
	if r.ack != nil {
		res, _, err := r.ack.wait(r.ctx)
		r.ack = nil
		if err == nil {
			err = replyError(res, r.st.p)
		}
		if err != nil {
			return fail(err)
		}
		if r.chunk > 0 && r.asked < r.size {
			if err := r.postPull(); err != nil {
				return fail(err)
			}
		}
	}
	ch, err := r.st.next(r.ctx)
	if err != nil {
		return fail(err)
	}
	switch kind, _ := ch.c.Headers["kind"].(string); {
	case ch.c.Type == wire.KindBinary && kind == "data":
		if !r.pushed {
			r.pulls--
		}
		if int64(len(ch.data)) > r.size-r.got {
			return fail(protocolError("more bytes than the %d announced", r.size))
		}
		if len(ch.data) == 0 {
			return fail(protocolError("an empty data chunk"))
		}
		r.got += int64(len(ch.data))
		r.buf, r.msg = ch.data, ch.msg
		return nil
	case ch.c.Type == wire.KindControl && ch.c.Method == "close":
		return fail(fmt.Errorf("the download ended after %d of %d bytes: %w", r.got, r.size, io.ErrUnexpectedEOF))
	default:
		return fail(r.st.chunkError(ch, "data"))
	}
}

// release gives the buffer of the chunk read back for reuse.
func (r *Reader) release() {
	if r.msg != nil {
		r.msg.Release()
		r.msg = nil
	}
}

// postPull sends a pull without waiting for its answer.
func (r *Reader) postPull() error {
	m, err := wire.Encode(0, wire.TypeRequestChunk, wire.Chunk{ToolCallID: r.st.id, Chunk: wire.Binary(map[string]any{"kind": "pull"})}, nil)
	if err != nil {
		return err
	}
	w, err := r.st.k.post(r.ctx, m)
	if err != nil {
		return err
	}
	r.ack = w
	r.pulls++
	r.asked += r.chunk
	return nil
}

// Close ends the stream (the server is told, whether or not every byte
// was read) and stops a Read waiting in another goroutine. It returns
// nil; later Reads fail with fs.ErrClosed, a second Close does nothing.
func (r *Reader) Close() error {
	r.cancel(errReaderClosed)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.buf = nil
	r.release()
	if r.ack != nil {
		r.ack.forget()
		r.ack = nil
	}
	if r.pushed || r.got == r.size && r.st.k.has(wire.ExtInline) {
		// The server ended the stream: it pushed every byte, or sent the
		// last and its close.
		r.st.k.closeInbox(r.st.id)
		return nil
	}
	r.st.close(r.ctx, statusDone)
	return nil
}

// Download returns the whole file at p with its name, clean path, MIME
// type and ModTime (as Reader.Entry has it). Use OpenReader
// for files too big to hold in memory. Errors are those of OpenReader
// and Read, under the operation "download".
func (c *Client) Download(ctx context.Context, p string) (*roomstore.File, error) {
	r, err := c.openReader(ctx, "download", p, "", 0, -1, true)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, min(r.size, 64<<20)+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, pathError("download", p, err)
	}
	return &roomstore.File{Name: r.entry.Name, Path: r.entry.Path, MimeType: r.mime, Data: buf.Bytes(), Size: int64(buf.Len()), ModTime: r.entry.ModTime}, nil
}
