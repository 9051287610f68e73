package roomstore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"sync"

	"github.com/roomstore/roomstore/internal/telemetry"
	"github.com/roomstore/roomstore/roompath"
)

// Reader streams one version of a file: the one its Entry describes, even
// when commits land while it is read. It is an io.ReadCloser for one
// goroutine at a time; the caller closes it.
type Reader struct {
	rc     io.ReadCloser
	br     *bufio.Reader // set once MimeType peeked at the content
	entry  Entry
	offset int64
	read   bool

	// The OpenReader call, which ends at Close: the bytes returned so far,
	// the first error other than io.EOF, and whether it has ended.
	e     *Engine
	ctx   context.Context
	call  telemetry.Call
	n     int64
	err   error
	ended bool

	mimeOnce sync.Once
	mime     string
}

// OpenReader streams length bytes of the file from offset (length < 0: to
// the end) in constant memory. The Reader's Entry describes the version it
// reads (Size is the whole file's), so a streamed download can send a
// Content-Length and an ETag that match its bytes. An offset below zero or
// past the end yields fs.ErrInvalid, a missing file fs.ErrNotExist, a
// folder ErrIsFolder, and a file the Policy of ctx does not let be read an
// *AccessError; a length past the end is cut at the end.
//
// The call, in Stats, metrics and its span, lasts until the Reader's
// Close (or ends at once when OpenReader fails): its duration is the
// stream's, its bytes those Read returned, and its outcome that of the
// first Read error other than io.EOF, else of Close. A Reader never closed
// is never counted.
func (e *Engine) OpenReader(ctx context.Context, p string, offset, length int64) (_ *Reader, err error) {
	ctx, call := e.tel.Start(ctx, telemetry.OpenReader, p)
	defer call.End(&err) // ends it if OpenReader fails or panics; else the Reader's Close does
	clean, err := e.enter("read", p, roompath.TargetFile)
	if err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if offset < 0 {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("%w: negative offset %d", fs.ErrInvalid, offset)}
	}
	if err := gateOf(ctx).check(Read, clean); err != nil {
		return nil, pathError("read", p, err)
	}
	r, info, err := e.b.Read(ctx, clean, offset, length)
	if err != nil {
		return nil, pathError("read", p, err)
	}
	info.Path = clean
	call.Continue()
	return &Reader{rc: r, entry: entry(info), offset: offset, e: e, ctx: ctx, call: call}, nil
}

// Read reads from the file's version that Entry describes. At the end it
// returns io.EOF; any other error is an *fs.PathError of the operation
// "read" on the file's path (the store or the connection failed, or the
// read's context ended).
func (r *Reader) Read(p []byte) (int, error) {
	r.read = true
	var (
		n   int
		err error
	)
	if r.br != nil {
		n, err = r.br.Read(p)
	} else {
		n, err = r.rc.Read(p)
	}
	r.n += int64(n)
	if err != nil && err != io.EOF {
		err = pathError("read", r.entry.Path, err)
		if r.err == nil {
			r.err = err
		}
	}
	return n, err
}

// Close ends the read, and the OpenReader call in Stats, metrics and
// spans; its error, if any, is an *fs.PathError.
func (r *Reader) Close() error {
	err := r.rc.Close()
	if err != nil {
		err = pathError("close", r.entry.Path, err)
	}
	if !r.ended {
		r.ended = true
		r.e.tel.BytesRead(r.ctx, telemetry.OpenReader, r.n)
		outcome := err
		if r.err != nil {
			outcome = r.err
		}
		r.call.SetBytes(r.n)
		r.call.Finish(outcome)
	}
	return err
}

// Entry describes the version being read: its path, whole size, ModTime
// and ETag.
func (r *Reader) Entry() Entry { return r.entry }

// MimeType returns the file's MIME type as Download reports it: from the
// extension, else sniffed (http.DetectContentType) from the first 512
// bytes, which it peeks at without consuming them. Sniffing needs a read
// from the file's start that has not begun: otherwise an extension-less
// file is "application/octet-stream". It may block like Read.
func (r *Reader) MimeType() string {
	r.mimeOnce.Do(func() {
		if t := mimeTypeByExt(r.entry.Path); t != "" {
			r.mime = t
			return
		}
		if r.offset != 0 || r.read {
			r.mime = "application/octet-stream"
			return
		}
		r.br = bufio.NewReaderSize(r.rc, 512)
		head, _ := r.br.Peek(512)
		r.mime = http.DetectContentType(head)
	})
	return r.mime
}
