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

// openStream opens a storage stream of tool for op on p. On failure the
// stream is closed again.
func (c *Client) openStream(ctx context.Context, op, p, tool string) (*stream, error) {
	if err := checkPath(op, p, p); err != nil {
		return nil, err
	}
	k, err := c.conn(op, p)
	if err != nil {
		return nil, err
	}
	st := &stream{k: k, id: rand.Text(), op: op, p: p}
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

// UploadOptions say how Upload treats an existing file and what it
// announces.
type UploadOptions struct {
	// Overwrite replaces an existing file. Without it, an existing file
	// makes Upload fail with fs.ErrExist and stay as it was.
	Overwrite bool
	// Size is the number of bytes the reader yields, when known (> 0);
	// the server then refuses an upload that yields another number. 0
	// announces no size.
	Size int64
	// MimeType is announced to the server (default: from the path's
	// extension, else application/octet-stream).
	MimeType string
}

// Upload streams everything r yields to the file at p, following the
// server's pull flow control (at most one chunk of Options.ChunkSize in
// flight), and returns the Entry of the file written: Name, Path and
// Size (ModTime is zero: the protocol's answer carries none; Stat for
// it). Nothing is visible before the server has committed the last byte:
// if r fails, ctx ends, the connection drops or the client is closed, the
// upload is cancelled and the file keeps its old content. A Read that
// blocks is not interrupted by ctx (as with io.Copy). Errors are
// *fs.PathError values of the operation "upload": fs.ErrExist when the
// file exists and opts.Overwrite is false, fs.ErrInvalid for an invalid
// path, a nil r or a size that does not match opts.Size,
// roomstore.ErrIsFolder or ErrNotFolder where a folder is in the way,
// roomstore.ErrTooManyHandles, r's error wrapped, ctx's error, and
// ErrDisconnected.
func (c *Client) Upload(ctx context.Context, p string, r io.Reader, opts UploadOptions) (roomstore.Entry, error) {
	if r == nil {
		return roomstore.Entry{}, pathError("upload", p, &classError{"nil reader", fs.ErrInvalid})
	}
	st, err := c.openStream(ctx, "upload", p, "upload")
	if err != nil {
		return roomstore.Entry{}, err
	}
	n, err := st.upload(ctx, r, opts, c.o.ChunkSize)
	if err != nil {
		return roomstore.Entry{}, pathError("upload", p, err)
	}
	cp := clean(p)
	return roomstore.Entry{Name: path.Base(cp), Path: cp, Size: n}, nil
}

func (st *stream) upload(ctx context.Context, r io.Reader, opts UploadOptions, chunkSize int) (sent int64, err error) {
	committed := false
	defer func() {
		if !committed {
			st.close(ctx, statusCancelled)
		} else {
			st.k.closeInbox(st.id)
		}
	}()
	mt := opts.MimeType
	if mt == "" {
		if mt = mime.TypeByExtension(path.Ext(st.p)); mt == "" {
			mt = "application/octet-stream"
		}
	}
	var size any
	if opts.Size > 0 {
		size = opts.Size
	}
	start := wire.Binary(map[string]any{"kind": "start", "path": st.p, "overwrite": opts.Overwrite,
		"name": path.Base(st.p), "mime_type": mt, "size": size})
	if err := st.send(ctx, start, nil); err != nil {
		return 0, err
	}
	data := wire.Chunk{ToolCallID: st.id, Chunk: wire.Binary(map[string]any{"kind": "data"})}
	closed := false // the closing chunk went out: the server commits
	for {
		ch, err := st.next(ctx)
		if err != nil {
			return sent, err
		}
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
				m, err = io.ReadFull(r, b)
				return m, err
			})
			if rerr == io.ErrUnexpectedEOF {
				rerr = io.EOF
			}
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
				continue // the next pull asks for more, or for the close
			}
			msg.Release()
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
	}
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
	mime   string

	mu     sync.Mutex    // Read and Close
	buf    []byte        // received, not yet read
	msg    *wire.Message // what buf lies in, released once read
	got    int64         // bytes received
	err    error         // sticky: io.EOF or the failure
	closed bool

	// Pulls run one ahead when the server announced its chunk size: the
	// next pull goes out once the last one was answered, before its data
	// has arrived, so that the server reads while the data travels.
	chunk int64   // bytes per pull as the server announced them, or 0
	asked int64   // bytes pulled so far (with chunk)
	pulls int     // pulls whose data has not arrived
	ack   *waiter // the last pull sent, not yet answered
}

