package roomserver

import (
	"context"
	"encoding/json"
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

// The handle era: MeshAgent clients before 0.30 send one message type per
// storage call (storage.open, storage.write, ...) rather than
// room.invoke_tool. Each is answered on the same connection, with the
// same engine calls, grants and budgets as the toolkit's.

// isLegacy reports whether typ is a handle-era message.
func isLegacy(typ string) bool {
	switch typ {
	case wire.TypeLegacyExists, wire.TypeLegacyStat, wire.TypeLegacyOpen, wire.TypeLegacyWrite,
		wire.TypeLegacyClose, wire.TypeLegacyDownload, wire.TypeLegacyDownloadURL, wire.TypeLegacyList,
		wire.TypeLegacyDelete:
		return true
	}
	return false
}

// extensions are what the server names in room_ready for a client that
// asked for roomstore's extensions.
var extensions = []string{wire.ExtAppend, wire.ExtRange, wire.ExtVersion, wire.ExtOverflow, wire.ExtResume, wire.ExtPreconditions, wire.ExtHistory, wire.ExtInline}

// legacyEpoch stands for the time of a folder, which the store does not
// keep, where the handle era's replies need one.
const legacyEpoch = "1970-01-01T00:00:00Z"

// legacyEntryOf is an engine entry as the handle era describes it.
func legacyEntryOf(e roomstore.Entry) wire.LegacyEntry {
	t := legacyEpoch
	if !e.ModTime.IsZero() {
		t = e.ModTime.UTC().Format(time.RFC3339Nano)
	}
	return wire.LegacyEntry{Name: e.Name, IsFolder: e.IsFolder, CreatedAt: t, UpdatedAt: t}
}

// legacyHandle is a handle-era handle: an engine handle (its ID is the
// one the client holds) whose writes and close run one at a time in the
// order they came, on a goroutine of its own. It counts as a stream in
// the connection's, the identity's and the server's budgets, and as a
// handle in the room's.
type legacyHandle struct {
	h     *roomstore.Handle
	mu    sync.Mutex // orders deliveries with the handle's end
	done  bool
	ops   chan legacyOp
	ended chan struct{}
}

// legacyOp is a storage.write or storage.close waiting for its handle.
type legacyOp struct {
	id   uint64
	typ  string
	data []byte
	msg  *wire.Message
}

// legacyArgs are the arguments of every handle-era call.
type legacyArgs struct {
	Path      *string `json:"path"`
	Overwrite *bool   `json:"overwrite"`
	Handle    any     `json:"handle"`
}

// legacyCall handles one handle-era message.
func (c *conn) legacyCall(m *wire.Message) error {
	c.legacy.Store(true)
	name := m.Type
	underWay := name == wire.TypeLegacyWrite || name == wire.TypeLegacyClose
	if ok, err := c.admitting(m.ID, underWay); !ok {
		return err
	}
	body, payload, err := m.Split()
	if err != nil {
		return c.reply(m.ID, wire.Error(CodeBadRequest, "malformed message: "+err.Error()), nil)
	}
	var a legacyArgs
	if err := json.Unmarshal(body, &a); err != nil {
		return c.reply(m.ID, wire.Error(CodeBadRequest, "invalid JSON in "+name), nil)
	}
	switch name {
	case wire.TypeLegacyWrite, wire.TypeLegacyClose:
		return c.handleOp(m, name, a, payload)
	case wire.TypeLegacyOpen:
		if a.Path == nil {
			return c.reply(m.ID, wire.Error(CodeBadRequest, "storage.open needs a path"), nil)
		}
		overwrite := a.Overwrite != nil && *a.Overwrite
		return c.spawn(m.ID, false, func() wire.Content { return c.legacyOpen(*a.Path, overwrite) })
	case wire.TypeLegacyDownload:
		if a.Path == nil {
			return c.reply(m.ID, wire.Error(CodeBadRequest, "storage.download needs a path"), nil)
		}
		return c.spawnDownload(m.ID, *a.Path)
	}
	tool := name[len("storage."):] // exists, stat, list, delete, download_url: the toolkit's
	return c.spawn(m.ID, tool == "list", func() wire.Content { return c.call(tool, body, true) })
}

// legacyOpen opens a handle: overwrite replaces the file at close, and
// without it close appends to the file (creating it), as the seed's
// protocol says.
func (c *conn) legacyOpen(p string, overwrite bool) wire.Content {
	c.mu.Lock()
	code, text := c.takeSlotLocked("handles and streams")
	c.mu.Unlock()
	if code != 0 {
		return wire.Error(code, text)
	}
	fail := func(res wire.Content) wire.Content {
		c.dropSlot()
		return res
	}
	share, ok := c.rm.takeHandle(c.idst.name)
	if !ok {
		c.s.lim.refuse(BudgetRoomHandles)
		return fail(wire.Error(CodeTooMany, fmt.Sprintf("open %s: too many handles open in this room (at most %d per identity)", truncate(p, 256), share)))
	}
	h, err := c.rm.eng.Open(c.engineCtx(), p, roomstore.OpenOptions{Overwrite: overwrite})
	if err != nil {
		c.rm.dropHandle(c.idst.name)
		return fail(c.errorReply("storage.open", err))
	}
	lh := &legacyHandle{h: h, ops: make(chan legacyOp, 1), ended: make(chan struct{})}
	c.mu.Lock()
	c.handles[h.ID()] = lh
	c.work.Add(1) // within this call's own count: serve's Wait cannot have returned
	c.mu.Unlock()
	go c.runHandle(lh)
	return wire.JSONOf(map[string]string{"handle": h.ID()})
}

// handleOp hands a write or a close to its handle, which must be one
// this connection opened.
func (c *conn) handleOp(m *wire.Message, typ string, a legacyArgs, payload []byte) error {
	id, ok := a.Handle.(string)
	if !ok {
		m.Release()
		return c.reply(m.ID, wire.Error(CodeBadRequest, typ+" needs a handle (a string)"), nil)
	}
	c.mu.Lock()
	lh := c.handles[id]
	c.mu.Unlock()
	if lh == nil {
		m.Release()
		return c.reply(m.ID, c.foreignHandle(typ, id), nil)
	}
	op := legacyOp{id: m.ID, typ: typ, data: payload, msg: m}
	ended := wire.Error(CodeNotFound, typ+": the handle has ended")
	lh.mu.Lock()
	if lh.done {
		lh.mu.Unlock()
		m.Release()
		return c.reply(m.ID, ended, nil)
	}
	select {
	case lh.ops <- op:
		lh.mu.Unlock()
		return nil
	default:
	}
	lh.mu.Unlock()
	// A call sent before the previous one was answered waits for it, and
	// so does the connection, as for MaxRequests: the handle's calls run
	// in the order they came, and a participant holds no more than one
	// waiting per handle.
	select {
	case lh.ops <- op:
	case <-lh.ended:
		m.Release()
		return c.reply(m.ID, ended, nil)
	case <-c.ctx.Done():
		m.Release()
		return c.ctx.Err()
	}
	// The handle may have ended while op went in: finishHandle, which drains
	// under lh.mu once done is set, answered it, or this does.
	lh.mu.Lock()
	if lh.done {
		lh.drainLocked(c)
	}
	lh.mu.Unlock()
	return nil
}

// foreignHandle is the refusal of a handle id this connection did not
// open (or that has ended): another participant's is refused without
// naming its file.
func (c *conn) foreignHandle(typ, id string) wire.Content {
	_, err := c.rm.eng.Handle(c.engineCtx(), id)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return wire.Error(CodeForbidden, typ+": the handle belongs to another participant")
	case errors.Is(err, fs.ErrInvalid):
		return wire.Error(CodeBadRequest, typ+": malformed handle")
	}
	return wire.Error(CodeNotFound, typ+": no open handle with that id (closed, aborted, or never opened here)")
}

// runHandle runs a handle's writes and its close, in order. A handle
// that gets no call for StreamIdle is aborted, and so is one whose
// connection ends: its bytes are never visible.
func (c *conn) runHandle(lh *legacyHandle) {
	defer c.work.Done()
	e := c.rm.eng
	ctx := c.engineCtx()
	committed := false
	// end ends the handle and gives back its budgets, before the answer
	// that ends it goes out: a client that has its answer may open the
	// next handle at once.
	defer close(lh.ended) // after end and the last answer: see finishHandle
	end := sync.OnceFunc(func() {
		// Calls waiting for the handle are answered before an abort, which
		// may take its time: the connection's reader may be one of them.
		c.finishHandle(lh)
		if !committed {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = e.Abort(actx, lh.h)
			cancel()
		}
		c.rm.dropHandle(c.idst.name)
		c.dropSlot()
	})
	defer end()
	idle := time.NewTimer(c.s.o.StreamIdle)
	defer idle.Stop()
	for {
		var op legacyOp
		select {
		case op = <-lh.ops:
		case <-idle.C:
			c.s.log.Info("handle aborted after idling", "room", c.rm.name, "participant", c.id, "path", lh.h.Path(), "idle", c.s.o.StreamIdle)
			return
		case <-c.ctx.Done():
			return
		}
		idle.Reset(c.s.o.StreamIdle)
		if op.typ == wire.TypeLegacyWrite {
			err := e.Write(ctx, lh.h, op.data)
			op.msg.Release() // the engine keeps no slice of what it was given
			if err != nil {
				end() // the engine discarded the handle
				_ = c.reply(op.id, c.errorReply(op.typ, err), nil)
				return
			}
			_ = c.reply(op.id, wire.Empty(), nil)
			continue
		}
		// The close commits: a client that goes away meanwhile does not
		// cut it short.
		op.msg.Release()
		committed = true
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		err := e.Close(cctx, lh.h)
		cancel()
		res := wire.Empty()
		if err != nil {
			res = c.errorReply(op.typ, err)
		}
		end()
		_ = c.reply(op.id, res, nil)
		return
	}
}