// OpenReader opens the file at p for streaming. ctx bounds the opening
// and every later Read. The Reader's Entry gives the file's Name, Path and
// Size as the server announced them (the size of the version it streams)
// and MimeType its MIME type. A missing file yields fs.ErrNotExist, a
// folder roomstore.ErrIsFolder, an invalid path fs.ErrInvalid, all as
// *fs.PathError values of the operation "read", as are the errors of Read.
func (c *Client) OpenReader(ctx context.Context, p string) (*Reader, error) {
	return c.openReader(ctx, "read", p)
}

func (c *Client) openReader(ctx context.Context, op, p string) (*Reader, error) {
	st, err := c.openStream(ctx, op, p, "download")
	if err != nil {
		return nil, err
	}
	rd, err := st.start(ctx, c.o.ChunkSize)
	if err != nil {
		st.close(ctx, statusDone)
		return nil, pathError(op, p, err)
	}
	rd.ctx, rd.cancel = context.WithCancelCause(ctx)
	return rd, nil
}

// start asks for the file and reads the server's start chunk.
func (st *stream) start(ctx context.Context, chunkSize int) (*Reader, error) {
	if err := st.send(ctx, wire.Binary(map[string]any{"kind": "start", "path": st.p, "chunk_size": chunkSize}), nil); err != nil {
		return nil, err
	}
	ch, err := st.next(ctx)
	if err != nil {
		return nil, err
	}
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
	rd := &Reader{st: st, entry: roomstore.Entry{Name: name, Path: p, Size: int64(size)}, mime: mt}
	// roomserver also names the version streamed; other servers may not.
	if etag, ok := ch.c.Headers["etag"].(string); ok {
		rd.entry.ETag = etag
	}
	if at, ok := ch.c.Headers["updated_at"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			rd.entry.ModTime = t
		}
	}
	if n, ok := ch.c.Headers["chunk_size"].(float64); ok && n >= 1 && n == float64(int64(n)) {
		rd.chunk = int64(n)
	}
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
	if len(r.buf) == 0 && r.err == nil {
		r.err = r.pull()
	}
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
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
	if r.got >= r.entry.Size {
		if r.ack != nil {
			// Pulls never run past the size announced; one that did is
			// the server's chunks breaking the size it announced.
			r.ack.forget()
			return fail(protocolError("a pull past the end of the download"))
		}
		return io.EOF
	}
	if r.pulls == 0 {
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
		if r.chunk > 0 && r.asked < r.entry.Size {
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
		r.pulls--
		if int64(len(ch.data)) > r.entry.Size-r.got {
			return fail(protocolError("more bytes than the %d announced", r.entry.Size))
		}
		if len(ch.data) == 0 {
			return fail(protocolError("an empty data chunk"))
		}
		r.got += int64(len(ch.data))
		r.buf, r.msg = ch.data, ch.msg
		return nil
	case ch.c.Type == wire.KindControl && ch.c.Method == "close":
		return fail(fmt.Errorf("the download ended after %d of %d bytes: %w", r.got, r.entry.Size, io.ErrUnexpectedEOF))
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
	r.st.close(r.ctx, statusDone)
	return nil
}

// Download returns the whole file at p with its name, clean path, MIME
// type and ModTime (as Reader.Entry has it). Use OpenReader
// for files too big to hold in memory. Errors are those of OpenReader
// and Read, under the operation "download".
func (c *Client) Download(ctx context.Context, p string) (*roomstore.File, error) {
	r, err := c.openReader(ctx, "download", p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, min(r.entry.Size, 64<<20)+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, pathError("download", p, err)
	}
	return &roomstore.File{Name: r.entry.Name, Path: r.entry.Path, MimeType: r.mime, Data: buf.Bytes(), Size: int64(buf.Len()), ModTime: r.entry.ModTime}, nil
}