// finishHandle ends a handle for its calls: it is no longer found and
// the calls that came for it as it ended are answered. Those that wait
// for it are let go when runHandle closes lh.ended, after the answer that
// ended it is queued, so that a server shutting down, which waits for
// ended, closes the connection only behind that answer.
func (c *conn) finishHandle(lh *legacyHandle) {
	c.mu.Lock()
	delete(c.handles, lh.h.ID())
	c.mu.Unlock()
	lh.mu.Lock()
	lh.done = true
	lh.drainLocked(c)
	lh.mu.Unlock()
}

// drainLocked answers the calls left for a handle that has ended; lh.mu
// is held.
func (lh *legacyHandle) drainLocked(c *conn) {
	for len(lh.ops) > 0 {
		op := <-lh.ops
		op.msg.Release()
		_ = c.reply(op.id, wire.Error(CodeNotFound, op.typ+": the handle has ended"), nil)
	}
}

// spawnDownload answers storage.download with the whole file in one
// reply, {type:"file", name, mime_type} and the bytes, read straight into
// the message once its place in the send buffer is taken. A file over
// MaxMessageSize is refused (413) with a pointer to storage.download_url.
func (c *conn) spawnDownload(id uint64, p string) error {
	return c.spawn(id, false, func() wire.Content {
		// The file's place in the send buffer is taken before it is
		// opened, so that a participant's downloads hold no more than its
		// buffer, and no reader (on disk a descriptor) waits for room.
		ctx := c.engineCtx()
		bound := int64(c.s.o.MaxMessageSize)
		tooBig := func(size int64) wire.Content {
			return wire.Error(CodeTooLarge, fmt.Sprintf("download %s: %d bytes, over the %d a storage.download reply carries: use storage.download_url", truncate(p, 256), size, bound))
		}
		want := int64(0)
		if ent, err := c.rm.eng.Stat(ctx, p); err == nil && !ent.IsFolder { // else OpenReader says what is wrong
			if ent.Size > bound {
				return tooBig(ent.Size)
			}
			want = min(ent.Size+legacyOverhead+queueEntry, int64(c.s.o.SendBuffer))
			if err := c.buf.acquire(c.ctx, want); err != nil {
				return wire.Content{} // the connection ended: no reply goes out
			}
		}
		r, err := c.rm.eng.OpenReader(ctx, p, 0, -1)
		if err != nil {
			c.buf.release(want)
			return c.errorReply("storage.download", asOp("download", err))
		}
		ent := r.Entry()
		if ent.Size > bound { // replaced since the Stat
			r.Close()
			c.buf.release(want)
			return tooBig(ent.Size)
		}
		// A message of its own size, so that what it holds is what was
		// taken for it; the file is closed before anything else waits.
		m, err := wire.EncodeFillOwn(id, wire.TypeResponse, wire.File(path.Base(ent.Path), r.MimeType()), int(ent.Size), func(b []byte) (int, error) {
			return io.ReadFull(r, b)
		})
		r.Close()
		if err != nil {
			c.buf.release(want)
			return c.errorReply("storage.download", asOp("download", err))
		}
		// Never wait while holding a place: a file replaced by a bigger
		// one since the Stat takes the little more it needs at once.
		switch held := c.size(m); {
		case held > want:
			c.buf.force(held - want)
			want = held
		case held < want:
			c.buf.release(want - held)
			want = held
		}
		c.queued.Add(want)
		_ = c.enqueue(outMsg{m: m, n: want})
		return wire.Content{} // sent
	})
}

// legacyOverhead bounds what a download reply holds beyond the file's
// bytes: its header frame and its JSON.
const legacyOverhead = 1 << 10

// errorReply is the error reply of a call named op, logged when it is
// internal.
func (c *conn) errorReply(op string, err error) wire.Content {
	ec := errorContent(err)
	if ec.Code == CodeInternal {
		c.s.log.Error("storage call failed", "room", c.rm.name, "participant", c.id, "call", op, "err", err)
	}
	return ec
}
